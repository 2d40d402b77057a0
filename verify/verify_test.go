package verify_test

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse/gatehouse/verify"
)

func TestVerifyEachAlgorithm(t *testing.T) {
	loadKeys()
	ps256 := testKey{"ps-1", "PS256", rsa2Key.priv}
	noAlg := testKey{"rsa-noalg", "", rsaKey.priv} // a JWK without alg: its type's algorithms
	srv := newJWKSServer(t, rsaKey, ps256, ecKey, ec384Key, edKey, noAlg)
	clk := newClock()
	v := newVerifier(t, srv, clk, verify.Config{})
	for _, tc := range []struct {
		name string
		key  testKey
		alg  string
	}{
		{"RS256", rsaKey, "RS256"},
		{"PS256", ps256, "PS256"},
		{"ES256", ecKey, "ES256"},
		{"ES384", ec384Key, "ES384"},
		{"EdDSA", edKey, "EdDSA"},
		{"no alg in JWK, RS256", noAlg, "RS256"},
		{"no alg in JWK, PS512", noAlg, "PS512"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := clk.Now()
			h := header(tc.key)
			h["alg"] = tc.alg
			tok := sign(tc.alg, tc.key.priv, h, claims(now))
			got, err := v.Verify(context.Background(), tok)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			want := &verify.Claims{
				Issuer:    testIssuer,
				Subject:   "svc-one",
				Audience:  []string{testAudience},
				ExpiresAt: now.Add(time.Hour),
				NotBefore: now,
				IssuedAt:  now,
				ID:        "jti-1",
				ClientID:  "svc-one",
				Scopes:    []string{"read", "write"},
			}
			if diff := cmp.Diff(want, got, cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".Raw" }, cmp.Ignore())); diff != "" {
				t.Errorf("claims (-want +got):\n%s", diff)
			}
		})
	}
	if n := srv.requests.Load(); n != 1 {
		t.Errorf("JWKS fetched %d times, want 1", n)
	}
}

func TestClaimForms(t *testing.T) {
	srv := newJWKSServer(t, ecKey)
	clk := newClock()
	v := newVerifier(t, srv, clk, verify.Config{Audiences: []string{"other", testAudience}})
	tok := token(ecKey, clk.Now(), func(h, c map[string]any) {
		c["aud"] = []string{"x", testAudience}
		delete(c, "scope")
		delete(c, "client_id")
		c["scp"] = []string{"a", "b"} // Okta
		c["cid"] = "okta-client"
		c["org_id"] = "org-7"
		c["custom"] = map[string]any{"tier": "gold"}
		c["exp"] = float64(clk.Now().Add(time.Minute).Unix()) + 0.5
	})
	c, err := v.Verify(context.Background(), tok)
	if err != nil {
		t.Fatal(err)
	}
	if !cmp.Equal(c.Audience, []string{"x", testAudience}) || !cmp.Equal(c.Scopes, []string{"a", "b"}) ||
		c.ClientID != "okta-client" || c.OrgID != "org-7" {
		t.Errorf("claims = %+v", c)
	}
	if want := clk.Now().Add(time.Minute + 500*time.Millisecond); !c.ExpiresAt.Equal(want) {
		t.Errorf("ExpiresAt = %v, want %v", c.ExpiresAt, want)
	}
	var custom struct {
		Custom struct{ Tier string } `json:"custom"`
	}
	if err := c.Decode(&custom); err != nil || custom.Custom.Tier != "gold" {
		t.Errorf("Decode = %+v, %v", custom, err)
	}
	if !c.HasScopes("a", "b") || c.HasScopes("a", "c") || !c.HasScopes() {
		t.Error("HasScopes wrong")
	}
	if !c.HasAnyScope("c", "b") || c.HasAnyScope("c") || c.HasAnyScope() {
		t.Error("HasAnyScope wrong")
	}
}

