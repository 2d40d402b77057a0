// Package bench is the load test behind `gatehouse bench`: it starts `gatehouse serve` and a trivial net/http
// handler as separate processes, loads both with the same requests at each concurrency level, measures the bare
// signing rate of each algorithm in the same run, and reports the results next to those two ceilings, with the CPU
// time per request and the server's peak memory. It loads the server with token requests (client_credentials),
// API key exchanges (RFC 8693), the gateway's API key check or token introspection (RFC 7662), or any of them in one
// run (Mode). The server is one instance on SQLite by default, or several instances sharing one database, SQLite or
// PostgreSQL, that the load generator's connections are spread over (Options.Instances, Options.DB).
package bench

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/rootkey"
)

// The resources the bench declares in the server under test.
const (
	benchClientID  = "bench-client"              // gets the tokens; also introspects them, in ModeIntrospect
	benchAdminID   = "bench-admin"               // makes the API key and checks it, with management tokens
	benchSecretVar = "BENCH_CLIENT_SECRET"       // how the client secrets reach the server's config file
	tokenType      = "at+jwt"                    // the typ of Gatehouse access tokens (RFC 9068)
	benchIssuer    = "https://auth.example.com/" // the iss of every instance
)

// Mode is what the bench loads the server with. Each mode is measured against the trivial handler; token, exchange
// and introspect run once per algorithm, token and exchange each also against that algorithm's signing ceiling.
type Mode string

const (
	// ModeToken is POST /oauth/token with client_credentials, HTTP Basic and an audience.
	ModeToken Mode = "token"
	// ModeExchange is POST /oauth/token exchanging one API key (RFC 8693) for a token for an audience.
	ModeExchange Mode = "exchange"
	// ModeVerify is POST /api/v1/apikeys/verify: a gateway checking one API key for an audience and a scope, with
	// a management token.
	ModeVerify Mode = "verify"
	// ModeIntrospect is POST /oauth/introspect (RFC 7662) of one valid token of the algorithm, with HTTP Basic as
	// the bench client, which holds introspect:tokens of the management API. It signs nothing.
	ModeIntrospect Mode = "introspect"
)

// Modes lists the modes in the order a run measures them.
var Modes = []Mode{ModeToken, ModeExchange, ModeVerify, ModeIntrospect}

// signs reports whether m's requests sign a token, so that it is measured against a signing ceiling too.
func (m Mode) signs() bool { return m == ModeToken || m == ModeExchange }

// keyed reports whether any of modes needs an API key.
func keyed(modes []Mode) bool {
	return slices.Contains(modes, ModeExchange) || slices.Contains(modes, ModeVerify)
}

// Fixed parts of a run.
const (
	benchSignTime    = 2 * time.Second        // how long the signing ceiling is measured, per algorithm
	benchSampleEvery = 100 * time.Millisecond // how often the server's resident memory is read
	benchReadyWithin = 60 * time.Second       // how long a child process may take to answer
)

// benchAudience is the identifier of the bench API that signs with alg.
func benchAudience(alg auth.Algorithm) string {
	return "https://bench.example.com/" + strings.ToLower(string(alg))
}

// Options are the settings of a run. Run expects them valid: at least one algorithm and one concurrency level, none
// listed twice, modes from Modes, none twice, a positive Duration, a Warmup and Instances that are not negative, and
// a DB that is "" or a postgres:// URL.
type Options struct {
	// Binary is the gatehouse binary. Run starts it as `apply --db` (declaring the bench's resources), as `serve`
	// (the server under test, once per instance) and as `bench serve-trivial ADDR` (the trivial handler, see
	// ServeTrivial).
	Binary      string
	Modes       []Mode // what to load the server with, measured in the order of Modes; nil for ModeToken
	Algs        []auth.Algorithm
	Concurrency []int         // concurrent connections, one cell per level
	Duration    time.Duration // measured time per target in each cell
	Warmup      time.Duration // unmeasured load on each target before each cell
	Markdown    bool          // write the report as markdown (for BENCHMARKS.md) rather than as tables
	// DB is the database the server's instances share: "" for a fresh SQLite file in the run's temporary
	// directory, or the postgres:// URL of an empty PostgreSQL database, which the caller creates before Run and
	// drops after it. The report names only its kind, never the URL.
	DB string
	// Redis, when set, is the Redis URL the instances share rate limits through (serve --redis). The report only
	// says that it was set.
	Redis string
	// Instances is how many `gatehouse serve` processes share DB, started together; 0 means 1. The load generator
	// spreads its goroutines round robin over them, each sticking to one. The trivial handler stays one process.
	Instances   int
	CommandLine string    // the command line that gave these options, for the report
	Progress    io.Writer // where progress messages go; nil discards them
}

