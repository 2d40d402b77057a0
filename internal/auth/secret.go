package auth

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
)

// NewSecret returns a new client secret: 256 random bits, base64url without padding (43 characters).
func NewSecret() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// NewClientID returns a new client_id: 128 random bits in lowercase base32 (26 characters).
func NewClientID() string { return randomBase32(16) }

// NewID returns a new internal identifier, prefix + "_" + 128 random bits in lowercase base32.
func NewID(prefix string) string { return prefix + "_" + randomBase32(16) }

var lowerBase32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

func randomBase32(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand, Go 1.24+)
	return lowerBase32.EncodeToString(b)
}

// SecretHint returns the part of a secret that may be shown again: its last four characters.
func SecretHint(secret string) string {
	if len(secret) < 4 {
		return ""
	}
	return secret[len(secret)-4:]
}

// SecretHasher hashes client secrets with HMAC-SHA-256 under a key derived from the root key. Secrets are
// high-entropy (NewSecret, or at least MinSecretLen characters), so a fast keyed hash is the right tool: a slow
// password hash would only cap token throughput, and the key means a stolen database alone cannot confirm a guess.
type SecretHasher struct{ key []byte }

// NewSecretHasher returns a hasher keyed with key (32 bytes from the root key).
func NewSecretHasher(key []byte) *SecretHasher { return &SecretHasher{key: key} }

// Hash returns HMAC-SHA-256(key, secret).
func (h *SecretHasher) Hash(secret string) []byte {
	m := hmac.New(sha256.New, h.key)
	m.Write([]byte(secret))
	return m.Sum(nil)
}

// Match reports in constant time whether secret hashes to hash.
func (h *SecretHasher) Match(secret string, hash []byte) bool {
	return subtle.ConstantTimeCompare(h.Hash(secret), hash) == 1
}
