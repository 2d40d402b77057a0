package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/issuer"
	"github.com/gatehouse/gatehouse/verify"
)

// Secrets of the management fixture's clients.
const (
	secretIntrospect = "introspect-secret-0123456789abcdefghijklmnopqrstuvwxyz"
	secretRevokeOnly = "revoke-only-secret-0123456789abcdefghijklmnopqrstuvwxyz"
)

// managementFixture is the fixture plus three clients of the built-in management API: one that may introspect, an
// admin that may introspect and revoke any token, and one that may revoke but not introspect.
var managementFixture = strings.Replace(fixture, "clients:\n", `clients:
  - client_id: svc-introspect
    name: Introspects
    client_secret: `+secretIntrospect+`
    grants:
      - audience: urn:gatehouse:management
        scopes: ["introspect:tokens"]
  - client_id: svc-admin
    name: Admin
    client_secret: `+secretAdmin+`
    grants:
      - audience: urn:gatehouse:management
        scopes: ["introspect:tokens", "revoke:tokens"]
  - client_id: svc-revoke-only
    name: Revokes
    client_secret: `+secretRevokeOnly+`
    grants:
      - audience: urn:gatehouse:management
        scopes: ["revoke:tokens"]
`, 1)

// endpointRequest is a request to introspection or revocation: a form body, authenticated by Basic (id and secret
// set), by a bearer token, by both, or not at all.
type endpointRequest struct {
	path, body         string
	id, secret, bearer string
}

func (ts *testServer) call(t *testing.T, r endpointRequest) response {
	t.Helper()
	req, _ := http.NewRequest("POST", ts.URL+r.path, strings.NewReader(r.body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if r.id != "" {
		req.SetBasicAuth(r.id, r.secret)
	}
	if r.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+r.bearer)
	}
	return do(t, req)
}

// introspect asks the server about token as svc-introspect and returns the answer, which must be a 200.
func (ts *testServer) introspect(t *testing.T, token string) map[string]any {
	t.Helper()
	r := ts.call(t, endpointRequest{path: "/oauth/introspect", body: form("token", token), id: "svc-introspect", secret: secretIntrospect})
	if r.status != 200 {
		t.Fatalf("introspect: %d %s", r.status, r.body)
	}
	if cc := r.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("introspection Cache-Control = %q, want no-store", cc)
	}
	return r.json
}

// active reports whether introspection says token is active, checking that an inactive answer says nothing else.
func (ts *testServer) active(t *testing.T, token string) bool {
	t.Helper()
	got := ts.introspect(t, token)
	if got["active"] == true {
		return true
	}
	if len(got) != 1 || got["active"] != false {
		t.Errorf("inactive introspection = %v, want exactly {\"active\": false}", got)
	}
	return false
}

// token gets a token for a client with HTTP Basic, failing the test without one.
func (ts *testServer) token(t *testing.T, id, secret string, kv ...string) string {
	t.Helper()
	r := postTokenBasic(t, ts, id, secret, form(append([]string{"grant_type", "client_credentials"}, kv...)...))
	if r.status != 200 {
		t.Fatalf("token for %s: %d %s", id, r.status, r.body)
	}
	return r.json["access_token"].(string)
}

// forge returns a compact JWS of claims with header, signed by sign over the signing input.
func forge(t *testing.T, header map[string]any, claims any, sign func(input []byte) []byte) string {
	t.Helper()
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	input := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	return input + "." + base64.RawURLEncoding.EncodeToString(sign([]byte(input)))
}

