package verify_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/gatehouse/gatehouse/verify"
)

// exampleIssuer stands in for Gatehouse (or Auth0, Okta, …) in the examples: it publishes its metadata and JWKS
// on loopback and signs access tokens.
type exampleIssuer struct {
	*httptest.Server
	signer jose.Signer
}

func startExampleIssuer() *exampleIssuer {
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: jose.JSONWebKey{Key: priv, KeyID: "key-1"}},
		(&jose.SignerOptions{}).WithType("at+jwt"))
	if err != nil {
		log.Fatal(err)
	}
	iss := &exampleIssuer{signer: signer}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]string{"issuer": iss.URL + "/", "jwks_uri": iss.URL + "/.well-known/jwks.json"})
	})
	mux.HandleFunc("GET /.well-known/jwks.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=300")
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
			{Key: priv.Public(), KeyID: "key-1", Algorithm: "EdDSA", Use: "sig"},
		}})
	})
	// The revocation feed, as Gatehouse serves it: token "1" is revoked.
	mux.HandleFunc("GET /oauth/revocations", func(w http.ResponseWriter, r *http.Request) {
		if id, secret, ok := r.BasicAuth(); !ok || id != "reports-api" || secret != "reports-api-secret" {
			http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
			return
		}
		fmt.Fprintf(w, `{"cursor":"1","revoked_tokens":[{"jti":"1","exp":%d}],"revoked_subjects":[]}`, time.Now().Add(time.Hour).Unix())
	})
	iss.Server = httptest.NewServer(mux)
	return iss
}

// token returns an access token for audience with the scopes, expiring after ttl.
func (iss *exampleIssuer) token(audience, scope string, ttl time.Duration) string {
	now := time.Now()
	payload, _ := json.Marshal(map[string]any{
		"iss": iss.URL + "/", "sub": "svc-reports", "aud": audience, "client_id": "svc-reports", "scope": scope,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(ttl).Unix(), "jti": "1",
	})
	jws, err := iss.signer.Sign(payload)
	if err != nil {
		log.Fatal(err)
	}
	tok, _ := jws.CompactSerialize()
	return tok
}

func Example() {
	iss := startExampleIssuer()
	defer iss.Close()

	// The issuer and this API's identifier are all the configuration needed: the JWKS is found through the
	// issuer's discovery document, fetched on first use and kept fresh.
	v, err := verify.New(verify.Config{
		Issuer:    iss.URL + "/",
		Audiences: []string{"https://reports.example.com"},
	})
	if err != nil {
		log.Fatal(err)
	}

	claims, err := v.Verify(context.Background(), iss.token("https://reports.example.com", "reports:read", time.Hour))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(claims.Subject, claims.Scopes, claims.HasScopes("reports:read"), claims.HasScopes("reports:write"))

	_, err = v.Verify(context.Background(), iss.token("https://billing.example.com", "reports:read", time.Hour))
	fmt.Println(errors.Is(err, verify.ErrAudience))
	_, err = v.Verify(context.Background(), iss.token("https://reports.example.com", "reports:read", -time.Hour))
	fmt.Println(errors.Is(err, verify.ErrExpired))
	// Output:
	// svc-reports [reports:read] true false
	// true
	// true
}

func ExampleMiddleware() {
	iss := startExampleIssuer()
	defer iss.Close()

	v, err := verify.New(verify.Config{
		Issuer:    iss.URL + "/",
		Audiences: []string{"https://reports.example.com"},
		JWKSURL:   iss.URL + "/.well-known/jwks.json",
	})
	if err != nil {
		log.Fatal(err)
	}
	// Run keeps the JWKS fresh in the background; without it, Verify does so itself.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go v.Run(ctx)

	mux := http.NewServeMux()
	read := verify.Middleware(v, verify.Realm("reports"), verify.RequireScopes("reports:read"))
	mux.Handle("GET /reports", read(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		claims, _ := verify.ClaimsFrom(r.Context())
		fmt.Fprintf(w, "reports for %s", claims.ClientID)
	})))
	api := httptest.NewServer(mux)
	defer api.Close()

	get := func(token string) {
		req, _ := http.NewRequest("GET", api.URL+"/reports", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			log.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		fmt.Println(strings.TrimSpace(resp.Status[:3] + " " + resp.Header.Get("WWW-Authenticate")))
		if resp.StatusCode == http.StatusOK {
			fmt.Println(string(body))
		}
	}
	get(iss.token("https://reports.example.com", "reports:read", time.Hour))
	get("")
	get(iss.token("https://reports.example.com", "reports:read", -time.Hour))
	get(iss.token("https://reports.example.com", "reports:write", time.Hour))
	// Output:
	// 200
	// reports for svc-reports
	// 401 Bearer realm="reports"
	// 401 Bearer realm="reports", error="invalid_token", error_description="the token has expired"
	// 403 Bearer realm="reports", error="insufficient_scope", error_description="the token lacks a scope this request needs", scope="reports:read"
}