// TestAttacks is the attack corpus: each token must be refused with the error named.
func TestAttacks(t *testing.T) {
	loadKeys()
	// The attacker's server: nothing may ever be fetched from it.
	var attackerHits atomic.Int64
	attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		attackerHits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.Write(mustJSON(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{evilKey.jwk()}}))
	}))
	defer attacker.Close()

	srv := newJWKSServer(t, rsaKey, ecKey, edKey)
	clk := newClock()
	v := newVerifier(t, srv, clk, verify.Config{})
	now := clk.Now()

	pubDER, err := x509.MarshalPKIXPublicKey(rsaKey.priv.Public())
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	pkcs1PEM := pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(rsaKey.priv.Public().(*rsaPublicKey))})
	jwkJSON := mustJSON(rsaKey.jwk())
	evilJWK := evilKey.jwk()
	evilJWK.KeyID = rsaKey.kid

	good := token(rsaKey, now)
	parts := strings.Split(good, ".")
	tampered := claims(now)
	tampered["scope"] = "read write admin"

	hmac := func(secret []byte) string {
		h := header(rsaKey)
		h["alg"] = "HS256"
		return sign("HS256", secret, h, claims(now))
	}
	none := func(alg string) string {
		h := header(rsaKey)
		h["alg"] = alg
		return sign("none", nil, h, claims(now))
	}
	evil := func(edit func(h map[string]any)) string {
		h := header(evilKey)
		h["kid"] = rsaKey.kid
		edit(h)
		return sign("RS256", evilKey.priv, h, claims(now))
	}

	for _, tc := range []struct {
		name  string
		token string
		want  error
	}{
		{"alg none", none("none"), verify.ErrUnsupportedAlg},
		{"alg None", none("None"), verify.ErrUnsupportedAlg},
		{"alg NONE", none("NONE"), verify.ErrUnsupportedAlg},
		{"HS256 keyed with the RSA public key as PEM", hmac(pubPEM), verify.ErrUnsupportedAlg},
		{"HS256 keyed with the RSA public key as PKCS#1 PEM", hmac(pkcs1PEM), verify.ErrUnsupportedAlg},
		{"HS256 keyed with the RSA public key as DER", hmac(pubDER), verify.ErrUnsupportedAlg},
		{"HS256 keyed with the RSA JWK", hmac(jwkJSON), verify.ErrUnsupportedAlg},
		{"kid not in the JWKS", token(rsaKey, now, func(h, c map[string]any) { h["kid"] = "nope" }), verify.ErrUnknownKey},
		{"path-traversal kid", token(rsaKey, now, func(h, c map[string]any) { h["kid"] = "../../etc/passwd" }), verify.ErrUnknownKey},
		{"SQL kid", token(rsaKey, now, func(h, c map[string]any) { h["kid"] = "' OR 1=1 --" }), verify.ErrUnknownKey},
		{"no kid", token(rsaKey, now, func(h, c map[string]any) { delete(h, "kid") }), verify.ErrUnknownKey},
		{"jku to the attacker's JWKS", evil(func(h map[string]any) { h["jku"] = attacker.URL + "/jwks.json" }), verify.ErrSignature},
		{"x5u to the attacker", evil(func(h map[string]any) { h["x5u"] = attacker.URL + "/cert.pem" }), verify.ErrSignature},
		{"embedded jwk of the attacker", evil(func(h map[string]any) { h["jwk"] = evilJWK }), verify.ErrSignature},
		{"embedded jwk, unknown kid, jku", evil(func(h map[string]any) {
			h["kid"], h["jwk"], h["jku"] = "evil", evilKey.jwk(), attacker.URL
		}), verify.ErrUnknownKey},
		{"expired", token(rsaKey, now, func(h, c map[string]any) { c["exp"] = now.Add(-time.Minute).Unix() }), verify.ErrExpired},
		{"no exp", token(rsaKey, now, func(h, c map[string]any) { delete(c, "exp") }), verify.ErrMalformed},
		{"nbf in the future", token(rsaKey, now, func(h, c map[string]any) { c["nbf"] = now.Add(time.Minute).Unix() }), verify.ErrNotYetValid},
		{"iat in the future", token(rsaKey, now, func(h, c map[string]any) { c["iat"] = now.Add(time.Minute).Unix() }), verify.ErrIssuedInFuture},
		{"wrong issuer", token(rsaKey, now, func(h, c map[string]any) { c["iss"] = "https://evil.example/" }), verify.ErrIssuer},
		{"issuer without its slash", token(rsaKey, now, func(h, c map[string]any) { c["iss"] = "https://issuer.example" }), verify.ErrIssuer},
		{"no issuer", token(rsaKey, now, func(h, c map[string]any) { delete(c, "iss") }), verify.ErrIssuer},
		{"wrong audience", token(rsaKey, now, func(h, c map[string]any) { c["aud"] = "https://other.example.com" }), verify.ErrAudience},
		{"audience list without ours", token(rsaKey, now, func(h, c map[string]any) { c["aud"] = []string{"a", "b"} }), verify.ErrAudience},
		{"no audience", token(rsaKey, now, func(h, c map[string]any) { delete(c, "aud") }), verify.ErrAudience},
		{"missing typ", token(rsaKey, now, func(h, c map[string]any) { delete(h, "typ") }), verify.ErrType},
		{"typ JWT", token(rsaKey, now, func(h, c map[string]any) { h["typ"] = "JWT" }), verify.ErrType},
		{"typ an ID token would have", token(rsaKey, now, func(h, c map[string]any) { h["typ"] = "id_token+jwt" }), verify.ErrType},
		{"payload changed after signing", parts[0] + "." + enc.EncodeToString(mustJSON(tampered)) + "." + parts[2], verify.ErrSignature},
		{"signature stripped", parts[0] + "." + parts[1] + ".", verify.ErrSignature},
		{"signature of another token", parts[0] + "." + parts[1] + "." + strings.Split(token(rsaKey, now.Add(time.Second)), ".")[2], verify.ErrSignature},
		{"signed by the attacker under our kid", evil(func(map[string]any) {}), verify.ErrSignature},
		{"1 MB token", parts[0] + "." + strings.Repeat("A", 1<<20) + "." + parts[2], verify.ErrTooLarge},
		{"crit", token(rsaKey, now, func(h, c map[string]any) { h["crit"] = []string{"exp"}; h["exp"] = 1 }), verify.ErrCritical},
		{"crit b64", token(rsaKey, now, func(h, c map[string]any) { h["crit"] = []string{"b64"}; h["b64"] = false }), verify.ErrCritical},
		{"ES256 header with an RSA kid", sign("ES256", ecKey.priv, map[string]any{"alg": "ES256", "kid": rsaKey.kid, "typ": "at+jwt"}, claims(now)), verify.ErrUnsupportedAlg},
		{"RS256 header with an EC kid", sign("RS256", rsaKey.priv, map[string]any{"alg": "RS256", "kid": ecKey.kid, "typ": "at+jwt"}, claims(now)), verify.ErrUnsupportedAlg},
		{"PS256 with an RS256 key", sign("PS256", rsaKey.priv, map[string]any{"alg": "PS256", "kid": rsaKey.kid, "typ": "at+jwt"}, claims(now)), verify.ErrUnsupportedAlg},
		{"EdDSA header with an EC kid", sign("EdDSA", edKey.priv, map[string]any{"alg": "EdDSA", "kid": ecKey.kid, "typ": "at+jwt"}, claims(now)), verify.ErrUnsupportedAlg},
		{"unknown alg", token(rsaKey, now, func(h, c map[string]any) { h["alg"] = "RS1" }), verify.ErrUnsupportedAlg},

		// Malformed encodings.
		{"empty", "", verify.ErrMalformed},
		{"two parts", parts[0] + "." + parts[1], verify.ErrMalformed},
		{"four parts", good + ".x", verify.ErrMalformed},
		{"JWE-like five parts", parts[0] + "..." + parts[1] + "." + parts[2], verify.ErrMalformed},
		{"padding", parts[0] + "=." + parts[1] + "." + parts[2], verify.ErrMalformed},
		{"standard base64 characters", parts[0] + "." + parts[1] + "." + strings.ReplaceAll(strings.ReplaceAll(parts[2], "-", "+"), "_", "/") + "+/", verify.ErrMalformed},
		{"newline inside", parts[0] + ".\n" + parts[1] + "." + parts[2], verify.ErrMalformed},
		{"leading space", " " + good, verify.ErrMalformed},
		{"JSON serialization", `{"payload":"` + parts[1] + `","protected":"` + parts[0] + `","signature":"` + parts[2] + `"}`, verify.ErrMalformed},
		{"empty header", "." + parts[1] + "." + parts[2], verify.ErrMalformed},
		{"empty payload", parts[0] + ".." + parts[2], verify.ErrMalformed},
		{"header an array", sign("RS256", rsaKey.priv, []byte(`["RS256"]`), claims(now)), verify.ErrMalformed},
		{"header a string", sign("RS256", rsaKey.priv, []byte(`"RS256"`), claims(now)), verify.ErrMalformed},
		{"header not JSON", sign("RS256", rsaKey.priv, []byte(`{alg:RS256}`), claims(now)), verify.ErrMalformed},
		{"header with trailing data", sign("RS256", rsaKey.priv, []byte(`{"alg":"RS256","kid":"rsa-1","typ":"at+jwt"}{}`), claims(now)), verify.ErrMalformed},
		{"duplicate alg", sign("RS256", rsaKey.priv, []byte(`{"alg":"RS256","kid":"rsa-1","typ":"at+jwt","alg":"none"}`), claims(now)), verify.ErrMalformed},
		{"duplicate alg, other case", sign("RS256", rsaKey.priv, []byte(`{"alg":"RS256","kid":"rsa-1","typ":"at+jwt","ALG":"none"}`), claims(now)), verify.ErrMalformed},
		{"duplicate kid, escaped", sign("RS256", rsaKey.priv, []byte(`{"alg":"RS256","kid":"rsa-1","typ":"at+jwt","k\u0069d":"x"}`), claims(now)), verify.ErrMalformed},
		{"kid a number", sign("RS256", rsaKey.priv, map[string]any{"alg": "RS256", "kid": 1, "typ": "at+jwt"}, claims(now)), verify.ErrMalformed},
		{"alg missing", sign("RS256", rsaKey.priv, map[string]any{"kid": rsaKey.kid, "typ": "at+jwt"}, claims(now)), verify.ErrMalformed},
		{"duplicate aud claim", sign("RS256", rsaKey.priv, header(rsaKey), []byte(`{"iss":"`+testIssuer+`","aud":"x","exp":9999999999,"aud":"`+testAudience+`"}`)), verify.ErrMalformed},
		{"aud claim a number", token(rsaKey, now, func(h, c map[string]any) { c["aud"] = 7 }), verify.ErrMalformed},
		{"exp claim a string", token(rsaKey, now, func(h, c map[string]any) { c["exp"] = "tomorrow" }), verify.ErrMalformed},
		{"payload an array", sign("RS256", rsaKey.priv, header(rsaKey), []byte(`[1]`)), verify.ErrMalformed},
		{"payload not JSON", sign("RS256", rsaKey.priv, header(rsaKey), []byte(`iss=x`)), verify.ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := v.Verify(context.Background(), tc.token)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Verify = %v, %v; want an error wrapping %q", c, err, tc.want)
			}
			if c != nil {
				t.Errorf("claims %+v returned with the error", c)
			}
		})
	}
	if n := attackerHits.Load(); n != 0 {
		t.Errorf("the attacker's server was fetched %d times", n)
	}
	// One fetch to start, and at most one more for all the unknown kids together (they come within the refetch
	// interval: the clock did not move).
	if n := srv.requests.Load(); n > 2 {
		t.Errorf("JWKS fetched %d times, want at most 2", n)
	}
	// The good token still verifies after all that.
	if _, err := v.Verify(context.Background(), good); err != nil {
		t.Errorf("good token: %v", err)
	}
}