func TestIntrospect(t *testing.T) {
	ts := startServer(t, "", nil, managementFixture)
	tokens := map[string]string{
		"RS256": ts.token(t, "svc-one", secretOne),
		"ES256": ts.token(t, "svc-multi", secretMulti, "audience", "urn:example:reports"),
		"EdDSA": ts.token(t, "svc-multi", secretMulti, "audience", "https://edge.example.com"),
	}
	for alg, tok := range tokens {
		got := ts.introspect(t, tok)
		c := claimsOf(t, tok)
		want := map[string]any{"active": true, "token_type": "Bearer"}
		for _, k := range []string{"scope", "client_id", "exp", "iat", "nbf", "sub", "aud", "iss", "jti"} {
			want[k] = c[k]
		}
		if !equalJSON(got, want) {
			t.Errorf("%s: introspection = %v, want %v", alg, got, want)
		}
	}

	// Every way of authenticating the introspection request.
	mgmt := ts.token(t, "svc-introspect", secretIntrospect, "audience", auth.ManagementAudience)
	for name, r := range map[string]endpointRequest{
		"client_secret_basic": {id: "svc-introspect", secret: secretIntrospect},
		"client_secret_post":  {body: "&" + form("client_id", "svc-introspect", "client_secret", secretIntrospect)},
		"bearer token":        {bearer: mgmt},
		"admin, basic":        {id: "svc-admin", secret: secretAdmin},
	} {
		r.path, r.body = "/oauth/introspect", form("token", tokens["ES256"])+r.body
		if got := ts.call(t, r); got.status != 200 || got.json["active"] != true {
			t.Errorf("%s: %d %s, want an active token", name, got.status, got.body)
		}
	}

	// Tokens that are not active, for each reason.
	now := time.Now().Unix()
	good := issuer.Claims{Issuer: ts.IssuerURL, Subject: "svc-one", Audience: "https://api.example.com/v1", IssuedAt: now,
		NotBefore: now, ExpiresAt: now + 600, ID: "jti-forged", ClientID: "svc-one", Scope: "read write admin"}
	expired := good
	expired.IssuedAt, expired.NotBefore, expired.ExpiresAt = now-7200, now-7200, now-3600
	otherIssuer := good
	otherIssuer.Issuer = "https://evil.example.com/"
	esKid := tokenKid(t, tokens["ES256"])
	rsKid := tokenKid(t, tokens["RS256"])
	otherKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	signOther := func(input []byte) []byte {
		d := sha256.Sum256(input)
		r, s, _ := ecdsa.Sign(rand.Reader, otherKey, d[:])
		sig := make([]byte, 64)
		r.FillBytes(sig[:32])
		s.FillBytes(sig[32:])
		return sig
	}
	jwks := do(t, mustReq("GET", ts.URL+"/.well-known/jwks.json")).body
	hs256 := func(input []byte) []byte {
		m := hmac.New(sha256.New, []byte(jwks))
		m.Write(input)
		return m.Sum(nil)
	}
	other := startServer(t, "", nil, fixture) // another Gatehouse, with its own keys and issuer
	parts := strings.Split(tokens["RS256"], ".")
	inactive := map[string]string{
		"expired":                              seedSign(t, ts, auth.ES256, expired),
		"issued by another issuer, our key":    seedSign(t, ts, auth.ES256, otherIssuer),
		"another key pair with our kid":        forge(t, map[string]any{"alg": "ES256", "kid": esKid, "typ": "at+jwt"}, good, signOther),
		"another key pair, its own kid":        forge(t, map[string]any{"alg": "ES256", "kid": "evil", "typ": "at+jwt"}, good, signOther),
		"HS256 keyed with the JWKS":            forge(t, map[string]any{"alg": "HS256", "kid": rsKid, "typ": "at+jwt"}, good, hs256),
		"alg none":                             forge(t, map[string]any{"alg": "none", "kid": rsKid, "typ": "at+jwt"}, good, func([]byte) []byte { return nil }),
		"another Gatehouse's token":            other.token(t, "svc-one", secretOne),
		"our token with a changed payload":     seedTamper(t, tokens["RS256"]),
		"our token with a changed signature":   parts[0] + "." + parts[1] + "." + strings.Repeat("A", len(parts[2])),
		"malformed":                            "not.a.token",
		"garbage":                              "garbage",
		"a very long one":                      strings.Repeat("x", 20000),
		"three dots":                           "...",
		"our token with whitespace around it":  " " + tokens["RS256"] + " ",
		"our header and signature, no payload": parts[0] + ".." + parts[2],
	}
	for name, tok := range inactive {
		if ts.active(t, tok) {
			t.Errorf("%s: active, want inactive", name)
		}
	}
}