// Run runs the whole bench and writes the report to w. It returns an error only when the bench could not run, not
// when a target was missed. It stops its child processes and removes its temporary directory however it ends.
func Run(ctx context.Context, o Options, w io.Writer) error {
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if len(o.Modes) == 0 {
		o.Modes = []Mode{ModeToken}
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	dir, err := os.MkdirTemp("", "gatehouse-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	secret := auth.NewSecret()
	configFile := filepath.Join(dir, "bench.yaml")
	if err := os.WriteFile(configFile, benchConfig(o.Algs, o.Modes), 0o600); err != nil {
		return err
	}
	env := append(childEnv(os.Environ()), "GATEHOUSE_ROOT_KEY="+rootkey.Generate().String(), benchSecretVar+"="+secret)

	db := o.DB
	if db == "" {
		db = "sqlite:" + filepath.Join(dir, "bench.db")
	}
	if err := declare(ctx, o.Binary, env, configFile, db); err != nil {
		return err
	}
	// The instances start together, as a cluster's would, and race to create the signing keys.
	servers := make([]*benchChild, max(1, o.Instances))
	serverURLs := make([]string, len(servers))
	defer stopAll(servers)
	for i := range servers {
		addr, err := freeAddr()
		if err != nil {
			return err
		}
		// One issuer for every instance, as behind a load balancer, so that a token of one is good at the others.
		args := []string{"serve", "--addr", addr, "--db", db, "--issuer", benchIssuer}
		if o.Redis != "" {
			args = append(args, "--redis", o.Redis)
		}
		if servers[i], err = startChild(o.Binary, filepath.Join(dir, fmt.Sprintf("server-%d.log", i+1)), env, args...); err != nil {
			return err
		}
		serverURLs[i] = "http://" + addr
	}
	trivialAddr, err := freeAddr()
	if err != nil {
		return err
	}
	trivial, err := startChild(o.Binary, filepath.Join(dir, "trivial.log"), env, "bench", "serve-trivial", trivialAddr)
	if err != nil {
		return err
	}
	defer trivial.stop()

	// Memory is sampled from the start, so the peaks include startup.
	mems := make([]*memSampler, len(servers))
	memCtx, stopMem := context.WithCancel(ctx)
	var memWG sync.WaitGroup
	for i, s := range servers {
		mems[i] = &memSampler{pid: s.cmd.Process.Pid}
		memWG.Go(func() { mems[i].run(memCtx, benchSampleEvery) })
	}
	stopSampling := sync.OnceFunc(func() { stopMem(); memWG.Wait() })
	defer stopSampling()

	// Any child dying ends the run, with its log.
	watchDone := make(chan struct{})
	defer close(watchDone)
	children := map[string]*benchChild{"trivial handler": trivial}
	for i, s := range servers {
		children[instanceName(i, len(servers))] = s
	}
	for name, c := range children {
		go func() {
			select {
			case <-c.done:
				cancel(fmt.Errorf("the %s exited during the run (%v); its log ends:\n%s", name, c.err, c.logTail()))
			case <-watchDone:
			}
		}()
	}

	serverURL, trivialURL := serverURLs[0], "http://"+trivialAddr
	fmt.Fprintf(o.Progress, "bench: starting gatehouse serve on %s and the trivial handler on %s\n",
		strings.Join(trimScheme(serverURLs), ", "), trivialAddr)
	for i, s := range servers {
		if err := waitOK(ctx, serverURLs[i]+"/readyz", s); err != nil {
			return benchErr(ctx, fmt.Errorf("%s: %w", instanceName(i, len(servers)), err))
		}
	}
	if err := waitOK(ctx, trivialURL+"/", trivial); err != nil {
		return benchErr(ctx, fmt.Errorf("trivial handler: %w", err))
	}

	var key string
	if keyed(o.Modes) {
		if key, err = newAPIKey(ctx, serverURL, secret, o.Algs); err != nil {
			return benchErr(ctx, fmt.Errorf("make the bench's API key: %w", err))
		}
	}

	plan := newCellPlan(o, len(o.Concurrency))
	rep := &benchReport{
		Start:       time.Now(),
		Machine:     machine(),
		LoadBefore:  loadAverage(),
		Command:     o.CommandLine,
		Plan:        plan,
		Concurrency: o.Concurrency,
		Modes:       o.Modes,
		DB:          dbKind(db),
		Instances:   len(servers),
		Redis:       o.Redis != "",
	}
	srv := benchTarget{urls: serverURLs}
	for _, s := range servers {
		srv.pids = append(srv.pids, s.cmd.Process.Pid)
	}
	triv := benchTarget{urls: []string{trivialURL}, pids: []int{trivial.cmd.Process.Pid}}
	for _, mode := range Modes {
		if !slices.Contains(o.Modes, mode) {
			continue
		}
		if mode == ModeVerify {
			mgmt, err := managementToken(ctx, serverURL, secret, auth.ScopeVerifyAPIKeys) // lives an hour from now
			if err != nil {
				return benchErr(ctx, err)
			}
			req := verifyRequest(key, mgmt, benchAudience(o.Algs[0]))
			for i, u := range serverURLs {
				if err := preflightVerify(ctx, u, req); err != nil {
					return benchErr(ctx, fmt.Errorf("verify, %s: %w", instanceName(i, len(servers)), err))
				}
			}
			res, err := runCells(ctx, o, plan, srv, triv, algResult{Mode: mode}, req, nil)
			if err != nil {
				return benchErr(ctx, err)
			}
			rep.Algs = append(rep.Algs, res)
			continue
		}
		if mode == ModeIntrospect {
			for _, alg := range o.Algs {
				token, claims, err := preflight(ctx, serverURL, tokenRequest(alg, secret), alg) // lives a day
				if err != nil {
					return benchErr(ctx, fmt.Errorf("%s %s: %w", mode, alg, err))
				}
				req := introspectRequest(token, secret)
				for i, u := range serverURLs { // a token of the first instance, good at every one
					if err := preflightIntrospect(ctx, u, req); err != nil {
						return benchErr(ctx, fmt.Errorf("%s %s, %s: %w", mode, alg, instanceName(i, len(servers)), err))
					}
				}
				res, err := runCells(ctx, o, plan, srv, triv, algResult{Mode: mode, Alg: alg, ClaimsBytes: len(claims)}, req, nil)
				if err != nil {
					return benchErr(ctx, err)
				}
				rep.Algs = append(rep.Algs, res)
			}
			continue
		}
		for _, alg := range o.Algs {
			req := tokenRequest(alg, secret)
			if mode == ModeExchange {
				req = exchangeRequest(alg, key)
			}
			var claims []byte // the instances' claims differ only in the jti and the times: any one's will do
			for i, u := range serverURLs {
				if _, claims, err = preflight(ctx, u, req, alg); err != nil {
					return benchErr(ctx, fmt.Errorf("%s %s, %s: %w", mode, alg, instanceName(i, len(servers)), err))
				}
			}
			sign, err := newCeilingSigner(alg, claims)
			if err != nil {
				return benchErr(ctx, fmt.Errorf("%s signing ceiling: %w", alg, err))
			}
			res, err := runCells(ctx, o, plan, srv, triv, algResult{Mode: mode, Alg: alg, ClaimsBytes: len(claims)}, req, sign)
			if err != nil {
				return benchErr(ctx, err)
			}
			res.SignOps, res.SignMin, res.SignMax, res.SignCPU = sign.rate(), sign.min, sign.max, sign.cpuPerOp()
			rep.Algs = append(rep.Algs, res)
		}
	}
	rep.Elapsed = time.Since(rep.Start)
	rep.LoadAfter = loadAverage()
	stopSampling()
	for i, m := range mems {
		sm := serverMem{Peak: m.peak, Samples: m.samples, Err: m.err}
		if _, hwm, err := readMemStatus(m.pid); err == nil {
			sm.HWM = hwm
		}
		rep.Mem = append(rep.Mem, sm)
		lines, size, _ := countLines(servers[i].log)
		rep.LogLines, rep.LogBytes = rep.LogLines+lines, rep.LogBytes+size
	}
	if o.Markdown {
		rep.writeMarkdown(w)
	} else {
		rep.writePlain(w)
	}
	return nil
}

// runCells runs one cell of res's mode and algorithm per concurrency level, adding them to res.
func runCells(ctx context.Context, o Options, plan cellPlan, server, trivial benchTarget, res algResult, req benchRequest, sign *ceilingSigner) (algResult, error) {
	for _, c := range o.Concurrency {
		fmt.Fprintf(o.Progress, "bench: %s c=%d\n", res.title(), c)
		cell, err := runCell(ctx, plan, c, server, trivial, req, sign)
		if err != nil {
			return res, err
		}
		res.Cells = append(res.Cells, cell)
	}
	return res, nil
}

// tokenRequest is ModeToken's request: client_credentials for alg's API, with HTTP Basic.
func tokenRequest(alg auth.Algorithm, secret string) benchRequest {
	return benchRequest{
		path:  "/oauth/token",
		body:  []byte(url.Values{"grant_type": {"client_credentials"}, "audience": {benchAudience(alg)}}.Encode()),
		authz: "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(benchClientID)+":"+url.QueryEscape(secret))),
	}
}

// RFC 8693 token exchange of an API key.
const (
	grantTokenExchange = "urn:ietf:params:oauth:grant-type:token-exchange"
	tokenTypeAPIKey    = "urn:gatehouse:params:oauth:token-type:api-key"
)

// exchangeRequest is ModeExchange's request: the API key exchanged for a token for alg's API, with no client
// authentication (the key is the credential).
func exchangeRequest(alg auth.Algorithm, key string) benchRequest {
	return benchRequest{
		path: "/oauth/token",
		body: []byte(url.Values{"grant_type": {grantTokenExchange}, "subject_token": {key},
			"subject_token_type": {tokenTypeAPIKey}, "audience": {benchAudience(alg)}}.Encode()),
	}
}

// verifyRequest is ModeVerify's request: a gateway asking whether key is good for audience with scope read.
func verifyRequest(key, mgmtToken, audience string) benchRequest {
	body, _ := json.Marshal(map[string]any{"key": key, "audience": audience, "scopes": []string{"read"}})
	return benchRequest{path: "/api/v1/apikeys/verify", contentType: "application/json", body: body, authz: "Bearer " + mgmtToken}
}

// introspectRequest is ModeIntrospect's request: the introspection of token, with HTTP Basic as the bench client.
func introspectRequest(token, secret string) benchRequest {
	return benchRequest{
		path:  "/oauth/introspect",
		body:  []byte(url.Values{"token": {token}}.Encode()),
		authz: "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(benchClientID)+":"+url.QueryEscape(secret))),
	}
}

// managementToken gets a management token with scope as the bench administrator.
func managementToken(ctx context.Context, serverURL, secret, scope string) (string, error) {
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	err := call(ctx, client, serverURL, benchRequest{
		path:  "/oauth/token",
		body:  []byte(url.Values{"grant_type": {"client_credentials"}, "audience": {auth.ManagementAudience}, "scope": {scope}}.Encode()),
		authz: "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(benchAdminID)+":"+url.QueryEscape(secret))),
	}, http.StatusOK, &tok)
	if err != nil {
		return "", fmt.Errorf("management token: %w", err)
	}
	return tok.AccessToken, nil
}

// newAPIKey makes an API key granted scopes read and write of every bench API, as the bench administrator.
func newAPIKey(ctx context.Context, serverURL, secret string, algs []auth.Algorithm) (string, error) {
	mgmt, err := managementToken(ctx, serverURL, secret, auth.ScopeWriteAPIKeys)
	if err != nil {
		return "", err
	}
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	type grant struct {
		Audience string   `json:"audience"`
		Scopes   []string `json:"scopes"`
	}
	in := struct {
		Name   string  `json:"name"`
		Grants []grant `json:"grants"`
	}{Name: "bench"}
	for _, alg := range algs {
		in.Grants = append(in.Grants, grant{benchAudience(alg), []string{"read", "write"}})
	}
	body, err := json.Marshal(in)
	if err != nil {
		return "", err
	}
	var created struct {
		Key string `json:"key"`
	}
	err = call(ctx, client, serverURL, benchRequest{path: "/api/v1/apikeys", contentType: "application/json", body: body,
		authz: "Bearer " + mgmt}, http.StatusCreated, &created)
	if err != nil {
		return "", fmt.Errorf("create: %w", err)
	}
	if created.Key == "" {
		return "", errors.New("create: no key in the answer")
	}
	return created.Key, nil
}

// preflightVerify checks that req gets {"valid":true}.
func preflightVerify(ctx context.Context, serverURL string, req benchRequest) error {
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	var res struct {
		Valid bool   `json:"valid"`
		Code  string `json:"code"`
	}
	if err := call(ctx, client, serverURL, req, http.StatusOK, &res); err != nil {
		return fmt.Errorf("first check: %w", err)
	}
	if !res.Valid {
		return fmt.Errorf("first check: the key is not valid (code %q)", res.Code)
	}
	return nil
}

// preflightIntrospect checks that req gets {"active":true}, so that every 200 of the run is an active answer (the
// token lives far longer than a run).
func preflightIntrospect(ctx context.Context, serverURL string, req benchRequest) error {
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	var res struct {
		Active bool `json:"active"`
	}
	if err := call(ctx, client, serverURL, req, http.StatusOK, &res); err != nil {
		return fmt.Errorf("first introspection: %w", err)
	}
	if !res.Active {
		return errors.New(`first introspection: {"active":false}, want an active token`)
	}
	return nil
}

// call sends req and decodes the JSON answer into v, which must have status want.
func call(ctx context.Context, client *http.Client, serverURL string, req benchRequest, want int, v any) error {
	resp, err := req.do(ctx, client, serverURL)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != want {
		return fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(raw))
	}
	return json.Unmarshal(raw, v)
}

// benchErr returns the reason the run was cancelled, if it was, rather than err.
func benchErr(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); cause != nil {
		if errors.Is(cause, context.Canceled) {
			return errors.New("interrupted")
		}
		return cause
	}
	return err
}

