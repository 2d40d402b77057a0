package bench

import (
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
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/internal/auth"
)

// benchRequest is the POST every load-generator goroutine sends, to the server and to the trivial handler alike.
type benchRequest struct {
	path        string // e.g. /oauth/token
	contentType string // "" for a form
	body        []byte
	authz       string // the Authorization header; "" for none
}

// do sends the request to the server at base (scheme and host).
func (r benchRequest) do(ctx context.Context, client *http.Client, base string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+r.path, bytes.NewReader(r.body))
	if err != nil {
		return nil, err
	}
	ct := r.contentType
	if ct == "" {
		ct = "application/x-www-form-urlencoded"
	}
	req.Header.Set("Content-Type", ct)
	req.Header.Set("Accept", "application/json")
	if r.authz != "" {
		req.Header.Set("Authorization", r.authz)
	}
	return client.Do(req)
}

// preflight gets one token from the server at base, checks that it is an at+jwt signed with alg, and returns it
// with its claims: the payload the signing ceiling signs.
func preflight(ctx context.Context, base string, r benchRequest, alg auth.Algorithm) (token string, claims []byte, err error) {
	client := &http.Client{Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	resp, err := r.do(ctx, client, base)
	if err != nil {
		return "", nil, fmt.Errorf("first token request: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", nil, fmt.Errorf("first token response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", nil, fmt.Errorf("first token request: %s: %s", resp.Status, bytes.TrimSpace(raw))
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(raw, &tok); err != nil {
		return "", nil, fmt.Errorf("first token response: %w", err)
	}
	parts := strings.Split(tok.AccessToken, ".")
	if len(parts) != 3 {
		return "", nil, errors.New("first token response: access_token is not a compact JWS")
	}
	hdr, err1 := base64.RawURLEncoding.DecodeString(parts[0])
	claims, err2 := base64.RawURLEncoding.DecodeString(parts[1])
	var h struct{ Alg, Typ string }
	if err := errors.Join(err1, err2, json.Unmarshal(hdr, &h)); err != nil {
		return "", nil, fmt.Errorf("first token: %w", err)
	}
	if h.Alg != string(alg) || h.Typ != tokenType {
		return "", nil, fmt.Errorf("first token has alg %q and typ %q, want %s and %s", h.Alg, h.Typ, alg, tokenType)
	}
	return tok.AccessToken, claims, nil
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

// newCellPlan spreads o.Duration per target over rounds, and the signing time of an algorithm over its cells'
// rounds.
func newCellPlan(o Options, cells int) cellPlan {
	rounds := max(1, int((o.Duration+benchSlice-1)/benchSlice))
	return cellPlan{
		warmup:    o.Warmup,
		rounds:    rounds,
		slice:     o.Duration / time.Duration(rounds),
		signSlice: max(benchMinSignSlice, benchSignTime/time.Duration(rounds*cells)),
	}
}

// benchTarget is what the load generator loads: one process, or the server's instances.
type benchTarget struct {
	urls []string // base URLs, one per process; load-generator goroutine i sticks to urls[i%len(urls)]
	pids []int    // the processes whose CPU time, summed, is the target's
}

// runCell measures the server and the trivial handler at concurrency c, and adds to sign's measurement (nil: no
// signing ceiling, as for ModeVerify and ModeIntrospect).
func runCell(ctx context.Context, p cellPlan, c int, server, trivialHandler benchTarget, req benchRequest, sign *ceilingSigner) (cellResult, error) {
	gatehouse := newLoadGen(server, req, c)
	defer gatehouse.close()
	trivial := newLoadGen(trivialHandler, req, c)
	defer trivial.close()
	targets := []*loadGen{trivial, gatehouse}
	for _, g := range targets {
		if err := g.warm(ctx, p.warmup, time.Duration(p.rounds)*p.slice); err != nil {
			return cellResult{}, err
		}
	}
	for range p.rounds {
		if sign != nil {
			if err := sign.run(ctx, p.signSlice); err != nil {
				return cellResult{}, err
			}
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
	ops      int
	elapsed  time.Duration
	min, max float64       // the slowest and fastest slice, ops/s
	cpu      time.Duration // CPU time this process used in the slices
	cpuErr   error
}

func newCeilingSigner(alg auth.Algorithm, claims []byte) (*ceilingSigner, error) {
	header := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"` + string(alg) + `","kid":"0123456789012345678901234567890123456789012","typ":"` + tokenType + `"}`))
	input := []byte(header + "." + base64.RawURLEncoding.EncodeToString(claims))
	s := &ceilingSigner{}
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
	target   benchTarget
	req      benchRequest
	tr       *http.Transport
	client   *http.Client
	workers  []loadWorker // one per goroutine
	measured time.Duration

	targetCPU time.Duration // CPU time the target's processes used during the measured slices
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

func newLoadGen(target benchTarget, req benchRequest, c int) *loadGen {
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        c,
		MaxIdleConnsPerHost: c,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}
	return &loadGen{target: target, req: req, tr: tr, client: &http.Client{Transport: tr, Timeout: 30 * time.Second},
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
	target0, err1 := cpuTimes(g.target.pids)
	gen0, err2 := cpuTime(os.Getpid())
	end := time.Now().Add(d)
	var wg sync.WaitGroup
	for i := range g.workers {
		w := &g.workers[i]
		url := g.target.urls[i%len(g.target.urls)]
		wg.Go(func() { w.run(ctx, g.client, url, g.req, end, measure) })
	}
	wg.Wait()
	if !measure {
		return ctx.Err()
	}
	g.measured += d
	target1, err3 := cpuTimes(g.target.pids)
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
