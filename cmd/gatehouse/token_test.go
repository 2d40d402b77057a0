package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

// TestClientCredentialsXOAuth2 gets tokens the way most Go services do, with golang.org/x/oauth2/clientcredentials,
// in both client authentication styles, and verifies them as an API would.
func TestClientCredentialsXOAuth2(t *testing.T) {
	ts := startServer(t, "", nil, fixture)
	for _, style := range []oauth2.AuthStyle{oauth2.AuthStyleInHeader, oauth2.AuthStyleInParams} {
		cfg := clientcredentials.Config{
			ClientID: "svc-one", ClientSecret: secretOne, TokenURL: ts.tokenURL(), AuthStyle: style,
			EndpointParams: url.Values{"audience": {"https://api.example.com/v1"}},
		}
		tok, err := cfg.Token(context.Background())
		if err != nil {
			t.Fatalf("style %v: %v", style, err)
		}
		if tok.TokenType != "Bearer" {
			t.Errorf("token_type = %q, want Bearer", tok.TokenType)
		}
		if got := tok.Extra("scope"); got != "read write" {
			t.Errorf("scope = %v, want all granted scopes %q", got, "read write")
		}
		if left := time.Until(tok.Expiry); left < 59*time.Minute || left > 61*time.Minute {
			t.Errorf("expires in %v, want the API's 1h", left)
		}
		c, h := verifyToken(t, ts.URL, ts.IssuerURL, "https://api.example.com/v1", tok.AccessToken)
		if c.Subject != "svc-one" || c.ClientID != "svc-one" {
			t.Errorf("sub = %q, client_id = %q, want svc-one", c.Subject, c.ClientID)
		}
		if c.Scope != "read write" {
			t.Errorf("scope claim = %q", c.Scope)
		}
		if len(c.ID) < 22 {
			t.Errorf("jti %q is shorter than 128 bits in base64url", c.ID)
		}
		if c.NotBefore == nil || c.IssuedAt == nil || c.ExpiresAt.Sub(c.IssuedAt.Time) != time.Hour {
			t.Errorf("nbf %v iat %v exp %v: want nbf and iat set and exp = iat + 1h", c.NotBefore, c.IssuedAt, c.ExpiresAt)
		}
		if h["alg"] != "RS256" || h["kid"] == "" {
			t.Errorf("header %v", h)
		}
	}
}

// TestAlgorithmsAndAudiences: each API signs with its own algorithm, and the token names only that API.
func TestAlgorithmsAndAudiences(t *testing.T) {
	ts := startServer(t, "", nil, fixture)
	for _, tc := range []struct{ aud, alg, scope string }{
		{"https://api.example.com/v1", "RS256", "read"},
		{"urn:example:reports", "ES256", "reports:read"},
		{"https://edge.example.com", "EdDSA", "edge"},
	} {
		resp := postToken(t, ts, "", form("grant_type", "client_credentials", "client_id", "svc-multi",
			"client_secret", secretMulti, "resource", tc.aud))
		if resp.status != 200 {
			t.Fatalf("%s: %d %s", tc.aud, resp.status, resp.body)
		}
		c, h := verifyToken(t, ts.URL, ts.IssuerURL, tc.aud, resp.json["access_token"].(string))
		if h["alg"] != tc.alg || c.Scope != tc.scope || len(c.Audience) != 1 {
			t.Errorf("%s: alg %v scope %q aud %v; want %s %q and one audience", tc.aud, h["alg"], c.Scope, c.Audience, tc.alg, tc.scope)
		}
	}
	// A token for one API is refused by a verifier expecting another.
	resp := postToken(t, ts, "", form("grant_type", "client_credentials", "client_id", "svc-multi",
		"client_secret", secretMulti, "audience", "urn:example:reports"))
	if _, _, err := checkToken(t, ts.URL, ts.IssuerURL, "https://api.example.com/v1", resp.json["access_token"].(string)); err == nil {
		t.Error("a token for urn:example:reports verified for https://api.example.com/v1")
	}
}

