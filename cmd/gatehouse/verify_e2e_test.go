package main

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/issuer"
	"github.com/gatehouse/gatehouse/verify"
)

// TestVerifyGatehouseTokens: the public verify package accepts tokens from a real Gatehouse server — found from
// the issuer URL alone, through discovery — for every signing algorithm, and refuses what it must.
func TestVerifyGatehouseTokens(t *testing.T) {
	ts := startServer(t, "", nil, fixture)
	var fetches atomic.Int64
	client := &http.Client{Transport: countingTransport{http.DefaultTransport, &fetches}}
	apis := []struct{ aud, alg, scope string }{
		{"https://api.example.com/v1", "RS256", "read"},
		{"urn:example:reports", "ES256", "reports:read"},
		{"https://edge.example.com", "EdDSA", "edge"},
	}
	var auds []string
	for _, a := range apis {
		auds = append(auds, a.aud)
	}
	v, err := verify.New(verify.Config{Issuer: ts.IssuerURL, Audiences: auds, HTTPClient: client})
	if err != nil {
		t.Fatal(err)
	}
	other, err := verify.New(verify.Config{Issuer: ts.IssuerURL, Audiences: []string{"https://elsewhere.example"}, HTTPClient: client})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, a := range apis {
		t.Run(a.alg, func(t *testing.T) {
			tok := seedToken(t, ts, "svc-multi", secretMulti, a.aud)
			c, err := v.Verify(ctx, tok)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if c.Issuer != ts.IssuerURL || c.Subject != "svc-multi" || c.ClientID != "svc-multi" ||
				!slices.Equal(c.Audience, []string{a.aud}) || !slices.Equal(c.Scopes, []string{a.scope}) || c.ID == "" {
				t.Errorf("claims = %+v", c)
			}
			if d := time.Until(c.ExpiresAt); d <= 0 || d > 24*time.Hour {
				t.Errorf("expires in %v", d)
			}

			// A verifier for another API refuses it.
			if _, err := other.Verify(ctx, tok); !errors.Is(err, verify.ErrAudience) {
				t.Errorf("another audience: %v, want ErrAudience", err)
			}
			if _, err := v.Verify(ctx, seedTamper(t, tok)); !errors.Is(err, verify.ErrSignature) {
				t.Errorf("tampered: %v, want ErrSignature", err)
			}
			now := time.Now()
			expired := seedSign(t, ts, auth.Algorithm(a.alg), issuer.Claims{Issuer: ts.IssuerURL, Subject: "svc-multi", Audience: a.aud,
				IssuedAt: now.Add(-2 * time.Hour).Unix(), NotBefore: now.Add(-2 * time.Hour).Unix(), ExpiresAt: now.Add(-time.Hour).Unix(), ID: "x"})
			if _, err := v.Verify(ctx, expired); !errors.Is(err, verify.ErrExpired) {
				t.Errorf("expired: %v, want ErrExpired", err)
			}
			foreign := seedSign(t, ts, auth.Algorithm(a.alg), issuer.Claims{Issuer: "https://evil.example/", Subject: "svc-multi", Audience: a.aud,
				IssuedAt: now.Unix(), NotBefore: now.Unix(), ExpiresAt: now.Add(time.Hour).Unix(), ID: "y"})
			if _, err := v.Verify(ctx, foreign); !errors.Is(err, verify.ErrIssuer) {
				t.Errorf("another issuer: %v, want ErrIssuer", err)
			}
		})
	}
	// Discovery once, then the JWKS once, for the verifier all three tokens went through; the second verifier
	// did the same once for itself.
	if n := fetches.Load(); n != 4 {
		t.Errorf("%d requests to the server for metadata and keys, want 4", n)
	}

	// The middleware in front of an API, with the real server's tokens.
	h := verify.Middleware(v, verify.RequireScopes("read"))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := verify.ClaimsFrom(r.Context())
		io.WriteString(w, c.ClientID)
	}))
	for _, tc := range []struct {
		client, secret, aud string
		status              int
		challenge           string
	}{
		{"svc-one", secretOne, "https://api.example.com/v1", 200, ""},
		{"svc-multi", secretMulti, "urn:example:reports", 403, `error="insufficient_scope"`},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.Header.Set("Authorization", "Bearer "+seedToken(t, ts, tc.client, tc.secret, tc.aud))
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != tc.status || !strings.Contains(w.Header().Get("WWW-Authenticate"), tc.challenge) {
			t.Errorf("%s: %d %q, want %d %q", tc.client, w.Code, w.Header().Get("WWW-Authenticate"), tc.status, tc.challenge)
		}
		if tc.status == 200 && w.Body.String() != tc.client {
			t.Errorf("%s: handler saw client %q", tc.client, w.Body.String())
		}
	}
}

// TestVerifyGatehouseJWKSOutage: once a verifier has the server's keys, its tokens keep verifying after the
// server is gone.
func TestVerifyGatehouseJWKSOutage(t *testing.T) {
	ts := startServer(t, "", nil, fixture)
	v, err := verify.New(verify.Config{Issuer: ts.IssuerURL, Audiences: []string{"https://api.example.com/v1"},
		JWKSURL: ts.URL + "/.well-known/jwks.json"})
	if err != nil {
		t.Fatal(err)
	}
	tok := seedToken(t, ts, "svc-one", secretOne, "https://api.example.com/v1")
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	ts.stop()
	for range 3 {
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatalf("server stopped: %v", err)
		}
	}
}

// countingTransport counts the requests it carries.
type countingTransport struct {
	rt http.RoundTripper
	n  *atomic.Int64
}

func (c countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return c.rt.RoundTrip(r)
}
