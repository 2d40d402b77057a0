// Package accesslog is the access log of Gatehouse's HTTP servers: one line per request, naming what the handler
// learnt about it (the client, the outcome, the OAuth error) and never a secret, a token, a query string or the
// Authorization header. It also gives every request an id (X-Request-Id) and turns a panic into a 500 without
// detail for the caller.
package accesslog

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"
)

// Info is what a handler learnt about its request, for the log line. Handlers fill it in through From. Its values
// are logged as they are: never put a secret or a token in it.
type Info struct {
	ID       string // the request id: the caller's X-Request-Id when short and plain, else a new one
	ClientID string // the OAuth client_id, when the request named one
	Result   string // the outcome, where a handler has more than its status to say (e.g. hit, miss)
	Error    string // the OAuth error code answered, if any
}

type infoKey struct{}

// From returns the Info of the request ctx belongs to. Outside Handler it returns a fresh Info nobody logs, so
// handlers can set fields unconditionally.
func From(ctx context.Context) *Info {
	if info, ok := ctx.Value(infoKey{}).(*Info); ok {
		return info
	}
	return &Info{}
}

// Handler wraps next with the access log, written to log at level Info: method, path (without the query), status,
// bytes, duration, remote address, request id and the non-empty fields of Info. It sets X-Request-Id and
// X-Content-Type-Options: nosniff on every response.
func Handler(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		info := &Info{ID: requestID(r)}
		w.Header().Set("X-Request-Id", info.ID)
		w.Header().Set("X-Content-Type-Options", "nosniff")
		sw := &statusWriter{ResponseWriter: w}
		ctx := context.WithValue(r.Context(), infoKey{}, info)
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				log.Error("panic serving request", "panic", v, "request_id", info.ID, "stack", string(debug.Stack()))
				if sw.status == 0 {
					sw.Header().Set("Content-Type", "application/problem+json")
					sw.WriteHeader(http.StatusInternalServerError)
					sw.Write([]byte(`{"type":"about:blank","title":"Internal Server Error","status":500,"detail":"internal error"}` + "\n"))
				}
			}
			if !log.Enabled(ctx, slog.LevelInfo) {
				return
			}
			attrs := make([]slog.Attr, 0, 11)
			attrs = append(attrs,
				slog.String("method", r.Method),
				slog.String("path", truncate(r.URL.Path, 200)),
				slog.Int("status", sw.status),
				slog.Int("bytes", sw.bytes),
				slog.Duration("duration", time.Since(start)),
				slog.String("remote", r.RemoteAddr),
				slog.String("request_id", info.ID),
			)
			for _, f := range [...]struct{ k, v string }{{"client_id", info.ClientID}, {"result", info.Result}, {"error", info.Error}} {
				if f.v != "" {
					attrs = append(attrs, slog.String(f.k, truncate(f.v, 128)))
				}
			}
			log.LogAttrs(ctx, slog.LevelInfo, "request", attrs...)
		}()
		next.ServeHTTP(sw, r.WithContext(ctx))
	})
}

// statusWriter records the status and size of a response.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += n
	return n, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// requestID keeps a caller's X-Request-Id when it is short and plain, so logs join up across services; otherwise
// it makes one.
func requestID(r *http.Request) string {
	if id := r.Header.Get("X-Request-Id"); id != "" && len(id) <= 64 && plain(id) {
		return id
	}
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func plain(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
