package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/clustertest"
	"github.com/gatehouse/gatehouse/internal/rootkey"
)

// The resources of a test cluster, declared with gatehouse apply --db before its instances start.
const (
	clusterAudience = "https://orders.example.com"
	clusterAdmin    = "cluster-admin"
	clusterService  = "cluster-svc"     // the client whose secret the invalidation trials rotate
	clusterLimited  = "cluster-limited" // a client with a rate limit
	clusterSecret   = "cluster-secret-0123456789abcdefghijklmnop"
)

// clusterRate is the limited client's rate limit: a burst of clusterRateCount, then one every 100ms.
const (
	clusterRateCount = 50
	clusterRatePer   = 5 * time.Second
)

// testCluster is several `gatehouse serve` processes on one throwaway PostgreSQL and, optionally, one Redis.
type testCluster struct {
	t       *testing.T
	bin     string
	pg      *clustertest.Postgres
	redis   *clustertest.Redis // nil without Redis
	dsn     string
	env     []string
	nodes   []*clusterNode
	client  *http.Client
	mgmt    string // a management token with every scope the tests use
	started time.Time
}

type clusterNode struct {
	url  string
	args []string
	proc *clustertest.Process
}

// clusterOptions shape a test cluster.
type clusterOptions struct {
	nodes int
	redis bool
	extra []string // more flags for every instance
}

// startCluster declares the cluster's resources in a new PostgreSQL database, then starts the instances all at
// once, so that they race to create the signing keys, and waits until each is ready.
func startCluster(t *testing.T, o clusterOptions) *testCluster {
	t.Helper()
	c := &testCluster{t: t, bin: clustertest.BuildGatehouse(t), pg: clustertest.StartPostgres(t),
		client: &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
	t.Cleanup(c.client.CloseIdleConnections)
	c.pg.CreateDatabase(t, "gatehouse")
	c.dsn = c.pg.DSN("gatehouse")
	if o.redis {
		c.redis = clustertest.StartRedis(t)
	}
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "GATEHOUSE_") })
	c.env = append(env, "GATEHOUSE_ROOT_KEY="+rootkey.Generate().String(), "CLUSTER_SECRET="+clusterSecret)

	file := filepath.Join(t.TempDir(), "gatehouse.yaml")
	scopes := strings.Join([]string{auth.ScopeReadClients, auth.ScopeWriteClients, auth.ScopeReadAPIKeys,
		auth.ScopeWriteAPIKeys, auth.ScopeReadKeys, auth.ScopeWriteKeys, auth.ScopeRevokeTokens, auth.ScopeIntrospect}, ", ")
	config := fmt.Sprintf(`apis:
  - identifier: %[1]s
    name: Orders
    scopes: [read, write]
    signing_alg: ES256
clients:
  - client_id: %[2]s
    name: Cluster administrator
    client_secret: ${CLUSTER_SECRET}
    grants:
      - audience: %[5]s
        scopes: [%[6]s]
  - client_id: %[3]s
    name: Service
    client_secret: ${CLUSTER_SECRET}
    grants:
      - audience: %[1]s
        scopes: [read]
  - client_id: %[4]s
    name: Limited
    client_secret: ${CLUSTER_SECRET}
    rate_limit: %[7]d/%[8]s
    grants:
      - audience: %[1]s
        scopes: [read]
`, clusterAudience, clusterAdmin, clusterService, clusterLimited, auth.ManagementAudience, scopes, clusterRateCount, clusterRatePer)
	if err := os.WriteFile(file, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	apply := clustertest.StartProcess(t, c.bin, c.env, "apply", "-f", file, "--db", c.dsn)
	if err := apply.Wait(60 * time.Second); err != nil {
		t.Fatalf("gatehouse apply --db: %v\n%s", err, apply.LogTail(20))
	}

	for range o.nodes {
		addr := fmt.Sprintf("127.0.0.1:%d", clustertest.FreePort(t))
		args := []string{"serve", "--addr", addr, "--db", c.dsn, "--log-level", "warn",
			// The trials present refused credentials on purpose, many times a minute.
			"--auth-failures-per-client", "0", "--auth-failures-per-address", "0"}
		if c.redis != nil {
			args = append(args, "--redis", c.redis.URL())
		}
		c.nodes = append(c.nodes, &clusterNode{url: "http://" + addr, args: append(args, o.extra...)})
	}
	for _, n := range c.nodes {
		n.proc = clustertest.StartProcess(t, c.bin, c.env, n.args...)
	}
	for _, n := range c.nodes {
		clustertest.WaitHTTP(t, n.url+"/readyz", 90*time.Second)
	}
	c.started = time.Now()
	c.mgmt = c.token(c.nodes[0], clusterAdmin, clusterSecret, auth.ManagementAudience, "")
	return c
}