// TestRemovedKey: once the issuer drops a key from its JWKS and the verifier has a newer set, tokens signed with
// it are refused.
func TestRemovedKey(t *testing.T) {
	srv := newJWKSServer(t, rsaKey, rsa2Key)
	clk := newClock()
	v := newVerifier(t, srv, clk, verify.Config{})
	old := token(rsaKey, clk.Now())
	if _, err := v.Verify(context.Background(), old); err != nil {
		t.Fatal(err)
	}
	srv.setKeys(rsa2Key, ecKey) // rsa-1 removed, ec-1 added
	clk.Advance(verify.DefaultRefetchInterval + time.Second)
	// A token with a kid the verifier has not seen makes it refetch, which brings the set without rsa-1.
	if _, err := v.Verify(context.Background(), token(ecKey, clk.Now())); err != nil {
		t.Fatalf("token of the new key: %v", err)
	}
	if _, err := v.Verify(context.Background(), token(rsaKey, clk.Now())); !errors.Is(err, verify.ErrUnknownKey) {
		t.Fatalf("token of the removed key: %v, want ErrUnknownKey", err)
	}
	if _, err := v.Verify(context.Background(), token(rsa2Key, clk.Now())); err != nil {
		t.Errorf("token of the remaining key: %v", err)
	}
}

