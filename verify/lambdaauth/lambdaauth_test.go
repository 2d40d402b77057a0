package lambdaauth_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse/gatehouse/verify"
	"github.com/gatehouse/gatehouse/verify/lambdaauth"
)

const (
	audience = "https://api.example.com/v1"
	// wildcard is the resource of every route of the fixtures' API and stage.
	wildcard = "arn:aws:execute-api:us-east-1:123456789012:abcdef123/test/*/*"
)

// issuer is a token issuer for tests: an Ed25519 key and its JWKS on an httptest server.
type issuer struct {
	url  string
	priv ed25519.PrivateKey
}

func newIssuer(t testing.TB) *issuer {
	t.Helper()
	is, stop := startIssuer()
	t.Cleanup(stop)
	return is
}

// startIssuer starts an issuer; stop stops it.
func startIssuer() (is *issuer, stop func()) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	jwks, _ := json.Marshal(map[string]any{"keys": []map[string]string{{
		"kty": "OKP", "crv": "Ed25519", "kid": "k1", "alg": "EdDSA", "use": "sig",
		"x": base64.RawURLEncoding.EncodeToString(pub),
	}}})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(jwks)
	}))
	return &issuer{url: srv.URL, priv: priv}, srv.Close
}

// sign returns an at+jwt with claims over the defaults (iss, sub, client_id, aud, scope, iat, exp).
func (is *issuer) sign(claims map[string]any) string {
	now := time.Now()
	c := map[string]any{"iss": is.url + "/", "sub": "svc-one", "client_id": "svc-one", "aud": audience,
		"scope": "read write", "iat": now.Unix(), "exp": now.Add(time.Hour).Unix(), "jti": "t1"}
	for k, v := range claims {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	h, _ := json.Marshal(map[string]string{"alg": "EdDSA", "kid": "k1", "typ": "at+jwt"})
	p, err := json.Marshal(c)
	if err != nil {
		panic(err)
	}
	input := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(p)
	return input + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(is.priv, []byte(input)))
}