// benchConfig is the declarative file of the server under test: one API per algorithm and one client granted all,
// and also introspect:tokens of the built-in management API when modes introspect (the management API is never
// declared); when a mode needs an API key, also an administrator that may make and check API keys.
func benchConfig(algs []auth.Algorithm, modes []Mode) []byte {
	var b strings.Builder
	b.WriteString("apis:\n")
	for _, alg := range algs {
		fmt.Fprintf(&b, "  - identifier: %s\n    name: Bench %s\n    scopes: [read, write]\n    signing_alg: %s\n",
			benchAudience(alg), alg, alg)
	}
	fmt.Fprintf(&b, "clients:\n  - client_id: %s\n    name: Bench client\n    client_secret: ${%s}\n    grants:\n",
		benchClientID, benchSecretVar)
	for _, alg := range algs {
		fmt.Fprintf(&b, "      - audience: %s\n        scopes: [read, write]\n", benchAudience(alg))
	}
	if slices.Contains(modes, ModeIntrospect) {
		fmt.Fprintf(&b, "      - audience: %s\n        scopes: [%s]\n", auth.ManagementAudience, auth.ScopeIntrospect)
	}
	if keyed(modes) {
		fmt.Fprintf(&b, "  - client_id: %s\n    name: Bench administrator\n    client_secret: ${%s}\n    grants:\n"+
			"      - audience: %s\n        scopes: [%s, %s]\n",
			benchAdminID, benchSecretVar, auth.ManagementAudience, auth.ScopeWriteAPIKeys, auth.ScopeVerifyAPIKeys)
	}
	return []byte(b.String())
}