func ExampleBearerToken() {
	tok, err := verify.BearerToken("Bearer eyJhbGciOiJFUzI1NiJ9.e30.c2ln")
	fmt.Println(tok, err)
	_, err = verify.BearerToken("Basic dXNlcjpwYXNz")
	fmt.Println(errors.Is(err, verify.ErrNoToken))
	// Output:
	// eyJhbGciOiJFUzI1NiJ9.e30.c2ln <nil>
	// true
}

// exampleGatehouse stands in for a Gatehouse server in the API key example: its token endpoint, and its key check
// knowing one key.
func startExampleGatehouse(key string) *httptest.Server {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /oauth/token", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"access_token":"management-token","token_type":"Bearer","expires_in":3600}`)
	})
	mux.HandleFunc("POST /api/v1/apikeys/verify", func(w http.ResponseWriter, r *http.Request) {
		var in struct{ Key string }
		json.NewDecoder(r.Body).Decode(&in)
		w.Header().Set("Content-Type", "application/json")
		if r.Header.Get("Authorization") != "Bearer management-token" || in.Key != key {
			io.WriteString(w, `{"valid":false,"code":"not_found"}`)
			return
		}
		io.WriteString(w, `{"valid":true,"key_id":"key_7Qa","org_id":"org_acme","owner":"user-42",
			"grants":[{"audience":"https://reports.example.com","scopes":["reports:read"]}]}`)
	})
	return httptest.NewServer(mux)
}

// One Middleware accepts access tokens, checked offline, and Gatehouse API keys, checked with the server that
// issued them: in the Authorization header or, with APIKeyHeader, in X-API-Key.
func ExampleAPIKeyVerifier() {
	const key = "gate_0123456789ABCDEFGHIJKLMNOPQRSTUVW1hX0W1"
	gatehouse := startExampleGatehouse(key)
	defer gatehouse.Close()
	iss := startExampleIssuer()
	defer iss.Close()

	keys, err := verify.NewAPIKeyVerifier(verify.APIKeyConfig{
		ServerURL:    gatehouse.URL,
		ClientID:     "edge-gateway", // a client granted verify:apikeys of urn:gatehouse:management
		ClientSecret: "edge-gateway-secret",
		Audience:     "https://reports.example.com",
		CacheTTL:     30 * time.Second, // the revocation delay: a deleted key is refused within 30 s
	})
	if err != nil {
		log.Fatal(err)
	}
	tokens, err := verify.New(verify.Config{Issuer: iss.URL + "/", Audiences: []string{"https://reports.example.com"}})
	if err != nil {
		log.Fatal(err)
	}

	read := verify.Middleware(verify.Any(tokens, keys), verify.RequireScopes("reports:read"), verify.APIKeyHeader("X-API-Key"))
	api := httptest.NewServer(read(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		claims, _ := verify.ClaimsFrom(r.Context())
		var extra struct{ Owner string } // a key's owner, as a token exchanged for it carries it
		claims.Decode(&extra)
		fmt.Fprintf(w, "reports for %s (org %q, owner %q)", claims.Subject, claims.OrgID, extra.Owner)
	})))
	defer api.Close()

	get := func(header, value string) {
		req, _ := http.NewRequest("GET", api.URL+"/reports", nil)
		req.Header.Set(header, value)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			log.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode == http.StatusOK {
			fmt.Println(resp.Status[:3], string(body))
		} else {
			fmt.Println(resp.Status[:3], resp.Header.Get("WWW-Authenticate"))
		}
	}
	get("Authorization", "Bearer "+key)
	get("X-API-Key", key)
	get("X-API-Key", "gate_0000000000000000000000000000000004E8DGG") // well-formed, unknown to the server
	get("Authorization", "Bearer "+iss.token("https://reports.example.com", "reports:read", time.Hour))
	// Output:
	// 200 reports for key_7Qa (org "org_acme", owner "user-42")
	// 200 reports for key_7Qa (org "org_acme", owner "user-42")
	// 401 Bearer error="invalid_token", error_description="the API key is not valid"
	// 200 reports for svc-reports (org "", owner "")
}

// An API that must refuse revoked tokens polls the issuer's revocation feed. By default the check fails open: if
// the feed cannot be reached, the last list stays in use. MaxStale makes it fail closed instead.
func ExampleRevocationFeed() {
	iss := startExampleIssuer()
	defer iss.Close()

	v, err := verify.New(verify.Config{
		Issuer:    iss.URL + "/",
		Audiences: []string{"https://reports.example.com"},
		Revocations: &verify.RevocationFeed{
			URL:      iss.URL + "/oauth/revocations",
			ClientID: "reports-api", ClientSecret: "reports-api-secret", // a client with introspect:tokens
			PollInterval: 30 * time.Second, // the bound on how long a revoked token is still accepted
			MaxStale:     5 * time.Minute,  // refuse every token if the list is older than this
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	_, err = v.Verify(context.Background(), iss.token("https://reports.example.com", "reports:read", time.Hour))
	fmt.Println(errors.Is(err, verify.ErrRevoked))
	// Output: true
}
