package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/clustertest"
	"github.com/gatehouse/gatehouse/internal/rootkey"
)

// The fault tests run load against real instances while PostgreSQL, Redis or an instance fails, and check what
// the callers saw: no 5xx but 503, no request held past the request deadline, no acknowledged write lost, no
// write half made.

// faultIssuer is the issuer of every instance of the fault tests' clusters: with one issuer, a token from one
// instance is good at every other, as it is in a real deployment, and the management token outlives the
// instance that issued it.
var faultIssuer = []string{"--issuer", "https://gatehouse.test/"}

// hangBound is the longest any request may take while a backend fails: the server's 10s request deadline
// (internal/server requestTimeout) plus slack.
const hangBound = 12 * time.Second

// reply is one HTTP exchange as the fault tests record it.
type reply struct {
	status int // 0: a transport error, described in body
	header http.Header
	body   []byte
	took   time.Duration
	at     time.Time // when the answer (or the error) came
}

func (r reply) String() string {
	b := bytes.TrimSpace(r.body)
	if len(b) > 300 {
		b = append(b[:300:300], "…"...)
	}
	return fmt.Sprintf("%d %s", r.status, b)
}

// send sends a request to node n and records the answer. Unlike do, it may be called from any goroutine.
func (c *testCluster) send(n *clusterNode, method, path, authz, contentType string, body []byte) reply {
	start := time.Now()
	req, err := http.NewRequest(method, n.url+path, bytes.NewReader(body))
	if err != nil {
		return reply{body: []byte(err.Error()), at: time.Now()}
	}
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.client.Do(req)
	if err != nil {
		return reply{body: []byte(err.Error()), took: time.Since(start), at: time.Now()}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return reply{body: []byte("reading the body: " + err.Error()), took: time.Since(start), at: time.Now()}
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: b, took: time.Since(start), at: time.Now()}
}

// sendManage calls the management API on node n with the cluster's management token.
func (c *testCluster) sendManage(n *clusterNode, method, path string, in any) reply {
	var body []byte
	if in != nil {
		body, _ = json.Marshal(in)
	}
	return c.send(n, method, path, "Bearer "+c.mgmt, "application/json", body)
}

// tokenReply asks node n for a token for clusterAudience as client id.
func (c *testCluster) tokenReply(n *clusterNode, id, secret string) reply {
	form := url.Values{"grant_type": {"client_credentials"}, "audience": {clusterAudience}}
	return c.send(n, "POST", "/oauth/token", basic(id, secret), "application/x-www-form-urlencoded", []byte(form.Encode()))
}

// exchangeReply exchanges an API key for a token for clusterAudience on node n.
func (c *testCluster) exchangeReply(n *clusterNode, key string) reply {
	form := url.Values{"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"}, "subject_token": {key},
		"subject_token_type": {"urn:gatehouse:params:oauth:token-type:api-key"}, "audience": {clusterAudience}}
	return c.send(n, "POST", "/oauth/token", "", "application/x-www-form-urlencoded", []byte(form.Encode()))
}

// checkProblem503 returns why a management API 503 is not what a caller can act on: problem JSON saying 503,
// with Retry-After.
func checkProblem503(r reply) error {
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		return fmt.Errorf("Content-Type %q, want application/problem+json", ct)
	}
	if r.header.Get("Retry-After") == "" {
		return fmt.Errorf("no Retry-After")
	}
	var p struct {
		Status int    `json:"status"`
		Title  string `json:"title"`
	}
	if err := json.Unmarshal(r.body, &p); err != nil || p.Status != http.StatusServiceUnavailable || p.Title == "" {
		return fmt.Errorf("not a problem object with status 503")
	}
	return nil
}

// unavailable reports whether r is the management API's answer to a request that failed because the database
// could not be reached: a 503 saying so. Any other 503 is an error the store did not recognize as an outage
// (auth.ErrUnavailable), and stale-if-error, which serves cached clients and keys only on that error, would not
// have served a cached credential on it either.
func unavailable(r reply) bool {
	return r.status == http.StatusServiceUnavailable && bytes.Contains(r.body, []byte(`"the database cannot be reached right now; retry shortly"`))
}

// faultLog collects what the load of a fault test saw, from any goroutine: answers by kind and status, the
// slowest answer, and the problems, which the test reports at its end.
type faultLog struct {
	start time.Time

	mu       sync.Mutex
	counts   map[string]map[int]int // kind → status → answers
	maxTook  time.Duration
	maxWhat  string
	killed   map[int]time.Time // node → when it was killed: transport errors from it after that are expected
	problems []string
	more     int // problems beyond the first 30, not kept
}

func newFaultLog() *faultLog {
	return &faultLog{start: time.Now(), counts: map[string]map[int]int{}, killed: map[int]time.Time{}}
}

// rel is t as an offset from the start of the load, for messages.
func (l *faultLog) rel(t time.Time) string {
	return fmt.Sprintf("+%.2fs", t.Sub(l.start).Seconds())
}