func TestTypes(t *testing.T) {
	srv := newJWKSServer(t, rsaKey)
	clk := newClock()
	for _, tc := range []struct {
		types []string
		typ   any // nil: absent
		ok    bool
	}{
		{nil, "at+jwt", true},
		{nil, "AT+JWT", true},
		{nil, "application/at+jwt", true},
		{nil, "JWT", false},
		{nil, nil, false},
		{nil, "", false},
		{[]string{""}, nil, true},    // Cognito: no typ
		{[]string{""}, "JWT", false}, // "" accepts only an absent typ
		{[]string{"", "JWT"}, "jwt", true},
		{[]string{"JWT"}, nil, false},
	} {
		v := newVerifier(t, srv, clk, verify.Config{Types: tc.types})
		tok := token(rsaKey, clk.Now(), func(h, c map[string]any) {
			if tc.typ == nil {
				delete(h, "typ")
			} else {
				h["typ"] = tc.typ
			}
		})
		_, err := v.Verify(context.Background(), tok)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, verify.ErrType)) {
			t.Errorf("Types %q, typ %v: err = %v, want ok=%v", tc.types, tc.typ, err, tc.ok)
		}
	}
}

func TestLeeway(t *testing.T) {
	srv := newJWKSServer(t, rsaKey)
	clk := newClock()
	now := clk.Now()
	tok := token(rsaKey, now, func(h, c map[string]any) { c["exp"] = now.Add(-10 * time.Second).Unix() })
	for _, tc := range []struct {
		leeway time.Duration
		want   error
	}{
		{0, nil}, // DefaultLeeway: 30s
		{5 * time.Second, verify.ErrExpired},
		{-1, verify.ErrExpired},
		{time.Minute, nil},
	} {
		v := newVerifier(t, srv, clk, verify.Config{Leeway: tc.leeway})
		if _, err := v.Verify(context.Background(), tok); !errors.Is(err, tc.want) && err != tc.want {
			t.Errorf("leeway %v: %v, want %v", tc.leeway, err, tc.want)
		}
	}
}

