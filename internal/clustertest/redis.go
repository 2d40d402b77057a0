package clustertest

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// redisServer is where the Debian package redis-server installs the server.
const redisServer = "/usr/bin/redis-server"

// Redis is a throwaway Redis server listening on 127.0.0.1, without persistence: its data is lost when it stops.
// Its methods are not safe for concurrent use.
type Redis struct {
	dir  string   // working directory and log, removed when the test ends
	port int      // the port, the same across restarts
	proc *Process // nil while stopped
}

// StartRedis starts a Redis server on a free port and stops it when the test ends.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	needBinary(t, redisServer, "redis-server")
	r := &Redis{dir: t.TempDir()}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("Redis's log ends:\n%s", tail(r.logPath(), 0, 30))
		}
		if r.proc != nil {
			r.proc.Kill()
		}
	})
	for attempt := 1; ; attempt++ {
		r.port = FreePort(t)
		err := r.start()
		if err == nil {
			return r
		}
		if !errors.Is(err, errPortTaken) || attempt == 3 {
			t.Fatalf("clustertest: %v", err)
		}
	}
}

// Addr returns the server's address, 127.0.0.1:PORT, the same across restarts.
func (r *Redis) Addr() string { return "127.0.0.1:" + strconv.Itoa(r.port) }

// URL returns the URL of database 0: redis://127.0.0.1:PORT/0.
func (r *Redis) URL() string { return "redis://" + r.Addr() + "/0" }

// Stop shuts the server down with SIGTERM, without saving, and returns once it has exited.
func (r *Redis) Stop(t testing.TB) {
	t.Helper()
	if r.proc == nil {
		t.Fatalf("clustertest: Redis on %s is not running", r.Addr())
	}
	r.proc.Signal(syscall.SIGTERM)
	if err := r.proc.Wait(10 * time.Second); err != nil {
		t.Fatalf("clustertest: stop Redis: %v; its log ends:\n%s", err, r.proc.LogTail(20))
	}
	r.proc = nil
}

// Start starts the stopped server again, empty, on the same port, and returns once it answers PING.
func (r *Redis) Start(t testing.TB) {
	t.Helper()
	if r.proc != nil {
		t.Fatalf("clustertest: Redis on %s is already running", r.Addr())
	}
	if err := r.start(); err != nil {
		t.Fatalf("clustertest: %v", err)
	}
}

func (r *Redis) logPath() string { return filepath.Join(r.dir, "redis.log") }

// start starts the server and waits until it answers PING.
func (r *Redis) start() error {
	from := size(r.logPath())
	cmd := exec.Command(redisServer, "--bind", "127.0.0.1", "--port", strconv.Itoa(r.port),
		"--save", "", "--appendonly", "no", "--dir", r.dir, "--daemonize", "no")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	proc, err := startProcess(cmd, r.logPath())
	if err != nil {
		return err
	}
	r.proc = proc
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := ping(r.Addr())
		if err == nil {
			return nil
		}
		if proc.exited() {
			r.proc = nil
			log := tail(r.logPath(), from, 20)
			if strings.Contains(log, "Address already in use") {
				return fmt.Errorf("redis-server on %s: %w", r.Addr(), errPortTaken)
			}
			return fmt.Errorf("redis-server exited (%v) before it answered PING; its log ends:\n%s", proc.err, log)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server did not answer PING within 10s (%v); its log ends:\n%s", err, tail(r.logPath(), from, 20))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ping sends Redis at addr an inline PING and expects +PONG.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("PING answered %q", line)
	}
	return nil
}