// restart starts node n again after it stopped, with the same flags, and waits until it is ready.
func (c *testCluster) restart(n *clusterNode) {
	c.t.Helper()
	n.proc = clustertest.StartProcess(c.t, c.bin, c.env, n.args...)
	clustertest.WaitHTTP(c.t, n.url+"/readyz", 90*time.Second)
}

// do sends a request to node n and returns the status and body. A transport error is status 0.
func (c *testCluster) do(n *clusterNode, method, path, authz, contentType string, body []byte) (int, []byte) {
	req, err := http.NewRequest(method, n.url+path, bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return 0, []byte(err.Error())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// manage calls the management API on node n and decodes a 2xx answer into out (if not nil); any other answer
// fails the test.
func (c *testCluster) manage(n *clusterNode, method, path string, in, out any) {
	c.t.Helper()
	var body []byte
	if in != nil {
		body, _ = json.Marshal(in)
	}
	status, b := c.do(n, method, path, "Bearer "+c.mgmt, "application/json", body)
	if status < 200 || status > 299 {
		c.t.Fatalf("%s %s on %s: %d %s", method, path, n.url, status, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			c.t.Fatalf("%s %s: %v", method, path, err)
		}
	}
}

// basic is an HTTP Basic Authorization header value (RFC 6749 §2.3.1).
func basic(id, secret string) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(id)+":"+url.QueryEscape(secret)))
}

// tokenStatus asks node n for a token as client id with secret and returns the status.
func (c *testCluster) tokenStatus(n *clusterNode, id, secret string) (int, []byte) {
	form := url.Values{"grant_type": {"client_credentials"}, "audience": {clusterAudience}}
	return c.do(n, "POST", "/oauth/token", basic(id, secret), "application/x-www-form-urlencoded", []byte(form.Encode()))
}

// exchangeStatus exchanges an API key for a token with scope read on node n and returns the status.
func (c *testCluster) exchangeStatus(n *clusterNode, key string) (int, []byte) {
	form := url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"}, "subject_token": {key},
		"subject_token_type": {"urn:gatehouse:params:oauth:token-type:api-key"}, "audience": {clusterAudience},
		"scope": {"read"}}
	return c.do(n, "POST", "/oauth/token", "", "application/x-www-form-urlencoded", []byte(form.Encode()))
}

// token gets an access token from node n, failing the test if it cannot.
func (c *testCluster) token(n *clusterNode, id, secret, audience, scope string) string {
	c.t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "audience": {audience}}
	if scope != "" {
		form.Set("scope", scope)
	}
	status, b := c.do(n, "POST", "/oauth/token", basic(id, secret), "application/x-www-form-urlencoded", []byte(form.Encode()))
	if status != http.StatusOK {
		c.t.Fatalf("token for %s from %s: %d %s", id, n.url, status, b)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	json.Unmarshal(b, &tok)
	return tok.AccessToken
}

// invalidationBound is how soon every instance must refuse a credential changed through another (the issue's
// bound; Unkey's node caches lag 10 to 60 seconds).
const invalidationBound = time.Second

// invalidationTrials is how many changes TestClusterInvalidation makes.
const invalidationTrials = 200

