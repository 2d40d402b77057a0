package redislimit_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse/gatehouse/internal/limit"
	"github.com/gatehouse/gatehouse/internal/redislimit"
)

// redisServer is a redis-server process of a test's own, which the test may stop, freeze and start again.
type redisServer struct {
	t    *testing.T
	bin  string
	dir  string
	port int
	cmd  *exec.Cmd
}

// startRedisServer starts redis-server on a free loopback port, without persistence, and stops it when the test
// ends.
func startRedisServer(t *testing.T) *redisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		bin = "/usr/bin/redis-server"
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s := &redisServer{t: t, bin: bin, dir: t.TempDir(), port: port}
	t.Cleanup(s.kill)
	s.start()
	return s
}

func (s *redisServer) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// start starts the server and waits until it answers.
func (s *redisServer) start() {
	s.t.Helper()
	logFile, err := os.OpenFile(filepath.Join(s.dir, "redis.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		s.t.Fatal(err)
	}
	defer logFile.Close()
	cmd := exec.Command(s.bin, "--port", strconv.Itoa(s.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", s.dir)
	cmd.Dir, cmd.Stdout, cmd.Stderr = s.dir, logFile, logFile
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start %s: %v (this test needs redis-server)", s.bin, err)
	}
	s.cmd = cmd
	client := redis.NewClient(&redis.Options{Addr: s.addr(), MaxRetries: -1})
	defer client.Close()
	waitFor(s.t, 10*time.Second, "redis-server to answer", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		return client.Ping(ctx).Err() == nil
	})
}

// kill stops the server at once, as a crash would.
func (s *redisServer) kill() {
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Kill()
	s.cmd.Wait()
	s.cmd = nil
}

// signal sends sig to the server: SIGSTOP freezes it, with its connections open; SIGCONT thaws it.
func (s *redisServer) signal(sig syscall.Signal) {
	s.t.Helper()
	if err := s.cmd.Process.Signal(sig); err != nil {
		s.t.Fatal(err)
	}
}

// waitFor polls cond until it holds, failing the test if it does not within d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", d, what)
		}
	}
}

// TestFault runs a Fallback over a Limiter on a redis-server of its own under concurrent load, and freezes,
// thaws, kills and restarts the server: no call hangs, limits fall back to the local Memory when the server is
// unreachable, sharing resumes when it is back, and each change is logged once.
func TestFault(t *testing.T) {
	srv := startRedisServer(t)
	client := redis.NewClient(&redis.Options{Addr: srv.addr()})
	defer client.Close()
	admin := redis.NewClient(&redis.Options{Addr: srv.addr(), MaxRetries: -1})
	defer admin.Close()

	const retryEvery = 100 * time.Millisecond
	log, logs := newLogger()
	local := limit.NewMemory(0)
	f := limit.NewFallback(redislimit.New(client, redislimit.Options{Timeout: 250 * time.Millisecond}), local,
		limit.FallbackOptions{Logger: log, RetryEvery: retryEvery})
	rate := limit.Rate{Count: 1000, Per: time.Second}

	var (
		calls   atomic.Int64
		slowest atomic.Int64 // the longest Allow, nanoseconds
		wg      sync.WaitGroup
	)
	stop := make(chan struct{})
	for g := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				start := time.Now()
				if _, _, err := f.Allow(context.Background(), fmt.Sprint("client-", g, "-", i%4), rate, start); err != nil {
					t.Errorf("Allow: %v", err)
				}
				for d := int64(time.Since(start)); ; {
					if old := slowest.Load(); d <= old || slowest.CompareAndSwap(old, d) {
						break
					}
				}
				calls.Add(1)
			}
		})
	}
	defer func() {
		close(stop)
		wg.Wait()
		if d := time.Duration(slowest.Load()); d > 2*time.Second {
			t.Errorf("the slowest Allow took %v; the Limiter's timeout is 250ms", d)
		}
		t.Logf("%d calls, the slowest %v", calls.Load(), time.Duration(slowest.Load()))
	}()

	// progress waits until the load makes n more calls, so that a phase is seen under load.
	progress := func(n int64) {
		t.Helper()
		target := calls.Load() + n
		waitFor(t, 10*time.Second, fmt.Sprintf("%d more calls", n), func() bool { return calls.Load() >= target })
	}
	keysInRedis := func() int64 {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		n, _ := admin.DBSize(ctx).Result()
		return n
	}
	shared := func() bool { return f.Status().Shared }
	degraded := func() bool { return !f.Status().Shared }

	progress(100)
	if !shared() || keysInRedis() == 0 || local.Len() != 0 {
		t.Fatalf("with Redis up: Status %+v, %d keys in Redis, %d in the local Memory; want shared, in Redis only",
			f.Status(), keysInRedis(), local.Len())
	}

	// Frozen: connections stay open and nothing answers, so calls time out.
	srv.signal(syscall.SIGSTOP)
	waitFor(t, 10*time.Second, "degraded while redis-server is frozen", degraded)
	progress(100)
	if local.Len() == 0 {
		t.Error("degraded, but the local Memory holds nothing")
	}
	srv.signal(syscall.SIGCONT)
	waitFor(t, 10*time.Second, "shared again once redis-server is thawed", shared)
	progress(100)

	// Killed: connections are refused.
	srv.kill()
	waitFor(t, 10*time.Second, "degraded while redis-server is down", degraded)
	st := f.Status()
	if st.Err == nil || st.Since.IsZero() {
		t.Errorf("Status while down = %+v, want an error and a time", st)
	}
	progress(100)

	// Restarted on the same port, empty: the first probe after it answers resumes sharing.
	srv.start()
	restarted := time.Now()
	waitFor(t, 10*time.Second, "shared again once redis-server is restarted", shared)
	t.Logf("shared again %v after the restart (RetryEvery %v)", time.Since(restarted).Round(time.Millisecond), retryEvery)
	progress(100)
	if !shared() || keysInRedis() == 0 {
		t.Errorf("after the restart: Status %+v, %d keys in Redis; want shared, in Redis", f.Status(), keysInRedis())
	}

	// One line per change, alternating; at least the four changes above. (A change more, should a call time out
	// on a busy machine while Redis is up, is still one line per change.)
	got := logs.transitions()
	if len(got) < 4 || len(got)%2 != 0 {
		t.Errorf("logged changes %v, want degraded and shared, twice", got)
	}
	for i, s := range got {
		if want := []string{"degraded", "shared"}[i%2]; s != want {
			t.Errorf("change %d logged as %q, want %q: %v", i, s, want, got)
			break
		}
	}
	if n := strings.Count(logs.String(), "\n"); n != len(got) {
		t.Errorf("%d log lines for %d changes:\n%s", n, len(got), logs)
	}
}
