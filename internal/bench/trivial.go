package bench

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"time"
)

// trivialBody is what the trivial handler answers.
var trivialBody = []byte(`{"ok":true}` + "\n")

// trivialHandler is the ceiling for the token endpoint: it reads the request body and answers a small JSON object
// with the headers a token response has (the same names, values of the same size), doing nothing else.
func trivialHandler(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Type", "application/json")
	h.Set("Pragma", "no-cache")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Request-Id", "0123456789abcdef")
	w.Write(trivialBody)
}

// ServeTrivial serves the trivial handler, the ceiling Run measures the server against, on addr until ctx ends. It
// is the child process that `gatehouse bench serve-trivial ADDR` runs.
func ServeTrivial(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: http.HandlerFunc(trivialHandler), ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 2 * time.Minute}
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shutdownCtx)
	}()
	err = srv.Serve(ln)
	if errors.Is(err, http.ErrServerClosed) {
		<-stopped
		return nil
	}
	return err
}