// TestClusterInvalidation runs three instances on one PostgreSQL and, 200 times, changes a credential through the
// first — rotates, deletes, disables or re-scopes an API key, replaces a client's secret, or disables the client —
// after the other two have checked (and cached) it, then measures how soon each of them refuses the old one. It fails if any takes longer than a
// second, and logs p50/p99 for BENCHMARKS.md. It also checks the start: three instances racing on an empty
// database made one signing key per algorithm, and all serve the same JWKS.
func TestClusterInvalidation(t *testing.T) {
	c := startCluster(t, clusterOptions{nodes: 3})
	c.checkOneKeyPerAlg()

	var (
		secret = clusterSecret
		key    string
		keyID  string
	)
	newKey := func() {
		var k struct {
			ID  string `json:"id"`
			Key string `json:"key"`
		}
		c.manage(c.nodes[0], "POST", "/api/v1/apikeys", map[string]any{"name": "trial",
			"grants": []map[string]any{{"audience": clusterAudience, "scopes": []string{"read"}}}}, &k)
		key, keyID = k.Key, k.ID
	}
	kinds := []struct {
		name    string
		prepare func()                             // before the others cache the credential
		accepts func(n *clusterNode) (int, []byte) // a check with the credential as it is before the change
		change  func()
	}{
		{"API key rotated", newKey, func(n *clusterNode) (int, []byte) { return c.exchangeStatus(n, key) }, func() {
			c.manage(c.nodes[0], "POST", "/api/v1/apikeys/"+keyID+"/rotate", map[string]any{}, nil)
		}},
		{"API key deleted", newKey, func(n *clusterNode) (int, []byte) { return c.exchangeStatus(n, key) }, func() {
			c.manage(c.nodes[0], "DELETE", "/api/v1/apikeys/"+keyID, nil, nil)
		}},
		{"client secret replaced", func() {}, func(n *clusterNode) (int, []byte) { return c.tokenStatus(n, clusterService, secret) }, func() {
			var s struct {
				ClientSecret string `json:"client_secret"`
			}
			c.manage(c.nodes[0], "POST", "/api/v1/clients/"+clusterService+"/secrets", map[string]any{"expire_others_in": 0}, &s)
			secret = s.ClientSecret
		}},
		{"API key disabled", newKey, func(n *clusterNode) (int, []byte) { return c.exchangeStatus(n, key) }, func() {
			c.manage(c.nodes[0], "PATCH", "/api/v1/apikeys/"+keyID, map[string]any{"disabled": true}, nil)
		}},
		// A permission change: the key loses read (it is granted write instead), and asking for read is refused.
		{"API key re-scoped", newKey, func(n *clusterNode) (int, []byte) { return c.exchangeStatus(n, key) }, func() {
			c.manage(c.nodes[0], "PATCH", "/api/v1/apikeys/"+keyID, map[string]any{
				"grants": []map[string]any{{"audience": clusterAudience, "scopes": []string{"write"}}}}, nil)
		}},
		{"client disabled", func() {}, func(n *clusterNode) (int, []byte) { return c.tokenStatus(n, clusterService, secret) }, func() {
			c.manage(c.nodes[0], "PATCH", "/api/v1/clients/"+clusterService, map[string]any{"disabled": true}, nil)
		}},
	}
	lags := map[string][]time.Duration{}
	var all []time.Duration
	for trial := range invalidationTrials {
		k := kinds[trial%len(kinds)]
		k.prepare()
		check := k.accepts // bound to the credential before the change
		oldKey, oldSecret := key, secret
		for _, n := range c.nodes[1:] {
			if status, b := check(n); status != http.StatusOK {
				t.Fatalf("trial %d (%s): %s refuses the credential before the change: %d %s", trial, k.name, n.url, status, b)
			}
		}
		start := time.Now()
		k.change()
		// The old credential, as the other instances must now refuse it.
		old := func(n *clusterNode) (int, []byte) {
			if strings.HasPrefix(k.name, "client") {
				return c.tokenStatus(n, clusterService, oldSecret)
			}
			return c.exchangeStatus(n, oldKey)
		}
		var wg sync.WaitGroup
		lag := make([]time.Duration, len(c.nodes)-1)
		for i, n := range c.nodes[1:] {
			wg.Add(1)
			go func() {
				defer wg.Done()
				lag[i] = c.waitRefused(n, old, start, 10*invalidationBound)
			}()
		}
		wg.Wait()
		for i, l := range lag {
			if l < 0 {
				t.Fatalf("trial %d (%s): %s still accepts the old credential %s after the change", trial, k.name, c.nodes[i+1].url, 10*invalidationBound)
			}
			if l > invalidationBound {
				t.Errorf("trial %d (%s): %s refused the old credential only after %s, past the bound of %s", trial, k.name, c.nodes[i+1].url, l, invalidationBound)
			}
		}
		if k.name == "client disabled" { // enabled again, for the next trials of the client
			c.manage(c.nodes[0], "PATCH", "/api/v1/clients/"+clusterService, map[string]any{"disabled": false}, nil)
		}
		lags[k.name] = append(lags[k.name], lag...)
		all = append(all, lag...)
	}
	for _, k := range kinds {
		t.Logf("invalidation, %-22s %s", k.name+":", summarize(lags[k.name]))
	}
	t.Logf("invalidation, all (%d trials × 2 instances): %s", invalidationTrials, summarize(all))
}