// declare applies the bench's declarative file to db with `gatehouse apply --db`, once, before the instances start,
// so that they do not race to create the same resources.
func declare(ctx context.Context, binary string, env []string, configFile, db string) error {
	cmd := exec.CommandContext(ctx, binary, "apply", "-f", configFile, "--db", db)
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("declare the bench's resources with gatehouse apply: %w\n%s", err, bytes.TrimSpace(out))
	}
	return nil
}

// dbKind names the kind of database a --db value is, for the report: "sqlite" or "postgres".
func dbKind(db string) string {
	if strings.HasPrefix(db, "sqlite:") {
		return "sqlite"
	}
	return "postgres"
}

// instanceName names the server's instance i of n in messages.
func instanceName(i, n int) string {
	if n == 1 {
		return "server"
	}
	return fmt.Sprintf("server instance %d", i+1)
}

// trimScheme returns urls without their http:// prefix.
func trimScheme(urls []string) []string {
	out := make([]string, len(urls))
	for i, u := range urls {
		out[i] = strings.TrimPrefix(u, "http://")
	}
	return out
}

// childEnv is env without GATEHOUSE_* variables, so that the children run with the bench's settings and the
// server's defaults, whatever the caller's environment says.
func childEnv(env []string) []string {
	return slices.DeleteFunc(slices.Clone(env), func(kv string) bool { return strings.HasPrefix(kv, "GATEHOUSE_") })
}

