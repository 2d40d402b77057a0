package main

// The seed articles' own client and authorizer code, run unchanged against Gatehouse. Each test starts the real
// server, hands the seed code the token URL and credentials through its environment, and checks what the code
// got: the tokens' claims, the authorizer's policies. The code and its npm lockfile live in testdata/seeds (see
// the README there for what changed and why).
//
// These tests need node (18 or later, for the global fetch), npm, curl and python3 with requests. They do not skip
// when one is missing: they fail and say which.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/issuer"
)

// seedsDir holds the seed code, its package.json and package-lock.json, and node_modules once installed.
const seedsDir = "testdata/seeds"

// seedAPI is the fixture API the seeds ask for, granted to svc-one with scopes read and write.
const seedAPI = "https://api.example.com/v1"

// TestSeed000LambdaTokenCache runs seed 000's Lambda handler twice in one process: the first call fetches a token
// with node-fetch and a JSON body, the second must come from the seed's in-memory cache.
func TestSeed000LambdaTokenCache(t *testing.T) {
	t.Parallel()
	node := seedNode(t)
	ts := startServer(t, "", nil, fixture)

	var got struct {
		Tokens []string
		Logs   []string
		Cached struct {
			ExpiresIn int64  `json:"expires_in"` // the seed stores the expiry time here, in Unix seconds
			TokenType string `json:"token_type"`
		}
	}
	start := time.Now().Unix()
	out := seedRun(t, "000", map[string]string{
		"CLIENT_ID": "svc-one", "CLIENT_SECRET": secretOne, "TOKEN_URL": ts.tokenURL(), "AUDIENCE": seedAPI,
	}, &got, node, "run.js")

	if diff := cmp.Diff([]string{"Get a new access token.", "Use cache access token."}, got.Logs); diff != "" {
		t.Errorf("seed logs (-want +got):\n%s\n%s", diff, out)
	}
	if len(got.Tokens) != 2 || got.Tokens[0] == "" || got.Tokens[0] != got.Tokens[1] {
		t.Fatalf("handler returned %q, want the same token twice (the second from the cache)\n%s", got.Tokens, out)
	}
	if got.Cached.TokenType != "Bearer" {
		t.Errorf("cached token_type = %q, want Bearer", got.Cached.TokenType)
	}
	// timestamp + result.expires_in: a number of seconds, or JavaScript would have concatenated strings.
	if lo, hi := start+3600-5, time.Now().Unix()+3600+5; got.Cached.ExpiresIn < lo || got.Cached.ExpiresIn > hi {
		t.Errorf("cached expiry = %d, want about now+3600 (in [%d, %d])", got.Cached.ExpiresIn, lo, hi)
	}
	header, claims := seedDecode(t, got.Tokens[0])
	if header.Alg != "RS256" || header.Kid == "" {
		t.Errorf("token header alg, kid = %q, %q; want RS256 and a kid", header.Alg, header.Kid)
	}
	seedCheckClaims(t, ts, claims, "svc-one", seedAPI, "read write")
}