// note records the answer r to a request of kind what sent to node; manage says it went to the management API.
// Whatever the test, it is a problem if r is a 5xx other than 503, a management 503 without problem JSON and
// Retry-After, slower than hangBound, or a transport error from a node that was not killed.
func (l *faultLog) note(what string, node int, manage bool, r reply) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.counts[what] == nil {
		l.counts[what] = map[int]int{}
	}
	l.counts[what][r.status]++
	if r.took > l.maxTook {
		l.maxTook, l.maxWhat = r.took, fmt.Sprintf("%s on node %d answered at %s: %s", what, node, l.rel(r.at), r)
	}
	if r.took > hangBound {
		l.problemLocked("%s on node %d took %s (> %s), answered at %s: %s", what, node, r.took.Round(time.Millisecond), hangBound, l.rel(r.at), r)
	}
	killed, ok := l.killed[node]
	switch {
	case r.status == 0 && !(ok && r.at.After(killed)):
		l.problemLocked("%s on node %d, a live instance: transport error at %s: %s", what, node, l.rel(r.at), r.body)
	case r.status >= 500 && r.status != http.StatusServiceUnavailable:
		l.problemLocked("%s on node %d at %s: %s; want no 5xx other than 503", what, node, l.rel(r.at), r)
	case r.status == http.StatusServiceUnavailable && manage:
		if err := checkProblem503(r); err != nil {
			l.problemLocked("%s on node %d at %s: a management 503 with %v: %s", what, node, l.rel(r.at), err, r)
		}
	}
}

// kill records that node is about to be killed.
func (l *faultLog) kill(node int) {
	l.mu.Lock()
	l.killed[node] = time.Now()
	l.mu.Unlock()
}

func (l *faultLog) problem(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.problemLocked(format, args...)
}

func (l *faultLog) problemLocked(format string, args ...any) {
	if len(l.problems) == 30 {
		l.more++
		return
	}
	l.problems = append(l.problems, fmt.Sprintf(format, args...))
}

// report fails t with every problem, and logs the answers by kind and the slowest one. Call it once the load has
// ended.
func (l *faultLog) report(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, what := range slices.Sorted(maps.Keys(l.counts)) {
		var parts []string
		for _, status := range slices.Sorted(maps.Keys(l.counts[what])) {
			parts = append(parts, fmt.Sprintf("%d×%d", l.counts[what][status], status))
		}
		t.Logf("answers, %-14s %s", what+":", strings.Join(parts, ", "))
	}
	t.Logf("slowest answer: %s (%s)", l.maxTook.Round(time.Millisecond), l.maxWhat)
	for _, p := range l.problems {
		t.Error(p)
	}
	if l.more > 0 {
		t.Errorf("and %d more problems", l.more)
	}
}

// credCheck is a request a credential load makes, expecting 200.
type credCheck struct {
	what string
	do   func(n *clusterNode) reply
}

// credentialLoad starts workers that, until ctx ends, make checks in turn, round robin over the nodes, and note
// every answer: anything but 200 is a problem.
func (c *testCluster) credentialLoad(ctx context.Context, wg *sync.WaitGroup, l *faultLog, workers int, checks ...credCheck) {
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; ctx.Err() == nil; i++ {
				node := i % len(c.nodes)
				check := checks[(i/len(c.nodes))%len(checks)]
				r := check.do(c.nodes[node])
				l.note(check.what, node, false, r)
				if r.status != http.StatusOK && r.status != 0 {
					l.problem("%s on node %d at %s: %s; want 200 throughout", check.what, node, l.rel(r.at), r)
				}
			}
		}()
	}
}

// serviceChecks are the credential checks of the cached service client and API key key.
func (c *testCluster) serviceChecks(key string) []credCheck {
	return []credCheck{
		{"token", func(n *clusterNode) reply { return c.tokenReply(n, clusterService, clusterSecret) }},
		{"key exchange", func(n *clusterNode) reply { return c.exchangeReply(n, key) }},
	}
}

// warm makes each check once on every node, so that every node has the credentials cached, and fails the test
// unless each answers 200.
func (c *testCluster) warm(checks []credCheck) {
	c.t.Helper()
	for i, n := range c.nodes {
		for _, check := range checks {
			if r := check.do(n); r.status != http.StatusOK {
				c.t.Fatalf("warming up, %s on node %d: %s", check.what, i, r)
			}
		}
	}
}

// newAPIKey creates an API key for clusterAudience's read scope through node n and returns the key.
func (c *testCluster) newAPIKey(n *clusterNode, name string) string {
	c.t.Helper()
	var k struct {
		Key string `json:"key"`
	}
	c.manage(n, "POST", "/api/v1/apikeys", map[string]any{"name": name,
		"grants": []map[string]any{{"audience": clusterAudience, "scopes": []string{"read"}}}}, &k)
	return k.Key
}

// The resources the write loads create: what each create sets, which the checks read back.
const (
	faultDescription = "written under fault"
	faultRateCount   = 7
	faultRatePer     = 60 // seconds
)

// write is one create of a write load and its answer.
type write struct {
	kind   string // "client" or "key"
	name   string // unique; a client's client_id
	node   int
	r      reply
	id     string // the key's ID, chosen by the server and known when acknowledged; a client's is its name
	secret string // the client secret or the API key, when acknowledged
}

func (w write) acked() bool { return w.r.status == http.StatusCreated }

// writeLog is the writes of a test's write loads, safe for concurrent use.
type writeLog struct {
	mu   sync.Mutex
	list []write
}

