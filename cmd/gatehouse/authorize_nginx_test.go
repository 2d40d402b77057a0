package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// nginxConf puts nginx in front of an upstream, asking gatehouse authorize about every request with auth_request,
// as docs/authorize.md tells users to. Placeholders: {{dir}}, {{user}}, {{port}}, {{upstream}}, {{authorize}}.
const nginxConf = `# one process, in the foreground, everything in {{dir}}
{{user}}
master_process off;
worker_processes 1;
error_log {{dir}}/error.log info;
pid {{dir}}/nginx.pid;
events { worker_connections 128; }
http {
  access_log {{dir}}/access.log;
  client_body_temp_path {{dir}}/client_body;
  proxy_temp_path {{dir}}/proxy;
  fastcgi_temp_path {{dir}}/fastcgi;
  uwsgi_temp_path {{dir}}/uwsgi;
  scgi_temp_path {{dir}}/scgi;

  server {
    listen 127.0.0.1:{{port}};
    server_name api.example.com;

    location / {
      auth_request /_gatehouse;
      # Pass who the caller is upstream; proxy_set_header also drops any X-Auth-* the client sent.
      auth_request_set $auth_subject $upstream_http_x_auth_subject;
      auth_request_set $auth_client_id $upstream_http_x_auth_client_id;
      auth_request_set $auth_org_id $upstream_http_x_auth_org_id;
      auth_request_set $auth_scopes $upstream_http_x_auth_scopes;
      proxy_set_header X-Auth-Subject $auth_subject;
      proxy_set_header X-Auth-Client-Id $auth_client_id;
      proxy_set_header X-Auth-Org-Id $auth_org_id;
      proxy_set_header X-Auth-Scopes $auth_scopes;
      proxy_pass http://{{upstream}};
    }

    location = /_gatehouse {
      internal;
      proxy_pass http://{{authorize}}/nginx;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-Method $request_method;
      proxy_set_header X-Original-URI $request_uri;
      proxy_set_header Host $host;
    }
  }
}
`

// TestNginxForwardAuth runs a real nginx with auth_request in front of an upstream that echoes what it receives,
// and gatehouse authorize behind auth_request, with tokens from a real Gatehouse. It needs nginx (with the
// auth_request module, as Debian's nginx-light has) and fails, never skips, without it.
func TestNginxForwardAuth(t *testing.T) {
	t.Parallel()
	nginx := nginxBinary(t)
	ts := startServer(t, "", nil, fixture)
	a := startAuthorize(t, ts, authorizeRules, 0)
	tok := newAuthorizeTokens(t, ts)

	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen := map[string]any{"method": r.Method, "uri": r.RequestURI}
		for _, h := range authHeaders {
			if v, ok := r.Header[h]; ok {
				seen[h] = v
			}
		}
		json.NewEncoder(w).Encode(seen)
	}))
	defer upstream.Close()
	base := startNginx(t, nginx, upstream.Listener.Addr().String(), strings.TrimPrefix(a.URL, "http://"))

	tests := []struct {
		name      string
		method    string
		uri       string
		token     string
		spoof     bool // the client sends X-Auth-* headers of its own
		status    int
		challenge string         // WWW-Authenticate passed on by nginx (only for 401)
		upstream  map[string]any // what the upstream saw; nil: it must not be reached
	}{
		{"allowed", "GET", "/v1/items/7?x=1", tok.readWrite, true, 200, "", map[string]any{
			"method": "GET", "uri": "/v1/items/7?x=1",
			"X-Auth-Subject": []any{"svc-one"}, "X-Auth-Client-Id": []any{"svc-one"}, "X-Auth-Scopes": []any{"read write"},
			// svc-one has no organization: the header is empty, so nginx drops it, and the client's with it
		}},
		{"allowed write", "POST", "/v1/items", tok.readWrite, false, 200, "", map[string]any{
			"method": "POST", "uri": "/v1/items",
			"X-Auth-Subject": []any{"svc-one"}, "X-Auth-Client-Id": []any{"svc-one"}, "X-Auth-Scopes": []any{"read write"},
		}},
		{"missing token", "GET", "/v1/items", "", true, 401, `Bearer realm="api.example.com"`, nil},
		{"wrong scope", "POST", "/v1/items", tok.readOnly, true, 403, "", nil},
		{"expired", "GET", "/v1/items", tok.expired, false, 401,
			`Bearer realm="api.example.com", error="invalid_token", error_description="the token has expired"`, nil},
		{"another API's token", "GET", "/v1/items", tok.reports, false, 401, `Bearer realm="api.example.com", error="invalid_token"`, nil},
		{"no rule", "GET", "/v2/anything", tok.readWrite, false, 403, "", nil},
		{"dot segments", "GET", "/v1/items/../admin", tok.readWrite, false, 403, "", nil},
		{"encoded slash", "GET", "/v1/items%2F..%2Fadmin", tok.readWrite, false, 403, "", nil},
	}
	client := &http.Client{Timeout: 10 * time.Second}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, base+"/", nil)
			if err != nil {
				t.Fatal(err)
			}
			req.URL.Opaque = tt.uri // sent as written, dot segments and all
			req.Host = "api.example.com"
			if tt.token != "" {
				req.Header.Set("Authorization", "Bearer "+tt.token)
			}
			if tt.spoof {
				for _, h := range authHeaders {
					req.Header.Set(h, "spoofed")
				}
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var body bytes.Buffer
			body.ReadFrom(resp.Body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d; body %q", resp.StatusCode, tt.status, body.String())
			}
			if got := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(got, tt.challenge) || (tt.challenge == "") != (got == "") {
				t.Errorf("WWW-Authenticate %q, want %q…", got, tt.challenge)
			}
			if tt.upstream == nil {
				if strings.Contains(body.String(), `"method"`) {
					t.Errorf("the upstream was reached: %s", body.String())
				}
				return
			}
			var seen map[string]any
			if err := json.Unmarshal(body.Bytes(), &seen); err != nil {
				t.Fatalf("upstream answer %q: %v", body.String(), err)
			}
			if fmt.Sprint(seen) != fmt.Sprint(tt.upstream) {
				t.Errorf("the upstream saw %v, want %v", seen, tt.upstream)
			}
		})
	}
}

