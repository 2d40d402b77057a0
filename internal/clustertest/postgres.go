package clustertest

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// pgRoot is where the Debian packages postgresql-<version> install their server binaries, in <version>/bin.
const pgRoot = "/usr/lib/postgresql"

// How long PostgreSQL may take to start (crash recovery included) and to shut down.
const (
	pgStartTimeout = 60 * time.Second
	pgStopTimeout  = 60 * time.Second
)

// Postgres is a throwaway PostgreSQL cluster listening on 127.0.0.1, with one superuser, postgres, who needs no
// password. Its data is durable (fsync is on), so it survives Stop and Kill. Its methods are not safe for
// concurrent use.
type Postgres struct {
	bin  string              // the server's bin directory
	base string              // the cluster's directory, removed when the test ends: data/ and postgres.log
	data string              // the data directory
	port int                 // the port, the same across restarts
	cred *syscall.Credential // whom the server runs as; nil for this process's user
	proc *Process            // the postmaster; nil while stopped
}

// StartPostgres creates a cluster with the newest PostgreSQL server installed, starts it on a free port, and
// stops it and removes its data when the test ends. When this process runs as root, as PostgreSQL refuses to,
// the cluster runs as the postgres system user.
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	p := &Postgres{bin: pgBinDir(t), cred: pgCredential(t)}
	// Not t.TempDir(): the postgres user must reach the directory, and t.TempDir()'s parent is root's alone.
	base, err := tempDir("clustertest-pg-")
	if err != nil {
		t.Fatalf("clustertest: %v", err)
	}
	p.base, p.data = base, filepath.Join(base, "data")
	t.Cleanup(func() { p.cleanup(t) })
	if p.cred != nil {
		if err := os.Chown(base, int(p.cred.Uid), int(p.cred.Gid)); err != nil {
			t.Fatalf("clustertest: %v", err)
		}
	}

	// -N: initdb need not sync what it writes, as the cluster is thrown away should the machine crash; the
	// server itself runs with fsync on.
	initdb := p.command("initdb", "-D", p.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C", "-N")
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("clustertest: initdb: %v\n%s", err, out)
	}
	conf := fmt.Sprintf(`
# clustertest
listen_addresses = '127.0.0.1'
unix_socket_directories = '%s'
fsync = on
synchronous_commit = on
full_page_writes = on
shared_buffers = 32MB
max_connections = 200
`, strings.ReplaceAll(p.data, "'", "''"))
	f, err := os.OpenFile(filepath.Join(p.data, "postgresql.conf"), os.O_WRONLY|os.O_APPEND, 0)
	if err == nil {
		_, err = f.WriteString(conf)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		t.Fatalf("clustertest: configure PostgreSQL: %v", err)
	}

	for attempt := 1; ; attempt++ {
		p.port = FreePort(t)
		err := p.start()
		if err == nil {
			return p
		}
		if !errors.Is(err, errPortTaken) || attempt == 3 {
			t.Fatalf("clustertest: %v", err)
		}
	}
}

// errPortTaken reports that a server could not listen because another process took its port.
var errPortTaken = errors.New("port taken")

// pgBinDir returns the bin directory of the newest PostgreSQL server installed.
func pgBinDir(t testing.TB) string {
	t.Helper()
	entries, _ := os.ReadDir(pgRoot)
	var best string
	var bestVersion []int
	for _, e := range entries {
		v, ok := parseVersion(e.Name())
		if !ok {
			continue
		}
		bin := filepath.Join(pgRoot, e.Name(), "bin")
		if _, err := os.Stat(filepath.Join(bin, "initdb")); err != nil {
			continue
		}
		if best == "" || slices.Compare(v, bestVersion) > 0 {
			best, bestVersion = bin, v
		}
	}
	if best == "" {
		t.Fatalf("clustertest: no PostgreSQL server in %s/<version>/bin: install the Debian package postgresql", pgRoot)
	}
	return best
}

// parseVersion parses a version directory name such as "15" or "9.6".
func parseVersion(s string) ([]int, bool) {
	var v []int
	for part := range strings.SplitSeq(s, ".") {
		n, err := strconv.Atoi(part)
		if err != nil {
			return nil, false
		}
		v = append(v, n)
	}
	return v, true
}