func (wl *writeLog) add(w write) {
	wl.mu.Lock()
	wl.list = append(wl.list, w)
	wl.mu.Unlock()
}

func (wl *writeLog) all() []write {
	wl.mu.Lock()
	defer wl.mu.Unlock()
	return slices.Clone(wl.list)
}

// firstAck returns when the first write through node acknowledged after t was answered; false if none is yet.
func (wl *writeLog) firstAck(node int, t time.Time) (time.Time, bool) {
	wl.mu.Lock()
	defer wl.mu.Unlock()
	for _, w := range wl.list {
		if w.node == node && w.acked() && w.r.at.After(t) {
			return w.r.at, true
		}
	}
	return time.Time{}, false
}

// writeLoad starts a goroutine that, until ctx ends or node fails to answer, creates resources of kind ("client"
// or "key") through the management API of node, one after another, named prefix-1, prefix-2, …, and records each
// answer in wl and l. A 201 that does not show what the create set is a problem; other failures are judged by the
// test.
func (c *testCluster) writeLoad(ctx context.Context, wg *sync.WaitGroup, l *faultLog, wl *writeLog, kind string, node int, prefix string) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 1; ctx.Err() == nil; i++ {
			w := c.create(kind, node, fmt.Sprintf("%s-%d", prefix, i))
			l.note("create "+kind, node, true, w.r)
			if w.acked() && w.secret == "" {
				l.problem("create %s %s on node %d at %s: 201 without what the create set: %s", kind, w.name, node, l.rel(w.r.at), w.r)
			}
			wl.add(w)
			if w.r.status == 0 {
				return // a dead instance (or a problem already noted): the write in flight was the one to learn from
			}
			if !w.acked() {
				// Not a verdict: a dead database refuses at once, and thousands of refusals add nothing.
				time.Sleep(10 * time.Millisecond)
			}
		}
	}()
}

// create creates a client or an API key named name through node, and returns the write; its secret is set only
// if the answer is a 201 showing everything the create set.
func (c *testCluster) create(kind string, node int, name string) write {
	w := write{kind: kind, name: name, node: node, id: name}
	n := c.nodes[node]
	switch kind {
	case "client":
		w.r = c.sendManage(n, "POST", "/api/v1/clients", map[string]any{"client_id": name, "name": "Fault " + name,
			"description": faultDescription, "rate_limit": map[string]any{"count": faultRateCount, "per": faultRatePer}})
		var got struct {
			faultClient
			ClientSecret string `json:"client_secret"`
		}
		if w.acked() && json.Unmarshal(w.r.body, &got) == nil && got.complete(name) == nil &&
			got.Secrets[0].Hint == auth.SecretHint(got.ClientSecret) {
			w.secret = got.ClientSecret
		}
	case "key":
		w.r = c.sendManage(n, "POST", "/api/v1/apikeys", map[string]any{"name": name,
			"grants":   []map[string]any{{"audience": clusterAudience, "scopes": []string{"read"}}},
			"metadata": map[string]string{"fault": name}})
		var got struct {
			faultKey
			Key string `json:"key"`
		}
		if w.acked() && json.Unmarshal(w.r.body, &got) == nil && got.complete(name) == nil && got.Key != "" {
			w.id, w.secret = got.ID, got.Key
		}
	default:
		panic("create: unknown kind " + kind)
	}
	return w
}

// faultClient is a client as the management API shows it, with what the fault tests check.
type faultClient struct {
	ClientID    string `json:"client_id"`
	Name        string `json:"name"`
	Description string `json:"description"`
	RateLimit   *struct {
		Count int   `json:"count"`
		Per   int64 `json:"per"`
	} `json:"rate_limit"`
	Secrets []struct {
		Hint string `json:"hint"`
	} `json:"secrets"`
}

// complete returns what is missing from a client that create made as id.
func (got *faultClient) complete(id string) error {
	switch {
	case got.ClientID != id || got.Name != "Fault "+id || got.Description != faultDescription:
		return fmt.Errorf("client_id %q, name %q, description %q; want %q, %q, %q", got.ClientID, got.Name, got.Description,
			id, "Fault "+id, faultDescription)
	case got.RateLimit == nil || got.RateLimit.Count != faultRateCount || got.RateLimit.Per != faultRatePer:
		return fmt.Errorf("rate_limit %+v; want %d per %ds", got.RateLimit, faultRateCount, faultRatePer)
	case len(got.Secrets) != 1:
		return fmt.Errorf("%d secrets; want 1", len(got.Secrets))
	}
	return nil
}

// faultKey is an API key as the management API shows it, with what the fault tests check.
type faultKey struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Grants []struct {
		Audience string   `json:"audience"`
		Scopes   []string `json:"scopes"`
	} `json:"grants"`
	Metadata map[string]string `json:"metadata"`
}

// complete returns what is missing from a key that create made as name.
func (got *faultKey) complete(name string) error {
	switch {
	case got.ID == "" || got.Name != name:
		return fmt.Errorf("id %q, name %q; want an id and the name %q", got.ID, got.Name, name)
	case len(got.Grants) != 1 || got.Grants[0].Audience != clusterAudience || !slices.Equal(got.Grants[0].Scopes, []string{"read"}):
		return fmt.Errorf("grants %+v; want read on %s", got.Grants, clusterAudience)
	case got.Metadata["fault"] != name:
		return fmt.Errorf("metadata %v; want fault: %s", got.Metadata, name)
	}
	return nil
}