func TestIntrospectCallers(t *testing.T) {
	ts := startServer(t, "", nil, managementFixture)
	tok := ts.token(t, "svc-one", secretOne)
	mgmtRevokeOnly := ts.token(t, "svc-revoke-only", secretRevokeOnly, "audience", auth.ManagementAudience)
	mgmtRevoked := ts.token(t, "svc-introspect", secretIntrospect, "audience", auth.ManagementAudience)
	if r := ts.call(t, endpointRequest{path: "/oauth/revoke", body: form("token", mgmtRevoked), id: "svc-introspect", secret: secretIntrospect}); r.status != 200 {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	body := form("token", tok)
	tests := []struct {
		name      string
		req       endpointRequest
		status    int
		code      string
		challenge string
	}{
		{"no authentication", endpointRequest{body: body}, 401, "invalid_client", "Basic"},
		{"wrong secret", endpointRequest{body: body, id: "svc-introspect", secret: "wrong"}, 401, "invalid_client", "Basic"},
		{"unknown client", endpointRequest{body: body, id: "nobody", secret: secretIntrospect}, 401, "invalid_client", "Basic"},
		{"a client without the scope", endpointRequest{body: body, id: "svc-one", secret: secretOne}, 403, "insufficient_scope", ""},
		{"a client with only revoke:tokens", endpointRequest{body: body, id: "svc-revoke-only", secret: secretRevokeOnly}, 403, "insufficient_scope", ""},
		{"a bearer token that is garbage", endpointRequest{body: body, bearer: "garbage"}, 401, "invalid_token", `Bearer realm="gatehouse", error="invalid_token"`},
		{"a bearer token for another API", endpointRequest{body: body, bearer: tok}, 401, "invalid_token", `Bearer realm="gatehouse", error="invalid_token"`},
		{"a revoked bearer token", endpointRequest{body: body, bearer: mgmtRevoked}, 401, "invalid_token", `Bearer realm="gatehouse", error="invalid_token"`},
		{"a bearer token without the scope", endpointRequest{body: body, bearer: mgmtRevokeOnly}, 403, "insufficient_scope",
			`Bearer realm="gatehouse", error="insufficient_scope", scope="introspect:tokens"`},
		{"bearer and client_secret both", endpointRequest{body: body + "&" + form("client_id", "svc-introspect", "client_secret", secretIntrospect), bearer: mgmtRevokeOnly}, 400, "invalid_request", ""},
		{"basic and client_secret both", endpointRequest{body: body + "&" + form("client_secret", secretIntrospect), id: "svc-introspect", secret: secretIntrospect}, 400, "invalid_request", ""},
		{"no token", endpointRequest{body: "token_type_hint=access_token", id: "svc-introspect", secret: secretIntrospect}, 400, "invalid_request", ""},
		{"token twice", endpointRequest{body: body + "&" + body, id: "svc-introspect", secret: secretIntrospect}, 400, "invalid_request", ""},
	}
	for _, tt := range tests {
		tt.req.path = "/oauth/introspect"
		r := ts.call(t, tt.req)
		if r.status != tt.status || r.json["error"] != tt.code {
			t.Errorf("%s: %d %s, want %d %s", tt.name, r.status, r.body, tt.status, tt.code)
		}
		if got := r.header.Get("WWW-Authenticate"); !strings.HasPrefix(got, tt.challenge) || (tt.challenge == "" && got != "") {
			t.Errorf("%s: WWW-Authenticate %q, want %q", tt.name, got, tt.challenge)
		}
		if r.header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: Cache-Control %q, want no-store", tt.name, r.header.Get("Cache-Control"))
		}
	}
	// The methods and bodies the token endpoint refuses, refused the same way.
	r := do(t, mustReq("GET", ts.URL+"/oauth/introspect"))
	if r.status != 405 || r.header.Get("Allow") != "POST" {
		t.Errorf("GET: %d Allow %q, want 405 POST", r.status, r.header.Get("Allow"))
	}
	req, _ := http.NewRequest("POST", ts.URL+"/oauth/introspect", strings.NewReader("token="+strings.Repeat("a", 70<<10)))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("svc-introspect", secretIntrospect)
	if r := do(t, req); r.status != 413 {
		t.Errorf("a 70 KiB body: %d, want 413", r.status)
	}
}