// waitRefused presents a credential to node n until it is refused (any 4xx), and returns how long after start
// that was; -1 if it is still accepted after limit. A 5xx or a transport error fails the test.
func (c *testCluster) waitRefused(n *clusterNode, check func(*clusterNode) (int, []byte), start time.Time, limit time.Duration) time.Duration {
	for time.Since(start) < limit {
		status, b := check(n)
		at := time.Since(start)
		switch {
		case status >= 400 && status < 500:
			return at
		case status != http.StatusOK:
			c.t.Errorf("%s answered %d: %s", n.url, status, b)
			return at
		}
	}
	return -1
}

// summarize gives p50, p99 and the maximum of ds.
func summarize(ds []time.Duration) string {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s) == 0 {
		return "no samples"
	}
	q := func(p float64) time.Duration { return s[min(len(s)-1, int(p*float64(len(s))))] }
	ms := func(d time.Duration) string { return strconv.FormatFloat(float64(d)/1e6, 'f', 1, 64) + " ms" }
	return fmt.Sprintf("n=%d p50 %s, p99 %s, max %s", len(s), ms(q(0.50)), ms(q(0.99)), ms(s[len(s)-1]))
}

// checkOneKeyPerAlg checks that the instances, started at once on an empty database, made one current signing key
// per algorithm between them, and that every instance serves the same JWKS.
func (c *testCluster) checkOneKeyPerAlg() {
	c.t.Helper()
	var keys struct {
		Items []struct {
			KID   string `json:"kid"`
			Alg   string `json:"alg"`
			State string `json:"state"`
		} `json:"items"`
	}
	c.manage(c.nodes[0], "GET", "/api/v1/signing-keys", nil, &keys)
	current := map[string]int{}
	for _, k := range keys.Items {
		if k.State == string(auth.KeyCurrent) {
			current[k.Alg]++
		}
	}
	if current["RS256"] != 1 || current["ES256"] != 1 || len(keys.Items) != 2 {
		c.t.Errorf("after three instances started at once: keys %+v; want one current RS256 and one current ES256", keys.Items)
	}
	var first []byte
	for _, n := range c.nodes {
		status, b := c.do(n, "GET", "/.well-known/jwks.json", "", "", nil)
		if status != http.StatusOK {
			c.t.Fatalf("JWKS of %s: %d", n.url, status)
		}
		if first == nil {
			first = b
		} else if !bytes.Equal(first, b) {
			c.t.Errorf("%s serves a different JWKS:\n%s\nthan the first instance:\n%s", n.url, b, first)
		}
	}
}