// listAll reads every page of a management list through node n.
func listAll[T any](c *testCluster, n *clusterNode, path string) []T {
	c.t.Helper()
	var all []T
	cursor := ""
	for {
		var page struct {
			Items      []T    `json:"items"`
			NextCursor string `json:"next_cursor"`
		}
		c.manage(n, "GET", path+"?limit=500"+cursor, nil, &page)
		all = append(all, page.Items...)
		if page.NextCursor == "" {
			return all
		}
		cursor = "&cursor=" + page.NextCursor
	}
}

// writeSummary counts writes: acknowledged, and failed by status.
type writeSummary struct {
	acked     int
	failed    map[int]int // status → writes
	committed int         // failed writes that were made nonetheless
	sample    map[int]string
}

func (s writeSummary) String() string {
	var parts []string
	for _, status := range slices.Sorted(maps.Keys(s.failed)) {
		parts = append(parts, fmt.Sprintf("%d×%d (e.g. %s)", s.failed[status], status, s.sample[status]))
	}
	if len(parts) == 0 {
		parts = []string{"none"}
	}
	return fmt.Sprintf("%d acknowledged; failed: %s; of the failed, %d made nonetheless", s.acked, strings.Join(parts, ", "), s.committed)
}

// checkWrites reads every client and key back through node n and checks that each acknowledged write is there
// with everything its create set, and works — the client's secret authenticates it, the key exchanges for a
// token — and that each failed write is either absent or complete. No write may be half made.
func (c *testCluster) checkWrites(n *clusterNode, writes []write) writeSummary {
	c.t.Helper()
	clients := map[string]faultClient{}
	for _, cl := range listAll[faultClient](c, n, "/api/v1/clients") {
		clients[cl.ClientID] = cl
	}
	keys := map[string]faultKey{}
	for _, k := range listAll[faultKey](c, n, "/api/v1/apikeys") {
		keys[k.Name] = k
	}
	s := writeSummary{failed: map[int]int{}, sample: map[int]string{}}
	for _, w := range writes {
		if w.acked() {
			s.acked++
		} else {
			s.failed[w.r.status]++
			if s.sample[w.r.status] == "" {
				s.sample[w.r.status] = w.r.String()
			}
		}
		var (
			present bool
			err     error
		)
		switch w.kind {
		case "client":
			var got faultClient
			if got, present = clients[w.name]; present {
				err = got.complete(w.name)
				if err == nil && w.acked() && got.Secrets[0].Hint != auth.SecretHint(w.secret) {
					err = fmt.Errorf("secret hint %q; the create answered a secret ending %q", got.Secrets[0].Hint, auth.SecretHint(w.secret))
				}
			}
		case "key":
			var got faultKey
			if got, present = keys[w.name]; present {
				err = got.complete(w.name)
				if err == nil && w.acked() && got.ID != w.id {
					err = fmt.Errorf("id %q; the create answered %q", got.ID, w.id)
				}
			}
		}
		switch {
		case w.acked() && !present:
			c.t.Errorf("%s %s, acknowledged by node %d (201 at %s), is lost: %s does not list it", w.kind, w.name, w.node,
				w.r.at.Format("15:04:05.000"), n.url)
		case present && err != nil:
			c.t.Errorf("%s %s (create answered %d by node %d) is half made: %v", w.kind, w.name, w.r.status, w.node, err)
		case !w.acked() && present:
			s.committed++
			c.t.Logf("%s %s was made although node %d answered its create %s", w.kind, w.name, w.node, w.r)
		}
		if !w.acked() || !present || err != nil {
			continue
		}
		// It works: the stored secret hash is the one of the secret answered.
		switch w.kind {
		case "client":
			// The client has no grant: a right secret gets invalid_target, a wrong one invalid_client.
			if r := c.tokenReply(n, w.name, w.secret); r.status != http.StatusBadRequest || !bytes.Contains(r.body, []byte(`"invalid_target"`)) {
				c.t.Errorf("client %s, acknowledged: its secret, presented to %s: %s; want 400 invalid_target (authenticated, no grant)", w.name, n.url, r)
			}
		case "key":
			if r := c.exchangeReply(n, w.secret); r.status != http.StatusOK {
				c.t.Errorf("API key %s (%s), acknowledged: exchanged at %s: %s; want 200", w.name, w.id, n.url, r)
			}
		}
	}
	return s
}

// readySample is one answer of /readyz.
type readySample struct {
	at     time.Time
	status int
	checks map[string]string
}

// readyLog is the answers of a /readyz poller, safe for concurrent use.
type readyLog struct {
	mu      sync.Mutex
	samples []readySample
}

// find returns the first sample answered from from on for which f holds.
func (rl *readyLog) find(from time.Time, f func(readySample) bool) (readySample, bool) {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	for _, s := range rl.samples {
		if !s.at.Before(from) && f(s) {
			return s, true
		}
	}
	return readySample{}, false
}

// last returns the latest sample.
func (rl *readyLog) last() readySample {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	if len(rl.samples) == 0 {
		return readySample{}
	}
	return rl.samples[len(rl.samples)-1]
}