// TestIntrospectAndRevokeNever500: no input makes either endpoint fail with a 500.
func TestIntrospectAndRevokeNever500(t *testing.T) {
	ts := startServer(t, "", nil, managementFixture)
	tok := ts.token(t, "svc-one", secretOne)
	bodies := []string{"", "=", "&&&", "token", "token=", "token=%", "token=%zz", "token=" + tok + "%00",
		`{"token":1}`, `{"token":"` + tok + `"}`, "subject=", "subject=x&issued_before=-1", "subject=x&issued_before=99999999999999999999",
		"subject=x&issued_before=2026-13-45T00:00:00Z", "disable_client=%ff%fe", "issued_before=1", "token=a&subject=b&disable_client=c",
		"token=" + strings.Repeat("eyJ", 5000), "token=a.b.c.d.e", "token=eyJhbGciOiJub25lIn0.e30."}
	for _, path := range []string{"/oauth/introspect", "/oauth/revoke"} {
		for _, b := range bodies {
			for _, ct := range []string{"application/x-www-form-urlencoded", "application/json", "text/plain"} {
				req, _ := http.NewRequest("POST", ts.URL+path, strings.NewReader(b))
				req.Header.Set("Content-Type", ct)
				req.SetBasicAuth("svc-admin", secretAdmin)
				if r := do(t, req); r.status >= 500 {
					t.Errorf("%s %q (%s): %d %s", path, b, ct, r.status, r.body)
				}
			}
		}
	}
}