// TestSeed001DynamoDBTokenCache runs seed 001's getAuthToken (its exact JSON body string, sent with fetch in place
// of the deprecated request-promise) over an in-memory stand-in for its DynamoDB table, and its jwt-decode expiry
// check on a fresh and an expired Gatehouse token.
func TestSeed001DynamoDBTokenCache(t *testing.T) {
	t.Parallel()
	node := seedNode(t)
	ts := startServer(t, "", nil, fixture)
	expired := seedSign(t, ts, auth.RS256, issuer.Claims{
		Issuer: ts.IssuerURL, Subject: "svc-one", ClientID: "svc-one", Audience: seedAPI, Scope: "read write",
		IssuedAt: time.Now().Add(-2 * time.Hour).Unix(), NotBefore: time.Now().Add(-2 * time.Hour).Unix(),
		ExpiresAt: time.Now().Add(-time.Hour).Unix(), ID: "seed-001-expired",
	})

	var got struct {
		First, Second, Renewed                                      string
		RequestsAfterFirst, RequestsAfterSecond, RequestsAfterRenew int
		ExpiredChecks                                               struct{ Fresh, Expired bool }
		TableAfterRenew                                             []string
		RequestBodies                                               []string
	}
	out := seedRun(t, "001", map[string]string{
		"AUTH0_CLIENT_ID": "svc-one", "AUTH0_CLIENT_SECRET": secretOne, "AUTH0_AUDIENCE": seedAPI,
		"TOKEN_URL": ts.tokenURL(), "TOKEN_CACHE_DB": "gatehouse-seed-001", "EXPIRED_TOKEN": expired,
	}, &got, node, "run.mjs")

	wantBody := `{"client_id":"svc-one","client_secret":"` + secretOne + `","audience":"` + seedAPI + `","grant_type":"client_credentials"}`
	if len(got.RequestBodies) == 0 || got.RequestBodies[0] != wantBody {
		t.Errorf("request bodies = %q, want the seed's string %q first", got.RequestBodies, wantBody)
	}
	if got.First == "" || got.Second != got.First {
		t.Errorf("second getAuthToken = %.20q…, want the stored %.20q…", got.Second, got.First)
	}
	if got.RequestsAfterFirst != 1 || got.RequestsAfterSecond != 1 {
		t.Errorf("token requests after the first and second call = %d, %d; want 1, 1 (the second from the table)",
			got.RequestsAfterFirst, got.RequestsAfterSecond)
	}
	if got.ExpiredChecks.Fresh || !got.ExpiredChecks.Expired {
		t.Errorf("hasTokenExpired(fresh), hasTokenExpired(expired) = %v, %v; want false, true",
			got.ExpiredChecks.Fresh, got.ExpiredChecks.Expired)
	}
	if got.RequestsAfterRenew != 2 || got.Renewed == "" || got.Renewed == expired || got.Renewed == got.First {
		t.Errorf("with an expired token stored: %d requests, token %.20q…; want 2 requests and a new token",
			got.RequestsAfterRenew, got.Renewed)
	}
	if diff := cmp.Diff([]string{got.Renewed}, got.TableAfterRenew); diff != "" {
		t.Errorf("table after renewal (-want +got):\n%s", diff)
	}
	if t.Failed() {
		t.Logf("seed output:\n%s", out)
	}
	for _, tok := range []string{got.First, got.Renewed} {
		if tok == "" {
			continue
		}
		_, claims := seedDecode(t, tok)
		seedCheckClaims(t, ts, claims, "svc-one", seedAPI, "read write")
	}
}

