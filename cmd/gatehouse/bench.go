package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
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
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/rootkey"
)

// The resources the bench declares in the server under test.
const (
	benchClientID  = "bench-client"
	benchSecretVar = "BENCH_CLIENT_SECRET" // how the client secret reaches the server's config file
	tokenType      = "at+jwt"              // the typ of Gatehouse access tokens (RFC 9068)
)

// Fixed parts of a run.
const (
	benchSignTime    = 2 * time.Second        // how long the signing ceiling is measured, per algorithm
	benchSampleEvery = 100 * time.Millisecond // how often the server's resident memory is read
	benchReadyWithin = 60 * time.Second       // how long a child process may take to answer
	benchMaxConc     = 4096
)

// The targets the issue sets for this machine.
const (
	targetRSAOfSigning   = 0.60
	targetOfTrivial      = 0.40
	targetP99            = 20 * time.Millisecond
	targetRSSBytes       = 100_000_000
	targetP99Concurrency = 64
)

var targetTrivialConcurrency = []int{16, 64}

// benchCommand returns the command that runs this gatehouse binary with args. Tests replace it, because there the
// running executable is the test binary.
var benchCommand = func(args ...string) (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the gatehouse binary to run the server: %w", err)
	}
	return exec.Command(exe, args...), nil
}

// benchAudience is the identifier of the bench API that signs with alg.
func benchAudience(alg auth.Algorithm) string {
	return "https://bench.example.com/" + strings.ToLower(string(alg))
}

// benchFlags are the flags of gatehouse bench.
type benchFlags struct {
	algs        []string
	concurrency []int
	duration    time.Duration
	warmup      time.Duration
	markdown    bool
}

// benchOptions are validated benchFlags.
type benchOptions struct {
	algs        []auth.Algorithm
	concurrency []int
	duration    time.Duration
	warmup      time.Duration
	markdown    bool
	command     string // the command line, for the report
}

func newBenchCmd(stdout, stderr io.Writer) *cobra.Command {
	var f benchFlags
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Load-test token issuance and compare it with ceilings measured in the same run",
		Long: `Load-test token issuance on this machine. The bench starts 'gatehouse serve' as a separate process on a free
127.0.0.1 port, with a fresh SQLite database in a temporary directory, one API per signing algorithm and one
client, and requests tokens from it with c concurrent keep-alive connections for each concurrency level.

Next to every result it measures two ceilings in the same run, so that results on a shared or noisy machine are
read as ratios: the raw JWS signing rate of the algorithm (the bare signature primitive in this process, one goroutine per CPU, servers
idle), and the request rate of a trivial net/http handler in a separate process under the same load generator,
request and concurrency. Within each cell the server, the trivial handler and the signing take turns in slices of
at most a second, so that all three see the same noise. It also reports the CPU time each process spends per
request, and samples the server's resident memory every 100 ms.

A full run with the defaults takes about two minutes.

The report goes to stdout (a table, or markdown for BENCHMARKS.md with --markdown), progress to stderr. The
bench exits 0 when it ran, whether or not the targets were met.

Every flag also reads the environment variable GATEHOUSE_<FLAG> (e.g. GATEHOUSE_DURATION).
Examples:
  gatehouse bench
  gatehouse bench --algs ES256 --concurrency 1,8,32 --duration 10s --markdown`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := bindEnv(cmd, os.LookupEnv); err != nil {
				return err
			}
			o, err := f.options(cmd)
			if err != nil {
				return err
			}
			return runBench(cmd.Context(), o, stdout, stderr)
		},
	}
	fl := cmd.Flags()
	fl.StringSliceVar(&f.algs, "algs", []string{"RS256", "ES256", "EdDSA"}, "signing algorithms to bench: RS256, ES256, EdDSA")
	fl.IntSliceVar(&f.concurrency, "concurrency", []int{1, 16, 64}, "concurrent connections, one cell per level")
	fl.DurationVar(&f.duration, "duration", 5*time.Second, "measured time per target in each cell")
	fl.DurationVar(&f.warmup, "warmup", time.Second, "unmeasured load before each cell")
	fl.BoolVar(&f.markdown, "markdown", false, "print the report as markdown (for BENCHMARKS.md)")
	cmd.AddCommand(newBenchTrivialCmd())
	return cmd
}

func (f *benchFlags) options(cmd *cobra.Command) (benchOptions, error) {
	o := benchOptions{duration: f.duration, warmup: f.warmup, markdown: f.markdown, command: benchCommandLine(cmd)}
	for _, s := range f.algs {
		alg := auth.Algorithm(strings.TrimSpace(s))
		if !alg.Valid() {
			return o, usageError{fmt.Errorf("--algs: %q is not supported: use RS256, ES256 or EdDSA", s)}
		}
		if slices.Contains(o.algs, alg) {
			return o, usageError{fmt.Errorf("--algs: %s is listed twice", alg)}
		}
		o.algs = append(o.algs, alg)
	}
	for _, c := range f.concurrency {
		if c < 1 || c > benchMaxConc {
			return o, usageError{fmt.Errorf("--concurrency: %d is not between 1 and %d", c, benchMaxConc)}
		}
		if slices.Contains(o.concurrency, c) {
			return o, usageError{fmt.Errorf("--concurrency: %d is listed twice", c)}
		}
		o.concurrency = append(o.concurrency, c)
	}
	switch {
	case len(o.algs) == 0:
		return o, usageError{errors.New("--algs: name at least one algorithm")}
	case len(o.concurrency) == 0:
		return o, usageError{errors.New("--concurrency: give at least one level")}
	case f.duration <= 0:
		return o, usageError{errors.New("--duration must be positive")}
	case f.warmup < 0:
		return o, usageError{errors.New("--warmup must not be negative")}
	}
	return o, nil
}