func TestRevoke(t *testing.T) {
	ts := startServer(t, "", nil, managementFixture)
	revoke := func(id, secret string, kv ...string) response {
		t.Helper()
		return ts.call(t, endpointRequest{path: "/oauth/revoke", body: form(kv...), id: id, secret: secret})
	}

	// A client revokes its own token: inactive at once. Again: still 200.
	own := ts.token(t, "svc-one", secretOne)
	if r := revoke("svc-one", secretOne, "token", own, "token_type_hint", "access_token"); r.status != 200 || r.body != "" {
		t.Fatalf("revoke own token: %d %q, want 200 and no body", r.status, r.body)
	}
	if ts.active(t, own) {
		t.Error("a token its client revoked is still active")
	}
	if r := revoke("svc-one", secretOne, "token", own); r.status != 200 {
		t.Errorf("revoking it again: %d %s", r.status, r.body)
	}
	// client_secret_post works as well.
	own2 := ts.token(t, "svc-one", secretOne)
	if r := revoke("", "", "token", own2, "client_id", "svc-one", "client_secret", secretOne); r.status != 200 || ts.active(t, own2) {
		t.Errorf("revoke with client_secret_post: %d %s", r.status, r.body)
	}

	// Another client's token: 200, and left alone.
	theirs := ts.token(t, "svc-multi", secretMulti, "audience", "urn:example:reports")
	if r := revoke("svc-one", secretOne, "token", theirs); r.status != 200 {
		t.Errorf("revoke another client's token: %d %s, want 200", r.status, r.body)
	}
	if !ts.active(t, theirs) {
		t.Error("a client revoked another client's token")
	}
	// An admin revokes any token.
	if r := revoke("svc-admin", secretAdmin, "token", theirs); r.status != 200 || ts.active(t, theirs) {
		t.Errorf("admin revoke: %d %s; active %t", r.status, r.body, ts.active(t, theirs))
	}
	// An admin with a bearer token too.
	adminBearer := ts.token(t, "svc-admin", secretAdmin, "audience", auth.ManagementAudience)
	edge := ts.token(t, "svc-multi", secretMulti, "audience", "https://edge.example.com")
	if r := ts.call(t, endpointRequest{path: "/oauth/revoke", body: form("token", edge), bearer: adminBearer}); r.status != 200 || ts.active(t, edge) {
		t.Errorf("admin revoke with a bearer token: %d %s", r.status, r.body)
	}
	// Invalid tokens: 200, nothing to do.
	for _, tok := range []string{"garbage", seedTamper(t, ts.token(t, "svc-one", secretOne))} {
		if r := revoke("svc-one", secretOne, "token", tok); r.status != 200 {
			t.Errorf("revoke an invalid token: %d %s, want 200", r.status, r.body)
		}
	}
	// Unauthenticated: 401.
	if r := revoke("", "", "token", theirs); r.status != 401 || r.json["error"] != "invalid_client" {
		t.Errorf("unauthenticated revoke: %d %s", r.status, r.body)
	}
	if r := revoke("svc-one", "wrong", "token", theirs); r.status != 401 {
		t.Errorf("revoke with a wrong secret: %d %s", r.status, r.body)
	}
	for name, kv := range map[string][]string{
		"nothing":                    {"token_type_hint", "access_token"},
		"token and subject":          {"token", own, "subject", "svc-one"},
		"subject and disable_client": {"subject", "svc-one", "disable_client", "svc-one"},
		"issued_before alone":        {"token", own, "issued_before", "1"},
	} {
		if r := revoke("svc-admin", secretAdmin, kv...); r.status != 400 || r.json["error"] != "invalid_request" {
			t.Errorf("%s: %d %s, want 400 invalid_request", name, r.status, r.body)
		}
	}
}