// TestSeedRequestShapes: the three request shapes of the seeds, at the HTTP level.
func TestSeedRequestShapes(t *testing.T) {
	ts := startServer(t, "", nil, fixture)
	// Auth0 JSON body (seeds 000, 001).
	r := postToken(t, ts, "application/json", `{"client_id":"svc-one","client_secret":"`+secretOne+
		`","audience":"https://api.example.com/v1","grant_type":"client_credentials"}`)
	if r.status != 200 || r.json["token_type"] != "Bearer" || r.json["expires_in"] != float64(3600) {
		t.Errorf("JSON body: %d %s", r.status, r.body)
	}
	// Auth0 form body (seed 002).
	r = postToken(t, ts, "", "audience=https://api.example.com/v1&grant_type=client_credentials&client_id=svc-one&client_secret="+secretOne)
	if r.status != 200 {
		t.Errorf("form body: %d %s", r.status, r.body)
	}
	// Cognito: Basic auth and only grant_type (seed 004): every granted scope.
	r = postTokenBasic(t, ts, "svc-one", secretOne, "grant_type=client_credentials")
	if r.status != 200 || r.json["scope"] != "read write" {
		t.Errorf("Cognito shape: %d %s", r.status, r.body)
	}
	if r.header.Get("Cache-Control") != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", r.header.Get("Cache-Control"))
	}
	// Cognito-style scope selects the API.
	r = postTokenBasic(t, ts, "svc-multi", secretMulti, "grant_type=client_credentials&scope="+url.QueryEscape("urn:example:reports/reports:read"))
	if r.status != 200 || r.json["scope"] != "reports:read" {
		t.Fatalf("Cognito scope: %d %s", r.status, r.body)
	}
	c, _ := verifyToken(t, ts.URL, ts.IssuerURL, "urn:example:reports", r.json["access_token"].(string))
	if c.Scope != "reports:read" {
		t.Errorf("scope claim %q", c.Scope)
	}
	// Basic credentials are form-encoded before base64 (RFC 6749 §2.3.1); plain ones decode to themselves.
	req, _ := http.NewRequest("POST", ts.tokenURL(), strings.NewReader("grant_type=client_credentials"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape("svc-one"), url.QueryEscape(secretOne))
	if r := do(t, req); r.status != 200 {
		t.Errorf("encoded Basic: %d %s", r.status, r.body)
	}
}