// benchCommandLine returns the command line that gives cmd's settings: the GATEHOUSE_* variables that set a flag,
// then the flags given on the command line.
func benchCommandLine(cmd *cobra.Command) string {
	var env, args []string
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		val := f.Value.String()
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			val = strings.Join(sv.GetSlice(), ",")
		}
		switch {
		case f.Changed && f.Value.Type() == "bool" && val == "true":
			args = append(args, "--"+f.Name)
		case f.Changed:
			args = append(args, "--"+f.Name+"="+val)
		default:
			name := "GATEHOUSE_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
			if v, ok := os.LookupEnv(name); ok {
				env = append(env, name+"="+v)
			}
		}
	})
	return strings.Join(slices.Concat(env, []string{"gatehouse", "bench"}, args), " ")
}

// newBenchTrivialCmd is the hidden `gatehouse bench serve-trivial ADDR`: the trivial-handler ceiling, run by the
// bench as a separate process like the server.
func newBenchTrivialCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "serve-trivial ADDR",
		Short:  "Serve the bench's trivial handler on ADDR (used by gatehouse bench)",
		Hidden: true,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError{errors.New("serve-trivial takes one argument, the address to listen on")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return serveTrivial(cmd.Context(), args[0])
		},
	}
}

// trivialBody is what the trivial handler answers.
var trivialBody = []byte(`{"ok":true}` + "\n")

// trivialHandler is the ceiling for the token endpoint: it reads the request body and answers a small JSON object
// with the headers a token response has (the same names, values of the same size), doing nothing else.
func trivialHandler(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Type", "application/json")
	h.Set("Pragma", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Request-Id", "0123456789abcdef")
	w.Write(trivialBody)
}

// serveTrivial serves trivialHandler on addr until ctx ends.
func serveTrivial(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.HandlerFunc(trivialHandler), ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 2 * time.Minute}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shutdownCtx)
	}()
	err = srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		<-stopped
		return nil
	}
	return err
}