func (is *issuer) verifier(t testing.TB) *verify.Verifier {
	t.Helper()
	v, err := verify.New(verify.Config{Issuer: is.url + "/", Audiences: []string{audience}, JWKSURL: is.url + "/jwks.json",
		Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

var quiet = slog.New(slog.DiscardHandler)

func newAuthorizer(t testing.TB, v verify.TokenVerifier, routes map[string][]string) *lambdaauth.Authorizer {
	t.Helper()
	a, err := lambdaauth.New(v, lambdaauth.Options{Routes: routes, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// event decodes testdata/name with authz (an Authorization header value) in place of the caller's token.
func event(t testing.TB, name, authz string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	s := strings.ReplaceAll(string(b), "Bearer {caller-supplied-token}", authz)
	if err := json.Unmarshal([]byte(s), v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

// policy is the JSON API Gateway receives from a REST authorizer.
func policyJSON(t testing.TB, resp events.APIGatewayCustomAuthorizerResponse) map[string]any {
	t.Helper()
	b, err := json.Marshal(resp)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func allowJSON(effect string, resources []any, ctx map[string]any) map[string]any {
	return map[string]any{
		"principalId": "svc-one",
		"policyDocument": map[string]any{"Version": "2012-10-17", "Statement": []any{map[string]any{
			"Action": []any{"execute-api:Invoke"}, "Effect": effect, "Resource": resources,
		}}},
		"context": ctx,
	}
}

// tokenCases are the tokens every authorizer type is tried with.
func tokenCases(t *testing.T, is *issuer) []struct {
	name, authz string
	ok          bool
} {
	other := newIssuer(t)
	return []struct {
		name, authz string
		ok          bool
	}{
		{"valid", "Bearer " + is.sign(nil), true},
		{"scheme in lower case", "bearer " + is.sign(nil), true},
		{"garbage", "Bearer InvalidToken", false},
		{"no scheme", is.sign(nil), false},
		{"Basic", "Basic c3ZjLW9uZTpzZWNyZXQ=", false},
		{"empty", "", false},
		{"wrong audience", "Bearer " + is.sign(map[string]any{"aud": "urn:example:reports"}), false},
		{"expired", "Bearer " + is.sign(map[string]any{"iat": time.Now().Add(-2 * time.Hour).Unix(), "exp": time.Now().Add(-time.Hour).Unix()}), false},
		{"another issuer's key", "Bearer " + other.sign(map[string]any{"iss": is.url + "/"}), false},
		{"another issuer", "Bearer " + is.sign(map[string]any{"iss": "https://evil.example.com/"}), false},
	}
}

func TestTokenAuthorizer(t *testing.T) {
	is := newIssuer(t)
	a := newAuthorizer(t, is.verifier(t), nil)
	ctxWant := map[string]any{"sub": "svc-one", "client_id": "svc-one", "scope": "read write"}
	for _, tt := range tokenCases(t, is) {
		var e events.APIGatewayCustomAuthorizerRequest
		event(t, "token-event.json", tt.authz, &e)
		resp, err := a.TokenAuthorizer(context.Background(), e)
		if !tt.ok {
			if err == nil || err.Error() != "Unauthorized" || !errors.Is(err, lambdaauth.ErrUnauthorized) {
				t.Errorf("%s: error %v, want Unauthorized (API Gateway's 401)", tt.name, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		// The policy covers every route of the stage, not only GET /request: API Gateway reuses it for the token's
		// calls to other routes.
		if diff := cmp.Diff(allowJSON("Allow", []any{wildcard}, ctxWant), policyJSON(t, resp)); diff != "" {
			t.Errorf("%s: policy (-want +got):\n%s", tt.name, diff)
		}
	}
}

func TestRequestAuthorizer(t *testing.T) {
	is := newIssuer(t)
	a := newAuthorizer(t, is.verifier(t), nil)
	for _, tt := range tokenCases(t, is) {
		var e events.APIGatewayCustomAuthorizerRequestTypeRequest
		event(t, "request-event.json", tt.authz, &e)
		resp, err := a.RequestAuthorizer(context.Background(), e)
		if !tt.ok {
			if !errors.Is(err, lambdaauth.ErrUnauthorized) {
				t.Errorf("%s: error %v, want Unauthorized", tt.name, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		want := allowJSON("Allow", []any{wildcard}, map[string]any{"sub": "svc-one", "client_id": "svc-one", "scope": "read write"})
		if diff := cmp.Diff(want, policyJSON(t, resp)); diff != "" {
			t.Errorf("%s: policy (-want +got):\n%s", tt.name, diff)
		}
	}

	// The header's name in any case; refused when missing or given twice.
	tok := "Bearer " + is.sign(map[string]any{"org_id": "org-7"})
	for _, tt := range []struct {
		name    string
		headers map[string]string
		multi   map[string][]string
		ok      bool
	}{
		{"lower-case name", map[string]string{"authorization": tok}, nil, true},
		{"only multiValueHeaders", nil, map[string][]string{"Authorization": {tok}}, true},
		{"no header", map[string]string{"Accept": "*/*"}, map[string][]string{"Accept": {"*/*"}}, false},
		{"two values", map[string]string{"Authorization": tok}, map[string][]string{"Authorization": {tok, tok}}, false},
		{"two names", map[string]string{"Authorization": tok, "authorization": tok}, nil, false},
	} {
		var e events.APIGatewayCustomAuthorizerRequestTypeRequest
		event(t, "request-event.json", "", &e)
		e.Headers, e.MultiValueHeaders = tt.headers, tt.multi
		resp, err := a.RequestAuthorizer(context.Background(), e)
		switch {
		case tt.ok && err != nil:
			t.Errorf("%s: %v", tt.name, err)
		case tt.ok && resp.Context["org_id"] != "org-7":
			t.Errorf("%s: context %v, want org_id org-7", tt.name, resp.Context)
		case !tt.ok && !errors.Is(err, lambdaauth.ErrUnauthorized):
			t.Errorf("%s: error %v, want Unauthorized", tt.name, err)
		}
	}
}

func TestHTTPSimple(t *testing.T) {
	is := newIssuer(t)
	a := newAuthorizer(t, is.verifier(t), nil)
	for _, tt := range tokenCases(t, is) {
		var e events.APIGatewayV2CustomAuthorizerV2Request
		event(t, "http-v2-event.json", tt.authz, &e)
		resp, err := a.HTTPSimple(context.Background(), e)
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		b, _ := json.Marshal(resp)
		want := `{"isAuthorized":false}`
		if tt.ok {
			want = `{"isAuthorized":true,"context":{"client_id":"svc-one","scope":"read write","sub":"svc-one"}}`
		}
		if string(b) != want {
			t.Errorf("%s: response %s, want %s", tt.name, b, want)
		}
	}
	var e events.APIGatewayV2CustomAuthorizerV2Request
	event(t, "http-v2-event.json", "Bearer "+is.sign(map[string]any{"org_id": "org-7"}), &e)
	resp, err := a.HTTPSimple(context.Background(), e)
	if err != nil || !resp.IsAuthorized || resp.Context["org_id"] != "org-7" {
		t.Errorf("token with org_id: %+v, %v; want authorized with org_id org-7", resp, err)
	}
}

// TestRoutes: with Options.Routes, a policy allows exactly the routes the token's scopes allow, all of them.
func TestRoutes(t *testing.T) {
	is := newIssuer(t)
	routes := map[string][]string{
		"read":         {"GET /items", "GET /items/*", "HEAD /items/*"},
		"write":        {"* /items/*", "POST /items"},
		"reports:read": {"GET /reports/*"},
	}
	a := newAuthorizer(t, is.verifier(t), routes)
	const api = "arn:aws:execute-api:us-east-1:123456789012:abcdef123/test/"
	tests := []struct {
		scope  string
		effect string
		want   []any
	}{
		{"read", "Allow", []any{api + "GET/items", api + "GET/items/*", api + "HEAD/items/*"}},
		{"read write", "Allow", []any{api + "GET/items", api + "GET/items/*", api + "HEAD/items/*", api + "*/items/*", api + "POST/items"}},
		{"reports:read", "Allow", []any{api + "GET/reports/*"}},
		{"admin", "Deny", []any{wildcard}}, // valid, but no route: an explicit Deny (403)
		{"", "Deny", []any{wildcard}},
	}
	for _, tt := range tests {
		var e events.APIGatewayCustomAuthorizerRequest
		event(t, "token-event.json", "Bearer "+is.sign(map[string]any{"scope": tt.scope}), &e)
		resp, err := a.TokenAuthorizer(context.Background(), e)
		if err != nil {
			t.Errorf("scope %q: %v", tt.scope, err)
			continue
		}
		got := policyJSON(t, resp)["policyDocument"].(map[string]any)["Statement"].([]any)[0].(map[string]any)
		if got["Effect"] != tt.effect || !cmp.Equal(got["Resource"], tt.want) {
			t.Errorf("scope %q: %v %v, want %v %v", tt.scope, got["Effect"], got["Resource"], tt.effect, tt.want)
		}
	}

	// HTTP API simple responses decide for the route called: the fixture calls GET /reports/2024.
	for scope, want := range map[string]bool{"reports:read": true, "read write": false, "": false} {
		var e events.APIGatewayV2CustomAuthorizerV2Request
		event(t, "http-v2-event.json", "Bearer "+is.sign(map[string]any{"scope": scope}), &e)
		resp, err := a.HTTPSimple(context.Background(), e)
		if err != nil || resp.IsAuthorized != want {
			t.Errorf("HTTPSimple with scope %q: isAuthorized %v, %v; want %v", scope, resp.IsAuthorized, err, want)
		}
	}

	for _, bad := range []map[string][]string{
		{"read": {"GET"}},
		{"read": {"GET items"}},
		{"read": {"FETCH /items"}},
		{"read": {"GET /items?x=1"}},
	} {
		if _, err := lambdaauth.New(is.verifier(t), lambdaauth.Options{Routes: bad}); err == nil {
			t.Errorf("New with Routes %v succeeded, want an error", bad)
		}
	}
}

// TestKeysUnavailable: when the issuer's keys cannot be fetched, the caller is not at fault: the handlers return an
// error other than Unauthorized (API Gateway: 500), never Allow or 401.
func TestKeysUnavailable(t *testing.T) {
	is := newIssuer(t)
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	defer down.Close()
	v, err := verify.New(verify.Config{Issuer: is.url + "/", Audiences: []string{audience}, JWKSURL: down.URL, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	a := newAuthorizer(t, v, nil)
	authz := "Bearer " + is.sign(nil)

	var te events.APIGatewayCustomAuthorizerRequest
	event(t, "token-event.json", authz, &te)
	if _, err := a.TokenAuthorizer(context.Background(), te); err == nil || errors.Is(err, lambdaauth.ErrUnauthorized) ||
		!errors.Is(err, verify.ErrJWKSUnavailable) {
		t.Errorf("TokenAuthorizer: error %v, want one wrapping ErrJWKSUnavailable", err)
	}
	var re events.APIGatewayCustomAuthorizerRequestTypeRequest
	event(t, "request-event.json", authz, &re)
	if _, err := a.RequestAuthorizer(context.Background(), re); !errors.Is(err, verify.ErrJWKSUnavailable) {
		t.Errorf("RequestAuthorizer: error %v, want one wrapping ErrJWKSUnavailable", err)
	}
	var he events.APIGatewayV2CustomAuthorizerV2Request
	event(t, "http-v2-event.json", authz, &he)
	if resp, err := a.HTTPSimple(context.Background(), he); resp.IsAuthorized || !errors.Is(err, verify.ErrJWKSUnavailable) {
		t.Errorf("HTTPSimple: %+v, %v; want not authorized and an error wrapping ErrJWKSUnavailable", resp, err)
	}
}

func TestBadMethodArn(t *testing.T) {
	is := newIssuer(t)
	a := newAuthorizer(t, is.verifier(t), nil)
	for _, arn := range []string{"", "arn:aws:lambda:us-east-1:123456789012:function:x", "arn:aws:execute-api:us-east-1:123456789012:abcdef123"} {
		e := events.APIGatewayCustomAuthorizerRequest{Type: "TOKEN", AuthorizationToken: "Bearer " + is.sign(nil), MethodArn: arn}
		if resp, err := a.TokenAuthorizer(context.Background(), e); err == nil || errors.Is(err, lambdaauth.ErrUnauthorized) {
			t.Errorf("methodArn %q: %+v, %v; want an error", arn, resp, err)
		}
	}
}

// TestFixtures: every field of the event fixtures is one aws-lambda-go's event types know, so the fixtures are the
// shapes the handlers get.
func TestFixtures(t *testing.T) {
	for name, v := range map[string]any{
		"token-event.json":   &events.APIGatewayCustomAuthorizerRequest{},
		"request-event.json": &events.APIGatewayCustomAuthorizerRequestTypeRequest{},
		"http-v2-event.json": &events.APIGatewayV2CustomAuthorizerV2Request{},
	} {
		f, err := os.Open(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		dec := json.NewDecoder(f)
		dec.DisallowUnknownFields()
		if err := dec.Decode(v); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		f.Close()
	}
}

// TestAPIKeys: with verify.Any, a Gatehouse API key is accepted as "Bearer <key>" (principal and sub: the key's id),
// an unknown one is Unauthorized, and a server that cannot be asked is not the caller's fault (not 401).
func TestAPIKeys(t *testing.T) {
	const key = "gate_0123456789ABCDEFGHIJKLMNOPQRSTUVW1hX0W1" // a well-formed key (see package verify's tests)
	const unknown = "gate_0000000000000000000000000000000004E8DGG"
	var down atomic.Bool
	gatehouse := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.URL.Path == "/oauth/token":
			w.Write([]byte(`{"access_token":"m","token_type":"Bearer","expires_in":3600}`))
		case down.Load():
			http.Error(w, "down", http.StatusServiceUnavailable)
		default:
			var in struct{ Key string }
			json.NewDecoder(r.Body).Decode(&in)
			if in.Key != key {
				w.Write([]byte(`{"valid":false,"code":"not_found"}`))
				return
			}
			w.Write([]byte(`{"valid":true,"key_id":"key_1","org_id":"org_acme","grants":[{"audience":"` + audience + `","scopes":["read"]}]}`))
		}
	}))
	defer gatehouse.Close()
	is := newIssuer(t)
	keys, err := verify.NewAPIKeyVerifier(verify.APIKeyConfig{ServerURL: gatehouse.URL, ClientID: "edge", ClientSecret: "s",
		Audience: audience, CacheTTL: -1})
	if err != nil {
		t.Fatal(err)
	}
	a := newAuthorizer(t, verify.Any(is.verifier(t), keys), nil)
	var te events.APIGatewayCustomAuthorizerRequest
	event(t, "token-event.json", "Bearer "+key, &te)
	resp, err := a.TokenAuthorizer(context.Background(), te)
	if err != nil {
		t.Fatalf("TokenAuthorizer(key): %v", err)
	}
	want := allowJSON("Allow", []any{wildcard}, map[string]any{"sub": "key_1", "client_id": "key_1", "scope": "read", "org_id": "org_acme"})
	want["principalId"] = "key_1"
	if diff := cmp.Diff(want, policyJSON(t, resp)); diff != "" {
		t.Errorf("policy (-want +got):\n%s", diff)
	}
	event(t, "token-event.json", "Bearer "+is.sign(nil), &te)
	if resp, err := a.TokenAuthorizer(context.Background(), te); err != nil || resp.PrincipalID != "svc-one" {
		t.Errorf("a token beside the key: %v, %v", resp.PrincipalID, err)
	}
	event(t, "token-event.json", "Bearer "+unknown, &te)
	if _, err := a.TokenAuthorizer(context.Background(), te); err != lambdaauth.ErrUnauthorized {
		t.Errorf("unknown key: %v, want Unauthorized", err)
	}
	down.Store(true)
	event(t, "token-event.json", "Bearer "+key, &te)
	if _, err := a.TokenAuthorizer(context.Background(), te); err == nil || errors.Is(err, lambdaauth.ErrUnauthorized) ||
		!errors.Is(err, verify.ErrAPIKeyUnavailable) {
		t.Errorf("server down: %v, want an error wrapping ErrAPIKeyUnavailable", err)
	}
}
