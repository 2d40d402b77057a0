package bench

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/config"
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
// key, with only the scopes it needs; the bench client is granted introspect:tokens of the built-in management API
// only when the run introspects, and the management API is never declared. Every combination parses.
func TestBenchConfig(t *testing.T) {
	algs := []auth.Algorithm{auth.EdDSA}
	plain := string(benchConfig(algs, []Mode{ModeToken}))
	keyed := string(benchConfig(algs, []Mode{ModeToken, ModeVerify}))
	if strings.Contains(plain, benchAdminID) || strings.Contains(plain, auth.ManagementAudience) {
		t.Errorf("the token bench declares the administrator or grants management scopes:\n%s", plain)
	}
	want := "  - client_id: bench-admin\n    name: Bench administrator\n    client_secret: ${BENCH_CLIENT_SECRET}\n" +
		"    grants:\n      - audience: urn:gatehouse:management\n        scopes: [write:apikeys, verify:apikeys]\n"
	if !strings.HasPrefix(keyed, plain) || keyed[len(plain):] != want {
		t.Errorf("with a key, the config adds\n%s\nwant\n%s", keyed[len(plain):], want)
	}
	introspect := string(benchConfig(algs, []Mode{ModeIntrospect}))
	want = "      - audience: urn:gatehouse:management\n        scopes: [introspect:tokens]\n"
	if !strings.HasPrefix(introspect, plain) || introspect[len(plain):] != want {
		t.Errorf("introspecting, the config adds\n%s\nwant\n%s", introspect[len(plain):], want)
	}

	secret := auth.NewSecret()
	env := func(name string) (string, bool) { return secret, name == benchSecretVar }
	for _, modes := range [][]Mode{{ModeToken}, Modes, {ModeIntrospect}, {ModeVerify, ModeIntrospect}} {
		conf := benchConfig([]auth.Algorithm{auth.RS256, auth.ES256, auth.EdDSA}, modes)
		f, err := config.Parse("bench.yaml", conf, env)
		if err != nil {
			t.Errorf("modes %v: the config does not parse: %v\n%s", modes, err, conf)
			continue
		}
		for _, api := range f.APIs {
			if api.Identifier == auth.ManagementAudience {
				t.Errorf("modes %v: the config declares the built-in management API:\n%s", modes, conf)
			}
		}
	}
}

// TestIntrospectReport: introspection is judged per algorithm against 50% of the trivial handler (not the 40% of
// issuance), has no signing ceiling, no signing slice and no p99 target, and the report describes its request only.
func TestIntrospectReport(t *testing.T) {
	cells := func(gatehouse, trivial float64) []cellResult {
		var out []cellResult
		for _, c := range []int{16, 64} {
			out = append(out, cellResult{C: c, Gatehouse: loadResult{Rate: gatehouse, TargetCPU: 40 * time.Microsecond},
				Trivial: loadResult{Rate: trivial, TargetCPU: 20 * time.Microsecond}})
		}
		return out
	}
	r := &benchReport{
		Concurrency: []int{16, 64},
		Modes:       []Mode{ModeIntrospect},
		Plan:        cellPlan{warmup: time.Second, rounds: 5, slice: time.Second, signSlice: 250 * time.Millisecond},
		Algs: []algResult{
			{Mode: ModeIntrospect, Alg: auth.ES256, ClaimsBytes: 224, Cells: cells(600, 1000)},
			{Mode: ModeIntrospect, Alg: auth.EdDSA, ClaimsBytes: 224, Cells: cells(450, 1000)}, // ≥ 40%, < 50%
		},
	}
	var checks []string
	for _, c := range r.checks() {
		checks = append(checks, c.Result+" "+c.Target+": "+c.Detail)
	}
	want := []string{
		"PASS ES256 introspections/s ≥ 50% of the trivial handler at the same concurrency: c=16: 60.0% (600 / 1,000), c=64: 60.0% (600 / 1,000)",
		"FAIL EdDSA introspections/s ≥ 50% of the trivial handler at the same concurrency: c=16: 45.0% (450 / 1,000), c=64: 45.0% (450 / 1,000)",
	}
	if len(checks) != 4 || checks[0] != want[0] || checks[1] != want[1] {
		t.Errorf("checks:\n%s\nwant\n%s\nthen memory and errors", strings.Join(checks, "\n"), strings.Join(want, "\n"))
	}

	var md, plain bytes.Buffer
	r.writeMarkdown(&md)
	r.writePlain(&plain)
	for _, s := range []string{
		"#### Introspection ES256\n\nNo token is signed, so the ceiling is the trivial handler's (one valid P-256 token, 224-byte claims",
		"| concurrency | introspections/s | p50 | p99 | max | errors | trivial req/s | introspection/trivial | of a signing ceiling |",
		"| 16 | 600 | 0.00ms | 0.00ms | 0.00ms | 0 | 1,000 | 60% | — |",
		"| c=16 | 40µs | — | 20µs | 0µs | 0µs |",
		"POST /oauth/introspect (form body token=…, HTTP Basic as the bench client, which holds introspect:tokens)",
		"then 5 round(s) of: trivial handler 1s, gatehouse 1s",
	} {
		if !strings.Contains(md.String(), s) {
			t.Errorf("the markdown report has no %q:\n%s", s, md.String())
		}
	}
	for _, out := range []string{md.String(), plain.String()} {
		if strings.Contains(out, "client_credentials") || strings.Contains(out, "signing 250ms") || strings.Contains(out, "ops/s") {
			t.Errorf("the introspection report describes issuance, a signing slice or a signing ceiling:\n%s", out)
		}
	}

	// With issuance in the same run, the settings name the mode without a signing slice.
	r.Modes = []Mode{ModeToken, ModeVerify, ModeIntrospect}
	if s := r.settings(); !strings.Contains(s, "of: signing 250ms, trivial") || !strings.HasSuffix(s, "; API key verify and introspection have no signing slice") {
		t.Errorf("settings: %s", s)
	}
}
