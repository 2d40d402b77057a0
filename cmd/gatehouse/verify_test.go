package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// These helpers verify Gatehouse tokens the way a receiving API would, with golang-jwt rather than go-jose (which
// signs them), and with the JWK parsing written out here, so a bug in one library cannot hide itself.

type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
	Crv string `json:"crv"`
	N   string `json:"n"`
	E   string `json:"e"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

func fetchJWKS(t *testing.T, base string) map[string]jwk {
	t.Helper()
	resp, err := http.Get(base + "/.well-known/jwks.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("jwks: status %d", resp.StatusCode)
	}
	var set struct{ Keys []jwk }
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	keys := make(map[string]jwk, len(set.Keys))
	for _, k := range set.Keys {
		keys[k.Kid] = k
	}
	return keys
}

func b64int(t *testing.T, s string) *big.Int {
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("jwk member %q: %v", s, err)
	}
	return new(big.Int).SetBytes(b)
}

func (k jwk) publicKey(t *testing.T) crypto.PublicKey {
	t.Helper()
	switch k.Kty {
	case "RSA":
		return &rsa.PublicKey{N: b64int(t, k.N), E: int(b64int(t, k.E).Int64())}
	case "EC":
		if k.Crv != "P-256" {
			t.Fatalf("EC key on curve %q", k.Crv)
		}
		return &ecdsa.PublicKey{Curve: elliptic.P256(), X: b64int(t, k.X), Y: b64int(t, k.Y)}
	case "OKP":
		x, err := base64.RawURLEncoding.DecodeString(k.X)
		if err != nil || k.Crv != "Ed25519" || len(x) != ed25519.PublicKeySize {
			t.Fatalf("bad OKP key %+v", k)
		}
		return ed25519.PublicKey(x)
	}
	t.Fatalf("unknown kty %q", k.Kty)
	return nil
}

// accessClaims are the claims a Gatehouse access token must carry (RFC 9068 §2.2).
type accessClaims struct {
	jwt.RegisteredClaims
	ClientID string `json:"client_id"`
	Scope    string `json:"scope"`
}

// verifyToken checks signature, typ, alg against the key's alg, issuer and audience, and returns the claims and
// the header.
func verifyToken(t *testing.T, base, issuer, audience, token string) (*accessClaims, map[string]any) {
	t.Helper()
	claims, header, err := checkToken(t, base, issuer, audience, token)
	if err != nil {
		t.Fatalf("verify token: %v", err)
	}
	if header["typ"] != "at+jwt" {
		t.Errorf("typ = %v, want at+jwt", header["typ"])
	}
	return claims, header
}

// checkToken is verifyToken returning the verification error.
func checkToken(t *testing.T, base, issuer, audience, token string) (*accessClaims, map[string]any, error) {
	t.Helper()
	keys := fetchJWKS(t, base)
	var header map[string]any
	claims := &accessClaims{}
	_, err := jwt.ParseWithClaims(token, claims, func(tok *jwt.Token) (any, error) {
		header = tok.Header
		kid, _ := tok.Header["kid"].(string)
		k, ok := keys[kid]
		if !ok {
			t.Fatalf("kid %q not in the JWKS", kid)
		}
		if tok.Header["alg"] != k.Alg {
			t.Fatalf("token alg %v, key alg %s", tok.Header["alg"], k.Alg)
		}
		return k.publicKey(t), nil
	}, jwt.WithValidMethods([]string{"RS256", "ES256", "EdDSA"}), jwt.WithIssuer(issuer), jwt.WithAudience(audience),
		jwt.WithExpirationRequired(), jwt.WithIssuedAt(), jwt.WithLeeway(5*time.Second))
	return claims, header, err
}
