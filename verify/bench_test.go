package verify_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/asn1"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/verify"
)

var benchKeys = []struct {
	name string
	key  *testKey
}{
	{"RS256", &rsaKey},
	{"ES256", &ecKey},
	{"EdDSA", &edKey},
}

// BenchmarkVerify is Verify with a warm JWKS cache, on a Gatehouse-shaped token. Compare with BenchmarkRawVerify
// on one core (-cpu 1): the target is at least 80% of its rate.
func BenchmarkVerify(b *testing.B) {
	srv := newJWKSServer(b, rsaKey, ecKey, edKey)
	for _, bk := range benchKeys {
		b.Run(bk.name, func(b *testing.B) {
			v := newVerifier(b, srv, nil, verify.Config{})
			tok := token(*bk.key, time.Now())
			if _, err := v.Verify(context.Background(), tok); err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(ctx, tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRawVerify is the bare signature check of the same token with the same key: the hash of the signing
// input and the crypto package's verification, with the signature already decoded.
func BenchmarkRawVerify(b *testing.B) {
	for _, bk := range benchKeys {
		b.Run(bk.name, func(b *testing.B) {
			tok := token(*bk.key, time.Now())
			i := strings.LastIndexByte(tok, '.')
			input := []byte(tok[:i])
			sig, err := enc.DecodeString(tok[i+1:])
			if err != nil {
				b.Fatal(err)
			}
			var check func() bool
			switch pub := bk.key.priv.Public().(type) {
			case *rsa.PublicKey:
				check = func() bool {
					d := sha256.Sum256(input)
					return rsa.VerifyPKCS1v15(pub, crypto.SHA256, d[:], sig) == nil
				}
			case *ecdsa.PublicKey:
				der := asn1Sig(sig)
				check = func() bool {
					d := sha256.Sum256(input)
					return ecdsa.VerifyASN1(pub, d[:], der)
				}
			case ed25519.PublicKey:
				check = func() bool { return ed25519.Verify(pub, input, sig) }
			}
			if !check() {
				b.Fatal("signature does not verify")
			}
			b.ReportAllocs()
			for b.Loop() {
				if !check() {
					b.Fatal("signature does not verify")
				}
			}
		})
	}
}

// asn1Sig converts a JWS ECDSA signature (R || S) to the ASN.1 form crypto/ecdsa takes.
func asn1Sig(sig []byte) []byte {
	der, err := asn1.Marshal(struct{ R, S *big.Int }{new(big.Int).SetBytes(sig[:len(sig)/2]), new(big.Int).SetBytes(sig[len(sig)/2:])})
	if err != nil {
		panic(err)
	}
	return der
}
