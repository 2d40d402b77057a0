// Package apikey defines the format of Gatehouse API keys: making them, checking them offline, and the hint that may
// be shown again.
//
// A key is
//
//	<prefix>_<body><checksum>
//
// prefix is 2–12 lowercase letters and digits, starting with a letter: the organization's own, or the server's
// default (DefaultPrefix). It cannot contain "_", so the separator is always the 40th character from the end.
//
// body is 33 characters of base62, each drawn uniformly and independently from crypto/rand, which is 33·log2(62) ≈
// 196.5 random bits (at least the 192 the format promises).
//
// checksum is the CRC-32 (IEEE polynomial, as in zlib, PNG and Ethernet) of "<prefix>_<body>", written as a
// big-endian base62 number of exactly 6 characters, left-padded with "0" (62^6 > 2^32). IEEE rather than Castagnoli
// because every language computes it (zlib.crc32, binascii.crc32, java.util.zip.CRC32), so any scanner can check it;
// over 50 bytes or fewer both polynomials catch the typos that matter.
//
// base62 uses the alphabet 0-9 A-Z a-z, in that (ASCII) order, so digit values are 0–9, 10–35 and 36–61.
//
// Everything after the separator is a fixed 39 characters, so a secret scanner matches a key exactly with
//
//	\bgate_[0-9A-Za-z]{39}\b
//
// (replacing gate with the organization's prefix; for GitHub secret scanning custom patterns, the secret format is
// gate_[0-9A-Za-z]{39} with "before" [^0-9A-Za-z_]|\A and "after" [^0-9A-Za-z_]|\z). A scanner can go further and
// verify the checksum, which leaves it practically no false positives.
//
// The checksum is not a secret and not a MAC: anyone who reads this comment can make a key that passes it. It exists so
// that Parse refuses a mistyped, truncated or naively made-up key without a database lookup. Every single-character
// substitution is caught, because a CRC-32 detects every error burst of up to 32 bits.
//
// # Storing keys
//
// A key is shown once, when it is made. The store keeps only
//
//   - an HMAC-SHA-256 of the whole key string, under a unique index: an [auth.SecretHasher] keyed with its own subkey of
//     the root key, rootKey.Derive("api key hashing"), never the client secret subkey;
//   - its display hint, Hint(key).
//
// A key presented later is Parsed first; only a key that parses is hashed and looked up. The prefix is hashed as part
// of the key, so changing an organization's prefix leaves its existing keys working. Keys never appear in logs,
// audit entries or errors: Parse's errors say what is wrong, never what the key was.
package apikey

import (
	"crypto/rand"
	"errors"
	"fmt"
	"hash/crc32"

	"github.com/gatehouse/gatehouse/internal/auth"
)

// DefaultPrefix is the prefix for organizations that have not chosen one.
//
// "gate" names the product, is not a prefix another vendor uses (GitHub's are ghp_, gho_, ghu_, ghs_, ghr_ and
// github_pat_, GitLab's glpat-, Stripe's sk_, pk_ and rk_, Slack's xox…), and with "_" and the fixed 39-character
// tail it is specific enough that \bgate_[0-9A-Za-z]{39}\b matches no ordinary text. It is short, because people
// read and paste these keys.
const DefaultPrefix = "gate"

// Prefix bounds.
const (
	MinPrefixLen = auth.MinKeyPrefixLen
	MaxPrefixLen = auth.MaxKeyPrefixLen
)

const (
	bodyLen     = 33 // 33·log2(62) ≈ 196.5 bits ≥ 192; 32 characters would give only 190.5
	checksumLen = 6  // 62^6 ≈ 5.7e10 > 2^32
	tailLen     = bodyLen + checksumLen
	minKeyLen   = MinPrefixLen + 1 + tailLen
	maxKeyLen   = MaxPrefixLen + 1 + tailLen
)

const base62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

// ErrMalformed means a string is not a well-formed API key: wrong length, a character outside the format, or a
// checksum that does not match. Parse wraps it with the reason; the reason never contains the key.
var ErrMalformed = errors.New("malformed API key")

