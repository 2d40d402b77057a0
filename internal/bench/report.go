package bench

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gatehouse/gatehouse/internal/auth"
)

// The targets the issue sets for this machine.
const (
	targetRSAOfSigning   = 0.60
	targetOfTrivial      = 0.40
	targetIntrospection  = 0.50 // introspection of a valid token, of the trivial handler (issue 8)
	targetP99            = 20 * time.Millisecond
	targetRSSBytes       = 100_000_000
	targetP99Concurrency = 64
)

var targetTrivialConcurrency = []int{16, 64}

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
	Modes       []Mode
	Algs        []algResult // one per mode and algorithm (ModeVerify: one, with no algorithm)
	DB          string      // the kind of database the instances share: "sqlite" or "postgres"
	Instances   int         // server processes; 0 is 1
	Redis       bool        // whether the instances share rate limits through Redis
	Mem         []serverMem // one per instance
	LogLines    int         // lines in the instances' logs at the end: one per request, and a few more
	LogBytes    int64
}

// serverMem is what was read of one instance's resident memory.
type serverMem struct {
	Peak    int64 // the highest VmRSS sampled, in bytes; 0 when it could not be read
	Samples int
	Err     error // the first failed read
	HWM     int64 // VmHWM at the end
}

// peakMem returns the highest peak of the instances, or 0 and why when one of them could not be read.
func (r *benchReport) peakMem() (int64, error) {
	var peak int64
	for _, m := range r.Mem {
		if m.Peak == 0 {
			return 0, m.Err
		}
		peak = max(peak, m.Peak)
	}
	if len(r.Mem) == 0 {
		return 0, errors.New("no server memory was sampled")
	}
	return peak, nil
}