// runBench runs the whole bench and writes the report to stdout. It stops its child processes and removes its
// temporary directory however it ends.
func runBench(ctx context.Context, o benchOptions, stdout, stderr io.Writer) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	dir, err := os.MkdirTemp("", "gatehouse-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	secret := auth.NewSecret()
	configFile := filepath.Join(dir, "bench.yaml")
	if err := os.WriteFile(configFile, benchConfig(o.algs), 0o600); err != nil {
		return err
	}
	env := append(childEnv(os.Environ()), "GATEHOUSE_ROOT_KEY="+rootkey.Generate().String(), benchSecretVar+"="+secret)

	serverAddr, err := freeAddr()
	if err != nil {
		return err
	}
	server, err := startChild(filepath.Join(dir, "server.log"), env,
		"serve", "--addr", serverAddr, "--db", "sqlite:"+filepath.Join(dir, "bench.db"), "--config", configFile)
	if err != nil {
		return err
	}
	defer server.stop()
	trivialAddr, err := freeAddr()
	if err != nil {
		return err
	}
	trivial, err := startChild(filepath.Join(dir, "trivial.log"), env, "bench", "serve-trivial", trivialAddr)
	if err != nil {
		return err
	}
	defer trivial.stop()

	// Memory is sampled from the start, so the peak includes startup.
	mem := &memSampler{pid: server.cmd.Process.Pid}
	memCtx, stopMem := context.WithCancel(ctx)
	memDone := make(chan struct{})
	go func() { defer close(memDone); mem.run(memCtx, benchSampleEvery) }()
	defer func() { stopMem(); <-memDone }()

	// Either child dying ends the run, with its log.
	watchDone := make(chan struct{})
	defer close(watchDone)
	for name, c := range map[string]*benchChild{"server": server, "trivial handler": trivial} {
		go func() {
			select {
			case <-c.done:
				cancel(fmt.Errorf("the %s exited during the run (%v); its log ends:\n%s", name, c.err, c.logTail()))
			case <-watchDone:
			}
		}()
	}

	serverURL, trivialURL := "http://"+serverAddr, "http://"+trivialAddr
	fmt.Fprintf(stderr, "bench: starting gatehouse serve on %s and the trivial handler on %s\n", serverAddr, trivialAddr)
	if err := waitOK(ctx, serverURL+"/readyz", server); err != nil {
		return benchErr(ctx, fmt.Errorf("server: %w", err))
	}
	if err := waitOK(ctx, trivialURL+"/", trivial); err != nil {
		return benchErr(ctx, fmt.Errorf("trivial handler: %w", err))
	}

	plan := newCellPlan(o, len(o.concurrency))
	rep := &benchReport{
		Start:       time.Now(),
		Machine:     machine(),
		LoadBefore:  loadAverage(),
		Command:     o.command,
		Plan:        plan,
		Concurrency: o.concurrency,
	}
	for _, alg := range o.algs {
		req := benchRequest{
			body:  []byte(url.Values{"grant_type": {"client_credentials"}, "audience": {benchAudience(alg)}}.Encode()),
			authz: "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(benchClientID)+":"+url.QueryEscape(secret))),
		}
		claims, err := preflight(ctx, serverURL+"/oauth/token", req, alg)
		if err != nil {
			return benchErr(ctx, fmt.Errorf("%s: %w", alg, err))
		}
		sign, err := newCeilingSigner(alg, claims)
		if err != nil {
			return benchErr(ctx, fmt.Errorf("%s signing ceiling: %w", alg, err))
		}
		res := algResult{Alg: alg, ClaimsBytes: len(claims)}
		for _, c := range o.concurrency {
			fmt.Fprintf(stderr, "bench: %s c=%d\n", alg, c)
			cell, err := runCell(ctx, plan, c, benchTarget{serverURL, server.cmd.Process.Pid},
				benchTarget{trivialURL, trivial.cmd.Process.Pid}, req, sign)
			if err != nil {
				return benchErr(ctx, err)
			}
			res.Cells = append(res.Cells, cell)
		}
		res.SignOps, res.SignMin, res.SignMax, res.SignCPU = sign.rate(), sign.min, sign.max, sign.cpuPerOp()
		rep.Algs = append(rep.Algs, res)
	}
	rep.Elapsed = time.Since(rep.Start)
	rep.LoadAfter = loadAverage()
	stopMem()
	<-memDone
	rep.PeakRSS, rep.RSSSamples, rep.RSSErr = mem.peak, mem.samples, mem.err
	if _, hwm, err := readMemStatus(server.cmd.Process.Pid); err == nil {
		rep.HWM = hwm
	}
	rep.LogLines, rep.LogBytes, _ = countLines(server.log)
	if o.markdown {
		rep.writeMarkdown(stdout)
	} else {
		rep.writePlain(stdout)
	}
	return nil
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

// benchConfig is the declarative file of the server under test: one API per algorithm and one client granted all.
func benchConfig(algs []auth.Algorithm) []byte {
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
	return []byte(b.String())
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

// startChild starts this binary with args, its stdout and stderr going to the file logPath.
func startChild(logPath string, env []string, args ...string) (*benchChild, error) {
	cmd, err := benchCommand(args...)
	if err != nil {
		return nil, err
	}
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

// benchRequest is the token request every load-generator goroutine sends.
type benchRequest struct {
	body  []byte // the form
	authz string // the Authorization header
}

func (r benchRequest) do(ctx context.Context, client *http.Client, url string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(r.body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("Authorization", r.authz)
	return client.Do(req)
}

// preflight gets one token, checks that it is an at+jwt signed with alg, and returns its claims: the payload the
// signing ceiling signs.
func preflight(ctx context.Context, url string, r benchRequest, alg auth.Algorithm) ([]byte, error) {
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	resp, err := r.do(ctx, client, url)
	if err != nil {
		return nil, fmt.Errorf("first token request: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("first token response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("first token request: %s: %s", resp.Status, bytes.TrimSpace(raw))
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(raw, &tok); err != nil {
		return nil, fmt.Errorf("first token response: %w", err)
	}
	parts := strings.Split(tok.AccessToken, ".")
	if len(parts) != 3 {
		return nil, errors.New("first token response: access_token is not a compact JWS")
	}
	hdr, err1 := base64.RawURLEncoding.DecodeString(parts[0])
	claims, err2 := base64.RawURLEncoding.DecodeString(parts[1])
	var h struct{ Alg, Typ string }
	if err := errors.Join(err1, err2, json.Unmarshal(hdr, &h)); err != nil {
		return nil, fmt.Errorf("first token: %w", err)
	}
	if h.Alg != string(alg) || h.Typ != tokenType {
		return nil, fmt.Errorf("first token has alg %q and typ %q, want %s and %s", h.Alg, h.Typ, alg, tokenType)
	}
	return claims, nil
}

// cellPlan is how a cell spends its time. The trivial handler and the server take turns in slices of at most
// benchSlice, with a slice of signing before each turn, so that the measurement and both ceilings see the same
// noise from whatever else the machine is doing.
type cellPlan struct {
	warmup    time.Duration // unmeasured load on each target before the first round
	rounds    int
	slice     time.Duration // measured load on each target per round
	signSlice time.Duration // signing per round
}

const (
	benchSlice        = time.Second
	benchMinSignSlice = 250 * time.Millisecond
)

// newCellPlan spreads o.duration per target over rounds, and the signing time of an algorithm over its cells'
// rounds.
func newCellPlan(o benchOptions, cells int) cellPlan {
	rounds := max(1, int((o.duration+benchSlice-1)/benchSlice))
	return cellPlan{
		warmup:    o.warmup,
		rounds:    rounds,
		slice:     o.duration / time.Duration(rounds),
		signSlice: max(benchMinSignSlice, benchSignTime/time.Duration(rounds*cells)),
	}
}

// benchTarget is a process the load generator loads: its base URL and its pid.
type benchTarget struct {
	url string
	pid int
}

// runCell measures the server and the trivial handler at concurrency c, and adds to sign's measurement.
func runCell(ctx context.Context, p cellPlan, c int, server, trivialHandler benchTarget, req benchRequest, sign *ceilingSigner) (cellResult, error) {
	gatehouse := newLoadGen(server.url+"/oauth/token", server.pid, req, c)
	defer gatehouse.close()
	trivial := newLoadGen(trivialHandler.url+"/oauth/token", trivialHandler.pid, req, c)
	defer trivial.close()
	targets := []*loadGen{trivial, gatehouse}
	for _, g := range targets {
		if err := g.warm(ctx, p.warmup, time.Duration(p.rounds)*p.slice); err != nil {
			return cellResult{}, err
		}
	}
	for range p.rounds {
		if err := sign.run(ctx, p.signSlice); err != nil {
			return cellResult{}, err
		}
		for _, g := range targets {
			if err := g.run(ctx, p.slice, true); err != nil {
				return cellResult{}, err
			}
		}
	}
	return cellResult{C: c, Gatehouse: gatehouse.result(), Trivial: trivial.result()}, nil
}

// ceilingSigner measures the signing ceiling: the bare signature primitive (crypto/rsa, crypto/ecdsa,
// crypto/ed25519, with SHA-256 where the algorithm hashes) over the JWS signing input of the server's claims, with a
// fresh key of the algorithm's type, from GOMAXPROCS goroutines. Nothing that signs a token can beat it.
type ceilingSigner struct {
	sign     func() error
	claims   []byte
	ops      int
	elapsed  time.Duration
	min, max float64       // the slowest and fastest slice, ops/s
	cpu      time.Duration // CPU time this process used in the slices
	cpuErr   error
}

func newCeilingSigner(alg auth.Algorithm, claims []byte) (*ceilingSigner, error) {
	header := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"` + string(alg) + `","kid":"0123456789012345678901234567890123456789012","typ":"` + tokenType + `"}`))
	input := []byte(header + "." + base64.RawURLEncoding.EncodeToString(claims))
	s := &ceilingSigner{claims: claims}
	switch alg {
	case auth.RS256:
		key, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, err
		}
		s.sign = func() error {
			d := sha256.Sum256(input)
			_, err := rsa.SignPKCS1v15(nil, key, crypto.SHA256, d[:])
			return err
		}
	case auth.ES256:
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		s.sign = func() error {
			d := sha256.Sum256(input)
			_, err := ecdsa.SignASN1(rand.Reader, key, d[:])
			return err
		}
	case auth.EdDSA:
		_, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		s.sign = func() error { ed25519.Sign(key, input); return nil }
	default:
		return nil, fmt.Errorf("unsupported algorithm %q", alg)
	}
	return s, nil
}

// run signs from GOMAXPROCS goroutines for d, counting the signatures finished within d.
func (s *ceilingSigner) run(ctx context.Context, d time.Duration) error {
	cpu0, err0 := cpuTime(os.Getpid())
	defer func() {
		cpu1, err1 := cpuTime(os.Getpid())
		if err := errors.Join(err0, err1); err != nil {
			s.cpuErr = err
		}
		s.cpu += cpu1 - cpu0
	}()
	n := runtime.GOMAXPROCS(0)
	counts := make([]int, n)
	errs := make([]error, n)
	end := time.Now().Add(d)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			for ctx.Err() == nil {
				if err := s.sign(); err != nil {
					errs[i] = err
					return
				}
				if !time.Now().Before(end) {
					return
				}
				counts[i]++
			}
		})
	}
	wg.Wait()
	if err := cmp.Or(ctx.Err(), errors.Join(errs...)); err != nil {
		return err
	}
	total := 0
	for _, c := range counts {
		total += c
	}
	rate := float64(total) / d.Seconds()
	if s.elapsed == 0 || rate < s.min {
		s.min = rate
	}
	s.max = max(s.max, rate)
	s.ops += total
	s.elapsed += d
	return nil
}

// rate is the signing ceiling: signatures per second over every slice.
func (s *ceilingSigner) rate() float64 { return ratio(float64(s.ops), s.elapsed.Seconds()) }

// cpuPerOp is the CPU time of one signature, or 0 if unknown.
func (s *ceilingSigner) cpuPerOp() time.Duration {
	if s.cpuErr != nil || s.ops == 0 {
		return 0
	}
	return s.cpu / time.Duration(s.ops)
}

// loadResult is what the load generator measured on one target in one cell.
type loadResult struct {
	OK       int     // 200 responses completed in the measured slices
	Errors   int     // failed requests and non-200 responses, warmup included
	FirstErr string  // the first of them
	Rate     float64 // OK per second of measured time
	P50, P99 time.Duration
	Max      time.Duration

	TargetCPU time.Duration // CPU time of the target process per OK request; 0 if unknown
	GenCPU    time.Duration // CPU time of the load generator per OK request; 0 if unknown
}

// loadGen is the load generator for one target: c goroutines sharing one keep-alive transport, run in slices.
type loadGen struct {
	url      string
	req      benchRequest
	tr       *http.Transport
	client   *http.Client
	workers  []loadWorker // one per goroutine
	measured time.Duration

	pid       int           // the target's process, whose CPU time is measured
	targetCPU time.Duration // CPU time the target used during the measured slices
	genCPU    time.Duration // and this process, the load generator
	cpuErr    error         // why CPU time could not be measured
}

// loadWorker is one load-generator goroutine's state. Each goroutine writes only its own.
type loadWorker struct {
	lat      []time.Duration // latencies of the 200s completed in measured slices
	warm     int             // 200s completed during the warmup
	errors   int
	firstErr string
}

func newLoadGen(url string, pid int, req benchRequest, c int) *loadGen {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        c,
		MaxIdleConnsPerHost: c,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
	return &loadGen{url: url, pid: pid, req: req, tr: tr, client: &http.Client{Transport: tr, Timeout: 30 * time.Second},
		workers: make([]loadWorker, c)}
}

func (g *loadGen) close() { g.tr.CloseIdleConnections() }

// warm loads the target for warmup without measuring, then sizes each goroutine's latency buffer for total
// measured time at the warmup's rate, so that measuring appends without growing it.
func (g *loadGen) warm(ctx context.Context, warmup, total time.Duration) error {
	n := 1024
	if warmup > 0 {
		if err := g.run(ctx, warmup, false); err != nil {
			return err
		}
		ok := 0
		for _, w := range g.workers {
			ok += w.warm
		}
		n = max(n, int(float64(ok)/warmup.Seconds()*total.Seconds()*1.5)/len(g.workers))
	}
	for i := range g.workers {
		g.workers[i].lat = make([]time.Duration, 0, n)
	}
	return nil
}

// run loads the target from every goroutine for d, recording latencies if measure.
func (g *loadGen) run(ctx context.Context, d time.Duration, measure bool) error {
	target0, err1 := cpuTime(g.pid)
	gen0, err2 := cpuTime(os.Getpid())
	end := time.Now().Add(d)
	var wg sync.WaitGroup
	for i := range g.workers {
		w := &g.workers[i]
		wg.Go(func() { w.run(ctx, g.client, g.url, g.req, end, measure) })
	}
	wg.Wait()
	if !measure {
		return ctx.Err()
	}
	g.measured += d
	target1, err3 := cpuTime(g.pid)
	gen1, err4 := cpuTime(os.Getpid())
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		g.cpuErr = err
	}
	g.targetCPU += target1 - target0
	g.genCPU += gen1 - gen0
	return ctx.Err()
}

// result sums up the measured slices.
func (g *loadGen) result() loadResult {
	var res loadResult
	var all []time.Duration
	for _, w := range g.workers {
		all = append(all, w.lat...)
		res.Errors += w.errors
		if res.FirstErr == "" {
			res.FirstErr = w.firstErr
		}
	}
	slices.Sort(all)
	res.OK = len(all)
	res.Rate = ratio(float64(len(all)), g.measured.Seconds())
	if g.cpuErr == nil && res.OK > 0 {
		res.TargetCPU = g.targetCPU / time.Duration(res.OK)
		res.GenCPU = g.genCPU / time.Duration(res.OK)
	}
	res.P50, res.P99 = percentile(all, 0.50), percentile(all, 0.99)
	if len(all) > 0 {
		res.Max = all[len(all)-1]
	}
	return res
}

// run sends requests one after another until end. A request counts if it completes before end.
func (w *loadWorker) run(ctx context.Context, client *http.Client, url string, req benchRequest, end time.Time, measure bool) {
	for ctx.Err() == nil {
		t0 := time.Now()
		if !t0.Before(end) {
			return
		}
		err := w.request(ctx, client, url, req)
		t1 := time.Now()
		switch {
		case err != nil:
			if ctx.Err() != nil {
				return
			}
			w.errors++
			if w.firstErr == "" {
				w.firstErr = err.Error()
			}
		case !measure:
			w.warm++
		case t1.Before(end):
			w.lat = append(w.lat, t1.Sub(t0))
		}
	}
}

// request sends one request and reads the whole response; anything but a 200 is an error.
func (w *loadWorker) request(ctx context.Context, client *http.Client, url string, req benchRequest) error {
	resp, err := req.do(ctx, client, url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 300))
		io.Copy(io.Discard, resp.Body)
		return fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(b))
	}
	_, err = io.Copy(io.Discard, resp.Body)
	return err
}

// percentile returns the q-quantile of sorted (nearest rank), or 0 for none.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*q+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// memSampler tracks the peak VmRSS of a process.
type memSampler struct {
	pid     int
	peak    int64 // bytes
	samples int
	err     error // the first failed read
}

func (m *memSampler) run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		rss, _, err := readMemStatus(m.pid)
		if err != nil {
			if m.err == nil {
				m.err = err
			}
		} else {
			m.peak = max(m.peak, rss)
			m.samples++
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// cpuTime returns the user and system CPU time of every thread of a process, from /proc (Linux only), to 10 ms.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// pid (comm) state ppid … utime stime: after the command, utime and stime are the 12th and 13th fields.
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if i < 0 || len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	const userHZ = 100 // the clock ticks of /proc, fixed by the Linux ABI
	return time.Duration(utime+stime) * time.Second / userHZ, nil
}

// readMemStatus returns a process's VmRSS and VmHWM in bytes, from /proc (Linux only).
func readMemStatus(pid int) (rss, hwm int64, err error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(val), " kB"), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %q: %w", name, val, err)
		}
		if name == "VmRSS" {
			rss = kb << 10
		} else {
			hwm = kb << 10
		}
	}
	if err := sc.Err(); err != nil {
		return 0, 0, err
	}
	if rss == 0 {
		return 0, 0, errors.New("no VmRSS in /proc/" + strconv.Itoa(pid) + "/status")
	}
	return rss, hwm, nil
}

// machineInfo describes where the bench ran.
type machineInfo struct {
	CPU        string
	NumCPU     int
	GOMAXPROCS int
	Go         string
	Kernel     string
}

func machine() machineInfo {
	m := machineInfo{CPU: "unknown CPU", NumCPU: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0),
		Go: runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH, Kernel: runtime.GOOS}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if name, val, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(name) == "model name" {
				m.CPU = strings.TrimSpace(val)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = runtime.GOOS + " " + strings.TrimSpace(string(b))
	}
	return m
}

// benchReport is everything one run measured.
type benchReport struct {
	Start       time.Time
	Elapsed     time.Duration
	Machine     machineInfo
	LoadBefore  string // the load average when the run started
	LoadAfter   string // and when it ended
	Command     string
	Plan        cellPlan
	Concurrency []int
	Algs        []algResult
	PeakRSS     int64 // bytes; 0 when it could not be read
	RSSSamples  int
	RSSErr      error
	HWM         int64
	LogLines    int // lines in the server's log at the end: one per request, and a few more
	LogBytes    int64
}

type algResult struct {
	Alg         auth.Algorithm
	ClaimsBytes int
	SignOps     float64       // the signing ceiling
	SignMin     float64       // its slowest slice
	SignMax     float64       // its fastest slice
	SignCPU     time.Duration // CPU time per signature; 0 if unknown
	Cells       []cellResult
}

type cellResult struct {
	C         int
	Gatehouse loadResult
	Trivial   loadResult
}

func (c cellResult) ofTrivial() float64 { return ratio(c.Gatehouse.Rate, c.Trivial.Rate) }

func (a algResult) cell(c int) (cellResult, bool) {
	i := slices.IndexFunc(a.Cells, func(x cellResult) bool { return x.C == c })
	if i < 0 {
		return cellResult{}, false
	}
	return a.Cells[i], true
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// check is one target, judged.
type check struct {
	Result string // PASS, FAIL or SKIP
	Target string
	Detail string
}

func passFail(ok bool) string {
	if ok {
		return "PASS"
	}
	return "FAIL"
}

// checks judges the targets against the run.
func (r *benchReport) checks() []check {
	var out []check
	highest := slices.Max(r.Concurrency)
	for _, a := range r.Algs {
		switch a.Alg {
		case auth.RS256:
			best := slices.MaxFunc(a.Cells, func(x, y cellResult) int { return cmp.Compare(x.Gatehouse.Rate, y.Gatehouse.Rate) })
			q := ratio(best.Gatehouse.Rate, a.SignOps)
			out = append(out, check{passFail(q >= targetRSAOfSigning),
				fmt.Sprintf("RS256 tokens/s ≥ %.0f%% of the RS256 signing ceiling", targetRSAOfSigning*100),
				fmt.Sprintf("best %s tokens/s at c=%d = %.1f%% of %s ops/s", fmtRate(best.Gatehouse.Rate), best.C, q*100, fmtRate(a.SignOps))})
		default:
			levels := slices.DeleteFunc(slices.Clone(targetTrivialConcurrency), func(c int) bool { return !slices.Contains(r.Concurrency, c) })
			if len(levels) == 0 {
				levels = []int{highest}
			}
			ok := true
			var parts []string
			for _, c := range levels {
				cell, _ := a.cell(c)
				q := cell.ofTrivial()
				ok = ok && q >= targetOfTrivial
				parts = append(parts, fmt.Sprintf("c=%d: %.1f%% (%s / %s)", c, q*100, fmtRate(cell.Gatehouse.Rate), fmtRate(cell.Trivial.Rate)))
			}
			out = append(out, check{passFail(ok),
				fmt.Sprintf("%s tokens/s ≥ %.0f%% of the trivial handler at the same concurrency", a.Alg, targetOfTrivial*100),
				strings.Join(parts, ", ")})
		}
	}
	p99At := targetP99Concurrency
	if !slices.Contains(r.Concurrency, p99At) {
		p99At = highest
	}
	for _, a := range r.Algs {
		cell, _ := a.cell(p99At)
		detail := fmt.Sprintf("p99 %s at c=%d", fmtMs(cell.Gatehouse.P99), p99At)
		if p99At != targetP99Concurrency {
			detail += fmt.Sprintf(" (c=%d was not run)", targetP99Concurrency)
		}
		out = append(out, check{passFail(cell.Gatehouse.P99 < targetP99),
			fmt.Sprintf("%s p99 < %s at c=%d", a.Alg, fmtMs(targetP99), targetP99Concurrency), detail})
	}
	rss := check{Target: fmt.Sprintf("server peak resident memory < %s", fmtMB(targetRSSBytes))}
	if r.PeakRSS == 0 {
		rss.Result, rss.Detail = "SKIP", fmt.Sprintf("could not read it: %v", r.RSSErr)
	} else {
		rss.Result = passFail(r.PeakRSS < targetRSSBytes)
		rss.Detail = fmt.Sprintf("peak VmRSS %s, VmHWM %s", fmtMB(r.PeakRSS), fmtMB(r.HWM))
	}
	out = append(out, rss)
	errs := r.errors()
	out = append(out, check{passFail(errs == 0), "every request succeeded", fmt.Sprintf("%d errors", errs)})
	return out
}

// errors counts the failed requests of the whole run, to the server and to the trivial handler.
func (r *benchReport) errors() int {
	n := 0
	for _, a := range r.Algs {
		for _, c := range a.Cells {
			n += c.Gatehouse.Errors + c.Trivial.Errors
		}
	}
	return n
}

// errorLines describes every cell that had errors, with the first error of each.
func (r *benchReport) errorLines() []string {
	var out []string
	for _, a := range r.Algs {
		for _, c := range a.Cells {
			for name, l := range map[string]loadResult{"gatehouse": c.Gatehouse, "trivial handler": c.Trivial} {
				if l.Errors > 0 {
					out = append(out, fmt.Sprintf("%s c=%d %s: %d errors, the first: %s", a.Alg, c.C, name, l.Errors, l.FirstErr))
				}
			}
		}
	}
	slices.Sort(out)
	return out
}

func fmtRate(f float64) string {
	s := strconv.FormatInt(int64(f+0.5), 10)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func fmtMs(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	switch {
	case ms >= 100:
		return fmt.Sprintf("%.0fms", ms)
	case ms >= 10:
		return fmt.Sprintf("%.1fms", ms)
	}
	return fmt.Sprintf("%.2fms", ms)
}

func fmtPct(q float64) string { return fmt.Sprintf("%.0f%%", q*100) }

func fmtMB(b int64) string { return fmt.Sprintf("%.1f MB", float64(b)/1e6) }

// The report's fixed descriptions.
const (
	descServer  = "`gatehouse serve`: a separate process, fresh SQLite database, default settings; request logging on (info level, one line per request, to a file)"
	descTrivial = "a net/http handler that reads the body and answers `{\"ok\":true}` with the headers of a token response, in a separate process"
	descLoad    = "in the bench process on the same machine: c goroutines, one keep-alive transport, POST /oauth/token (form body, HTTP Basic), client_credentials with an audience"
)

func (r *benchReport) settings() string {
	cs := make([]string, len(r.Concurrency))
	for i, c := range r.Concurrency {
		cs[i] = strconv.Itoa(c)
	}
	p := r.Plan
	return fmt.Sprintf("concurrency %s; per cell, %s warmup on each target, then %d round(s) of: signing %s, trivial "+
		"handler %s, gatehouse %s (%s measured per target; the ceilings and the server take turns, so they see the same noise)",
		strings.Join(cs, ", "), p.warmup, p.rounds, p.signSlice, p.slice, p.slice, time.Duration(p.rounds)*p.slice)
}

// loadAverage returns the 1, 5 and 15 minute load averages, or "" where there is no /proc/loadavg.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return ""
}

func (r *benchReport) loadLine() string {
	if r.LoadBefore == "" {
		return "unknown"
	}
	return fmt.Sprintf("%s at the start, %s at the end (1, 5, 15 min; %d CPUs)", r.LoadBefore, r.LoadAfter, r.Machine.NumCPU)
}

func (m machineInfo) String() string {
	return fmt.Sprintf("%s, %d CPUs, GOMAXPROCS %d, %s, %s", m.CPU, m.NumCPU, m.GOMAXPROCS, m.Go, m.Kernel)
}

func (r *benchReport) logLine() string {
	return fmt.Sprintf("%s lines, %s, written to the server's log file during the run (one per request)",
		fmtRate(float64(r.LogLines)), fmtMB(r.LogBytes))
}

func (r *benchReport) memLine() string {
	if r.PeakRSS == 0 {
		return fmt.Sprintf("could not be read (%v)", r.RSSErr)
	}
	return fmt.Sprintf("peak VmRSS %s (%d samples, every %s, startup included); VmHWM at the end %s",
		fmtMB(r.PeakRSS), r.RSSSamples, benchSampleEvery, fmtMB(r.HWM))
}

func (a algResult) ceilingLine(gomaxprocs int) string {
	return fmt.Sprintf("signing ceiling %s ops/s (bare primitive, %s, %d goroutines, the server's %d-byte claims; slices %s–%s)",
		fmtRate(a.SignOps), keyDesc[a.Alg], gomaxprocs, a.ClaimsBytes, fmtRate(a.SignMin), fmtRate(a.SignMax))
}

var keyDesc = map[auth.Algorithm]string{auth.RS256: "RSA 2048", auth.ES256: "P-256", auth.EdDSA: "Ed25519"}

// row is one table row: concurrency | tokens/s | p50 | p99 | max | errors | trivial req/s | issuance/trivial |
// issuance/signing ceiling.
func (a algResult) row(c cellResult) []string {
	g := c.Gatehouse
	return []string{strconv.Itoa(c.C), fmtRate(g.Rate), fmtMs(g.P50), fmtMs(g.P99), fmtMs(g.Max), strconv.Itoa(g.Errors),
		fmtRate(c.Trivial.Rate), fmtPct(c.ofTrivial()), fmtPct(ratio(g.Rate, a.SignOps))}
}

// cpuColumns head the table of CPU time per request; each row is one cell.
var cpuColumns = []string{"CPU per request", "gatehouse server", "of it, one signature", "trivial handler", "load generator → gatehouse", "load generator → trivial"}

// cpuRow is one row of the CPU table; ok is false when CPU time could not be read.
func (a algResult) cpuRow(c cellResult) (row []string, ok bool) {
	g, t := c.Gatehouse, c.Trivial
	if g.TargetCPU == 0 || t.TargetCPU == 0 || a.SignCPU == 0 {
		return nil, false
	}
	return []string{fmt.Sprintf("c=%d", c.C), fmtUs(g.TargetCPU), fmtUs(a.SignCPU), fmtUs(t.TargetCPU), fmtUs(g.GenCPU), fmtUs(t.GenCPU)}, true
}

func fmtUs(d time.Duration) string {
	return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
}

var benchColumns = []string{"concurrency", "tokens/s", "p50", "p99", "max", "errors", "trivial req/s", "issuance/trivial", "issuance/signing ceiling"}

func (r *benchReport) writePlain(w io.Writer) {
	fmt.Fprintf(w, "Gatehouse bench, %s (took %s)\n", r.Start.UTC().Format("2006-01-02 15:04 UTC"), r.Elapsed.Round(time.Second))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, kv := range [][2]string{
		{"command", r.Command},
		{"machine", r.Machine.String()},
		{"load avg", r.loadLine()},
		{"server", strings.ReplaceAll(descServer, "`", "")},
		{"server log", r.logLine()},
		{"trivial", strings.ReplaceAll(descTrivial, "`", "")},
		{"load", descLoad},
		{"settings", r.settings()},
	} {
		fmt.Fprintf(tw, "  %s\t%s\n", kv[0], kv[1])
	}
	tw.Flush()
	for _, a := range r.Algs {
		fmt.Fprintf(w, "\n%s  %s\n", a.Alg, a.ceilingLine(r.Machine.GOMAXPROCS))
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		cols := make([]string, len(benchColumns))
		for i, c := range benchColumns {
			cols[i] = strings.ToUpper(c)
		}
		fmt.Fprintf(tw, "%s\t\n", strings.Join(cols, "\t"))
		for _, c := range a.Cells {
			fmt.Fprintf(tw, "%s\t\n", strings.Join(a.row(c), "\t"))
		}
		fmt.Fprintln(tw)
		fmt.Fprintf(tw, "%s\t\n", strings.ToUpper(strings.Join(cpuColumns, "\t")))
		for _, c := range a.Cells {
			if row, ok := a.cpuRow(c); ok {
				fmt.Fprintf(tw, "%s\t\n", strings.Join(row, "\t"))
			}
		}
		tw.Flush()
	}
	fmt.Fprintf(w, "\nserver memory: %s\n", r.memLine())
	if lines := r.errorLines(); len(lines) > 0 {
		fmt.Fprintln(w, "\nERRORS")
		for _, l := range lines {
			fmt.Fprintln(w, "  "+l)
		}
	}
	fmt.Fprintln(w, "\ntargets")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range r.checks() {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", c.Result, c.Target, c.Detail)
	}
	tw.Flush()
}

func (r *benchReport) writeMarkdown(w io.Writer) {
	fmt.Fprintf(w, "### Run of %s\n\n", r.Start.UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintln(w, "| | |\n|---|---|")
	for _, kv := range [][2]string{
		{"Command", "`" + r.Command + "`"},
		{"Machine", r.Machine.String()},
		{"Load average", r.loadLine()},
		{"Server", descServer},
		{"Server log", r.logLine()},
		{"Trivial handler", descTrivial},
		{"Load generator", descLoad},
		{"Settings", r.settings()},
		{"Took", r.Elapsed.Round(time.Second).String()},
	} {
		fmt.Fprintf(w, "| %s | %s |\n", kv[0], kv[1])
	}
	for _, a := range r.Algs {
		fmt.Fprintf(w, "\n#### %s\n\nThe %s.\n\n", a.Alg, a.ceilingLine(r.Machine.GOMAXPROCS))
		fmt.Fprintf(w, "| %s |\n", strings.Join(benchColumns, " | "))
		fmt.Fprintf(w, "|%s\n", strings.Repeat("---:|", len(benchColumns)))
		for _, c := range a.Cells {
			fmt.Fprintf(w, "| %s |\n", strings.Join(a.row(c), " | "))
		}
		fmt.Fprintf(w, "\n| %s |\n", strings.Join(cpuColumns, " | "))
		fmt.Fprintf(w, "|---|%s\n", strings.Repeat("---:|", len(cpuColumns)-1))
		for _, c := range a.Cells {
			if row, ok := a.cpuRow(c); ok {
				fmt.Fprintf(w, "| %s |\n", strings.Join(row, " | "))
			}
		}
	}
	fmt.Fprintf(w, "\nServer memory: %s.\n", r.memLine())
	if lines := r.errorLines(); len(lines) > 0 {
		fmt.Fprint(w, "\n**Errors:**\n\n")
		for _, l := range lines {
			fmt.Fprintf(w, "- %s\n", l)
		}
	}
	fmt.Fprintln(w, "\n#### Targets\n\n| result | target | measured |\n|---|---|---|")
	for _, c := range r.checks() {
		fmt.Fprintf(w, "| **%s** | %s | %s |\n", c.Result, c.Target, c.Detail)
	}
}
