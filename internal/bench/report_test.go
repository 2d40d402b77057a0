package bench

import (
	"bytes"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/auth"
)

// TestModesReport: API key verify is judged against the trivial handler at c=16 and c=64 and has no signing
// ceiling; the exchange is reported with its ceilings but judged by no target; the token targets judge token
// results only.
func TestModesReport(t *testing.T) {
	cells := func(gatehouse, trivial float64) []cellResult {
		var out []cellResult
		for _, c := range []int{16, 64} {
			out = append(out, cellResult{C: c, Gatehouse: loadResult{Rate: gatehouse}, Trivial: loadResult{Rate: trivial}})
		}
		return out
	}
	r := &benchReport{
		Concurrency: []int{16, 64},
		Modes:       []Mode{ModeExchange, ModeVerify},
		Algs: []algResult{
			{Mode: ModeExchange, Alg: auth.ES256, SignOps: 1000, Cells: cells(100, 1000)}, // 10%: no target to fail
			{Mode: ModeVerify, Cells: cells(500, 1000)},
		},
	}
	var checks []string
	for _, c := range r.checks() {
		checks = append(checks, c.Result+" "+c.Target+": "+c.Detail)
	}
	want := "PASS API key verify checks/s ≥ 40% of the trivial handler at the same concurrency: c=16: 50.0% (500 / 1,000), c=64: 50.0% (500 / 1,000)"
	if len(checks) != 3 || checks[0] != want {
		t.Errorf("checks:\n%s\nwant the verify check first, then memory and errors", strings.Join(checks, "\n"))
	}

	var out bytes.Buffer
	r.writeMarkdown(&out)
	for _, s := range []string{
		"#### API key exchange ES256\n\nThe signing ceiling",
		"| concurrency | tokens/s | p50 | p99 | max | errors | trivial req/s | exchange/trivial | exchange/signing ceiling |",
		"#### API key verify\n\nNo token is signed",
		"| 16 | 500 | 0.00ms | 0.00ms | 0.00ms | 0 | 1,000 | 50% | — |",
		"RFC 8693 token exchange of one API key",
		"POST /api/v1/apikeys/verify",
	} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("the markdown report has no %q:\n%s", s, out.String())
		}
	}
	if strings.Contains(out.String(), "client_credentials") {
		t.Errorf("the report of a run without ModeToken describes its request")
	}
}

// TestBenchConfig: the bench administrator, who makes and checks the API key, is declared only when a mode needs a
// key, with only the scopes it needs.
func TestBenchConfig(t *testing.T) {
	plain := string(benchConfig([]auth.Algorithm{auth.EdDSA}, false))
	keyed := string(benchConfig([]auth.Algorithm{auth.EdDSA}, true))
	if strings.Contains(plain, benchAdminID) {
		t.Errorf("the token bench declares the administrator:\n%s", plain)
	}
	want := "  - client_id: bench-admin\n    name: Bench administrator\n    client_secret: ${BENCH_CLIENT_SECRET}\n" +
		"    grants:\n      - audience: urn:gatehouse:management\n        scopes: [write:apikeys, verify:apikeys]\n"
	if !strings.HasPrefix(keyed, plain) || keyed[len(plain):] != want {
		t.Errorf("with a key, the config adds\n%s\nwant\n%s", keyed[len(plain):], want)
	}
}
