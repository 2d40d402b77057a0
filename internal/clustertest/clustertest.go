// Package clustertest starts and stops real throwaway servers — PostgreSQL, Redis and gatehouse itself — on free
// loopback ports, for tests only. Fault tests need servers they can stop, kill and start again on the same port
// and data, which neither a fake nor a shared long-running server allows.
//
// It uses the standard library only, and the servers of the Debian packages postgresql and redis-server; a test
// fails, naming the package to install, when one is missing. It runs on Linux. A function taking a testing.TB
// must be called from the test's goroutine, as it may call t.Fatal. Every server and process stops when its test
// ends, and dies with the test process should that be killed.
package clustertest

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("clustertest: find a free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// WaitHTTP polls url until a GET answers 200 OK, and fails the test if none does within timeout.
func WaitHTTP(t testing.TB, url string, timeout time.Duration) {
	t.Helper()
	client := &http.Client{Timeout: time.Second}
	defer client.CloseIdleConnections()
	deadline := time.Now().Add(timeout)
	for {
		var last string
		resp, err := client.Get(url)
		if err != nil {
			last = err.Error()
		} else {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = resp.Status
		}
		if time.Now().After(deadline) {
			t.Fatalf("clustertest: GET %s did not answer 200 within %s; last answer: %s", url, timeout, last)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Process is a child process under test, its stdout and stderr going to a log file. Its methods may be called
// from any goroutine.
type Process struct {
	cmd  *exec.Cmd
	name string
	log  string
	done chan struct{} // closed when the process has exited
	err  error         // cmd.Wait's result, set before done is closed
}

// StartProcess starts binary with args and env (nil means the test's own environment, as for exec.Cmd), its
// combined output going to a log file in t.TempDir(). When the test ends the process is killed if still
// running, and, if the test failed, the end of its log is logged.
func StartProcess(t testing.TB, binary string, env []string, args ...string) *Process {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	p, err := startProcess(cmd, filepath.Join(t.TempDir(), filepath.Base(binary)+".log"))
	if err != nil {
		t.Fatalf("clustertest: %v", err)
	}
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("%s's log ends:\n%s", p.name, p.LogTail(30))
		}
	})
	return p
}

// startProcess starts cmd with its stdout and stderr appended to the file logPath.
func startProcess(cmd *exec.Cmd, logPath string) (*Process, error) {
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	name := filepath.Base(cmd.Path)
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{cmd: cmd, name: name, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

// Signal sends sig to the process. It returns os.ErrProcessDone if the process has exited.
func (p *Process) Signal(sig os.Signal) error {
	return p.cmd.Process.Signal(sig)
}

// Kill kills the process with SIGKILL, unless it has exited, and returns once it has exited.
func (p *Process) Kill() {
	p.cmd.Process.Kill()
	<-p.done
}

// Wait waits up to timeout for the process to exit and returns how it exited: nil for status 0, an
// *exec.ExitError otherwise. If the process is still running after timeout, Wait returns an error matching
// os.ErrDeadlineExceeded and leaves it running.
func (p *Process) Wait(timeout time.Duration) error {
	if p.exited() {
		return p.err
	}
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		return fmt.Errorf("%s (pid %d) still running after %s: %w", p.name, p.cmd.Process.Pid, timeout, os.ErrDeadlineExceeded)
	}
}

// exited reports whether the process has exited.
func (p *Process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// LogTail returns the last n lines of the process's log, for failure messages.
func (p *Process) LogTail(n int) string {
	return tail(p.log, 0, n)
}

// tail returns the last n lines of the file path from byte offset on.
func tail(path string, offset int64, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(no log: " + err.Error() + ")"
	}
	if offset < int64(len(b)) {
		b = b[offset:]
	} else {
		b = nil
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// size returns the size of the file path, 0 if there is none.
func size(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// tempDir creates a directory in the system's temporary directory named prefix, the test process's pid, "-" and
// a random string. It first removes the directories of that prefix left by test processes that have ended, which
// could not clean up after themselves (a test timeout, for one, ends the process without cleanups).
func tempDir(prefix string) (string, error) {
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), prefix+"*"))
	for _, dir := range dirs {
		pid, _, _ := strings.Cut(strings.TrimPrefix(filepath.Base(dir), prefix), "-")
		if n, err := strconv.Atoi(pid); err == nil && syscall.Kill(n, 0) == syscall.ESRCH {
			os.RemoveAll(dir)
		}
	}
	return os.MkdirTemp("", prefix+strconv.Itoa(os.Getpid())+"-")
}

// needBinary fails the test if path is not there, naming the Debian package that provides it.
func needBinary(t testing.TB, path, debianPackage string) {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("clustertest: %s not found (%v): install the Debian package %s", path, err, debianPackage)
	}
}
