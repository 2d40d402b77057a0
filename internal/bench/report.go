package bench

import (
	"cmp"
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
	targetIntrospection  = 0.50 // introspection of a valid token, of the trivial handler
	targetP99            = 20 * time.Millisecond
	targetRSSBytes       = 100_000_000
	targetP99Concurrency = 64
)

var targetTrivialConcurrency = []int{16, 64}

// benchReport is everything one run measured.
type benchReport struct {
	Mode        string // ModeToken or ModeIntrospect
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
	SignOps     float64       // the signing ceiling; 0 when introspecting
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
		switch {
		case r.Mode == ModeIntrospect:
			out = append(out, r.trivialCheck(a, targetIntrospection, "introspections/s"))
		case a.Alg == auth.RS256:
			best := slices.MaxFunc(a.Cells, func(x, y cellResult) int { return cmp.Compare(x.Gatehouse.Rate, y.Gatehouse.Rate) })
			q := ratio(best.Gatehouse.Rate, a.SignOps)
			out = append(out, check{passFail(q >= targetRSAOfSigning),
				fmt.Sprintf("RS256 tokens/s ≥ %.0f%% of the RS256 signing ceiling", targetRSAOfSigning*100),
				fmt.Sprintf("best %s tokens/s at c=%d = %.1f%% of %s ops/s", fmtRate(best.Gatehouse.Rate), best.C, q*100, fmtRate(a.SignOps))})
		default:
			out = append(out, r.trivialCheck(a, targetOfTrivial, "tokens/s"))
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

// trivialCheck judges a's rate against the trivial handler's at the target's concurrency levels (or the highest run).
func (r *benchReport) trivialCheck(a algResult, target float64, what string) check {
	levels := slices.DeleteFunc(slices.Clone(targetTrivialConcurrency), func(c int) bool { return !slices.Contains(r.Concurrency, c) })
	if len(levels) == 0 {
		levels = []int{slices.Max(r.Concurrency)}
	}
	ok := true
	var parts []string
	for _, c := range levels {
		cell, _ := a.cell(c)
		q := cell.ofTrivial()
		ok = ok && q >= target
		parts = append(parts, fmt.Sprintf("c=%d: %.1f%% (%s / %s)", c, q*100, fmtRate(cell.Gatehouse.Rate), fmtRate(cell.Trivial.Rate)))
	}
	return check{passFail(ok), fmt.Sprintf("%s %s ≥ %.0f%% of the trivial handler at the same concurrency", a.Alg, what, target*100),
		strings.Join(parts, ", ")}
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
	descLoadIn  = "in the bench process on the same machine: c goroutines, one keep-alive transport, POST /oauth/introspect (form body token=…, HTTP Basic as a client with introspect:tokens), the same valid token of the algorithm every time"
)

func (r *benchReport) loadDesc() string {
	if r.Mode == ModeIntrospect {
		return descLoadIn
	}
	return descLoad
}

func (r *benchReport) settings() string {
	cs := make([]string, len(r.Concurrency))
	for i, c := range r.Concurrency {
		cs[i] = strconv.Itoa(c)
	}
	p := r.Plan
	signing := fmt.Sprintf("signing %s, ", p.signSlice)
	if r.Mode == ModeIntrospect {
		signing = ""
	}
	return fmt.Sprintf("concurrency %s; per cell, %s warmup on each target, then %d round(s) of: %strivial "+
		"handler %s, gatehouse %s (%s measured per target; the ceilings and the server take turns, so they see the same noise)",
		strings.Join(cs, ", "), p.warmup, p.rounds, signing, p.slice, p.slice, time.Duration(p.rounds)*p.slice)
}

func (r *benchReport) loadLine() string {
	if r.LoadBefore == "" {
		return "unknown"
	}
	return fmt.Sprintf("%s at the start, %s at the end (1, 5, 15 min; %d CPUs)", r.LoadBefore, r.LoadAfter, r.Machine.NumCPU)
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
	if a.SignOps == 0 {
		return fmt.Sprintf("introspection of a valid %s token (%d-byte claims): its signature is verified once, then remembered; the ceiling is the trivial handler", keyDesc[a.Alg], a.ClaimsBytes)
	}
	return fmt.Sprintf("signing ceiling %s ops/s (bare primitive, %s, %d goroutines, the server's %d-byte claims; slices %s–%s)",
		fmtRate(a.SignOps), keyDesc[a.Alg], gomaxprocs, a.ClaimsBytes, fmtRate(a.SignMin), fmtRate(a.SignMax))
}

var keyDesc = map[auth.Algorithm]string{auth.RS256: "RSA 2048", auth.ES256: "P-256", auth.EdDSA: "Ed25519"}

// row is one table row: concurrency | tokens/s | p50 | p99 | max | errors | trivial req/s | issuance/trivial |
// issuance/signing ceiling (without the last column when introspecting).
func (a algResult) row(c cellResult) []string {
	g := c.Gatehouse
	row := []string{strconv.Itoa(c.C), fmtRate(g.Rate), fmtMs(g.P50), fmtMs(g.P99), fmtMs(g.Max), strconv.Itoa(g.Errors),
		fmtRate(c.Trivial.Rate), fmtPct(c.ofTrivial())}
	if a.SignOps == 0 {
		return row
	}
	return append(row, fmtPct(ratio(g.Rate, a.SignOps)))
}

// cpuColumns head the table of CPU time per request; each row is one cell.
var cpuColumns = []string{"CPU per request", "gatehouse server", "of it, one signature", "trivial handler", "load generator → gatehouse", "load generator → trivial"}

// cpuColumns returns the CPU table's columns for the report's mode.
func (r *benchReport) cpuColumns() []string {
	if r.Mode == ModeIntrospect {
		return slices.Delete(slices.Clone(cpuColumns), 2, 3)
	}
	return cpuColumns
}

// cpuRow is one row of the CPU table; ok is false when CPU time could not be read.
func (a algResult) cpuRow(c cellResult) (row []string, ok bool) {
	g, t := c.Gatehouse, c.Trivial
	if g.TargetCPU == 0 || t.TargetCPU == 0 {
		return nil, false
	}
	if a.SignOps == 0 { // introspection: no signature
		return []string{fmt.Sprintf("c=%d", c.C), fmtUs(g.TargetCPU), fmtUs(t.TargetCPU), fmtUs(g.GenCPU), fmtUs(t.GenCPU)}, true
	}
	if a.SignCPU == 0 {
		return nil, false
	}
	return []string{fmt.Sprintf("c=%d", c.C), fmtUs(g.TargetCPU), fmtUs(a.SignCPU), fmtUs(t.TargetCPU), fmtUs(g.GenCPU), fmtUs(t.GenCPU)}, true
}

func fmtUs(d time.Duration) string {
	return fmt.Sprintf("%.0fµs", float64(d)/float64(time.Microsecond))
}

var benchColumns = []string{"concurrency", "tokens/s", "p50", "p99", "max", "errors", "trivial req/s", "issuance/trivial", "issuance/signing ceiling"}

// introspectColumns head the tables of an introspection run.
var introspectColumns = []string{"concurrency", "introspections/s", "p50", "p99", "max", "errors", "trivial req/s", "introspection/trivial"}

// columns returns the tables' columns for the report's mode.
func (r *benchReport) columns() []string {
	if r.Mode == ModeIntrospect {
		return introspectColumns
	}
	return benchColumns
}

// title names what the run measured.
func (r *benchReport) title() string {
	if r.Mode == ModeIntrospect {
		return "Gatehouse bench (introspection)"
	}
	return "Gatehouse bench"
}

func (r *benchReport) writePlain(w io.Writer) {
	fmt.Fprintf(w, "%s, %s (took %s)\n", r.title(), r.Start.UTC().Format("2006-01-02 15:04 UTC"), r.Elapsed.Round(time.Second))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, kv := range [][2]string{
		{"command", r.Command},
		{"machine", r.Machine.String()},
		{"load avg", r.loadLine()},
		{"server", strings.ReplaceAll(descServer, "`", "")},
		{"server log", r.logLine()},
		{"trivial", strings.ReplaceAll(descTrivial, "`", "")},
		{"load", r.loadDesc()},
		{"settings", r.settings()},
	} {
		fmt.Fprintf(tw, "  %s\t%s\n", kv[0], kv[1])
	}
	tw.Flush()
	for _, a := range r.Algs {
		fmt.Fprintf(w, "\n%s  %s\n", a.Alg, a.ceilingLine(r.Machine.GOMAXPROCS))
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		cols := make([]string, len(r.columns()))
		for i, c := range r.columns() {
			cols[i] = strings.ToUpper(c)
		}
		fmt.Fprintf(tw, "%s\t\n", strings.Join(cols, "\t"))
		for _, c := range a.Cells {
			fmt.Fprintf(tw, "%s\t\n", strings.Join(a.row(c), "\t"))
		}
		fmt.Fprintln(tw)
		fmt.Fprintf(tw, "%s\t\n", strings.ToUpper(strings.Join(r.cpuColumns(), "\t")))
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
	what := "Run"
	if r.Mode == ModeIntrospect {
		what = "Introspection run"
	}
	fmt.Fprintf(w, "### %s of %s\n\n", what, r.Start.UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintln(w, "| | |\n|---|---|")
	for _, kv := range [][2]string{
		{"Command", "`" + r.Command + "`"},
		{"Machine", r.Machine.String()},
		{"Load average", r.loadLine()},
		{"Server", descServer},
		{"Server log", r.logLine()},
		{"Trivial handler", descTrivial},
		{"Load generator", r.loadDesc()},
		{"Settings", r.settings()},
		{"Took", r.Elapsed.Round(time.Second).String()},
	} {
		fmt.Fprintf(w, "| %s | %s |\n", kv[0], kv[1])
	}
	for _, a := range r.Algs {
		fmt.Fprintf(w, "\n#### %s\n\nThe %s.\n\n", a.Alg, a.ceilingLine(r.Machine.GOMAXPROCS))
		fmt.Fprintf(w, "| %s |\n", strings.Join(r.columns(), " | "))
		fmt.Fprintf(w, "|%s\n", strings.Repeat("---:|", len(r.columns())))
		for _, c := range a.Cells {
			fmt.Fprintf(w, "| %s |\n", strings.Join(a.row(c), " | "))
		}
		fmt.Fprintf(w, "\n| %s |\n", strings.Join(r.cpuColumns(), " | "))
		fmt.Fprintf(w, "|---|%s\n", strings.Repeat("---:|", len(r.cpuColumns())-1))
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