// TestClusterRateLimit loads three instances sharing limits through Redis with token requests of one client
// limited to clusterRateCount per clusterRatePer, round robin, and checks that together they allowed what one
// instance would (GCRA: the burst plus one per emission interval elapsed), within 10%.
func TestClusterRateLimit(t *testing.T) {
	c := startCluster(t, clusterOptions{nodes: 3, redis: true})
	for _, n := range c.nodes {
		if status, b := c.do(n, "GET", "/readyz", "", "", nil); status != http.StatusOK || !bytes.Contains(b, []byte(`"rate_limits":"shared (Redis)"`)) {
			t.Fatalf("readyz of %s: %d %s; want limits shared through Redis", n.url, status, b)
		}
	}
	const workers, duration = 6, 3 * time.Second
	var allowed, limited atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), duration)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; ctx.Err() == nil; i++ {
				status, b := c.tokenStatus(c.nodes[i%len(c.nodes)], clusterLimited, clusterSecret)
				switch status {
				case http.StatusOK:
					allowed.Add(1)
				case http.StatusTooManyRequests:
					limited.Add(1)
				default:
					if ctx.Err() == nil {
						t.Errorf("token request: %d %s", status, b)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	interval := clusterRatePer / clusterRateCount
	want := float64(clusterRateCount) + float64(elapsed)/float64(interval)
	got := float64(allowed.Load())
	t.Logf("shared rate limit: %d allowed, %d refused in %s by 3 instances; one instance's limit allows %.0f (%.1f%%)",
		allowed.Load(), limited.Load(), elapsed.Round(time.Millisecond), want, 100*got/want)
	if limited.Load() == 0 {
		t.Fatal("no request was limited: the load did not reach the limit")
	}
	if got > 1.1*want || got < 0.9*want {
		t.Errorf("three instances allowed %.0f tokens; the shared limit allows %.0f (±10%%)", got, want)
	}
}

// TestClusterRevocation: a token revoked through one instance, and then a signing key revoked through it, are
// refused by the other instances at once — announced over LISTEN/NOTIFY, not left to the 5 s revocation poll or
// the 30 s key reload. It fails past the same 1 s bound.
func TestClusterRevocation(t *testing.T) {
	c := startCluster(t, clusterOptions{nodes: 3, extra: []string{"--issuer", "https://gatehouse.test/"}})
	admin := basic(clusterAdmin, clusterSecret)
	form := func(kv ...string) []byte {
		v := url.Values{}
		for i := 0; i < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return []byte(v.Encode())
	}
	active := func(n *clusterNode, tok string) bool {
		status, b := c.do(n, "POST", "/oauth/introspect", admin, "application/x-www-form-urlencoded", form("token", tok))
		var r struct {
			Active bool `json:"active"`
		}
		if status != http.StatusOK || json.Unmarshal(b, &r) != nil {
			t.Fatalf("introspect on %s: %d %s", n.url, status, b)
		}
		return r.Active
	}
	// waitGone polls every other instance until gone reports true, and fails past the bound.
	waitGone := func(what string, start time.Time, gone func(*clusterNode) bool) {
		t.Helper()
		for _, n := range c.nodes[1:] {
			for !gone(n) {
				if time.Since(start) > invalidationBound {
					t.Fatalf("%s: %s still accepts it %s after the change", what, n.url, invalidationBound)
				}
			}
			t.Logf("%s: refused by %s %s after the change was requested", what, n.url, time.Since(start).Round(time.Microsecond))
		}
	}

	tok := c.token(c.nodes[1], clusterService, clusterSecret, clusterAudience, "")
	for _, n := range c.nodes {
		if !active(n, tok) {
			t.Fatalf("%s: a fresh token is inactive", n.url)
		}
	}
	start := time.Now()
	if status, b := c.do(c.nodes[0], "POST", "/oauth/revoke", admin, "application/x-www-form-urlencoded", form("token", tok)); status != http.StatusOK {
		t.Fatalf("revoke: %d %s", status, b)
	}
	waitGone("token revoked", start, func(n *clusterNode) bool { return !active(n, tok) })

	// The ES256 key, which signs the API's tokens: revoked, it leaves every instance's JWKS and its tokens stop.
	tok = c.token(c.nodes[1], clusterService, clusterSecret, clusterAudience, "")
	var keys struct {
		Items []struct {
			KID, Alg, State string
		} `json:"items"`
	}
	c.manage(c.nodes[0], "GET", "/api/v1/signing-keys", nil, &keys)
	var kid string
	for _, k := range keys.Items {
		if k.Alg == "ES256" && k.State == string(auth.KeyCurrent) {
			kid = k.KID
		}
	}
	if kid == "" {
		t.Fatalf("no current ES256 key in %+v", keys.Items)
	}
	start = time.Now()
	c.manage(c.nodes[0], "POST", "/api/v1/signing-keys/"+kid+"/revoke", map[string]any{}, nil)
	waitGone("signing key revoked", start, func(n *clusterNode) bool {
		_, jwks := c.do(n, "GET", "/.well-known/jwks.json", "", "", nil)
		return !bytes.Contains(jwks, []byte(kid)) && !active(n, tok)
	})
}