type algResult struct {
	Mode        Mode
	Alg         auth.Algorithm // "" for ModeVerify
	ClaimsBytes int
	SignOps     float64       // the signing ceiling; 0 for a mode that signs nothing
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

// title names the result: the algorithm for ModeToken (as the bench always has), else the mode too.
func (a algResult) title() string {
	switch a.Mode {
	case ModeExchange:
		return "API key exchange " + string(a.Alg)
	case ModeVerify:
		return "API key verify"
	case ModeIntrospect:
		return "Introspection " + string(a.Alg)
	}
	return string(a.Alg)
}

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
	trivialLevels := slices.DeleteFunc(slices.Clone(targetTrivialConcurrency), func(c int) bool { return !slices.Contains(r.Concurrency, c) })
	if len(trivialLevels) == 0 {
		trivialLevels = []int{highest}
	}
	// ofTrivial judges a result against target, a share of the trivial handler at trivialLevels.
	ofTrivial := func(a algResult, what string, target float64) check {
		ok := true
		var parts []string
		for _, c := range trivialLevels {
			cell, _ := a.cell(c)
			q := cell.ofTrivial()
			ok = ok && q >= target
			parts = append(parts, fmt.Sprintf("c=%d: %.1f%% (%s / %s)", c, q*100, fmtRate(cell.Gatehouse.Rate), fmtRate(cell.Trivial.Rate)))
		}
		return check{passFail(ok), fmt.Sprintf("%s ≥ %.0f%% of the trivial handler at the same concurrency", what, target*100),
			strings.Join(parts, ", ")}
	}
	for _, a := range r.Algs {
		switch a.Mode {
		case ModeVerify:
			out = append(out, ofTrivial(a, "API key verify checks/s", targetOfTrivial))
		case ModeIntrospect:
			out = append(out, ofTrivial(a, string(a.Alg)+" introspections/s", targetIntrospection))
		}
		if a.Mode != ModeToken {
			continue // the issues set no other targets for the exchange, verify and introspection
		}
		switch a.Alg {
		case auth.RS256:
			best := slices.MaxFunc(a.Cells, func(x, y cellResult) int { return cmp.Compare(x.Gatehouse.Rate, y.Gatehouse.Rate) })
			q := ratio(best.Gatehouse.Rate, a.SignOps)
			out = append(out, check{passFail(q >= targetRSAOfSigning),
				fmt.Sprintf("RS256 tokens/s ≥ %.0f%% of the RS256 signing ceiling", targetRSAOfSigning*100),
				fmt.Sprintf("best %s tokens/s at c=%d = %.1f%% of %s ops/s", fmtRate(best.Gatehouse.Rate), best.C, q*100, fmtRate(a.SignOps))})
		default:
			out = append(out, ofTrivial(a, string(a.Alg)+" tokens/s", targetOfTrivial))
		}
	}
	p99At := targetP99Concurrency
	if !slices.Contains(r.Concurrency, p99At) {
		p99At = highest
	}
	for _, a := range r.Algs {
		if a.Mode != ModeToken {
			continue
		}
		cell, _ := a.cell(p99At)
		detail := fmt.Sprintf("p99 %s at c=%d", fmtMs(cell.Gatehouse.P99), p99At)
		if p99At != targetP99Concurrency {
			detail += fmt.Sprintf(" (c=%d was not run)", targetP99Concurrency)
		}
		out = append(out, check{passFail(cell.Gatehouse.P99 < targetP99),
			fmt.Sprintf("%s p99 < %s at c=%d", a.Alg, fmtMs(targetP99), targetP99Concurrency), detail})
	}
	rss := check{Target: fmt.Sprintf("server peak resident memory < %s", fmtMB(targetRSSBytes))}
	if peak, err := r.peakMem(); peak == 0 {
		rss.Result, rss.Detail = "SKIP", fmt.Sprintf("could not read it: %v", err)
	} else if len(r.Mem) == 1 {
		rss.Result = passFail(peak < targetRSSBytes)
		rss.Detail = fmt.Sprintf("peak VmRSS %s, VmHWM %s", fmtMB(peak), fmtMB(r.Mem[0].HWM))
	} else {
		rss.Target += " per instance"
		rss.Result = passFail(peak < targetRSSBytes)
		rss.Detail = fmt.Sprintf("highest peak VmRSS of the %d instances %s", len(r.Mem), fmtMB(peak))
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
					out = append(out, fmt.Sprintf("%s c=%d %s: %d errors, the first: %s", a.title(), c.C, name, l.Errors, l.FirstErr))
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
	descTrivial = "a net/http handler that reads the body and answers `{\"ok\":true}` with the headers of a token response, in a separate process"
	descLoad    = "in the bench process on the same machine: c goroutines, one keep-alive transport, "
)

// serverDesc describes the server under test: the database, by its kind only (its URL may hold a password), and
// the instances.
func (r *benchReport) serverDesc() string {
	db := map[string]string{"sqlite": "SQLite", "postgres": "PostgreSQL"}[r.DB]
	const settings = "default settings; request logging on (info level, one line per request, to a file"
	if r.Instances <= 1 {
		return fmt.Sprintf("%s, 1 instance: `gatehouse serve`, a separate process, fresh %s database, %s)", r.DB, db, settings)
	}
	limits := "rate limits per instance (no --redis)"
	if r.Redis {
		limits = "rate limits shared through Redis (--redis)"
	}
	s := fmt.Sprintf("%s, %d instances: `gatehouse serve` ×%d, separate processes started together on one fresh %s database, "+
		"%s, %s per instance); the load generator's goroutines go round robin over the instances, each sticking to one; "+
		"CPU per request is the instances' sum", r.DB, r.Instances, r.Instances, db, limits, settings)
	if r.DB == "postgres" || r.Redis {
		s += " (PostgreSQL's and Redis's own CPU time is not counted)"
	}
	return s
}

// trivialDesc describes the trivial handler: one process, however many instances the server has.
func (r *benchReport) trivialDesc() string {
	if r.Instances <= 1 {
		return descTrivial
	}
	return fmt.Sprintf("%s; one process whatever the instances: the ceiling of this machine, whose %d CPUs the %d instances share",
		descTrivial, r.Machine.NumCPU, r.Instances)
}

// descRequest describes each mode's request.
var descRequest = map[Mode]string{
	ModeToken:    "POST /oauth/token (form body, HTTP Basic), client_credentials with an audience",
	ModeExchange: "API key exchange: POST /oauth/token (form body, no client authentication), RFC 8693 token exchange of one API key with an audience",
	ModeVerify:   "API key verify: POST /api/v1/apikeys/verify (JSON body: one API key, an audience and a scope; one ES256 management bearer token for the whole run)",
	ModeIntrospect: "introspection: POST /oauth/introspect (form body token=…, HTTP Basic as the bench client, which holds introspect:tokens), " +
		"the same valid token of the algorithm every time",
}

// loadDesc describes the load generator and the requests of the run's modes.
func (r *benchReport) loadDesc() string {
	reqs := make([]string, 0, len(r.Modes))
	for _, m := range Modes {
		if slices.Contains(r.Modes, m) {
			reqs = append(reqs, descRequest[m])
		}
	}
	return descLoad + strings.Join(reqs, "; ")
}

func (r *benchReport) settings() string {
	cs := make([]string, len(r.Concurrency))
	for i, c := range r.Concurrency {
		cs[i] = strconv.Itoa(c)
	}
	p := r.Plan
	var signing string
	var unsigned []string // the run's modes that sign nothing
	for _, m := range Modes {
		switch {
		case !slices.Contains(r.Modes, m):
		case m.signs():
			signing = fmt.Sprintf("signing %s, ", p.signSlice)
		case m == ModeVerify:
			unsigned = append(unsigned, "API key verify")
		default:
			unsigned = append(unsigned, "introspection")
		}
	}
	s := fmt.Sprintf("concurrency %s; per cell, %s warmup on each target, then %d round(s) of: %strivial "+
		"handler %s, gatehouse %s (%s measured per target; the ceilings and the server take turns, so they see the same noise)",
		strings.Join(cs, ", "), p.warmup, p.rounds, signing, p.slice, p.slice, time.Duration(p.rounds)*p.slice)
	switch {
	case signing == "" || len(unsigned) == 0:
	case len(unsigned) == 1:
		s += "; " + unsigned[0] + " has no signing slice"
	default:
		s += "; " + strings.Join(unsigned, " and ") + " have no signing slice"
	}
	return s
}

func (r *benchReport) loadLine() string {
	if r.LoadBefore == "" {
		return "unknown"
	}
	return fmt.Sprintf("%s at the start, %s at the end (1, 5, 15 min; %d CPUs)", r.LoadBefore, r.LoadAfter, r.Machine.NumCPU)
}

func (r *benchReport) logLine() string {
	file := "the server's log file"
	if len(r.Mem) > 1 {
		file = "the instances' log files"
	}
	return fmt.Sprintf("%s lines, %s, written to %s during the run (one per request)",
		fmtRate(float64(r.LogLines)), fmtMB(r.LogBytes), file)
}

func (r *benchReport) memLine() string {
	if peak, err := r.peakMem(); peak == 0 {
		return fmt.Sprintf("could not be read (%v)", err)
	}
	if len(r.Mem) == 1 {
		m := r.Mem[0]
		return fmt.Sprintf("peak VmRSS %s (%d samples, every %s, startup included); VmHWM at the end %s",
			fmtMB(m.Peak), m.Samples, benchSampleEvery, fmtMB(m.HWM))
	}
	peaks, hwms := make([]string, len(r.Mem)), make([]string, len(r.Mem))
	for i, m := range r.Mem {
		peaks[i], hwms[i] = fmtMB(m.Peak), fmtMB(m.HWM)
	}
	return fmt.Sprintf("peak VmRSS per instance %s (sampled every %s, startup included); VmHWM at the end %s",
		strings.Join(peaks, ", "), benchSampleEvery, strings.Join(hwms, ", "))
}

func (a algResult) ceilingLine(gomaxprocs int) string {
	switch a.Mode {
	case ModeVerify:
		return "no token is signed, so the ceiling is the trivial handler's (the ES256 management token's signature is verified on its first use and remembered)"
	case ModeIntrospect:
		return fmt.Sprintf("no token is signed, so the ceiling is the trivial handler's (one valid %s token, %d-byte claims: "+
			"its signature is verified on the first introspection and remembered)", keyDesc[a.Alg], a.ClaimsBytes)
	}
	return fmt.Sprintf("signing ceiling %s ops/s (bare primitive, %s, %d goroutines, the server's %d-byte claims; slices %s–%s)",
		fmtRate(a.SignOps), keyDesc[a.Alg], gomaxprocs, a.ClaimsBytes, fmtRate(a.SignMin), fmtRate(a.SignMax))
}

var keyDesc = map[auth.Algorithm]string{auth.RS256: "RSA 2048", auth.ES256: "P-256", auth.EdDSA: "Ed25519"}

// row is one table row: concurrency | tokens/s | p50 | p99 | max | errors | trivial req/s | issuance/trivial |
// issuance/signing ceiling, the last "—" for a mode that signs nothing.
func (a algResult) row(c cellResult) []string {
	g := c.Gatehouse
	ofSigning := "—"
	if a.Mode.signs() {
		ofSigning = fmtPct(ratio(g.Rate, a.SignOps))
	}
	return []string{strconv.Itoa(c.C), fmtRate(g.Rate), fmtMs(g.P50), fmtMs(g.P99), fmtMs(g.Max), strconv.Itoa(g.Errors),
		fmtRate(c.Trivial.Rate), fmtPct(c.ofTrivial()), ofSigning}
}

// columns heads the result's table: benchColumns, named for what the mode counts.
func (a algResult) columns() []string {
	switch a.Mode {
	case ModeExchange:
		return []string{"concurrency", "tokens/s", "p50", "p99", "max", "errors", "trivial req/s", "exchange/trivial", "exchange/signing ceiling"}
	case ModeVerify:
		return []string{"concurrency", "checks/s", "p50", "p99", "max", "errors", "trivial req/s", "verify/trivial", "of a signing ceiling"}
	case ModeIntrospect:
		return []string{"concurrency", "introspections/s", "p50", "p99", "max", "errors", "trivial req/s", "introspection/trivial", "of a signing ceiling"}
	}
	return benchColumns
}

// cpuColumns head the table of CPU time per request; each row is one cell.
var cpuColumns = []string{"CPU per request", "gatehouse server", "of it, one signature", "trivial handler", "load generator → gatehouse", "load generator → trivial"}

// cpuRow is one row of the CPU table; ok is false when CPU time could not be read.
func (a algResult) cpuRow(c cellResult) (row []string, ok bool) {
	g, t := c.Gatehouse, c.Trivial
	if g.TargetCPU == 0 || t.TargetCPU == 0 || (a.SignCPU == 0 && a.Mode.signs()) {
		return nil, false
	}
	sign := "—"
	if a.Mode.signs() {
		sign = fmtUs(a.SignCPU)
	}
	return []string{fmt.Sprintf("c=%d", c.C), fmtUs(g.TargetCPU), sign, fmtUs(t.TargetCPU), fmtUs(g.GenCPU), fmtUs(t.GenCPU)}, true
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
		{"server", strings.ReplaceAll(r.serverDesc(), "`", "")},
		{"server log", r.logLine()},
		{"trivial", strings.ReplaceAll(r.trivialDesc(), "`", "")},
		{"load", r.loadDesc()},
		{"settings", r.settings()},
	} {
		fmt.Fprintf(tw, "  %s\t%s\n", kv[0], kv[1])
	}
	tw.Flush()
	for _, a := range r.Algs {
		fmt.Fprintf(w, "\n%s  %s\n", a.title(), a.ceilingLine(r.Machine.GOMAXPROCS))
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		cols := make([]string, len(a.columns()))
		for i, c := range a.columns() {
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
		{"Server", r.serverDesc()},
		{"Server log", r.logLine()},
		{"Trivial handler", r.trivialDesc()},
		{"Load generator", r.loadDesc()},
		{"Settings", r.settings()},
		{"Took", r.Elapsed.Round(time.Second).String()},
	} {
		fmt.Fprintf(w, "| %s | %s |\n", kv[0], kv[1])
	}
	for _, a := range r.Algs {
		ceiling := "The " + a.ceilingLine(r.Machine.GOMAXPROCS)
		if !a.Mode.signs() {
			line := a.ceilingLine(r.Machine.GOMAXPROCS)
			ceiling = strings.ToUpper(line[:1]) + line[1:]
		}
		fmt.Fprintf(w, "\n#### %s\n\n%s.\n\n", a.title(), ceiling)
		fmt.Fprintf(w, "| %s |\n", strings.Join(a.columns(), " | "))
		fmt.Fprintf(w, "|%s\n", strings.Repeat("---:|", len(a.columns())))
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