// pollReady starts a goroutine that asks node for /readyz every 50ms until ctx ends. Besides note's checks, an
// answer other than 200 or 503, or one without the store line, is a problem.
func (c *testCluster) pollReady(ctx context.Context, wg *sync.WaitGroup, l *faultLog, node int) *readyLog {
	rl := &readyLog{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for ctx.Err() == nil {
			r := c.send(c.nodes[node], "GET", "/readyz", "", "", nil)
			l.note("readyz", node, false, r)
			s := readySample{at: r.at, status: r.status}
			if json.Unmarshal(r.body, &s.checks) != nil || s.checks["store"] == "" ||
				(r.status != http.StatusOK && r.status != http.StatusServiceUnavailable) {
				l.problem("readyz of node %d at %s: %s", node, l.rel(r.at), r)
			}
			rl.mu.Lock()
			rl.samples = append(rl.samples, s)
			rl.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	return rl
}

// listening is the changes line of /readyz of an instance that hears the others' changes.
const listening = "listening (PostgreSQL LISTEN/NOTIFY)"

// waitListening polls /readyz of every node until each hears the others' changes again, and fails the test if one
// does not within limit.
func (c *testCluster) waitListening(since time.Time, limit time.Duration) {
	c.t.Helper()
	for i, n := range c.nodes {
		var last reply
		if _, ok := pollUntil(limit, func() bool {
			last = c.send(n, "GET", "/readyz", "", "", nil)
			var checks map[string]string
			json.Unmarshal(last.body, &checks)
			return checks["changes"] == listening
		}); !ok {
			c.t.Errorf("node %d does not hear the other instances' changes %s after PostgreSQL was back: readyz %s",
				i, time.Since(since).Round(time.Millisecond), last)
		}
	}
}

// pollUntil polls cond every 20ms until it holds, and returns how long that took; false if it still does not after
// limit.
func pollUntil(limit time.Duration, cond func() bool) (time.Duration, bool) {
	start := time.Now()
	for {
		if cond() {
			return time.Since(start), true
		}
		if time.Since(start) > limit {
			return time.Since(start), false
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startLoad returns the context of a test's load, a WaitGroup for its goroutines, and a function that ends it and
// waits for them. The end is also a cleanup, run before the cluster's processes are stopped, so that no goroutine
// outlives a test that fails early.
func startLoad(t *testing.T) (context.Context, *sync.WaitGroup, func()) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	return ctx, &wg, stop
}

// TestFaultPostgresOutage stops PostgreSQL for about four seconds under a load of token requests and key
// exchanges for credentials both instances have cached, client creations through the management API of the first
// and /readyz polls of the second, then starts it again. While it is down, cached credentials keep working
// (stale-if-error), writes fail with a 503 saying the database cannot be reached (problem JSON, Retry-After),
// /readyz says 503, and nothing hangs; once it is back, writes work again and the instances hear each other's
// changes again, without restarting Gatehouse, and every acknowledged client exists, complete and working, and no
// failed one exists half made.
func TestFaultPostgresOutage(t *testing.T) {
	c := startCluster(t, clusterOptions{nodes: 2, extra: faultIssuer})
	key := c.newAPIKey(c.nodes[0], "fault-warm")
	checks := c.serviceChecks(key)
	c.warm(checks)

	l := newFaultLog()
	var wl writeLog
	ctx, wg, stopLoad := startLoad(t)
	c.credentialLoad(ctx, wg, l, 4, checks...)
	c.writeLoad(ctx, wg, l, &wl, "client", 0, "outage")
	ready := c.pollReady(ctx, wg, l, 1)

	time.Sleep(1500 * time.Millisecond) // load before the outage
	if _, ok := wl.firstAck(0, l.start); !ok {
		t.Errorf("no write was acknowledged in the 1.5s before the outage")
	}
	stopAt := time.Now()
	c.pg.Stop(t)
	stopped := time.Now()
	time.Sleep(4 * time.Second) // the outage
	startAt := time.Now()
	c.pg.Start(t)
	started := time.Now()
	t.Logf("PostgreSQL stopped at %s (took %s), started again at %s (took %s)", l.rel(stopAt), stopped.Sub(stopAt).Round(time.Millisecond),
		l.rel(startAt), started.Sub(startAt).Round(time.Millisecond))

	// Writes work again, without restarting Gatehouse.
	_, recovered := pollUntil(30*time.Second, func() bool { _, ok := wl.firstAck(0, started); return ok })
	if recovered {
		at, _ := wl.firstAck(0, started)
		t.Logf("first write acknowledged %s after PostgreSQL accepted connections again (%s after it was stopped)",
			at.Sub(started).Round(time.Millisecond), at.Sub(stopAt).Round(time.Millisecond))
		time.Sleep(2 * time.Second) // load after the recovery
	} else {
		t.Errorf("no write acknowledged within 30s after PostgreSQL was back")
	}
	// /readyz said 503 while the database was down, and says 200 again.
	if _, ok := pollUntil(10*time.Second, func() bool { return ready.last().status == http.StatusOK }); !ok {
		t.Errorf("readyz of node 1 still %d %v 10s after writes worked again", ready.last().status, ready.last().checks)
	}
	stopLoad()
	l.report(t)
	c.waitListening(started, 10*time.Second)

	if s, ok := ready.find(l.start, func(s readySample) bool { return s.status != http.StatusOK && s.at.Before(stopAt) }); ok {
		t.Errorf("readyz of node 1 answered %d %v at %s, before the outage", s.status, s.checks, l.rel(s.at))
	}
	if s, ok := ready.find(stopAt, func(s readySample) bool { return s.status == http.StatusServiceUnavailable }); !ok || s.at.After(started) {
		t.Errorf("readyz of node 1 never answered 503 while PostgreSQL was down")
	} else {
		t.Logf("readyz during the outage (from %s): %d %v", l.rel(s.at), s.status, s.checks)
	}
	if s, ok := ready.find(started, func(s readySample) bool { return s.status == http.StatusOK }); ok {
		t.Logf("readyz ready again %s after PostgreSQL was back: %v", s.at.Sub(started).Round(time.Millisecond), s.checks)
	}
	if s, ok := ready.find(started, func(s readySample) bool { return s.checks["changes"] == listening }); ok {
		t.Logf("node 1 hears changes again %s after PostgreSQL was back", s.at.Sub(started).Round(time.Millisecond))
	}

	// Every write that failed did so during the outage, with a 503 (problem JSON, checked by note) that says so.
	writes := wl.all()
	var lastFail time.Time
	for _, w := range writes {
		if w.acked() {
			continue
		}
		lastFail = w.r.at
		if !unavailable(w.r) {
			t.Errorf("create client %s at %s: %s; want 201, or 503 while the database is down", w.name, l.rel(w.r.at), w.r)
		}
		if w.r.at.Before(stopAt) {
			t.Errorf("create client %s failed at %s, before the outage: %s", w.name, l.rel(w.r.at), w.r)
		}
	}
	if !lastFail.IsZero() {
		t.Logf("last failed write answered %s after PostgreSQL was back", lastFail.Sub(started).Round(time.Millisecond))
	}
	// No write lost, none half made: read back through the other instance.
	t.Logf("writes: %s", c.checkWrites(c.nodes[1], writes))
}

// TestFaultRedisOutage stops Redis for about three seconds under a load of token requests (of a client with a rate
// limit it never reaches) and key exchanges on two instances sharing rate limits. Every request succeeds
// throughout; /readyz says the limits are per instance while Redis is down and shared again within seconds of its
// return; and then they really are shared: the limited client, loaded round robin across both instances, gets one
// instance's worth of tokens, not two.
func TestFaultRedisOutage(t *testing.T) {
	c := startCluster(t, clusterOptions{nodes: 2, redis: true, extra: faultIssuer})
	key := c.newAPIKey(c.nodes[0], "fault-warm")
	// A limiter is asked only for a client with a rate limit: without one in the load, no request would notice
	// that Redis is gone, nor that it is back. The service client gets one it never reaches.
	c.manage(c.nodes[0], "PATCH", "/api/v1/clients/"+clusterService, map[string]any{
		"rate_limit": map[string]any{"count": auth.MaxRateLimitCount, "per": 1}}, nil)
	checks := c.serviceChecks(key)
	c.warm(checks)
	shared := func(s readySample) bool { return s.checks["rate_limits"] == "shared (Redis)" }
	perInstance := func(s readySample) bool {
		return strings.HasPrefix(s.checks["rate_limits"], "per instance: Redis unreachable since ")
	}

	l := newFaultLog()
	ctx, wg, stopLoad := startLoad(t)
	c.credentialLoad(ctx, wg, l, 4, checks...)
	ready := []*readyLog{c.pollReady(ctx, wg, l, 0), c.pollReady(ctx, wg, l, 1)}

	time.Sleep(1500 * time.Millisecond) // load before the outage
	stopAt := time.Now()
	c.redis.Stop(t)
	time.Sleep(3 * time.Second) // the outage
	startAt := time.Now()
	c.redis.Start(t)
	started := time.Now()
	t.Logf("Redis stopped at %s, started again at %s (took %s)", l.rel(stopAt), l.rel(startAt), started.Sub(startAt).Round(time.Millisecond))
	took, ok := pollUntil(15*time.Second, func() bool { return shared(ready[0].last()) && shared(ready[1].last()) })
	if ok {
		t.Logf("both instances share limits again %s after Redis was back", took.Round(time.Millisecond))
	} else {
		t.Errorf("15s after Redis was back, readyz says rate_limits %q and %q; want shared (Redis)",
			ready[0].last().checks["rate_limits"], ready[1].last().checks["rate_limits"])
	}
	stopLoad()
	l.report(t)
	for i, rl := range ready {
		if s, ok := rl.find(l.start, func(s readySample) bool { return s.at.Before(stopAt) && !shared(s) }); ok {
			t.Errorf("readyz of node %d at %s, before the outage: %d %v", i, l.rel(s.at), s.status, s.checks)
		}
		if s, ok := rl.find(stopAt, func(s readySample) bool { return perInstance(s) }); !ok || s.at.After(started) {
			t.Errorf("readyz of node %d never said rate_limits per instance while Redis was down", i)
		} else {
			t.Logf("readyz of node %d, per instance %s after Redis stopped: %d %v", i, s.at.Sub(stopAt).Round(time.Millisecond), s.status, s.checks)
		}
		if s, ok := rl.find(l.start, func(s readySample) bool { return s.status != http.StatusOK }); ok {
			t.Errorf("readyz of node %d at %s: %d %v; want ready throughout (per-instance limits still limit)", i, l.rel(s.at), s.status, s.checks)
		}
	}
	if t.Failed() {
		return
	}
	c.checkSharedLimit(2 * time.Second)
}

// checkSharedLimit loads the limited client round robin across the instances for about d and checks that together
// they allowed what one instance would (GCRA: the burst plus one per emission interval elapsed), within 10%. Redis
// must have forgotten the client: started again since it was last used.
func (c *testCluster) checkSharedLimit(d time.Duration) {
	c.t.Helper()
	const workers = 4
	var allowed, limited atomic.Int64
	l := newFaultLog()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; ctx.Err() == nil; i++ {
				node := i % len(c.nodes)
				r := c.tokenReply(c.nodes[node], clusterLimited, clusterSecret)
				l.note("limited token", node, false, r)
				switch r.status {
				case http.StatusOK:
					allowed.Add(1)
				case http.StatusTooManyRequests:
					limited.Add(1)
				default:
					l.problem("limited token on node %d: %s; want 200 or 429", node, r)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	l.report(c.t)
	want := float64(clusterRateCount) + float64(elapsed)/float64(clusterRatePer/clusterRateCount)
	got := float64(allowed.Load())
	c.t.Logf("after the outage: %d allowed, %d refused in %s by %d instances; one instance's limit allows %.0f (%.1f%%)",
		allowed.Load(), limited.Load(), elapsed.Round(time.Millisecond), len(c.nodes), want, 100*got/want)
	if limited.Load() == 0 {
		c.t.Error("no request was limited: the load did not reach the limit")
	}
	if got > 1.1*want || got < 0.9*want {
		c.t.Errorf("%d instances allowed %.0f tokens; one instance's limit, shared, allows %.0f (±10%%)", len(c.nodes), got, want)
	}
}

// TestFaultKill kills an instance with SIGKILL while clients and API keys are created through it and through
// another. Every create it acknowledged is readable, complete and working through another instance, and through
// itself once started again; the other instance's creates all succeed meanwhile.
func TestFaultKill(t *testing.T) {
	c := startCluster(t, clusterOptions{nodes: 3, extra: faultIssuer})
	l := newFaultLog()
	var wl writeLog
	ctx, wg, stopLoad := startLoad(t)
	for _, w := range []struct {
		kind   string
		node   int
		prefix string
	}{{"client", 0, "kill-c0a"}, {"client", 0, "kill-c0b"}, {"key", 0, "kill-k0a"}, {"key", 0, "kill-k0b"},
		{"client", 1, "kill-c1"}, {"key", 1, "kill-k1"}} {
		c.writeLoad(ctx, wg, l, &wl, w.kind, w.node, w.prefix)
	}
	time.Sleep(1500 * time.Millisecond) // load before the kill
	l.kill(0)
	killAt := time.Now()
	c.nodes[0].proc.Kill()
	// Node 1 goes on writing after the kill.
	if _, ok := pollUntil(10*time.Second, func() bool { _, ok := wl.firstAck(1, killAt); return ok }); !ok {
		t.Errorf("node 1 acknowledged no write after node 0 was killed")
	}
	time.Sleep(500 * time.Millisecond) // load after the kill
	stopLoad()
	l.report(t)

	writes := wl.all()
	for _, w := range writes {
		switch {
		case w.acked():
		case w.node == 0 && w.r.status == 0 && w.r.at.After(killAt):
			// In flight at the kill (or sent just after it): its writer stopped there.
		default:
			t.Errorf("create %s %s on node %d at %s: %s; want 201 (or, from the killed node, no answer)", w.kind, w.name, w.node, l.rel(w.r.at), w.r)
		}
	}
	t.Logf("read back through node 1: %s", c.checkWrites(c.nodes[1], writes))

	c.restart(c.nodes[0])
	t.Logf("read back through node 0, started again: %s", c.checkWrites(c.nodes[0], writes))
}

// TestFaultPostgresCrash kills PostgreSQL with SIGKILL — every process of it at once — while clients are created
// through one instance and API keys through the other, and credentials both have cached are presented to both,
// then starts it again: crash recovery from the write-ahead log. Cached credentials keep working throughout,
// nothing hangs, writes work again without restarting Gatehouse, and every acknowledged write survives, complete.
func TestFaultPostgresCrash(t *testing.T) {
	c := startCluster(t, clusterOptions{nodes: 2, extra: faultIssuer})
	key := c.newAPIKey(c.nodes[0], "fault-warm")
	checks := c.serviceChecks(key)
	c.warm(checks)

	l := newFaultLog()
	var wl writeLog
	ctx, wg, stopLoad := startLoad(t)
	c.credentialLoad(ctx, wg, l, 2, checks...)
	c.writeLoad(ctx, wg, l, &wl, "client", 0, "crash-c0")
	c.writeLoad(ctx, wg, l, &wl, "key", 0, "crash-k0")
	c.writeLoad(ctx, wg, l, &wl, "client", 1, "crash-c1")
	c.writeLoad(ctx, wg, l, &wl, "key", 1, "crash-k1")

	time.Sleep(1500 * time.Millisecond) // load before the crash
	killAt := time.Now()
	c.pg.Kill(t)
	time.Sleep(1500 * time.Millisecond) // the outage
	startAt := time.Now()
	c.pg.Start(t) // crash recovery
	started := time.Now()
	t.Logf("PostgreSQL killed at %s, started again at %s, recovered in %s", l.rel(killAt), l.rel(startAt), started.Sub(startAt).Round(time.Millisecond))
	for node := range c.nodes {
		if _, ok := pollUntil(30*time.Second, func() bool { _, ok := wl.firstAck(node, started); return ok }); ok {
			at, _ := wl.firstAck(node, started)
			t.Logf("node %d: first write acknowledged %s after PostgreSQL was back", node, at.Sub(started).Round(time.Millisecond))
		} else {
			t.Errorf("node %d acknowledged no write within 30s after PostgreSQL was back", node)
		}
	}
	time.Sleep(time.Second) // load after the recovery
	stopLoad()
	l.report(t)
	c.waitListening(started, 10*time.Second)

	writes := wl.all()
	for _, w := range writes {
		if !w.acked() && (!unavailable(w.r) || w.r.at.Before(killAt)) {
			t.Errorf("create %s %s on node %d at %s: %s; want 201, or 503 while the database is down", w.kind, w.name, w.node, l.rel(w.r.at), w.r)
		}
	}
	t.Logf("writes: %s", c.checkWrites(c.nodes[1], writes))
}

// TestFaultKillSQLite kills the one instance of a SQLite deployment with SIGKILL while clients and API keys are
// created through it, starts it again on the same file, and checks that every acknowledged write is there,
// complete and working.
func TestFaultKillSQLite(t *testing.T) {
	c := startSQLite(t)
	l := newFaultLog()
	var wl writeLog
	ctx, wg, stopLoad := startLoad(t)
	for _, w := range []struct{ kind, prefix string }{{"client", "sqlite-ca"}, {"client", "sqlite-cb"}, {"key", "sqlite-ka"}, {"key", "sqlite-kb"}} {
		c.writeLoad(ctx, wg, l, &wl, w.kind, 0, w.prefix)
	}
	time.Sleep(1500 * time.Millisecond) // load before the kill
	l.kill(0)
	killAt := time.Now()
	c.nodes[0].proc.Kill()
	stopLoad()
	l.report(t)

	writes := wl.all()
	for _, w := range writes {
		if !w.acked() && !(w.r.status == 0 && w.r.at.After(killAt)) {
			t.Errorf("create %s %s at %s: %s; want 201 (or, once killed, no answer)", w.kind, w.name, l.rel(w.r.at), w.r)
		}
	}
	c.restart(c.nodes[0])
	t.Logf("read back after the restart: %s", c.checkWrites(c.nodes[0], writes))
}

// startSQLite starts one `gatehouse serve` on a new SQLite database holding clusterAudience and the cluster's
// administrator, declared first with gatehouse apply --db, and returns it as a cluster of one.
func startSQLite(t *testing.T) *testCluster {
	t.Helper()
	c := &testCluster{t: t, bin: clustertest.BuildGatehouse(t),
		client: &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}}
	t.Cleanup(c.client.CloseIdleConnections)
	dir := t.TempDir()
	c.dsn = "sqlite:" + filepath.Join(dir, "gatehouse.db")
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "GATEHOUSE_") })
	c.env = append(env, "GATEHOUSE_ROOT_KEY="+rootkey.Generate().String(), "CLUSTER_SECRET="+clusterSecret)

	scopes := []string{auth.ScopeReadClients, auth.ScopeWriteClients, auth.ScopeReadAPIKeys, auth.ScopeWriteAPIKeys}
	config := fmt.Sprintf(`apis:
  - identifier: %[1]s
    name: Orders
    scopes: [read, write]
clients:
  - client_id: %[2]s
    name: Administrator
    client_secret: ${CLUSTER_SECRET}
    grants:
      - audience: %[3]s
        scopes: [%[4]s]
`, clusterAudience, clusterAdmin, auth.ManagementAudience, strings.Join(scopes, ", "))
	file := filepath.Join(dir, "gatehouse.yaml")
	if err := os.WriteFile(file, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	apply := clustertest.StartProcess(t, c.bin, c.env, "apply", "-f", file, "--db", c.dsn)
	if err := apply.Wait(60 * time.Second); err != nil {
		t.Fatalf("gatehouse apply --db: %v\n%s", err, apply.LogTail(20))
	}
	addr := fmt.Sprintf("127.0.0.1:%d", clustertest.FreePort(t))
	n := &clusterNode{url: "http://" + addr, args: []string{"serve", "--addr", addr, "--db", c.dsn, "--log-level", "warn",
		"--auth-failures-per-client", "0", "--auth-failures-per-address", "0"}}
	c.nodes = []*clusterNode{n}
	n.proc = clustertest.StartProcess(t, c.bin, c.env, n.args...)
	clustertest.WaitHTTP(t, n.url+"/readyz", 90*time.Second)
	c.started = time.Now()
	c.mgmt = c.token(n, clusterAdmin, clusterSecret, auth.ManagementAudience, "")
	return c
}
