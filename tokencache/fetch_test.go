package tokencache_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/oauth2"

	"github.com/gatehouse/gatehouse/tokencache"
)

// TestAuth0Request: the request Auth0's M2M documentation (and seed 000) sends, over real HTTP on loopback: a
// JSON body with exactly client_id, client_secret, audience and grant_type, no Authorization header.
func TestAuth0Request(t *testing.T) {
	const body = `{"access_token":"eyJhbGciOi.auth0.jwt","expires_in":86400,"token_type":"Bearer","scope":"read:things"}`
	var requests int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests++
		if r.Method != http.MethodPost || r.URL.Path != "/oauth/token" {
			t.Errorf("request %s %s, want POST /oauth/token", r.Method, r.URL.Path)
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("Content-Type = %q, want application/json", ct)
		}
		if a := r.Header.Get("Authorization"); a != "" {
			t.Errorf("Authorization = %q, want none (the secret goes in the body)", a)
		}
		var got map[string]any
		if err := json.NewDecoder(r.Body).Decode(&got); err != nil {
			t.Errorf("body is not a JSON object: %v", err)
		}
		want := map[string]any{
			"client_id":     "auth0-client",
			"client_secret": "auth0-secret",
			"audience":      "https://api.example.com/v1",
			"grant_type":    "client_credentials",
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("request body (-want +got):\n%s", diff)
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, body)
	}))
	defer srv.Close()

	src := mustNew(t, tokencache.Config{
		TokenURL:     srv.URL + "/oauth/token",
		ClientID:     "auth0-client",
		ClientSecret: "auth0-secret",
		Audience:     "https://api.example.com/v1",
		AuthStyle:    tokencache.AuthBody,
		JSONBody:     true,
	})
	before := time.Now()
	tok := mustToken(t, src)
	after := time.Now()
	if tok.AccessToken != "eyJhbGciOi.auth0.jwt" || tok.TokenType != "Bearer" || tok.Scope != "read:things" {
		t.Errorf("Token = %+v", tok)
	}
	if tok.Expiry.Before(before.Add(24*time.Hour)) || tok.Expiry.After(after.Add(24*time.Hour)) {
		t.Errorf("Expiry = %v, want 24h after the request (%v … %v)", tok.Expiry, before, after)
	}
	if string(tok.Raw) != body {
		t.Errorf("Raw = %s, want the response body", tok.Raw)
	}
	mustToken(t, src)
	if requests != 1 {
		t.Errorf("token endpoint saw %d requests, want 1 (the second Token is a hit)", requests)
	}
}

// TestCognitoRequest: Amazon Cognito's client-credentials request: HTTP Basic client authentication and a form
// body with only grant_type and scope ("resource-server-identifier/scope").
func TestCognitoRequest(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != "/oauth2/token" {
			t.Errorf("request %s %s, want POST /oauth2/token", r.Method, r.URL.Path)
		}
		if ct := r.Header.Get("Content-Type"); ct != "application/x-www-form-urlencoded" {
			t.Errorf("Content-Type = %q", ct)
		}
		wantAuth := "Basic " + base64.StdEncoding.EncodeToString([]byte("7ab1cdefg2hij3klmn4opq:cognito-secret-xyz"))
		if got := r.Header.Get("Authorization"); got != wantAuth {
			t.Errorf("Authorization = %q, want %q", got, wantAuth)
		}
		raw, _ := io.ReadAll(r.Body)
		got, err := url.ParseQuery(string(raw))
		if err != nil {
			t.Errorf("body %q: %v", raw, err)
		}
		want := url.Values{
			"grant_type": {"client_credentials"},
			"scope":      {"orders-api/read orders-api/write"},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("form body (-want +got):\n%s", diff)
		}
		w.Header().Set("Content-Type", "application/json;charset=UTF-8")
		io.WriteString(w, `{"access_token":"eyJraWQiOi.cognito.jwt","expires_in":3600,"token_type":"Bearer"}`)
	}))
	defer srv.Close()

	src := mustNew(t, tokencache.Config{
		TokenURL:     srv.URL + "/oauth2/token",
		ClientID:     "7ab1cdefg2hij3klmn4opq",
		ClientSecret: "cognito-secret-xyz",
		Scopes:       []string{"orders-api/read", "orders-api/write"},
	})
	tok := mustToken(t, src)
	if tok.AccessToken != "eyJraWQiOi.cognito.jwt" || tok.TokenType != "Bearer" || tok.Scope != "" {
		t.Errorf("Token = %+v", tok)
	}
	if left := time.Until(tok.Expiry); left < 59*time.Minute || left > time.Hour {
		t.Errorf("token expires in %v, want about 1h", left)
	}
}