// freeAddr returns a 127.0.0.1 address with a port that was free a moment ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// benchChild is a child process whose output goes to a log file.
type benchChild struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{} // closed when the process has exited
	err  error         // Wait's result, set before done is closed
}

// startChild starts binary with args, its stdout and stderr going to the file logPath.
func startChild(binary, logPath string, env []string, args ...string) (*benchChild, error) {
	cmd := exec.Command(binary, args...)
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr, cmd.Env = logf, logf, env
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start gatehouse %s: %w", args[0], err)
	}
	c := &benchChild{cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		logf.Close()
		close(c.done)
	}()
	return c, nil
}

// stop interrupts the process, as Ctrl-C would, and waits for it to exit; after 10 s it kills it.
func (c *benchChild) stop() {
	select {
	case <-c.done:
		return
	default:
	}
	if err := c.cmd.Process.Signal(os.Interrupt); err != nil {
		c.cmd.Process.Kill()
	}
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		c.cmd.Process.Kill()
		<-c.done
	}
}

// stopAll stops the children that were started (nil for none) at once, and waits for them all.
func stopAll(children []*benchChild) {
	var wg sync.WaitGroup
	for _, c := range children {
		if c != nil {
			wg.Go(c.stop)
		}
	}
	wg.Wait()
}

// logTail returns the last lines of the child's log.
func (c *benchChild) logTail() string {
	b, err := os.ReadFile(c.log)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return "  " + strings.Join(lines, "\n  ")
}

// waitOK polls url until it answers 200, the child exits or benchReadyWithin passes.
func waitOK(ctx context.Context, url string, c *benchChild) error {
	deadline := time.Now().Add(benchReadyWithin)
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if resp, err := client.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				client.CloseIdleConnections()
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer 200 within %s; the log ends:\n%s", url, benchReadyWithin, c.logTail())
		}
		select {
		case <-c.done:
			return fmt.Errorf("exited before it was ready (%v); its log ends:\n%s", c.err, c.logTail())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// countLines returns the number of lines and bytes of a file.
func countLines(path string) (lines int, size int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	buf := make([]byte, 256<<10)
	for {
		n, err := f.Read(buf)
		lines += bytes.Count(buf[:n], []byte{'\n'})
		size += int64(n)
		if err == io.EOF {
			return lines, size, nil
		}
		if err != nil {
			return lines, size, err
		}
	}
}
