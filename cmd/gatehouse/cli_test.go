package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// runCLI runs the CLI in-process and returns its exit code, stdout and stderr.
func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code := run(ctx, args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestExitCodes(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want int
	}{
		{[]string{"--help"}, 0},
		{[]string{"nonsense"}, 2},
		{[]string{"serve", "--bogus"}, 2},
		{[]string{"serve", "extra-arg"}, 2},
		{[]string{"serve", "--log-format", "xml"}, 2},
		{[]string{"serve", "--db", "mysql://x"}, 2},
		{[]string{"serve", "--issuer", "auth.example.com"}, 2},
		{[]string{"serve", "--issuer", "https://auth.example.com/?x=1"}, 2},
		{[]string{"token"}, 2},
		{[]string{"token", "--url", "ftp://x", "--client-id", "a", "--client-secret", "b"}, 2},
		{[]string{"token", "--url", "http://127.0.0.1:1/oauth/token", "--client-id", "a", "--client-secret", "b", "--timeout", "2s"}, 1},
	} {
		if got, _, stderr := runCLI(t, tc.args...); got != tc.want {
			t.Errorf("gatehouse %s: exit %d, want %d (stderr %q)", strings.Join(tc.args, " "), got, tc.want, stderr)
		}
	}
}

func TestServeWithoutRootKey(t *testing.T) {
	t.Setenv("GATEHOUSE_ROOT_KEY", "")
	code, _, stderr := runCLI(t, "serve", "--addr", "127.0.0.1:0", "--db", "sqlite:"+filepath.Join(t.TempDir(), "x.db"))
	if code != 1 || !strings.Contains(stderr, "GATEHOUSE_ROOT_KEY") {
		t.Errorf("exit %d, stderr %q: want 1 and advice about GATEHOUSE_ROOT_KEY", code, stderr)
	}
}

// TestTokenCommand: gatehouse token against a real server, in each request style, and its -q form.
func TestTokenCommand(t *testing.T) {
	ts := startServer(t, "", nil, fixture)
	base := []string{"token", "--url", ts.tokenURL(), "--client-id", "svc-one", "--client-secret", secretOne}
	for _, extra := range [][]string{nil, {"--auth", "post"}, {"--json", "--auth", "post", "--audience", "https://api.example.com/v1"}, {"--resource", "https://api.example.com/v1", "--scope", "read"}} {
		code, out, stderr := runCLI(t, append(base, extra...)...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", extra, code, stderr)
		}
		var resp map[string]any
		if err := json.Unmarshal([]byte(out), &resp); err != nil || resp["access_token"] == nil {
			t.Errorf("%v: stdout %q is not a token response", extra, out)
		}
	}
	code, out, _ := runCLI(t, append(base, "-q")...)
	if tok := strings.TrimSpace(out); code != 0 || strings.Count(tok, ".") != 2 {
		t.Errorf("-q: exit %d, stdout %q: want only the JWT", code, out)
	} else {
		verifyToken(t, ts.URL, ts.IssuerURL, "https://api.example.com/v1", tok)
	}
	code, out, stderr := runCLI(t, "token", "--url", ts.tokenURL(), "--client-id", "svc-one", "--client-secret", secretMulti)
	if code != 1 || out != "" || !strings.Contains(stderr, "invalid_client") {
		t.Errorf("wrong secret: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	// The secret may come from the environment instead of the command line.
	t.Setenv("GATEHOUSE_CLIENT_SECRET", secretOne)
	if code, _, stderr := runCLI(t, "token", "--url", ts.tokenURL(), "--client-id", "svc-one", "-q"); code != 0 {
		t.Errorf("secret from GATEHOUSE_CLIENT_SECRET: exit %d: %s", code, stderr)
	}
}

// TestDevCommand runs `gatehouse dev` as a newcomer would, as a real process in an empty directory: it prints a
// curl command that gets a token. A second run reuses the database and root key and prints the same working command.
func TestDevCommand(t *testing.T) {
	bin := buildBinary(t)
	dir := t.TempDir()
	var secrets []string
	for run := range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, bin, "dev", "--addr", "127.0.0.1:0")
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GATEHOUSE_ROOT_KEY=")
		stdout, _ := cmd.StdoutPipe()
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		banner := readBanner(t, stdout)
		curl := regexp.MustCompile(`curl -s (\S+) -d grant_type=client_credentials \\\n\s+-d client_id=(\S+) -d client_secret=(\S+) -d audience=(\S+)`).FindStringSubmatch(banner)
		if curl == nil {
			cancel()
			t.Fatalf("run %d: no curl command in the banner:\n%s\nstderr:\n%s", run, banner, stderr.String())
		}
		secrets = append(secrets, curl[3])
		resp, err := http.PostForm(curl[1], map[string][]string{"grant_type": {"client_credentials"},
			"client_id": {curl[2]}, "client_secret": {curl[3]}, "audience": {curl[4]}})
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), `"access_token"`) {
			t.Errorf("run %d: the printed command got %d %s", run, resp.StatusCode, body)
		}
		cmd.Process.Signal(os.Interrupt)
		if err := cmd.Wait(); err != nil {
			t.Errorf("run %d: dev did not exit cleanly on SIGINT: %v\n%s", run, err, stderr.String())
		}
		cancel()
	}
	if secrets[0] != secrets[1] {
		t.Error("the second run printed a different secret")
	}
	fi, err := os.Stat(filepath.Join(dir, devKeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("root key file: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	if _, err := os.Stat(filepath.Join(dir, devDB)); err != nil {
		t.Errorf("database file: %v", err)
	}
}

// readBanner reads stdout up to the line that ends the dev banner.
func readBanner(t *testing.T, r io.Reader) string {
	t.Helper()
	var b strings.Builder
	sc := bufio.NewScanner(r)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for sc.Scan() {
			b.WriteString(sc.Text() + "\n")
			if strings.HasPrefix(sc.Text(), "Press Ctrl-C") {
				return
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("no banner within 20s")
	}
	go io.Copy(io.Discard, r)
	return b.String()
}

var (
	binOnce sync.Once
	binPath string // removed by TestMain
	binErr  error
)

// buildBinary builds cmd/gatehouse once per test run.
func buildBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "gatehouse-bin")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "gatehouse")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			binErr = &buildError{out: string(out), err: err}
		}
	})
	if binErr != nil {
		t.Fatalf("build gatehouse: %v", binErr)
	}
	return binPath
}

type buildError struct {
	out string
	err error
}

func (e *buildError) Error() string { return e.err.Error() + ": " + e.out }
