// Package bench is the load test behind `gatehouse bench`: it starts `gatehouse serve` and a trivial net/http
// handler as separate processes, loads both with the same requests at each concurrency level, measures the bare
// signing rate of each algorithm in the same run, and reports the results next to those two ceilings, with the CPU
// time per request and the server's peak memory. In ModeIntrospect it loads token introspection instead of
// issuance, against the trivial handler's ceiling.
package bench

import (
	"bytes"
	"context"
	"encoding/base64"
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
	"time"

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
)

// Modes: what the bench loads.
const (
	ModeToken      = "token"      // POST /oauth/token: client credentials
	ModeIntrospect = "introspect" // POST /oauth/introspect of a valid token of the algorithm, as a client with introspect:tokens
)

// benchAudience is the identifier of the bench API that signs with alg.
func benchAudience(alg auth.Algorithm) string {
	return "https://bench.example.com/" + strings.ToLower(string(alg))
}

// Options are the settings of a run. Run expects them valid: at least one algorithm and one concurrency level, none
// listed twice, a positive Duration and a Warmup that is not negative.
type Options struct {
	// Binary is the gatehouse binary. Run starts it twice, as `serve` (the server under test) and as
	// `bench serve-trivial ADDR` (the trivial handler, see ServeTrivial).
	Binary      string
	Mode        string // ModeToken (also when empty) or ModeIntrospect
	Algs        []auth.Algorithm
	Concurrency []int         // concurrent connections, one cell per level
	Duration    time.Duration // measured time per target in each cell
	Warmup      time.Duration // unmeasured load on each target before each cell
	Markdown    bool          // write the report as markdown (for BENCHMARKS.md) rather than as tables
	CommandLine string        // the command line that gave these options, for the report
	Progress    io.Writer     // where progress messages go; nil discards them
}

// Run runs the whole bench and writes the report to w. It returns an error only when the bench could not run, not
// when a target was missed. It stops its child processes and removes its temporary directory however it ends.
func Run(ctx context.Context, o Options, w io.Writer) error {
	if o.Progress == nil {
		o.Progress = io.Discard
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
	if err := os.WriteFile(configFile, benchConfig(o.Algs), 0o600); err != nil {
		return err
	}
	env := append(childEnv(os.Environ()), "GATEHOUSE_ROOT_KEY="+rootkey.Generate().String(), benchSecretVar+"="+secret)

	serverAddr, err := freeAddr()
	if err != nil {
		return err
	}
	server, err := startChild(o.Binary, filepath.Join(dir, "server.log"), env,
		"serve", "--addr", serverAddr, "--db", "sqlite:"+filepath.Join(dir, "bench.db"), "--config", configFile)
	if err != nil {
		return err
	}
	defer server.stop()
	trivialAddr, err := freeAddr()
	if err != nil {
		return err
	}
	trivial, err := startChild(o.Binary, filepath.Join(dir, "trivial.log"), env, "bench", "serve-trivial", trivialAddr)
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
	fmt.Fprintf(o.Progress, "bench: starting gatehouse serve on %s and the trivial handler on %s\n", serverAddr, trivialAddr)
	if err := waitOK(ctx, serverURL+"/readyz", server); err != nil {
		return benchErr(ctx, fmt.Errorf("server: %w", err))
	}
	if err := waitOK(ctx, trivialURL+"/", trivial); err != nil {
		return benchErr(ctx, fmt.Errorf("trivial handler: %w", err))
	}

	plan := newCellPlan(o, len(o.Concurrency))
	if o.Mode == "" {
		o.Mode = ModeToken
	}
	rep := &benchReport{
		Mode:        o.Mode,
		Start:       time.Now(),
		Machine:     machine(),
		LoadBefore:  loadAverage(),
		Command:     o.CommandLine,
		Plan:        plan,
		Concurrency: o.Concurrency,
	}
	for _, alg := range o.Algs {
		req := benchRequest{
			body:  []byte(url.Values{"grant_type": {"client_credentials"}, "audience": {benchAudience(alg)}}.Encode()),
			authz: "Basic " + base64.StdEncoding.EncodeToString([]byte(url.QueryEscape(benchClientID)+":"+url.QueryEscape(secret))),
		}
		token, claims, err := preflight(ctx, serverURL+"/oauth/token", req, alg)
		if err != nil {
			return benchErr(ctx, fmt.Errorf("%s: %w", alg, err))
		}
		var sign *ceilingSigner // the signing ceiling, for issuance only
		if o.Mode == ModeIntrospect {
			req = benchRequest{path: "/oauth/introspect", body: []byte(url.Values{"token": {token}}.Encode()), authz: req.authz}
			if err := preflightIntrospect(ctx, serverURL, req); err != nil {
				return benchErr(ctx, fmt.Errorf("%s: %w", alg, err))
			}
		} else if sign, err = newCeilingSigner(alg, claims); err != nil {
			return benchErr(ctx, fmt.Errorf("%s signing ceiling: %w", alg, err))
		}
		res := algResult{Alg: alg, ClaimsBytes: len(claims)}
		for _, c := range o.Concurrency {
			fmt.Fprintf(o.Progress, "bench: %s c=%d\n", alg, c)
			cell, err := runCell(ctx, plan, c, benchTarget{serverURL, server.cmd.Process.Pid},
				benchTarget{trivialURL, trivial.cmd.Process.Pid}, req, sign)
			if err != nil {
				return benchErr(ctx, err)
			}
			res.Cells = append(res.Cells, cell)
		}
		if sign != nil {
			res.SignOps, res.SignMin, res.SignMax, res.SignCPU = sign.rate(), sign.min, sign.max, sign.cpuPerOp()
		}
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
	if o.Markdown {
		rep.writeMarkdown(w)
	} else {
		rep.writePlain(w)
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

// benchConfig is the declarative file of the server under test: one API per algorithm, and one client granted all,
// with the built-in management API's introspect:tokens.
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
	fmt.Fprintf(&b, "      - audience: %s\n        scopes: [%q]\n", auth.ManagementAudience, auth.ScopeIntrospect)
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