// pgCredential returns the postgres user's credential if this process runs as root, and nil otherwise.
func pgCredential(t testing.TB) *syscall.Credential {
	t.Helper()
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		t.Fatalf("clustertest: PostgreSQL will not run as root, and there is no postgres user to run it as (%v); "+
			"the Debian package postgresql creates one", err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err := errors.Join(err1, err2); err != nil {
		t.Fatalf("clustertest: postgres user: %v", err)
	}
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
}

// command returns the server program name (initdb, postgres) to be run as the cluster's user, in its directory.
func (p *Postgres) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(p.bin, name), args...)
	cmd.Dir = p.base
	cmd.Env = pgEnv()
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: p.cred}
	return cmd
}

// client returns the client program name (createdb, pg_isready) connecting over TCP as the superuser.
func (p *Postgres) client(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(p.bin, name),
		append([]string{"-h", "127.0.0.1", "-p", strconv.Itoa(p.port), "-U", "postgres"}, args...)...)
	cmd.Env = pgEnv()
	return cmd
}

// pgEnv is this process's environment without the PG* variables, which would change where and how PostgreSQL
// programs connect.
func pgEnv() []string {
	return slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "PG") })
}

// Port returns the port the cluster listens on, the same across restarts.
func (p *Postgres) Port() int { return p.port }

// DSN returns the URL of database db as the superuser:
// postgres://postgres@127.0.0.1:PORT/DB?sslmode=disable.
func (p *Postgres) DSN(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.port, url.PathEscape(db))
}

// CreateDatabase creates the database name, owned by the superuser.
func (p *Postgres) CreateDatabase(t testing.TB, name string) {
	t.Helper()
	if out, err := p.client("createdb", name).CombinedOutput(); err != nil {
		t.Fatalf("clustertest: createdb %s: %v\n%s", name, err, out)
	}
}

// Stop shuts the cluster down as pg_ctl stop -m fast does — it rolls back open transactions, closes connections
// and writes a checkpoint — and returns once the server has exited.
func (p *Postgres) Stop(t testing.TB) {
	t.Helper()
	proc := p.running(t)
	proc.Signal(syscall.SIGINT) // fast shutdown
	if err := proc.Wait(pgStopTimeout); err != nil {
		t.Fatalf("clustertest: stop PostgreSQL: %v; its log ends:\n%s", err, proc.LogTail(20))
	}
	p.proc = nil
}