func TestRevokeSubjectAndClient(t *testing.T) {
	ts := startServer(t, "", nil, managementFixture)
	revoke := func(id, secret string, kv ...string) response {
		t.Helper()
		return ts.call(t, endpointRequest{path: "/oauth/revoke", body: form(kv...), id: id, secret: secret})
	}
	now := time.Now().Unix()
	claims := func(iat int64) issuer.Claims {
		return issuer.Claims{Issuer: ts.IssuerURL, Subject: "svc-one", Audience: "https://api.example.com/v1", IssuedAt: iat,
			NotBefore: iat, ExpiresAt: now + 3600, ID: "jti-" + strconv.FormatInt(iat, 10), ClientID: "svc-one", Scope: "read"}
	}
	old := seedSign(t, ts, auth.RS256, claims(now-100))
	recent := seedSign(t, ts, auth.RS256, claims(now-10))
	other := ts.token(t, "svc-multi", secretMulti, "audience", "urn:example:reports")

	// Only holders of revoke:tokens.
	for _, c := range [][2]string{{"svc-one", secretOne}, {"svc-introspect", secretIntrospect}} {
		if r := revoke(c[0], c[1], "subject", "svc-one"); r.status != 403 || r.json["error"] != "insufficient_scope" {
			t.Errorf("%s revokes a subject: %d %s, want 403", c[0], r.status, r.body)
		}
		if r := revoke(c[0], c[1], "disable_client", "svc-multi"); r.status != 403 {
			t.Errorf("%s disables a client: %d %s, want 403", c[0], r.status, r.body)
		}
	}
	cut := now - 50
	r := revoke("svc-revoke-only", secretRevokeOnly, "subject", "svc-one", "issued_before", strconv.FormatInt(cut, 10))
	if r.status != 200 || r.json["subject"] != "svc-one" || r.json["issued_before"] != float64(cut+1) {
		t.Fatalf("revoke subject: %d %s", r.status, r.body)
	}
	if ts.active(t, old) {
		t.Error("a token issued before the cut-off is active")
	}
	if !ts.active(t, recent) {
		t.Error("a token issued after the cut-off is inactive")
	}
	if !ts.active(t, other) {
		t.Error("another subject's token is inactive")
	}
	for _, bad := range []string{"tomorrow", strconv.FormatInt(now+3600, 10), time.Now().Add(time.Hour).Format(time.RFC3339)} {
		if r := revoke("svc-admin", secretAdmin, "subject", "svc-one", "issued_before", bad); r.status != 400 {
			t.Errorf("issued_before %q: %d %s, want 400", bad, r.status, r.body)
		}
	}
	// RFC 3339 and the default, now: every token so far.
	if r := revoke("svc-admin", secretAdmin, "subject", "svc-one", "issued_before", time.Unix(now-20, 0).Format(time.RFC3339)); r.status != 200 {
		t.Errorf("issued_before in RFC 3339: %d %s", r.status, r.body)
	}
	if r := revoke("svc-admin", secretAdmin, "subject", "svc-one"); r.status != 200 || ts.active(t, recent) {
		t.Errorf("revoke subject now: %d %s; the recent token active: %t", r.status, r.body, ts.active(t, recent))
	}

	// Disable a client outright: no more tokens, and none of its tokens is active.
	if r := revoke("svc-admin", secretAdmin, "disable_client", "svc-multi"); r.status != 200 || r.json["client_disabled"] != true {
		t.Fatalf("disable client: %d %s", r.status, r.body)
	}
	if ts.active(t, other) {
		t.Error("a disabled client's token is active")
	}
	if r := postTokenBasic(t, ts, "svc-multi", secretMulti, form("grant_type", "client_credentials", "audience", "urn:example:reports")); r.status != 401 {
		t.Errorf("a disabled client got a token: %d %s", r.status, r.body)
	}
	if r := revoke("svc-admin", secretAdmin, "disable_client", "nobody"); r.status != 400 {
		t.Errorf("disable an unknown client: %d %s, want 400", r.status, r.body)
	}

	// Administrators' revocations are on the record; a client revoking its own token is not.
	for _, want := range []struct{ action, resource string }{
		{"token.revoke_subject", "subject/svc-one"},
		{"client.disable", "client/svc-multi"},
	} {
		events, err := ts.Store.ListAuditEvents(t.Context(), auth.AuditFilter{Action: want.action, Resource: want.resource})
		if err != nil {
			t.Fatal(err)
		}
		if len(events) == 0 || events[0].Actor != "svc-admin" {
			t.Errorf("audit events %s on %s: %+v, want one by svc-admin", want.action, want.resource, events)
		}
	}
}

// TestRevocationAcrossInstances: a revocation made through one instance is seen by another sharing its database at
// the other's next poll of revocations, and survives a restart.
func TestRevocationAcrossInstances(t *testing.T) {
	dir := t.TempDir()
	a := startServer(t, dir, nil, managementFixture)
	b := startInstance(t, dir, a)
	tok := a.token(t, "svc-one", secretOne)
	if !b.active(t, tok) {
		t.Fatal("the other instance does not know the token")
	}
	if r := a.call(t, endpointRequest{path: "/oauth/revoke", body: form("token", tok), id: "svc-one", secret: secretOne}); r.status != 200 {
		t.Fatal(r.body)
	}
	if a.active(t, tok) {
		t.Error("inactive on the instance that revoked it")
	}
	if err := b.Revocations.Poll(context.Background()); err != nil { // what b's Run does every --revocation-poll
		t.Fatal(err)
	}
	if b.active(t, tok) {
		t.Error("active on the other instance after its poll")
	}
	b.stop()
	c := startInstance(t, dir, a)
	if c.active(t, tok) {
		t.Error("active after a restart")
	}
}

