package clustertest_test

import (
	"bufio"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/clustertest"
)

const psql = "/usr/bin/psql"

func TestPostgres(t *testing.T) {
	if _, err := os.Stat(psql); err != nil {
		t.Fatalf("%s not found (%v): install the Debian package postgresql-client", psql, err)
	}
	start := time.Now()
	pg := clustertest.StartPostgres(t)
	t.Logf("StartPostgres: %s", time.Since(start))

	if got, want := pg.DSN("gh"), "postgres://postgres@127.0.0.1:"+strconv.Itoa(pg.Port())+"/gh?sslmode=disable"; got != want {
		t.Errorf("DSN = %q, want %q", got, want)
	}
	if got := query(t, pg.DSN("postgres"), "select 1"); got != "1" {
		t.Errorf("select 1 = %q, want 1", got)
	}
	if got := query(t, pg.DSN("postgres"), "show fsync"); got != "on" {
		t.Errorf("fsync = %q, want on", got)
	}
	pg.CreateDatabase(t, "gh")
	query(t, pg.DSN("gh"), "create table t (v int); insert into t values (1)")

	start = time.Now()
	pg.Stop(t)
	t.Logf("Stop: %s", time.Since(start))
	refused(t, "127.0.0.1:"+strconv.Itoa(pg.Port()))

	start = time.Now()
	pg.Start(t)
	t.Logf("Start: %s", time.Since(start))
	query(t, pg.DSN("gh"), "insert into t values (2)")

	start = time.Now()
	pg.Kill(t)
	t.Logf("Kill: %s", time.Since(start))
	refused(t, "127.0.0.1:"+strconv.Itoa(pg.Port()))

	start = time.Now()
	pg.Start(t) // crash recovery
	t.Logf("Start after Kill: %s", time.Since(start))
	if got := query(t, pg.DSN("gh"), "select string_agg(v::text, ',' order by v) from t"); got != "1,2" {
		t.Errorf("rows after stop and kill = %q, want 1,2", got)
	}
}

// query runs sql on the database at dsn with psql and returns its unaligned output.
func query(t *testing.T, dsn, sql string) string {
	t.Helper()
	cmd := exec.Command(psql, "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", dsn, "-c", sql)
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "PG") })
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := errors.AsType[*exec.ExitError](err); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("psql %s -c %q: %v\n%s", dsn, sql, err, stderr)
	}
	return strings.TrimSpace(string(out))
}

// refused fails the test unless a connection to addr is refused.
func refused(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err == nil {
		c.Close()
		t.Fatalf("%s accepts connections, want refused", addr)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial %s: %v, want connection refused", addr, err)
	}
}

func TestRedis(t *testing.T) {
	start := time.Now()
	r := clustertest.StartRedis(t)
	t.Logf("StartRedis: %s", time.Since(start))
	if got, want := r.URL(), "redis://"+r.Addr()+"/0"; got != want {
		t.Errorf("URL = %q, want %q", got, want)
	}
	if got := redis(t, r.Addr(), "PING"); got != "+PONG" {
		t.Errorf("PING = %q, want +PONG", got)
	}
	if got := redis(t, r.Addr(), "SET k v"); got != "+OK" {
		t.Errorf("SET = %q, want +OK", got)
	}

	start = time.Now()
	r.Stop(t)
	t.Logf("Stop: %s", time.Since(start))
	refused(t, r.Addr())

	start = time.Now()
	r.Start(t)
	t.Logf("Start: %s", time.Since(start))
	if got := redis(t, r.Addr(), "PING"); got != "+PONG" {
		t.Errorf("PING after restart = %q, want +PONG", got)
	}
	if got := redis(t, r.Addr(), "GET k"); got != "$-1" {
		t.Errorf("GET k after restart = %q, want $-1: the server persists nothing", got)
	}
}

// redis sends an inline command to the server at addr and returns the first line of the answer.
func redis(t *testing.T, addr, command string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		t.Fatalf("dial Redis: %v", err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(command + "\r\n")); err != nil {
		t.Fatalf("%s: %v", command, err)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("%s: %v", command, err)
	}
	return strings.TrimSuffix(line, "\r\n")
}

func TestProcess(t *testing.T) {
	p := clustertest.StartProcess(t, "/bin/sh", nil, "-c",
		`trap 'echo got TERM; exit 3' TERM; echo started; while :; do sleep 0.01; done`)
	for deadline := time.Now().Add(5 * time.Second); p.LogTail(1) != "started"; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no 'started' within 5s; log: %q", p.LogTail(5))
		}
	}
	if err := p.Wait(10 * time.Millisecond); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Wait while running = %v, want os.ErrDeadlineExceeded", err)
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("Signal: %v", err)
	}
	ee, ok := errors.AsType[*exec.ExitError](p.Wait(5 * time.Second))
	if !ok || ee.ExitCode() != 3 {
		t.Errorf("Wait after SIGTERM = %v, want exit status 3", ee)
	}
	if got, want := p.LogTail(2), "started\ngot TERM"; got != want {
		t.Errorf("LogTail(2) = %q, want %q", got, want)
	}
	if err := p.Signal(syscall.SIGTERM); !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("Signal after exit = %v, want os.ErrProcessDone", err)
	}
	p.Kill() // no-op once exited

	p = clustertest.StartProcess(t, "/bin/sleep", nil, "60")
	p.Kill()
	if err := p.Wait(0); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("Wait after Kill = %v, want signal: killed", err)
	}
}

func TestWaitHTTP(t *testing.T) {
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) < 3 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	clustertest.WaitHTTP(t, srv.URL, 5*time.Second)
	if got := calls.Load(); got != 3 {
		t.Errorf("WaitHTTP made %d requests, want 3", got)
	}
}

func TestFreePort(t *testing.T) {
	port := clustertest.FreePort(t)
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatalf("listen on the free port %d: %v", port, err)
	}
	ln.Close()
}

func TestBuildGatehouse(t *testing.T) {
	start := time.Now()
	bin := clustertest.BuildGatehouse(t)
	t.Logf("BuildGatehouse: %s", time.Since(start))
	if again := clustertest.BuildGatehouse(t); again != bin {
		t.Errorf("second BuildGatehouse = %q, want the first's %q", again, bin)
	}
	p := clustertest.StartProcess(t, bin, nil, "--help")
	if err := p.Wait(30 * time.Second); err != nil {
		t.Fatalf("gatehouse --help: %v\n%s", err, p.LogTail(20))
	}
	if log := p.LogTail(100); !strings.Contains(log, "Usage:") {
		t.Errorf("gatehouse --help printed no usage:\n%s", log)
	}
	out, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil {
		t.Fatalf("go version -m: %v", err)
	}
	if got, want := strings.Contains(string(out), "-race=true"), clustertest.RaceEnabled; got != want {
		t.Errorf("gatehouse built with -race: %v, want %v (as this test binary)", got, want)
	}
}