// TestRequestEncodings: every combination of body encoding and client authentication, with a resource.
func TestRequestEncodings(t *testing.T) {
	tests := []struct {
		name      string
		style     tokencache.AuthStyle
		json      bool
		wantBody  map[string]string
		wantBasic bool
	}{
		{"form+basic", tokencache.AuthBasic, false, map[string]string{"grant_type": "client_credentials", "resource": "urn:r", "scope": "a b"}, true},
		{"form+body", tokencache.AuthBody, false, map[string]string{"grant_type": "client_credentials", "resource": "urn:r", "scope": "a b", "client_id": "id:1", "client_secret": "se cret&"}, false},
		{"json+basic", tokencache.AuthBasic, true, map[string]string{"grant_type": "client_credentials", "resource": "urn:r", "scope": "a b"}, true},
		{"json+body", tokencache.AuthBody, true, map[string]string{"grant_type": "client_credentials", "resource": "urn:r", "scope": "a b", "client_id": "id:1", "client_secret": "se cret&"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				got := map[string]string{}
				if tt.json {
					if err := json.NewDecoder(r.Body).Decode(&got); err != nil {
						t.Error(err)
					}
				} else {
					r.ParseForm()
					for k := range r.PostForm {
						got[k] = r.PostForm.Get(k)
					}
				}
				if diff := cmp.Diff(tt.wantBody, got); diff != "" {
					t.Errorf("body (-want +got):\n%s", diff)
				}
				id, secret, ok := r.BasicAuth()
				if ok != tt.wantBasic {
					t.Errorf("Basic auth present = %v, want %v", ok, tt.wantBasic)
				}
				// RFC 6749 §2.3.1: form-encoded, then Basic.
				if ok && (id != "id%3A1" || secret != "se+cret%26") {
					t.Errorf("Basic credentials = %q, %q", id, secret)
				}
				io.WriteString(w, `{"access_token":"t","expires_in":60}`)
			}))
			defer srv.Close()
			src := mustNew(t, tokencache.Config{
				TokenURL: srv.URL, ClientID: "id:1", ClientSecret: "se cret&", Resource: "urn:r",
				Scopes: []string{"a", "b"}, AuthStyle: tt.style, JSONBody: tt.json,
			})
			if tok := mustToken(t, src); tok.TokenType != "Bearer" {
				t.Errorf("TokenType = %q, want the default Bearer", tok.TokenType)
			}
		})
	}
}

