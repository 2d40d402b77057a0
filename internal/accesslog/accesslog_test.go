package accesslog_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/accesslog"
)

func serve(t *testing.T, h http.HandlerFunc, req *http.Request) (*httptest.ResponseRecorder, map[string]any) {
	t.Helper()
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	w := httptest.NewRecorder()
	accesslog.Handler(log, h).ServeHTTP(w, req)
	var line map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(l), &m) == nil && m["msg"] == "request" {
			line = m
		}
	}
	return w, line
}

func TestLogLine(t *testing.T) {
	req := httptest.NewRequest("POST", "/oauth/token?client_secret=s3cret", strings.NewReader("x"))
	req.Header.Set("Authorization", "Basic c2VjcmV0")
	req.Header.Set("X-Request-Id", "abc-123")
	w, line := serve(t, func(w http.ResponseWriter, r *http.Request) {
		info := accesslog.From(r.Context())
		info.ClientID, info.Result, info.Error = "svc", "miss", "invalid_scope"
		w.WriteHeader(400)
		w.Write([]byte("12345"))
	}, req)
	want := map[string]any{"method": "POST", "path": "/oauth/token", "status": float64(400), "bytes": float64(5),
		"request_id": "abc-123", "client_id": "svc", "result": "miss", "error": "invalid_scope"}
	for k, v := range want {
		if line[k] != v {
			t.Errorf("%s = %v, want %v (line %v)", k, line[k], v, line)
		}
	}
	for k, v := range line {
		if s, ok := v.(string); ok && (strings.Contains(s, "s3cret") || strings.Contains(s, "c2VjcmV0")) {
			t.Errorf("%s logs a secret: %q", k, s)
		}
	}
	if w.Header().Get("X-Request-Id") != "abc-123" || w.Header().Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("headers %v", w.Header())
	}
}

func TestRequestID(t *testing.T) {
	for _, in := range []string{"", "has space", strings.Repeat("a", 65), "new\nline"} {
		req := httptest.NewRequest("GET", "/", nil)
		if in != "" {
			req.Header["X-Request-Id"] = []string{in}
		}
		w, _ := serve(t, func(http.ResponseWriter, *http.Request) {}, req)
		if id := w.Header().Get("X-Request-Id"); id == in || len(id) != 16 {
			t.Errorf("X-Request-Id %q for incoming %q: want a new 16-hex id", id, in)
		}
	}
}

func TestPanic(t *testing.T) {
	w, line := serve(t, func(http.ResponseWriter, *http.Request) { panic("boom") }, httptest.NewRequest("GET", "/x", nil))
	if w.Code != 500 || w.Header().Get("Content-Type") != "application/problem+json" || strings.Contains(w.Body.String(), "boom") {
		t.Errorf("panic answered %d %q %q", w.Code, w.Header().Get("Content-Type"), w.Body)
	}
	if line["status"] != float64(500) {
		t.Errorf("log line %v", line)
	}
}

func TestFromOutsideHandler(t *testing.T) {
	info := accesslog.From(httptest.NewRequest("GET", "/", nil).Context())
	info.ClientID = "x" // must not panic; nobody logs it
}
