package keyset

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"runtime"

	"github.com/gatehouse/gatehouse/internal/auth"
)

// signer is a current key ready to sign. Signing is on the token endpoint's hot path, so the protected header is
// encoded once per key and each token costs one base64 pass over the claims and one signature (RFC 7515 §7.1).
// go-jose still makes and publishes the JWKs; the tests verify every algorithm's tokens with another library.
type signer struct {
	kid    string
	alg    auth.Algorithm
	key    crypto.Signer
	header string // base64url of {"alg","kid","typ"}
	// slots bounds the RSA signatures in progress to the number of CPUs, admitting waiters in arrival order.
	// An RSA-2048 signature is about a millisecond of CPU; without the bound, under load the scheduler lets some
	// requests wait many signatures' time while others pass (p99 of 150 ms beside a p50 of 1 ms at 64 callers).
	slots chan struct{}
}

func newSigner(alg auth.Algorithm, kid string, key crypto.Signer) (*signer, error) {
	if err := checkType(alg, key); err != nil {
		return nil, err
	}
	h, err := json.Marshal(struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
		Typ string `json:"typ"`
	}{string(alg), kid, tokenType})
	if err != nil {
		return nil, err
	}
	s := &signer{kid: kid, alg: alg, key: key, header: base64.RawURLEncoding.EncodeToString(h)}
	if alg == auth.RS256 {
		s.slots = make(chan struct{}, runtime.GOMAXPROCS(0))
	}
	return s, nil
}

// sign returns the compact JWS of claims.
func (s *signer) sign(claims []byte) (string, error) {
	enc := base64.RawURLEncoding
	buf := make([]byte, 0, len(s.header)+2+enc.EncodedLen(len(claims))+enc.EncodedLen(512))
	buf = append(buf, s.header...)
	buf = append(buf, '.')
	buf = enc.AppendEncode(buf, claims)
	sig, err := s.signature(buf)
	if err != nil {
		return "", fmt.Errorf("sign with key %q: %w", s.kid, err)
	}
	buf = append(buf, '.')
	buf = enc.AppendEncode(buf, sig)
	return string(buf), nil
}

// signature signs the JWS signing input as RFC 7518 §3 says for the key's algorithm.
func (s *signer) signature(input []byte) ([]byte, error) {
	switch key := s.key.(type) {
	case ed25519.PrivateKey: // EdDSA (RFC 8037): the message itself
		return ed25519.Sign(key, input), nil
	case *ecdsa.PrivateKey: // ES256: R and S, each as 32 big-endian bytes
		digest := sha256.Sum256(input)
		r, ss, err := ecdsa.Sign(rand.Reader, key, digest[:])
		if err != nil {
			return nil, err
		}
		sig := make([]byte, 64)
		r.FillBytes(sig[:32])
		ss.FillBytes(sig[32:])
		return sig, nil
	case *rsa.PrivateKey: // RS256: RSASSA-PKCS1-v1_5 with SHA-256
		digest := sha256.Sum256(input)
		s.slots <- struct{}{}
		defer func() { <-s.slots }()
		return rsa.SignPKCS1v15(nil, key, crypto.SHA256, digest[:])
	}
	return nil, unsupported(s.alg)
}