// TestResponses: what the Source makes of each kind of answer.
func TestResponses(t *testing.T) {
	const secret = "very-secret-value"
	tests := []struct {
		name        string
		status      int
		contentType string
		body        string
		wantToken   string
		wantLife    time.Duration // 0: an error is expected
		wantErr     string
		wantRetErr  *tokencache.RetrieveError
	}{
		{name: "ok", status: 200, body: `{"access_token":"a","expires_in":3600,"token_type":"Bearer"}`, wantToken: "a", wantLife: time.Hour},
		{name: "expires_in as a string", status: 200, body: `{"access_token":"a","expires_in":"120"}`, wantToken: "a", wantLife: 2 * time.Minute},
		{name: "expires_in missing: 5 minutes", status: 200, body: `{"access_token":"a"}`, wantToken: "a", wantLife: 5 * time.Minute},
		{name: "expires_in absurd: capped at a year", status: 200, body: `{"access_token":"a","expires_in":9999999999}`, wantToken: "a", wantLife: 365 * 24 * time.Hour},
		{name: "form-encoded response", status: 200, contentType: "application/x-www-form-urlencoded", body: `access_token=f&expires_in=30&token_type=bearer`, wantToken: "f", wantLife: 30 * time.Second},
		{name: "expires_in zero", status: 200, body: `{"access_token":"a","expires_in":0}`, wantErr: "already expired"},
		{name: "expires_in negative", status: 200, body: `{"access_token":"a","expires_in":-5}`, wantErr: "already expired"},
		{name: "expires_in garbage", status: 200, body: `{"access_token":"a","expires_in":"soon"}`, wantErr: "expires_in"},
		{name: "no access_token", status: 200, body: `{"token_type":"Bearer"}`, wantErr: "no access_token"},
		{name: "not JSON", status: 200, body: `<html>hello</html>`, wantErr: "not JSON"},
		{name: "too large", status: 200, body: `{"access_token":"` + strings.Repeat("x", 1<<20) + `"}`, wantErr: "larger than"},
		{
			name: "RFC 6749 error", status: 401,
			body:       `{"error":"invalid_client","error_description":"Client authentication failed","error_uri":"https://e/x"}`,
			wantErr:    "token endpoint answered 401: invalid_client: Client authentication failed",
			wantRetErr: &tokencache.RetrieveError{StatusCode: 401, ErrorCode: "invalid_client", Description: "Client authentication failed", URI: "https://e/x"},
		},
		{
			name: "error with status 200", status: 200, body: `{"error":"invalid_scope"}`,
			wantErr:    "answered 200: invalid_scope",
			wantRetErr: &tokencache.RetrieveError{StatusCode: 200, ErrorCode: "invalid_scope"},
		},
		{
			name: "HTML error page", status: 502, contentType: "text/html", body: `<html>Bad gateway</html>`,
			wantErr:    "token endpoint answered 502",
			wantRetErr: &tokencache.RetrieveError{StatusCode: 502},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				ct := tt.contentType
				if ct == "" {
					ct = "application/json"
				}
				w.Header().Set("Content-Type", ct)
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			}))
			defer srv.Close()
			src := mustNew(t, tokencache.Config{TokenURL: srv.URL, ClientID: "c", ClientSecret: secret})
			start := time.Now()
			tok, err := src.Token(context.Background())
			if tt.wantLife != 0 {
				if err != nil {
					t.Fatalf("Token: %v", err)
				}
				if tok.AccessToken != tt.wantToken {
					t.Errorf("AccessToken = %q, want %q", tok.AccessToken, tt.wantToken)
				}
				if life := tok.Expiry.Sub(start); life < tt.wantLife-time.Second || life > tt.wantLife+time.Second {
					t.Errorf("lifetime %v, want %v", life, tt.wantLife)
				}
				return
			}
			if err == nil {
				t.Fatalf("Token = %+v, want an error", tok)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not contain %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q contains the client secret", err)
			}
			var re *tokencache.RetrieveError
			if got := errors.As(err, &re); got != (tt.wantRetErr != nil) {
				t.Fatalf("errors.As(*RetrieveError) = %v, want %v", got, tt.wantRetErr != nil)
			}
			if re != nil {
				if diff := cmp.Diff(tt.wantRetErr, re, cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".Body" }, cmp.Ignore())); diff != "" {
					t.Errorf("RetrieveError (-want +got):\n%s", diff)
				}
				if string(re.Body) != tt.body {
					t.Errorf("RetrieveError.Body = %q, want the response body", re.Body)
				}
			}
		})
	}
}