// Parse's errors, built once, so that none can carry the key's text.
var (
	errLength    = fmt.Errorf("wrong length: %w", ErrMalformed)
	errPrefix    = fmt.Errorf("bad prefix: %w", ErrMalformed)
	errSeparator = fmt.Errorf("no separator: %w", ErrMalformed)
	errBody      = fmt.Errorf("bad characters: %w", ErrMalformed)
	errChecksum  = fmt.Errorf("checksum mismatch: %w", ErrMalformed)
)

// ValidatePrefix checks a key prefix: MinPrefixLen to MaxPrefixLen lowercase ASCII letters and digits, starting with a
// letter. Its error is an *auth.ValidationError for field, matching auth.ErrInvalid.
//
// An organization should pick a prefix no other vendor uses, so that secret scanners report its leaked keys to the
// right place.
func ValidatePrefix(field, s string) error { return auth.ValidateKeyPrefix(field, s) }

// validPrefix reports whether s is [a-z][a-z0-9]* of an allowed length.
func validPrefix(s string) bool { return auth.ValidKeyPrefix(s) }

// New returns a new API key with the given prefix. Its error, for a prefix ValidatePrefix refuses, is an
// *auth.ValidationError for field "prefix".
//
// The key is a secret: show it once, then keep only its hash and Hint.
func New(prefix string) (string, error) {
	if err := ValidatePrefix("prefix", prefix); err != nil {
		return "", err
	}
	b := make([]byte, 0, len(prefix)+1+tailLen)
	b = append(b, prefix...)
	b = append(b, '_')
	b = appendRandomBase62(b, bodyLen)
	b = appendChecksum(b, crc32.ChecksumIEEE(b))
	return string(b), nil
}

// appendRandomBase62 appends n base62 characters, each uniform: random bytes of 248 or more are rejected so that
// b%62 has no bias (248 = 4·62).
func appendRandomBase62(b []byte, n int) []byte {
	var buf [64]byte // ~3% of bytes are rejected, so one read almost always suffices
	for n > 0 {
		rand.Read(buf[:]) // never fails (crypto/rand, Go 1.24+)
		for _, r := range buf {
			if r >= 248 {
				continue
			}
			b = append(b, base62[r%62])
			if n--; n == 0 {
				break
			}
		}
	}
	return b
}

// appendChecksum appends sum as checksumLen base62 digits, big-endian, left-padded with "0".
func appendChecksum(b []byte, sum uint32) []byte {
	var d [checksumLen]byte
	for i := checksumLen - 1; i >= 0; i-- {
		d[i] = base62[sum%62]
		sum /= 62
	}
	return append(b, d[:]...)
}

// Parse checks that key is a well-formed API key with a matching checksum and returns its prefix. It does not say
// whether the key exists: only the store knows that. Any error matches ErrMalformed and never contains the key.
//
// Parse accepts any valid prefix, not only the organization's current one, so that keys survive a prefix change.
func Parse(key string) (prefix string, err error) {
	if len(key) < minKeyLen || len(key) > maxKeyLen {
		return "", errLength
	}
	sep := len(key) - tailLen - 1
	if key[sep] != '_' {
		return "", errSeparator
	}
	prefix = key[:sep]
	if !validPrefix(prefix) {
		return "", errPrefix
	}
	for i := sep + 1; i < len(key); i++ {
		if !isBase62(key[i]) {
			return "", errBody
		}
	}
	sum := crc32.ChecksumIEEE([]byte(key[:len(key)-checksumLen]))
	var want [checksumLen]byte
	if string(appendChecksum(want[:0], sum)) != key[len(key)-checksumLen:] {
		return "", errChecksum
	}
	return prefix, nil
}

func isBase62(c byte) bool {
	return '0' <= c && c <= '9' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z'
}

// Hint returns the part of a key that may be shown again: the prefix, "_", the first four characters of the body and
// "…" (U+2026), as in "gate_x7Qa…". The four characters reveal about 24 of the body's 196 random bits: enough for a
// person to tell keys apart, far too few to help a guess. Hint returns "" for a string Parse refuses, so it never
// echoes an arbitrary secret.
func Hint(key string) string {
	prefix, err := Parse(key)
	if err != nil {
		return ""
	}
	n := len(prefix) + 1 + 4
	return key[:n] + "…"
}