// authHeaders are the headers gatehouse authorize adds to an allowed check.
var authHeaders = []string{"X-Auth-Subject", "X-Auth-Client-Id", "X-Auth-Org-Id", "X-Auth-Scopes"}

// nginxBinary returns the path of nginx, failing the test with how to install it when there is none.
func nginxBinary(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("nginx"); err == nil {
		return p
	}
	for _, p := range []string{"/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatal("this test runs a real nginx and does not skip without it: install it, e.g. " +
		"`apt-get update && apt-get install -y --no-install-recommends nginx-light` (Debian/Ubuntu; .ci/run does this) " +
		"or `apk add nginx` (Alpine); it needs the auth_request module, which these packages include")
	return ""
}

// startNginx runs nginx with nginxConf on a free loopback port, in a directory of its own, and stops it when the
// test ends (and, should the test process die, with it). It returns nginx's base URL.
func startNginx(t *testing.T, nginx, upstream, authorize string) string {
	t.Helper()
	dir := t.TempDir()
	for attempt := 1; ; attempt++ {
		base, portTaken := runNginx(t, nginx, dir, freePort(t), upstream, authorize, attempt < 3)
		if !portTaken {
			return base
		}
	}
}

// runNginx starts nginx on port and waits until it listens. It reports portTaken, rather than failing, when
// mayRetry and another process took the port between freePort and nginx.
func runNginx(t *testing.T, nginx, dir string, port int, upstream, authorize string, mayRetry bool) (base string, portTaken bool) {
	t.Helper()
	user := ""
	if os.Geteuid() == 0 { // nginx would switch to nobody, who cannot use the 0700 test directory
		user = "user root;"
	}
	conf := strings.NewReplacer("{{dir}}", dir, "{{user}}", user, "{{port}}", strconv.Itoa(port),
		"{{upstream}}", upstream, "{{authorize}}", authorize).Replace(nginxConf)
	confPath := filepath.Join(dir, "nginx.conf")
	errorLog := filepath.Join(dir, "error.log")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Remove(errorLog)
	cmd := exec.Command(nginx, "-p", dir, "-c", confPath, "-e", errorLog, "-g", "daemon off;")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nginx: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var exitErr error
	stopped := false
	t.Cleanup(func() {
		if stopped {
			return
		}
		cmd.Process.Signal(syscall.SIGQUIT) // graceful
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	addr := "127.0.0.1:" + strconv.Itoa(port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case exitErr = <-exited:
			stopped = true
			log, _ := os.ReadFile(errorLog)
			if mayRetry && bytes.Contains(log, []byte("Address already in use")) {
				return "", true
			}
			t.Fatalf("nginx exited: %v\n%s\nerror.log:\n%s", exitErr, out.String(), log)
		default:
		}
		if c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond); err == nil {
			c.Close()
			return "http://" + addr, false
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(errorLog)
			t.Fatalf("nginx did not listen on %s within 10s\nerror.log:\n%s", addr, log)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
