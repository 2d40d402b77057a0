package keyset

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/auth"
)

// jws returns a compact JWS of payload with header, signed by key as alg says (HS256 with a byte-slice key).
func jws(t *testing.T, header map[string]any, payload []byte, alg string, key any) string {
	t.Helper()
	h, err := json.Marshal(header)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding
	input := enc.EncodeToString(h) + "." + enc.EncodeToString(payload)
	var sig []byte
	switch alg {
	case "none":
	case "HS256":
		m := hmac.New(sha256.New, key.([]byte))
		m.Write([]byte(input))
		sig = m.Sum(nil)
	default:
		s := &signer{alg: auth.Algorithm(alg), key: key.(crypto.Signer), slots: make(chan struct{}, 1)}
		if sig, err = s.signature([]byte(input)); err != nil {
			t.Fatal(err)
		}
	}
	return input + "." + enc.EncodeToString(sig)
}

// TestVerifyAttacks: Verify accepts the keyset's own tokens and nothing else — above all not a token signed by
// another key pair that claims one of its kids, nor one that switches the algorithm.
func TestVerifyAttacks(t *testing.T) {
	store := newMemStore()
	k := newKeyset(t, store, randomKey(), Options{})
	ctx := t.Context()
	for _, alg := range []auth.Algorithm{auth.RS256, auth.ES256, auth.EdDSA} {
		if err := k.Ensure(ctx, alg); err != nil {
			t.Fatal(err)
		}
	}
	payload := claims(t)
	good, err := k.Sign(ctx, auth.ES256, payload)
	if err != nil {
		t.Fatal(err)
	}
	got, err := k.Verify(good)
	if err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("Verify(own token) = %s, %v; want the payload", got, err)
	}
	// Twice: the second time it is remembered.
	if got, err := k.Verify(good); err != nil || !bytes.Equal(got, payload) {
		t.Fatalf("Verify(own token) again = %s, %v; want the payload", got, err)
	}

	rsKid, esKid, edKid := currentKey(t, store, auth.RS256).ID, currentKey(t, store, auth.ES256).ID, currentKey(t, store, auth.EdDSA).ID
	esPriv, _, err := k.open(currentKey(t, store, auth.ES256))
	if err != nil {
		t.Fatal(err)
	}
	rsJWK := currentKey(t, store, auth.RS256).PublicJWK
	otherEC, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	otherRSA, _ := rsa.GenerateKey(rand.Reader, 2048)
	_, otherEd, _ := ed25519.GenerateKey(rand.Reader)
	hdr := func(alg, kid, typ string) map[string]any {
		h := map[string]any{"alg": alg, "kid": kid}
		if typ != "" {
			h["typ"] = typ
		}
		return h
	}
	// The forgeries below are made the way this one is: with the right key and header, it verifies.
	if _, err := k.Verify(jws(t, hdr("ES256", esKid, "at+jwt"), payload, "ES256", esPriv)); err != nil {
		t.Fatalf("a token made by the test's signer with the right key: %v", err)
	}
	parts := strings.Split(good, ".")
	tests := []struct {
		name  string
		token string
	}{
		{"another key pair with the same kid (ES256)", jws(t, hdr("ES256", esKid, "at+jwt"), payload, "ES256", otherEC)},
		{"another key pair with the same kid (RS256)", jws(t, hdr("RS256", rsKid, "at+jwt"), payload, "RS256", otherRSA)},
		{"another key pair with the same kid (EdDSA)", jws(t, hdr("EdDSA", edKid, "at+jwt"), payload, "EdDSA", otherEd)},
		{"another key pair with an unknown kid", jws(t, hdr("ES256", "not-a-kid", "at+jwt"), payload, "ES256", otherEC)},
		{"HS256 keyed with the published RSA key", jws(t, hdr("HS256", rsKid, "at+jwt"), payload, "HS256", rsJWK)},
		{"alg none", jws(t, hdr("none", esKid, "at+jwt"), payload, "none", nil)},
		{"the key's kid with another algorithm", jws(t, hdr("RS256", esKid, "at+jwt"), payload, "RS256", otherRSA)},
		{"the right key, typ JWT", jws(t, hdr("ES256", esKid, "JWT"), payload, "ES256", esPriv)},
		{"the right key, no typ", jws(t, hdr("ES256", esKid, ""), payload, "ES256", esPriv)},
		{"the right key, a crit header", jws(t, map[string]any{"alg": "ES256", "kid": esKid, "typ": "at+jwt", "crit": []string{"exp"}}, payload, "ES256", esPriv)},
		{"the right key, no kid", jws(t, map[string]any{"alg": "ES256", "typ": "at+jwt"}, payload, "ES256", esPriv)},
		{"a changed payload", parts[0] + "." + base64.RawURLEncoding.EncodeToString(append(bytes.Clone(payload[:len(payload)-1]), ' ', '}')) + "." + parts[2]},
		{"a changed signature", parts[0] + "." + parts[1] + "." + parts[2][:len(parts[2])-2] + "AA"},
		{"no signature", parts[0] + "." + parts[1] + "."},
		{"two parts", parts[0] + "." + parts[1]},
		{"four parts", good + "." + parts[2]},
		{"empty", ""},
		{"garbage", "not a token"},
		{"too large", parts[0] + "." + strings.Repeat("A", 17<<10) + "." + parts[2]},
	}
	for _, tt := range tests {
		if p, err := k.Verify(tt.token); !errors.Is(err, ErrInvalidToken) {
			t.Errorf("%s: Verify = %q, %v; want ErrInvalidToken", tt.name, p, err)
		}
	}
}