func TestAlgorithmsConfig(t *testing.T) {
	srv := newJWKSServer(t, rsaKey, ecKey)
	clk := newClock()
	v := newVerifier(t, srv, clk, verify.Config{Algorithms: []string{"ES256"}})
	if _, err := v.Verify(context.Background(), token(ecKey, clk.Now())); err != nil {
		t.Errorf("ES256: %v", err)
	}
	if _, err := v.Verify(context.Background(), token(rsaKey, clk.Now())); !errors.Is(err, verify.ErrUnsupportedAlg) {
		t.Errorf("RS256 when only ES256 is allowed: %v", err)
	}
	for _, bad := range []string{"none", "HS256", "rs256", ""} {
		if _, err := verify.New(verify.Config{Issuer: testIssuer, Audiences: []string{"a"}, Algorithms: []string{bad}}); err == nil {
			t.Errorf("New accepted algorithm %q", bad)
		}
	}
}

func TestNewRequires(t *testing.T) {
	for _, cfg := range []verify.Config{
		{Audiences: []string{"a"}},
		{Issuer: testIssuer},
		{Issuer: testIssuer, Audiences: []string{""}},
	} {
		if _, err := verify.New(cfg); err == nil {
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
}

// TestJWKSFiltering: keys the verifier must not use are skipped, whatever the token says.
func TestJWKSFiltering(t *testing.T) {
	loadKeys()
	small, err := rsaGenerate(1024)
	if err != nil {
		t.Fatal(err)
	}
	set := `{"keys":[
		{"kty":"oct","kid":"hmac","alg":"HS256","k":"c2VjcmV0"},
		{"kty":"RSA","kid":"enc","use":"enc","n":"` + b64n(rsaKey) + `","e":"AQAB"},
		{"kty":"RSA","kid":"ops","key_ops":["encrypt"],"n":"` + b64n(rsaKey) + `","e":"AQAB"},
		{"kty":"RSA","kid":"small","alg":"RS256","n":"` + enc.EncodeToString(small.N.Bytes()) + `","e":"AQAB"},
		{"kty":"EC","kid":"offcurve","alg":"ES256","crv":"P-256","x":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA","y":"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"},
		{"kty":"RSA","kid":"liar","alg":"ES256","n":"` + b64n(rsaKey) + `","e":"AQAB"},
		{"kty":"ML-DSA","kid":"future"},
		{"kty":"RSA","kid":"rsa-1","alg":"RS256","use":"sig","n":"` + b64n(rsaKey) + `","e":"AQAB"}
	]}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(set)) }))
	defer srv.Close()
	clk := newClock()
	v, err := verify.New(verify.Config{Issuer: testIssuer, Audiences: []string{testAudience}, JWKSURL: srv.URL, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(context.Background(), token(rsaKey, clk.Now())); err != nil {
		t.Fatalf("the usable key: %v", err)
	}
	for _, kid := range []string{"hmac", "enc", "ops", "small", "offcurve", "liar", "future"} {
		alg := "RS256"
		tok := token(rsaKey, clk.Now(), func(h, c map[string]any) { h["kid"], h["alg"] = kid, alg })
		if _, err := v.Verify(context.Background(), tok); !errors.Is(err, verify.ErrUnknownKey) {
			t.Errorf("kid %q: %v, want ErrUnknownKey", kid, err)
		}
	}
	hs := sign("HS256", []byte("secret"), map[string]any{"alg": "HS256", "kid": "hmac", "typ": "at+jwt"}, claims(clk.Now()))
	if _, err := v.Verify(context.Background(), hs); !errors.Is(err, verify.ErrUnsupportedAlg) {
		t.Errorf("HS256 with the JWKS's own oct key: %v", err)
	}
}

// TestManyMembers: a header is read before its signature is checked, so its size in members is bounded; signed
// claims may have many, and a repeated one is found among them too.
func TestManyMembers(t *testing.T) {
	srv := newJWKSServer(t, edKey)
	clk := newClock()
	v := newVerifier(t, srv, clk, verify.Config{MaxTokenSize: 1 << 20})
	var hdr strings.Builder
	hdr.WriteString(`{"alg":"EdDSA","kid":"ed-1","typ":"at+jwt"`)
	for i := range 5000 {
		fmt.Fprintf(&hdr, `,"h%d":0`, i)
	}
	hdr.WriteString("}")
	start := time.Now()
	_, err := v.Verify(context.Background(), sign("EdDSA", edKey.priv, []byte(hdr.String()), claims(clk.Now())))
	if !errors.Is(err, verify.ErrMalformed) {
		t.Errorf("header of 5,003 members: %v, want ErrMalformed", err)
	}
	if d := time.Since(start); d > 50*time.Millisecond {
		t.Errorf("refusing it took %v", d)
	}

	c := claims(clk.Now())
	for i := range 200 {
		c[fmt.Sprintf("claim%d", i)] = i
	}
	tok := sign("EdDSA", edKey.priv, header(edKey), c)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Errorf("200 custom claims: %v", err)
	}
	dup := mustJSON(c)
	dup = append(dup[:len(dup)-1], `,"CLAIM150":1}`...)
	if _, err := v.Verify(context.Background(), sign("EdDSA", edKey.priv, header(edKey), dup)); !errors.Is(err, verify.ErrMalformed) {
		t.Errorf("claim150 and CLAIM150: %v, want ErrMalformed", err)
	}
}

func TestOnRefresh(t *testing.T) {
	srv := newJWKSServer(t, rsaKey)
	clk := newClock()
	var mu sync.Mutex
	var got []string
	v := newVerifier(t, srv, clk, verify.Config{OnRefresh: func(err error) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, fmt.Sprint(err != nil))
	}})
	srv.set(func(s *jwksServer) { s.status = 500 })
	v.Verify(context.Background(), token(rsaKey, clk.Now()))
	srv.set(func(s *jwksServer) { s.status = 0 })
	clk.Advance(2 * time.Second)
	v.Verify(context.Background(), token(rsaKey, clk.Now()))
	clk.Advance(time.Minute)
	v.Verify(context.Background(), withKid(rsaKey, token(rsaKey, clk.Now()), "new"))
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"true", "false", "false"}; !cmp.Equal(got, want) {
		t.Errorf("OnRefresh calls (error?) = %v, want %v", got, want)
	}
}

// FuzzVerify: no input makes Verify panic, and nothing but the good token (signed by the published key) is
// accepted.
func FuzzVerify(f *testing.F) {
	srv := newJWKSServer(f, rsaKey, edKey)
	clk := newClock()
	v := newVerifier(f, srv, clk, verify.Config{})
	good := token(edKey, clk.Now())
	f.Add(good)
	f.Add(token(rsaKey, clk.Now()))
	f.Add(sign("EdDSA", edKey.priv, []byte(`{"alg":"EdDSA","kid":"ed-1","typ":"at+jwt","x":[{"y":"\u00e9\\"}]}`), claims(clk.Now())))
	f.Add("e30.e30.")
	f.Fuzz(func(t *testing.T, tok string) {
		c, err := v.Verify(context.Background(), tok)
		if err == nil && c == nil {
			t.Fatal("no error and no claims")
		}
		if err == nil && c.Subject != "svc-one" {
			t.Fatalf("accepted %q with claims %+v", tok, c)
		}
	})
}