func TestRevocationFeed(t *testing.T) {
	ts := startServer(t, "", nil, managementFixture)
	tok := ts.token(t, "svc-one", secretOne)
	if r := ts.call(t, endpointRequest{path: "/oauth/revoke", body: form("token", tok), id: "svc-one", secret: secretOne}); r.status != 200 {
		t.Fatal(r.body)
	}
	if r := ts.call(t, endpointRequest{path: "/oauth/revoke", body: form("subject", "key_123"), id: "svc-admin", secret: secretAdmin}); r.status != 200 {
		t.Fatal(r.body)
	}
	get := func(query, id, secret, bearer string) response {
		req := mustReq("GET", ts.URL+"/oauth/revocations"+query)
		if id != "" {
			req.SetBasicAuth(id, secret)
		}
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		return do(t, req)
	}
	r := get("", "svc-introspect", secretIntrospect, "")
	if r.status != 200 || r.header.Get("Cache-Control") != "no-store" {
		t.Fatalf("feed: %d %s", r.status, r.body)
	}
	var f struct {
		Cursor string
		Tokens []struct {
			JTI string
			Exp int64
		} `json:"revoked_tokens"`
		Subjects []struct {
			Sub          string
			IssuedBefore int64 `json:"issued_before"`
			Exp          int64
		} `json:"revoked_subjects"`
	}
	if err := json.Unmarshal([]byte(r.body), &f); err != nil {
		t.Fatal(err)
	}
	c := claimsOf(t, tok)
	if len(f.Tokens) != 1 || f.Tokens[0].JTI != c["jti"] || f.Tokens[0].Exp != int64(c["exp"].(float64)) {
		t.Errorf("feed tokens = %+v, want the revoked token's jti and exp", f.Tokens)
	}
	if len(f.Subjects) != 1 || f.Subjects[0].Sub != "key_123" || f.Subjects[0].IssuedBefore < time.Now().Unix() {
		t.Errorf("feed subjects = %+v, want key_123 cut off now", f.Subjects)
	}
	if f.Cursor == "" {
		t.Error("no cursor")
	}
	bearer := ts.token(t, "svc-introspect", secretIntrospect, "audience", auth.ManagementAudience)
	if r := get("?since="+f.Cursor, "", "", bearer); r.status != 200 {
		t.Errorf("feed with a cursor and a bearer token: %d %s", r.status, r.body)
	}
	for name, tt := range map[string]struct {
		query, id, secret string
		status            int
	}{
		"no authentication":    {"", "", "", 401},
		"a client without it":  {"", "svc-one", secretOne, 403},
		"revoke:tokens only":   {"", "svc-revoke-only", secretRevokeOnly, 403},
		"a malformed cursor":   {"?since=yesterday", "svc-introspect", secretIntrospect, 400},
		"a negative cursor":    {"?since=-5", "svc-introspect", secretIntrospect, 400},
		"a wrong secret":       {"", "svc-introspect", "nope", 401},
		"an unknown client id": {"", "nobody", "nope", 401},
	} {
		if r := get(tt.query, tt.id, tt.secret, ""); r.status != tt.status {
			t.Errorf("%s: %d %s, want %d", name, r.status, r.body, tt.status)
		}
	}
}

// TestEmergencyKeyRevoke: revoking a signing key takes it out of the JWKS at once, and its tokens are inactive at
// once; tokens of the key that replaces it are active.
func TestEmergencyKeyRevoke(t *testing.T) {
	ts := startServer(t, "", nil, managementFixture)
	tok := ts.token(t, "svc-one", secretOne)
	kid := tokenKid(t, tok)
	if !ts.active(t, tok) {
		t.Fatal("the token is not active")
	}
	if err := ts.Keys.Revoke(context.Background(), kid); err != nil {
		t.Fatal(err)
	}
	if _, ok := fetchJWKS(t, ts.URL)[kid]; ok {
		t.Error("the revoked key is still in the JWKS")
	}
	if ts.active(t, tok) {
		t.Error("a token of the revoked key is active")
	}
	fresh := ts.token(t, "svc-one", secretOne)
	if tokenKid(t, fresh) == kid {
		t.Fatal("signed with the revoked key")
	}
	if !ts.active(t, fresh) {
		t.Error("a token of the new key is inactive")
	}
	verifyToken(t, ts.URL, ts.IssuerURL, "https://api.example.com/v1", fresh)
}

