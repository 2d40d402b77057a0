package main

import (
	"bytes"
	"cmp"
	"context"
	"maps"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// helperEnv marks a run of this test binary as the gatehouse binary (see init).
// It has no GATEHOUSE_ prefix because the bench passes its environment on without GATEHOUSE_* variables.
const helperEnv = "GH_BENCH_HELPER_PROCESS"

// init makes this test binary the gatehouse binary when helperEnv is set (the usual os/exec helper-process
// pattern): the bench starts its server and trivial handler from its own executable, which in a test is the test
// binary. It is in init, before the testing package reads the command line, so that run gets the arguments the
// bench gave, as the real binary would.
func init() {
	if os.Getenv(helperEnv) != "1" {
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// benchColumns is the number of columns of the report's tables: concurrency, tokens/s, p50, p99, max, errors,
// trivial req/s, issuance/trivial, issuance/signing ceiling.
const benchColumns = 9

func TestBench(t *testing.T) {
	t.Setenv(helperEnv, "1") // the bench's children are this test binary: see init
	var stdout, stderr bytes.Buffer
	args := []string{"bench", "--algs", "ES256", "--concurrency", "1,4", "--duration", "300ms", "--warmup", "100ms"}
	start := time.Now()
	if code := run(t.Context(), args, &stdout, &stderr); code != 0 {
		t.Fatalf("gatehouse bench exited %d\nstdout:\n%s\nstderr:\n%s", code, &stdout, &stderr)
	}
	t.Logf("took %s; report:\n%s", time.Since(start).Round(time.Millisecond), &stdout)

	report := stdout.String()
	for _, want := range []string{
		"gatehouse bench --algs=ES256 --concurrency=1,4 --duration=300ms --warmup=100ms",
		"ES256  signing ceiling",
		"server      sqlite, 1 instance: gatehouse serve, a separate process, fresh SQLite database",
		"CONCURRENCY",
		"targets",
	} {
		if !strings.Contains(report, want) {
			t.Errorf("the report has no %q", want)
		}
	}
	if runtime.GOOS == "linux" && !strings.Contains(report, "server memory: peak VmRSS") {
		t.Errorf("the report has no peak VmRSS of the server")
	}
	rows := tableRows(report)
	if got := slices.Sorted(maps.Keys(rows)); len(got) != 2 || rows["1"] == nil || rows["4"] == nil {
		t.Fatalf("table rows for concurrency %v, want 1 and 4", got)
	}
	for c, fields := range rows {
		if len(fields) != benchColumns {
			t.Errorf("c=%s: row %q has %d columns, want %d", c, fields, len(fields), benchColumns)
			continue
		}
		if rate := number(t, fields[1]); rate <= 0 {
			t.Errorf("c=%s: tokens/s = %s, want > 0", c, fields[1])
		}
		if fields[5] != "0" {
			t.Errorf("c=%s: %s errors, want 0", c, fields[5])
		}
		if rate := number(t, fields[6]); rate <= 0 {
			t.Errorf("c=%s: trivial req/s = %s, want > 0", c, fields[6])
		}
	}
	for line := range strings.Lines(report) {
		if strings.Contains(line, "every request succeeded") {
			if f := strings.Fields(line); f[0] != "PASS" || !strings.HasSuffix(line, " 0 errors\n") {
				t.Errorf("errors target: %q, want PASS with 0 errors", line)
			}
		}
	}
}

// TestBenchIntrospect: the introspection mode reports introspections/s against the trivial handler, judged against
// 50% of it, without a signing ceiling.
func TestBenchIntrospect(t *testing.T) {
	t.Setenv(helperEnv, "1")
	var stdout, stderr bytes.Buffer
	args := []string{"bench", "--modes", "introspect", "--algs", "EdDSA", "--concurrency", "2", "--duration", "300ms", "--warmup", "100ms"}
	if code := run(t.Context(), args, &stdout, &stderr); code != 0 {
		t.Fatalf("gatehouse bench exited %d\nstdout:\n%s\nstderr:\n%s", code, &stdout, &stderr)
	}
	report := stdout.String()
	t.Logf("report:\n%s", report)
	for _, want := range []string{
		"gatehouse bench --algs=EdDSA --concurrency=2 --duration=300ms --modes=introspect --warmup=100ms",
		"Introspection EdDSA  no token is signed, so the ceiling is the trivial handler's",
		"INTROSPECTIONS/S",
		"POST /oauth/introspect",
		"EdDSA introspections/s ≥ 50% of the trivial handler",
	} {
		if !strings.Contains(report, want) {
			t.Errorf("the report has no %q", want)
		}
	}
	if strings.Contains(report, "signing ceiling") || strings.Contains(report, "client_credentials") {
		t.Error("the introspection report mentions a signing ceiling or token issuance")
	}
	rows := tableRows(report)
	if fields := rows["2"]; len(fields) != benchColumns || fields[5] != "0" || number(t, fields[1]) <= 0 || fields[8] != "—" {
		t.Errorf("row for c=2: %q, want %d columns, introspections/s > 0, no errors and no signing ceiling", fields, benchColumns)
	}
}

// TestBenchPostgres: with --postgres and --instances 2, the bench creates a database on the server, runs two
// instances on it, loads both and reports them as one server, names the database by its kind only, and drops the
// database at the end. It needs a PostgreSQL server, as internal/sqlstore's tests do: $GATEHOUSE_TEST_POSTGRES, or
// a local one.
func TestBenchPostgres(t *testing.T) {
	t.Setenv(helperEnv, "1")
	server := cmp.Or(os.Getenv("GATEHOUSE_TEST_POSTGRES"), "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable")
	var stdout, stderr bytes.Buffer
	args := []string{"bench", "--modes", "token,verify", "--algs", "ES256", "--concurrency", "2", "--duration", "300ms",
		"--warmup", "100ms", "--instances", "2", "--postgres", server}
	if code := run(t.Context(), args, &stdout, &stderr); code != 0 {
		t.Fatalf("gatehouse bench exited %d\nstdout:\n%s\nstderr:\n%s", code, &stdout, &stderr)
	}
	report := stdout.String()
	t.Logf("report:\n%s\nstderr:\n%s", report, &stderr)
	for _, want := range []string{
		"server      postgres, 2 instances: gatehouse serve ×2",
		"the ceiling of this machine",
		"server memory: peak VmRSS per instance ",
		"PASS  every request succeeded",
	} {
		if !strings.Contains(report, want) {
			t.Errorf("the report has no %q", want)
		}
	}
	if fields := tableRows(report)["2"]; len(fields) != benchColumns || fields[5] != "0" || number(t, fields[1]) <= 0 {
		t.Errorf("row for c=2: %q, want %d columns, a rate > 0 and no errors", fields, benchColumns)
	}

	_, name, _ := strings.Cut(stderr.String(), "bench: created database ")
	name, _, _ = strings.Cut(name, ";")
	if !strings.HasPrefix(name, "gatehouse_bench_") {
		t.Fatalf("stderr names no database created:\n%s", &stderr)
	}
	conn, err := pgx.Connect(t.Context(), server)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(t.Context(), "SELECT COUNT(*) FROM pg_database WHERE datname = $1", name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("database %s is still there after the bench", name)
	}
}

// TestRedactURL: the report's command line never shows a password.
func TestRedactURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"postgres://u:pw@db:5432/gh?sslmode=disable", "postgres://u:xxxxx@db:5432/gh?sslmode=disable"},
		{"postgres://u@db/gh?password=pw&sslmode=disable", "postgres://u@db/gh?password=xxxxx&sslmode=disable"},
		{"redis://:pw@127.0.0.1:6379", "redis://:xxxxx@127.0.0.1:6379"},
		{"redis://127.0.0.1:6379", "redis://127.0.0.1:6379"},
		{"postgres://u:p%zz@db/gh", ""}, // not a URL: nothing of it
	} {
		if got := redactURL(tc.in); got != tc.want {
			t.Errorf("redactURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// tableRows returns the rows of the plain report's tables by their concurrency column.
func tableRows(report string) map[string][]string {
	rows := map[string][]string{}
	inTable := false
	for line := range strings.Lines(report) {
		fields := strings.Fields(line)
		switch {
		case len(fields) > 0 && fields[0] == "CONCURRENCY":
			inTable = true
		case len(fields) == 0:
			inTable = false
		case inTable:
			rows[fields[0]] = fields
		}
	}
	return rows
}

func number(t *testing.T, s string) float64 {
	t.Helper()
	f, err := strconv.ParseFloat(strings.ReplaceAll(s, ",", ""), 64)
	if err != nil {
		t.Errorf("%q is not a number", s)
	}
	return f
}

func TestBenchUsage(t *testing.T) {
	for _, args := range [][]string{
		{"bench", "--algs", "HS256"},
		{"bench", "--algs", "ES256,ES256"},
		{"bench", "--concurrency", "0"},
		{"bench", "--duration", "0s"},
		{"bench", "--warmup", "-1s"},
		{"bench", "extra"},
		{"bench", "serve-trivial"},
		{"bench", "--mode", "verify"},
		{"bench", "--modes", "introspection"},
		{"bench", "--modes", "introspect,introspect"},
		{"bench", "--instances", "0"},
		{"bench", "--instances", "65"},
		{"bench", "--postgres", "mysql://root@127.0.0.1/gatehouse"},
		{"bench", "--postgres", "sqlite:bench.db"},
		{"bench", "--postgres", "postgres://u@db:port/gh"},
		{"bench", "--redis", "127.0.0.1:6379"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(t.Context(), args, &stdout, &stderr); code != 2 {
			t.Errorf("gatehouse %s exited %d, want 2; stderr:\n%s", strings.Join(args, " "), code, &stderr)
		}
	}
}