// TestSeed002CurlAndLambdaAuthorizer gets a token with seed 002's curl command (a form body), then runs seed 002's
// Lambda authorizer, verbatim, on it and on tokens it must refuse.
//
// The authorizer runs with jwks-rsa 3 and jsonwebtoken 9. The seed's util.promisify(client.getSigningKey) works
// with every jwks-rsa, but jwks-rsa 1, which the seed installed in 2019, reads only RSA keys: an ES256 or EdDSA
// token makes the seed throw SigningKeyNotFoundError (API Gateway: 500) instead of returning Deny. From jwks-rsa 2
// on, jsonwebtoken refuses those tokens with a JsonWebTokenError, which the seed turns into Deny. See
// testdata/seeds/README.md.
func TestSeed002CurlAndLambdaAuthorizer(t *testing.T) {
	t.Parallel()
	node := seedNode(t)
	curl := seedTool(t, "curl")
	ts := startServer(t, "", nil, fixture)

	// The seed's command, with its placeholders filled in: the data is not URL-encoded, as in the article.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, curl, "--request", "POST",
		"--url", ts.tokenURL(),
		"--header", "content-type: application/x-www-form-urlencoded",
		"--data", "audience="+seedAPI+"&grant_type=client_credentials&client_id=svc-one&client_secret="+secretOne)
	cmd.Env = seedEnv(nil)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("curl: %v\nstdout:\n%s\nstderr:\n%s", err, &stdout, &stderr)
	}
	var resp struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int64  `json:"expires_in"`
		TokenType   string `json:"token_type"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &resp); err != nil || resp.AccessToken == "" {
		t.Fatalf("curl printed %s; want a JSON token response (%v)", &stdout, err)
	}
	if resp.TokenType != "Bearer" || resp.ExpiresIn != 3600 {
		t.Errorf("token_type, expires_in = %q, %d; want Bearer, 3600", resp.TokenType, resp.ExpiresIn)
	}
	_, claims := seedDecode(t, resp.AccessToken)
	seedCheckClaims(t, ts, claims, "svc-one", seedAPI, "read write")

	now := time.Now()
	valid := issuer.Claims{
		Issuer: ts.IssuerURL, Subject: "svc-one", ClientID: "svc-one", Audience: seedAPI, Scope: "read write",
		IssuedAt: now.Unix(), NotBefore: now.Unix(), ExpiresAt: now.Add(time.Hour).Unix(), ID: "seed-002",
	}
	expired := valid
	expired.IssuedAt, expired.NotBefore, expired.ExpiresAt = now.Add(-2*time.Hour).Unix(), now.Add(-2*time.Hour).Unix(), now.Add(-time.Hour).Unix()
	otherIssuer := valid
	otherIssuer.Issuer = "https://other.example.com/"

	tests := []struct {
		name      string
		authz     string
		effect    string
		principal string
		logged    string // what the authorizer logged about its decision
	}{
		{"curl token", "Bearer " + resp.AccessToken, "Allow", "svc-one", ""},
		{"svc-multi token for the API", "Bearer " + seedToken(t, ts, "svc-multi", secretMulti, seedAPI), "Allow", "svc-multi", ""},
		{"not a JWT", "Bearer InvalidToken", "Deny", "", "JsonWebTokenError: invalid token"},
		{"ES256 token for urn:example:reports", "Bearer " + seedToken(t, ts, "svc-multi", secretMulti, "urn:example:reports"),
			"Deny", "", "jwt audience invalid"},
		{"EdDSA token for https://edge.example.com", "Bearer " + seedToken(t, ts, "svc-multi", secretMulti, "https://edge.example.com"),
			"Deny", "", "invalid algorithm"},
		{"expired", "Bearer " + seedSign(t, ts, auth.RS256, expired), "Deny", "", "TokenExpiredError: jwt expired"},
		{"other issuer", "Bearer " + seedSign(t, ts, auth.RS256, otherIssuer), "Deny", "", "jwt issuer invalid"},
		{"tampered payload", "Bearer " + seedTamper(t, resp.AccessToken), "Deny", "", "invalid signature"},
	}
	cases := make(map[string]string, len(tests))
	for _, tt := range tests {
		cases[tt.name] = tt.authz
	}
	casesJSON, err := json.Marshal(cases)
	if err != nil {
		t.Fatal(err)
	}
	type policy struct {
		PrincipalID    string `json:"principalId"`
		PolicyDocument struct {
			Version   string
			Statement []struct{ Action, Effect, Resource string }
		} `json:"policyDocument"`
		Context struct{ Msg string } `json:"context"`
	}
	var got map[string]struct {
		Policy *policy
		Error  string
		Logs   []string
	}
	out := seedRun(t, "002", map[string]string{
		"JWKS_URI": ts.URL + "/.well-known/jwks.json", "AUDIENCE": seedAPI, "TOKEN_ISSUER": ts.IssuerURL,
		"AUTH_CASES": string(casesJSON),
	}, &got, node, "run.js")

	const methodArn = "arn:aws:execute-api:ap-northeast-1:123456789012:abcdef1234/Dev/GET/hello"
	for _, tt := range tests {
		r, ok := got[tt.name]
		switch {
		case !ok:
			t.Errorf("%s: no result\n%s", tt.name, out)
			continue
		case r.Policy == nil:
			t.Errorf("%s: the authorizer threw %s, want a %s policy\nlogs:\n%s", tt.name, r.Error, tt.effect, strings.Join(r.Logs, "\n"))
			continue
		}
		p := r.Policy
		if len(p.PolicyDocument.Statement) != 1 {
			t.Errorf("%s: policy has %d statements, want 1", tt.name, len(p.PolicyDocument.Statement))
			continue
		}
		st := p.PolicyDocument.Statement[0]
		wantMsg := map[string]string{"Allow": "success", "Deny": "failure"}[tt.effect]
		if st.Effect != tt.effect || p.PrincipalID != tt.principal || p.Context.Msg != wantMsg {
			t.Errorf("%s: Effect, principalId, context.msg = %q, %q, %q; want %q, %q, %q\nlogs:\n%s", tt.name,
				st.Effect, p.PrincipalID, p.Context.Msg, tt.effect, tt.principal, wantMsg, strings.Join(r.Logs, "\n"))
		}
		if st.Action != "execute-api:Invoke" || st.Resource != methodArn {
			t.Errorf("%s: Action, Resource = %q, %q; want execute-api:Invoke, %q", tt.name, st.Action, st.Resource, methodArn)
		}
		if tt.logged != "" && !strings.Contains(strings.Join(r.Logs, "\n"), tt.logged) {
			t.Errorf("%s: the authorizer denied without logging %q; logs:\n%s", tt.name, tt.logged, strings.Join(r.Logs, "\n"))
		}
	}
}

// TestSeed004CognitoPythonClient runs seed 004's get_access_token (Python requests, HTTP Basic and only
// grant_type) against the Cognito-style token path, then asks for one Cognito-style scope.
func TestSeed004CognitoPythonClient(t *testing.T) {
	t.Parallel()
	python := seedTool(t, "python3")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, python, "-c", "import requests").CombinedOutput(); err != nil {
		t.Fatalf("seed 004 needs python3 with the requests package (the machine image ships it; tests install no "+
			"Python packages): %v\n%s", err, out)
	}
	ts := startServer(t, "", nil, fixture)

	var got struct {
		AccessToken     *string `json:"access_token"`
		ScopedToken     *string `json:"scoped_token"`
		RequestsVersion string  `json:"requests_version"`
	}
	out := seedRun(t, "004", map[string]string{
		"CLIENT_ID": "svc-one", "CLIENT_SECRET": secretOne, "TOKEN_ENDPOINT_URL": ts.URL + "/oauth2/token",
		"SCOPE": seedAPI + "/read",
	}, &got, python, "client.py")
	if got.AccessToken == nil || got.ScopedToken == nil {
		t.Fatalf("get_access_token, scoped = %v, %v; want two tokens\n%s", got.AccessToken, got.ScopedToken, out)
	}
	t.Logf("python requests %s", got.RequestsVersion)

	// No audience and no scope: svc-one's only API, with every scope it was granted.
	_, claims := seedDecode(t, *got.AccessToken)
	seedCheckClaims(t, ts, claims, "svc-one", seedAPI, "read write")
	// scope=<API identifier>/read: that API, that scope only.
	_, claims = seedDecode(t, *got.ScopedToken)
	seedCheckClaims(t, ts, claims, "svc-one", seedAPI, "read")
}

// seedJWTHeader is the part of a JWS header the tests check.
type seedJWTHeader struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
	Typ string `json:"typ"`
}

// seedDecode decodes a compact JWS's header and claims without verifying it: the seed code did the verifying.
func seedDecode(t *testing.T, token string) (seedJWTHeader, issuer.Claims) {
	t.Helper()
	var h seedJWTHeader
	var c issuer.Claims
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("token %.40q… has %d parts, want 3", token, len(parts))
	}
	for i, v := range []any{&h, &c} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			t.Fatalf("token part %d: %v", i, err)
		}
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("token part %d %s: %v", i, b, err)
		}
	}
	return h, c
}

// seedCheckClaims checks the claims of a token Gatehouse issued to clientID for audience with scope.
func seedCheckClaims(t *testing.T, ts *testServer, c issuer.Claims, clientID, audience, scope string) {
	t.Helper()
	type view struct{ Iss, Sub, ClientID, Aud, Scope string }
	got := view{c.Issuer, c.Subject, c.ClientID, c.Audience, c.Scope}
	want := view{ts.IssuerURL, clientID, clientID, audience, scope}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("token claims (-want +got):\n%s", diff)
	}
	if now := time.Now().Unix(); c.ExpiresAt <= now {
		t.Errorf("token exp = %d, want after now (%d)", c.ExpiresAt, now)
	}
}

// seedToken gets a token for audience from the token endpoint, with a form body.
func seedToken(t *testing.T, ts *testServer, clientID, secret, audience string) string {
	t.Helper()
	resp, err := http.PostForm(ts.tokenURL(), url.Values{
		"grant_type": {"client_credentials"}, "client_id": {clientID}, "client_secret": {secret}, "audience": {audience},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusOK || body.AccessToken == "" {
		t.Fatalf("token for %s as %s: status %d, %v", audience, clientID, resp.StatusCode, err)
	}
	return body.AccessToken
}

// seedSign signs claims with the server's current key for alg, for tokens the token endpoint never issues
// (expired ones, another issuer's).
func seedSign(t *testing.T, ts *testServer, alg auth.Algorithm, c issuer.Claims) string {
	t.Helper()
	payload, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := ts.Keys.Sign(context.Background(), alg, payload)
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return tok
}

// seedTamper changes the subject of a signed token and keeps its signature.
func seedTamper(t *testing.T, token string) string {
	t.Helper()
	parts := strings.Split(token, ".")
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(b, &claims); err != nil {
		t.Fatal(err)
	}
	claims["sub"] = "svc-admin"
	if b, err = json.Marshal(claims); err != nil {
		t.Fatal(err)
	}
	parts[1] = base64.RawURLEncoding.EncodeToString(b)
	return strings.Join(parts, ".")
}

// seedTool returns the path of a program the seed tests need, failing the test when it is missing.
func seedTool(t *testing.T, name string) string {
	t.Helper()
	path, err := exec.LookPath(name)
	if err != nil {
		t.Fatalf("the seed tests need %s on PATH and do not skip without it: %v", name, err)
	}
	return path
}

// seedRun runs program with args in testdata/seeds/dir, with env added to the test's environment, and decodes
// the JSON the program prints after "RESULT " on a line of its own into result. It returns the program's output
// for failure messages.
func seedRun(t *testing.T, dir string, env map[string]string, result any, program string, args ...string) string {
	t.Helper()
	// Stat the seed's files so that go test's result cache sees a change to them: the program reads them, not us.
	entries, err := os.ReadDir(filepath.Join(seedsDir, dir))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		os.Stat(filepath.Join(seedsDir, dir, e.Name()))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, program, args...)
	cmd.Dir = filepath.Join(seedsDir, dir)
	cmd.Env = seedEnv(env)
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	out := fmt.Sprintf("stdout:\n%s\nstderr:\n%s", &stdout, &stderr)
	if err != nil {
		t.Fatalf("%s %s in %s: %v (timeout %v)\n%s", filepath.Base(program), strings.Join(args, " "), cmd.Dir, err, 30*time.Second, out)
	}
	var line string
	for l := range strings.Lines(stdout.String()) {
		if s, ok := strings.CutPrefix(l, "RESULT "); ok {
			line = s
		}
	}
	if line == "" {
		t.Fatalf("%s %s printed no RESULT line\n%s", filepath.Base(program), strings.Join(args, " "), out)
	}
	if err := json.Unmarshal([]byte(line), result); err != nil {
		t.Fatalf("%s %s: decode RESULT: %v\n%s", filepath.Base(program), strings.Join(args, " "), err, out)
	}
	return out
}

// seedEnv is the test's environment with env added, and with loopback kept off any proxy the environment sets.
func seedEnv(env map[string]string) []string {
	e := append(os.Environ(), "NO_PROXY=127.0.0.1,localhost", "no_proxy=127.0.0.1,localhost")
	for k, v := range env {
		e = append(e, k+"="+v)
	}
	return e
}

// seedNode returns the path of node, after making sure the seeds' node_modules is installed.
func seedNode(t *testing.T) string {
	t.Helper()
	node, npm := seedTool(t, "node"), seedTool(t, "npm")
	seedInstallOnce.Do(func() { seedInstallErr = seedInstall(node, npm) })
	if seedInstallErr != nil {
		t.Fatal(seedInstallErr)
	}
	return node
}

var (
	seedInstallOnce sync.Once
	seedInstallErr  error
)

// seedStamp, in node_modules, holds the SHA-256 of the package-lock.json it was installed from.
const seedStamp = ".gatehouse-lock-sha256"

// seedInstall checks node's version and runs npm ci when testdata/seeds/node_modules is missing or was installed
// from another package-lock.json. npm ci runs in a fresh folder whose node_modules is then renamed into place, so
// an interrupted install leaves nothing half-done and test binaries running at once do not install over each other.
func seedInstall(node, npm string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, node, "--version").Output()
	if err != nil {
		return fmt.Errorf("node --version: %w", err)
	}
	major, _, _ := strings.Cut(strings.TrimPrefix(strings.TrimSpace(string(out)), "v"), ".")
	if n, err := strconv.Atoi(major); err != nil || n < 18 {
		return fmt.Errorf("the seed tests need node 18 or later (for fetch); node --version says %s", out)
	}

	lock, err := os.ReadFile(filepath.Join(seedsDir, "package-lock.json"))
	if err != nil {
		return err
	}
	sum := sha256.Sum256(lock)
	want := hex.EncodeToString(sum[:])
	modules := filepath.Join(seedsDir, "node_modules")
	installed := func() bool {
		b, err := os.ReadFile(filepath.Join(modules, seedStamp))
		return err == nil && string(b) == want
	}
	if installed() {
		return nil
	}

	tmp, err := os.MkdirTemp(seedsDir, ".npm-ci-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	for _, f := range []string{"package.json", "package-lock.json"} {
		b, err := os.ReadFile(filepath.Join(seedsDir, f))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(tmp, f), b, 0o644); err != nil {
			return err
		}
	}
	cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund")
	cmd.Dir = tmp
	cmd.WaitDelay = 5 * time.Second
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("npm ci --no-audit --no-fund for the seed tests (in %s, timeout 5m): %w\n%s", seedsDir, err, out)
	}
	if err := os.WriteFile(filepath.Join(tmp, "node_modules", seedStamp), []byte(want), 0o644); err != nil {
		return err
	}
	if installed() { // another test binary finished first
		return nil
	}
	if err := os.RemoveAll(modules); err != nil {
		return err
	}
	if err := os.Rename(filepath.Join(tmp, "node_modules"), modules); err != nil {
		if installed() {
			return nil
		}
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("install node_modules: %w (another install is racing this one; run the tests again)", err)
		}
		return fmt.Errorf("install node_modules: %w", err)
	}
	return nil
}