// startInstance starts another instance beside first: the same database, root key and issuer URL, as instances
// behind one load balancer have.
func startInstance(t *testing.T, dir string, first *testServer) *testServer {
	t.Helper()
	m := &Main{Addr: "127.0.0.1:0", DB: first.DB, RootKey: first.RootKey, IssuerURL: first.IssuerURL}
	ctx, cancel := context.WithCancel(context.Background())
	if err := m.Open(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	ts := &testServer{Main: m, dir: dir, cancel: cancel, done: make(chan error, 1)}
	go func() { ts.done <- m.Serve(ctx) }()
	t.Cleanup(ts.stop)
	waitReady(t, m.URL)
	return ts
}

func TestDiscoveryLifecycleEndpoints(t *testing.T) {
	ts := startServer(t, "", nil, fixture)
	r := do(t, mustReq("GET", ts.URL+"/.well-known/oauth-authorization-server"))
	want := map[string]any{
		"introspection_endpoint":                        ts.URL + "/oauth/introspect",
		"introspection_endpoint_auth_methods_supported": []any{"client_secret_basic", "client_secret_post"},
		"revocation_endpoint":                           ts.URL + "/oauth/revoke",
		"revocation_endpoint_auth_methods_supported":    []any{"client_secret_basic", "client_secret_post"},
	}
	for k, v := range want {
		if got := r.json[k]; !equalJSON(got, v) {
			t.Errorf("%s = %v, want %v", k, got, v)
		}
	}
}

// TestVerifyRevocationFeed: the public verify package, reading Gatehouse's revocation feed, refuses a token
// revoked at the server, and every token of a subject cut off, from its next poll of the feed.
func TestVerifyRevocationFeed(t *testing.T) {
	ts := startServer(t, "", nil, managementFixture)
	v, err := verify.New(verify.Config{Issuer: ts.IssuerURL, Audiences: []string{"https://api.example.com/v1"},
		Revocations: &verify.RevocationFeed{URL: ts.URL + "/oauth/revocations", ClientID: "svc-introspect",
			ClientSecret: secretIntrospect, PollInterval: verify.MinRevocationPoll, MaxStale: time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() { defer close(done); v.Run(ctx) }()
	defer func() { cancel(); <-done }()

	revoked, cutOff := ts.token(t, "svc-one", secretOne), ts.token(t, "svc-one", secretOne)
	for _, tok := range []string{revoked, cutOff} {
		if _, err := v.Verify(ctx, tok); err != nil {
			t.Fatalf("Verify before any revocation: %v", err)
		}
	}
	if r := ts.call(t, endpointRequest{path: "/oauth/revoke", body: form("token", revoked), id: "svc-one", secret: secretOne}); r.status != 200 {
		t.Fatal(r.body)
	}
	// The poll runs every second; the bound is PollInterval, so waiting for it is not a timing assertion.
	deadline := time.Now().Add(10 * time.Second)
	for _, err := v.Verify(ctx, revoked); !errors.Is(err, verify.ErrRevoked); _, err = v.Verify(ctx, revoked) {
		if time.Now().After(deadline) {
			t.Fatalf("the revoked token still verifies after 10 s: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := v.Verify(ctx, cutOff); err != nil {
		t.Errorf("a token not revoked: %v", err)
	}
	if r := ts.call(t, endpointRequest{path: "/oauth/revoke", body: form("subject", "svc-one"), id: "svc-admin", secret: secretAdmin}); r.status != 200 {
		t.Fatal(r.body)
	}
	for _, err := v.Verify(ctx, cutOff); !errors.Is(err, verify.ErrRevoked); _, err = v.Verify(ctx, cutOff) {
		if time.Now().After(deadline) {
			t.Fatalf("a token of a subject cut off still verifies: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