// TestTokenErrors covers every error of the token endpoint: status, RFC 6749 error code, and the headers.
func TestTokenErrors(t *testing.T) {
	ts := startServer(t, "", nil, fixture)
	ok := func(kv ...string) string {
		return form(append([]string{"grant_type", "client_credentials", "client_id", "svc-one", "client_secret", secretOne}, kv...)...)
	}
	big := "grant_type=client_credentials&pad=" + strings.Repeat("a", 65<<10)
	tests := []struct {
		name        string
		method      string
		contentType string
		body        string
		basic       [2]string // client_id, secret
		authz       string    // raw Authorization header
		query       string
		wantStatus  int
		wantError   string
		challenge   bool // WWW-Authenticate: Basic expected
	}{
		{name: "GET", method: "GET", wantStatus: 405, wantError: "invalid_request"},
		{name: "PUT", method: "PUT", body: ok(), wantStatus: 405, wantError: "invalid_request"},
		{name: "no content type", contentType: "-", body: ok(), wantStatus: 400, wantError: "invalid_request"},
		{name: "text/plain", contentType: "text/plain", body: ok(), wantStatus: 400, wantError: "invalid_request"},
		{name: "multipart", contentType: "multipart/form-data; boundary=x", body: ok(), wantStatus: 400, wantError: "invalid_request"},
		{name: "body over 64 KiB", body: big, wantStatus: 413, wantError: "invalid_request"},
		{name: "malformed form", body: "grant_type=%zz", wantStatus: 400, wantError: "invalid_request"},
		{name: "malformed JSON", contentType: "application/json", body: `{"grant_type":`, wantStatus: 400, wantError: "invalid_request"},
		{name: "JSON array", contentType: "application/json", body: `["client_credentials"]`, wantStatus: 400, wantError: "invalid_request"},
		{name: "JSON number param", contentType: "application/json", body: `{"grant_type":"client_credentials","client_id":"svc-one","client_secret":"` + secretOne + `","audience":42}`, wantStatus: 400, wantError: "invalid_request"},
		{name: "JSON repeated member", contentType: "application/json", body: `{"grant_type":"client_credentials","grant_type":"password"}`, wantStatus: 400, wantError: "invalid_request"},
		{name: "JSON trailing data", contentType: "application/json", body: `{"grant_type":"client_credentials"} {}`, wantStatus: 400, wantError: "invalid_request"},
		{name: "missing grant_type", body: form("client_id", "svc-one", "client_secret", secretOne), wantStatus: 400, wantError: "invalid_request"},
		{name: "password grant", body: form("grant_type", "password", "client_id", "svc-one", "client_secret", secretOne), wantStatus: 400, wantError: "unsupported_grant_type"},
		{name: "authorization_code grant", body: form("grant_type", "authorization_code", "code", "x"), wantStatus: 400, wantError: "unsupported_grant_type"},
		{name: "repeated parameter", body: ok("scope", "read", "scope", "write"), wantStatus: 400, wantError: "invalid_request"},
		{name: "two resources", body: ok("resource", "https://api.example.com/v1", "resource", "urn:example:reports"), wantStatus: 400, wantError: "invalid_target"},
		{name: "audience and resource differ", body: ok("audience", "https://api.example.com/v1", "resource", "urn:example:reports"), wantStatus: 400, wantError: "invalid_request"},
		{name: "secret in the URL", body: ok(), query: "client_secret=" + secretOne, wantStatus: 400, wantError: "invalid_request"},
		{name: "no client authentication", body: "grant_type=client_credentials", wantStatus: 401, wantError: "invalid_client", challenge: true},
		{name: "client_id without secret", body: form("grant_type", "client_credentials", "client_id", "svc-one"), wantStatus: 401, wantError: "invalid_client", challenge: true},
		{name: "unknown client (post)", body: form("grant_type", "client_credentials", "client_id", "nobody", "client_secret", secretOne), wantStatus: 401, wantError: "invalid_client"},
		{name: "wrong secret (post)", body: form("grant_type", "client_credentials", "client_id", "svc-one", "client_secret", secretMulti), wantStatus: 401, wantError: "invalid_client"},
		{name: "unknown client (basic)", body: "grant_type=client_credentials", basic: [2]string{"nobody", secretOne}, wantStatus: 401, wantError: "invalid_client", challenge: true},
		{name: "wrong secret (basic)", body: "grant_type=client_credentials", basic: [2]string{"svc-one", secretMulti}, wantStatus: 401, wantError: "invalid_client", challenge: true},
		{name: "Basic and post together", body: ok(), basic: [2]string{"svc-one", secretOne}, wantStatus: 400, wantError: "invalid_request"},
		{name: "Bearer instead of Basic", body: "grant_type=client_credentials", authz: "Bearer abc", wantStatus: 401, wantError: "invalid_client", challenge: true},
		{name: "malformed Basic", body: "grant_type=client_credentials", authz: "Basic !!!", wantStatus: 401, wantError: "invalid_client", challenge: true},
		{name: "body client_id differs from Basic", body: form("grant_type", "client_credentials", "client_id", "svc-multi"), basic: [2]string{"svc-one", secretOne}, wantStatus: 400, wantError: "invalid_request"},
		{name: "unknown audience", body: ok("audience", "https://unknown.example.com"), wantStatus: 400, wantError: "invalid_target"},
		{name: "ungranted audience", body: ok("audience", "urn:example:reports"), wantStatus: 400, wantError: "invalid_target"},
		{name: "several grants, no audience", body: form("grant_type", "client_credentials", "client_id", "svc-multi", "client_secret", secretMulti), wantStatus: 400, wantError: "invalid_request"},
		{name: "no grants", body: form("grant_type", "client_credentials", "client_id", "svc-none", "client_secret", secretOff), wantStatus: 400, wantError: "unauthorized_client"},
		{name: "scope outside the grant", body: ok("scope", "read admin"), wantStatus: 400, wantError: "invalid_scope"},
		{name: "scope the API lacks", body: ok("scope", "delete"), wantStatus: 400, wantError: "invalid_scope"},
		{name: "malformed scope", body: ok("scope", "read \"x\""), wantStatus: 400, wantError: "invalid_scope"},
		{name: "Cognito scope of another API", body: ok("scope", "urn:example:reports/reports:read"), wantStatus: 400, wantError: "invalid_scope"},
		{name: "Cognito scopes of two APIs", body: ok("scope", "https://api.example.com/v1/read urn:example:reports/reports:read"), wantStatus: 400, wantError: "invalid_scope"},
		{name: "Cognito scope disagrees with audience", body: ok("audience", "https://api.example.com/v1", "scope", "urn:example:reports/reports:read"), wantStatus: 400, wantError: "invalid_scope"},
	}
	bodies := map[string]string{}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			method := tc.method
			if method == "" {
				method = "POST"
			}
			u := ts.tokenURL()
			if tc.query != "" {
				u += "?" + tc.query
			}
			req, _ := http.NewRequest(method, u, strings.NewReader(tc.body))
			switch tc.contentType {
			case "":
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			case "-":
			default:
				req.Header.Set("Content-Type", tc.contentType)
			}
			if tc.basic[0] != "" {
				req.SetBasicAuth(tc.basic[0], tc.basic[1])
			}
			if tc.authz != "" {
				req.Header.Set("Authorization", tc.authz)
			}
			r := do(t, req)
			if r.status != tc.wantStatus || r.json["error"] != tc.wantError {
				t.Fatalf("got %d %s, want %d %s", r.status, r.body, tc.wantStatus, tc.wantError)
			}
			if d, _ := r.json["error_description"].(string); d == "" {
				t.Errorf("no error_description in %s", r.body)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q", ct)
			}
			if cc := r.header.Get("Cache-Control"); cc != "no-store" {
				t.Errorf("Cache-Control = %q, want no-store", cc)
			}
			if got := strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Basic"); got != tc.challenge {
				t.Errorf("WWW-Authenticate = %q, want a Basic challenge: %v", r.header.Get("WWW-Authenticate"), tc.challenge)
			}
			if tc.wantStatus == 405 && r.header.Get("Allow") != "POST" {
				t.Errorf("Allow = %q, want POST", r.header.Get("Allow"))
			}
			bodies[tc.name] = r.body
		})
	}
	// No oracle: an unknown client and a wrong secret get the same answer; so do an unknown and an ungranted API.
	for _, pair := range [][2]string{
		{"unknown client (post)", "wrong secret (post)"},
		{"unknown client (basic)", "wrong secret (basic)"},
		{"unknown audience", "ungranted audience"},
	} {
		a, b := bodies[pair[0]], bodies[pair[1]]
		a = strings.ReplaceAll(a, "https://unknown.example.com", "X")
		b = strings.ReplaceAll(b, "urn:example:reports", "X")
		if a != b {
			t.Errorf("%s and %s differ:\n%s\n%s", pair[0], pair[1], a, b)
		}
	}
}