func TestNewValidates(t *testing.T) {
	ok := tokencache.Config{TokenURL: "https://auth.example.com/oauth/token", ClientID: "c", ClientSecret: "s"}
	tests := []struct {
		name    string
		edit    func(*tokencache.Config)
		wantErr string // empty: valid
	}{
		{"https", func(c *tokencache.Config) {}, ""},
		{"http on 127.0.0.1", func(c *tokencache.Config) { c.TokenURL = "http://127.0.0.1:8080/oauth/token" }, ""},
		{"http on ::1", func(c *tokencache.Config) { c.TokenURL = "http://[::1]:8080/oauth/token" }, ""},
		{"http on localhost", func(c *tokencache.Config) { c.TokenURL = "http://localhost/oauth/token" }, ""},
		{"http elsewhere", func(c *tokencache.Config) { c.TokenURL = "http://auth.example.com/oauth/token" }, "only on loopback"},
		{"http elsewhere, allowed", func(c *tokencache.Config) {
			c.TokenURL, c.AllowInsecureHTTP = "http://gatehouse.internal:8080/oauth/token", true
		}, ""},
		{"ftp even when http is allowed", func(c *tokencache.Config) { c.TokenURL, c.AllowInsecureHTTP = "ftp://auth.example.com/", true }, "scheme"},
		{"other scheme", func(c *tokencache.Config) { c.TokenURL = "ftp://auth.example.com/" }, "scheme"},
		{"relative", func(c *tokencache.Config) { c.TokenURL = "/oauth/token" }, "absolute"},
		{"no client id", func(c *tokencache.Config) { c.ClientID = "" }, "ClientID"},
		{"no secret", func(c *tokencache.Config) { c.ClientSecret = "" }, "ClientSecret"},
		{"bad auth style", func(c *tokencache.Config) { c.AuthStyle = 7 }, "AuthStyle"},
		{"advisory too large", func(c *tokencache.Config) { c.AdvisoryFraction = 0.9 }, "AdvisoryFraction"},
		{"advisory negative", func(c *tokencache.Config) { c.AdvisoryFraction = -0.1 }, "AdvisoryFraction"},
		{"negative window", func(c *tokencache.Config) { c.MandatoryWindow = -time.Second }, "negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ok
			tt.edit(&cfg)
			_, err := tokencache.New(cfg)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("New: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("New: %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestCacheKey(t *testing.T) {
	base := tokencache.Config{
		TokenURL: "https://auth.example.com/oauth/token", ClientID: "c", ClientSecret: "super-secret",
		Audience: "https://api", Resource: "urn:r", Scopes: []string{"b", "a", "b"},
	}
	key := base.CacheKey()
	if !strings.HasPrefix(key, "tokencache:v1:") {
		t.Errorf("key %q lacks the prefix", key)
	}
	if strings.Contains(key, "super-secret") || strings.Contains(key, base64.RawURLEncoding.EncodeToString([]byte("super-secret"))) {
		t.Errorf("key %q contains the secret", key)
	}
	same := []func(*tokencache.Config){
		func(c *tokencache.Config) { c.Scopes = []string{"a", "b"} }, // order and duplicates do not matter
		func(c *tokencache.Config) { c.AuthStyle = tokencache.AuthBody },
		func(c *tokencache.Config) { c.JSONBody = true },
		func(c *tokencache.Config) { c.AdvisoryFraction = 0.5 },
	}
	for i, edit := range same {
		c := base
		edit(&c)
		if got := c.CacheKey(); got != key {
			t.Errorf("same[%d]: key changed to %q", i, got)
		}
	}
	different := map[string]func(*tokencache.Config){
		"url":      func(c *tokencache.Config) { c.TokenURL += "x" },
		"client":   func(c *tokencache.Config) { c.ClientID = "d" },
		"secret":   func(c *tokencache.Config) { c.ClientSecret = "other" },
		"audience": func(c *tokencache.Config) { c.Audience = "https://api2" },
		"resource": func(c *tokencache.Config) { c.Resource = "" },
		"scopes":   func(c *tokencache.Config) { c.Scopes = []string{"a"} },
		// Fields are length-prefixed: moving a boundary changes the key.
		"boundary": func(c *tokencache.Config) { c.Audience, c.Resource = "https://apiurn:r", "" },
	}
	seen := map[string]string{key: "base"}
	for name, edit := range different {
		c := base
		edit(&c)
		got := c.CacheKey()
		if prev, dup := seen[got]; dup {
			t.Errorf("%s: key equals the key of %s", name, prev)
		}
		seen[got] = name
	}
	if fp := tokencache.Fingerprint("super-secret"); len(fp) != 32 || string(fp) == string(tokencache.Fingerprint("super-secreT")) {
		t.Errorf("Fingerprint: %x", fp)
	}
}

// TestOAuth2TokenSource: the adapter drops into golang.org/x/oauth2 code, extras included.
func TestOAuth2TokenSource(t *testing.T) {
	var fetches int
	auth := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches++
		io.WriteString(w, `{"access_token":"o2","expires_in":600,"token_type":"Bearer","tenant":"acme"}`)
	}))
	defer auth.Close()
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer o2" {
			w.WriteHeader(http.StatusUnauthorized)
		}
	}))
	defer api.Close()
	src := mustNew(t, tokencache.Config{TokenURL: auth.URL, ClientID: "c", ClientSecret: "s"})
	ctx := context.Background()
	ts := src.TokenSource(ctx)
	tok, err := ts.Token()
	if err != nil {
		t.Fatal(err)
	}
	if tok.AccessToken != "o2" || tok.Type() != "Bearer" || tok.Extra("tenant") != "acme" || !tok.Valid() {
		t.Errorf("oauth2.Token = %+v, tenant %v", tok, tok.Extra("tenant"))
	}
	client := oauth2.NewClient(ctx, ts)
	for range 3 {
		resp, err := client.Get(api.URL)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("API answered %d", resp.StatusCode)
		}
	}
	if fetches != 1 {
		t.Errorf("%d token fetches, want 1", fetches)
	}
}

// TestNoRedirect: a redirect from the token endpoint is an error; the secret is not sent to the new location.
func TestNoRedirect(t *testing.T) {
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.Errorf("the redirect was followed: %s %s", r.Method, r.URL)
	}))
	defer elsewhere.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+"/steal", http.StatusTemporaryRedirect)
	}))
	defer srv.Close()
	src := mustNew(t, tokencache.Config{TokenURL: srv.URL, ClientID: "c", ClientSecret: "s", AuthStyle: tokencache.AuthBody})
	_, err := src.Token(context.Background())
	var re *tokencache.RetrieveError
	if !errors.As(err, &re) || re.StatusCode != http.StatusTemporaryRedirect {
		t.Fatalf("Token: %v, want a RetrieveError with status 307", err)
	}
}
