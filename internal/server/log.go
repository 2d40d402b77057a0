package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"
)

// reqInfo travels with a request so the access log can name what the handler learnt: the request id, the
// client_id and the OAuth error code. It never holds secrets, tokens or the Authorization header.
type reqInfo struct {
	id        string
	clientID  string
	errorCode string
}

type reqInfoKey struct{}

func reqInfoFrom(ctx context.Context) *reqInfo {
	info, _ := ctx.Value(reqInfoKey{}).(*reqInfo)
	return info
}

func requestID(r *http.Request) string {
	if info := reqInfoFrom(r.Context()); info != nil {
		return info.id
	}
	return ""
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

// logRequests logs one line per request (method, path without the query, status, size, duration, remote address,
// request id, client_id, OAuth error) and turns a panic into a 500 without detail for the caller.
func (s *Server) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		info := &reqInfo{id: incomingRequestID(r)}
		w.Header().Set("X-Request-Id", info.id)
		w.Header().Set("X-Content-Type-Options", "nosniff")
		sw := &statusWriter{ResponseWriter: w}
		ctx := context.WithValue(r.Context(), reqInfoKey{}, info)
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.Logger.Error("panic serving request", "panic", v, "request_id", info.id, "stack", string(debug.Stack()))
				if sw.status == 0 {
					writeProblem(sw, http.StatusInternalServerError, "Internal Server Error", "internal error")
				}
			}
			attrs := []slog.Attr{
				slog.String("method", r.Method),
				slog.String("path", truncate(r.URL.Path, 200)),
				slog.Int("status", sw.status),
				slog.Int("bytes", sw.bytes),
				slog.Duration("duration", time.Since(start)),
				slog.String("remote", r.RemoteAddr),
				slog.String("request_id", info.id),
			}
			if info.clientID != "" {
				attrs = append(attrs, slog.String("client_id", info.clientID))
			}
			if info.errorCode != "" {
				attrs = append(attrs, slog.String("error", info.errorCode))
			}
			s.Logger.LogAttrs(ctx, slog.LevelInfo, "request", attrs...)
		}()
		next.ServeHTTP(sw, r.WithContext(ctx))
	})
}

// incomingRequestID keeps a caller's X-Request-Id when it is short and plain, so logs join up across services;
// otherwise it makes one.
func incomingRequestID(r *http.Request) string {
	if id := r.Header.Get("X-Request-Id"); id != "" && len(id) <= 64 {
		plain := true
		for i := 0; i < len(id); i++ {
			c := id[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.') {
				plain = false
				break
			}
		}
		if plain {
			return id
		}
	}
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