// TestTokenEndpointNever500: hostile inputs get 4xx, never a 5xx or a stack trace.
func TestTokenEndpointNever500(t *testing.T) {
	ts := startServer(t, "", nil, fixture)
	inputs := []struct{ ct, body string }{
		{"application/x-www-form-urlencoded", "\x00\x01\x02"},
		{"application/x-www-form-urlencoded", "grant_type=client_credentials&client_id=%00&client_secret=%ff%fe"},
		{"application/x-www-form-urlencoded", "grant_type=client_credentials&client_id=svc-one&client_secret=" + secretOne + "&scope=" + strings.Repeat("a ", 5000)},
		{"application/x-www-form-urlencoded", "grant_type=client_credentials&client_id=" + strings.Repeat("x", 10000) + "&client_secret=y"},
		{"application/x-www-form-urlencoded", "grant_type=client_credentials&client_id=svc-one&client_secret=" + secretOne + "&audience=" + strings.Repeat("%c3%28", 100)},
		{"application/json", `{"grant_type":{"a":[1,2,{"b":null}]}}`},
		{"application/json", strings.Repeat("[", 10000)},
		{"application/json", `{"grant_type":"client_credentials","client_id":"\ud800","client_secret":"x"}`},
		{"application/json; charset=utf-16", "{}"},
		{"application/x-www-form-urlencoded; charset", "grant_type=client_credentials"},
	}
	for i, in := range inputs {
		req, _ := http.NewRequest("POST", ts.tokenURL(), strings.NewReader(in.body))
		req.Header.Set("Content-Type", in.ct)
		r := do(t, req)
		if r.status >= 500 || r.json["error"] == nil {
			t.Errorf("input %d: %d %s", i, r.status, truncate(r.body, 200))
		}
		if strings.Contains(r.body, "goroutine") || strings.Contains(r.body, ".go:") {
			t.Errorf("input %d: response leaks internals: %s", i, r.body)
		}
	}
}

type response struct {
	status int
	header http.Header
	body   string
	json   map[string]any
}

func do(t *testing.T, req *http.Request) response {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := response{status: resp.StatusCode, header: resp.Header, body: string(b)}
	json.Unmarshal(b, &r.json)
	return r
}

func postToken(t *testing.T, ts *testServer, contentType, body string) response {
	t.Helper()
	if contentType == "" {
		contentType = "application/x-www-form-urlencoded"
	}
	req, _ := http.NewRequest("POST", ts.tokenURL(), strings.NewReader(body))
	req.Header.Set("Content-Type", contentType)
	return do(t, req)
}

func postTokenBasic(t *testing.T, ts *testServer, id, secret, body string) response {
	t.Helper()
	req, _ := http.NewRequest("POST", ts.tokenURL(), strings.NewReader(body))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(id, secret)
	return do(t, req)
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