// Kill crashes the cluster: it kills the postmaster and all its processes with SIGKILL at once, and returns once
// they are gone. Start then recovers from the write-ahead log. The operating system's page cache survives, so
// Kill tests what PostgreSQL does on a crash, not whether it syncs to disk.
func (p *Postgres) Kill(t testing.TB) {
	t.Helper()
	proc := p.running(t)
	pid := proc.cmd.Process.Pid
	// Stopped, the postmaster cannot start children between the listing and the killing.
	proc.Signal(syscall.SIGSTOP)
	children := childrenOf(pid)
	proc.Kill()
	for _, c := range children {
		syscall.Kill(c, syscall.SIGKILL)
	}
	p.proc = nil
	// Backends are the postmaster's children, not this process's: once orphaned, they are reaped by init, or, on
	// machines whose init does not reap, stay zombies. Either way they no longer hold the shared memory, which a
	// new postmaster checks.
	deadline := time.Now().Add(10 * time.Second)
	for _, c := range children {
		for alive(c) {
			if time.Now().After(deadline) {
				t.Fatalf("clustertest: PostgreSQL process %d still alive 10s after SIGKILL", c)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// Start starts the stopped or killed cluster again, on the same port and data, and returns once it accepts
// connections.
func (p *Postgres) Start(t testing.TB) {
	t.Helper()
	if p.proc != nil {
		t.Fatalf("clustertest: PostgreSQL on port %d is already running", p.port)
	}
	if err := p.start(); err != nil {
		t.Fatalf("clustertest: %v", err)
	}
}

// running returns the postmaster, failing the test if the cluster is stopped.
func (p *Postgres) running(t testing.TB) *Process {
	t.Helper()
	if p.proc == nil {
		t.Fatalf("clustertest: PostgreSQL on port %d is not running", p.port)
	}
	return p.proc
}

// start starts the postmaster and waits until it accepts connections over TCP.
func (p *Postgres) start() error {
	logPath := filepath.Join(p.base, "postgres.log")
	from := size(logPath)
	// The postmaster is this process's child, not pg_ctl's orphan, so that this process reaps it: on a machine
	// whose init does not reap orphans, a killed postmaster would stay a zombie, and its stale postmaster.pid would
	// then name a live process and stop the next start.
	cmd := p.command("postgres", "-D", p.data, "-p", strconv.Itoa(p.port))
	cmd.SysProcAttr.Pdeathsig = syscall.SIGQUIT // immediate shutdown, should this process die
	proc, err := startProcess(cmd, logPath)
	if err != nil {
		return err
	}
	p.proc = proc
	deadline := time.Now().Add(pgStartTimeout)
	for !pidFileReady(filepath.Join(p.data, "postmaster.pid"), proc.cmd.Process.Pid) {
		if proc.exited() {
			p.proc = nil
			log := tail(logPath, from, 20)
			if strings.Contains(log, "Address already in use") {
				return fmt.Errorf("PostgreSQL on port %d: %w", p.port, errPortTaken)
			}
			return fmt.Errorf("PostgreSQL exited (%v) before it was ready; its log ends:\n%s", proc.err, log)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("PostgreSQL not ready within %s; its log ends:\n%s", pgStartTimeout, tail(logPath, from, 20))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if out, err := p.client("pg_isready", "-d", "postgres", "-t", "10").CombinedOutput(); err != nil {
		return fmt.Errorf("PostgreSQL ready, but pg_isready over TCP: %v: %s", err, out)
	}
	return nil
}

// pidFileReady reports whether the postmaster.pid file at path is pid's and says it is ready for connections.
func pidFileReady(path string, pid int) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	lines := strings.Split(string(b), "\n")
	// Line 1 is the postmaster's pid, line 8 its status (PM_STATUS_READY is "ready   ").
	return len(lines) >= 8 && lines[0] == strconv.Itoa(pid) && strings.TrimSpace(lines[7]) == "ready"
}

// cleanup stops the cluster at once, if running, and removes its directory; if the test failed, it logs the end of
// the server's log first.
func (p *Postgres) cleanup(t testing.TB) {
	if t.Failed() {
		t.Logf("PostgreSQL's log ends:\n%s", tail(filepath.Join(p.base, "postgres.log"), 0, 30))
	}
	if p.proc != nil {
		p.proc.Signal(syscall.SIGQUIT) // immediate shutdown: the postmaster ends its children, then exits
		if err := p.proc.Wait(10 * time.Second); errors.Is(err, os.ErrDeadlineExceeded) {
			p.proc.Kill()
		}
		p.proc = nil
	}
	os.RemoveAll(p.base)
}

// childrenOf returns the processes whose parent is pid.
func childrenOf(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	var children []int
	for _, e := range entries {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, ok := readStat(n); ok && st.ppid == pid {
			children = append(children, n)
		}
	}
	return children
}

// alive reports whether process pid runs: it exists, is no zombie, and is still PostgreSQL rather than a process
// that reused its pid.
func alive(pid int) bool {
	st, ok := readStat(pid)
	return ok && st.state != 'Z' && st.state != 'X' && st.comm == "postgres"
}

// procStat is what this package needs of /proc/PID/stat.
type procStat struct {
	comm  string
	state byte
	ppid  int
}

func readStat(pid int) (procStat, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, false
	}
	// pid (comm) state ppid ...; comm may hold spaces and parentheses.
	s := string(b)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open {
		return procStat{}, false
	}
	f := strings.Fields(s[end+1:])
	if len(f) < 2 || len(f[0]) == 0 {
		return procStat{}, false
	}
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		return procStat{}, false
	}
	return procStat{comm: s[open+1 : end], state: f[0][0], ppid: ppid}, true
}
