package tokencache_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/gatehouse/gatehouse/tokencache"
)

// api is a fake API that accepts Bearer tokens unless they are revoked (or it rejects everything), and records
// what it saw.
type api struct {
	mu        sync.Mutex
	revoked   map[string]bool
	rejectAll bool
	seen      []string // "token body" per request
}

func newAPI() *api { return &api{revoked: map[string]bool{}} }

func (a *api) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var body []byte
	if r.Body != nil { // a client-side request, through handlerTransport
		body, _ = io.ReadAll(r.Body)
	}
	tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	a.mu.Lock()
	defer a.mu.Unlock()
	a.seen = append(a.seen, tok+" "+string(body))
	if a.rejectAll || a.revoked[tok] || tok == "" {
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		w.WriteHeader(http.StatusUnauthorized)
		io.WriteString(w, "rejected "+tok)
		return
	}
	io.WriteString(w, "ok "+tok)
}

func (a *api) revoke(tok string) { a.mu.Lock(); a.revoked[tok] = true; a.mu.Unlock() }

func (a *api) requests() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.seen...)
}

// call POSTs body through client and returns the status and response body.
func call(t *testing.T, client *http.Client, body io.Reader) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "https://api.example.com/things", body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestTransportRetriesOnce: a 401 drops exactly the token sent, fetches a new one and replays the request (body
// included) once.
func TestTransportRetriesOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up, a := newUpstream(), newAPI()
		src := mustNew(t, testConfig(up))
		client := &http.Client{Transport: src.Transport(handlerTransport{a})}
		if code, body := call(t, client, strings.NewReader("one")); code != 200 || body != "ok tok-1" {
			t.Fatalf("first call: %d %q", code, body)
		}
		a.revoke("tok-1")
		if code, body := call(t, client, strings.NewReader("two")); code != 200 || body != "ok tok-2" {
			t.Fatalf("call with a revoked token: %d %q, want 200 with tok-2", code, body)
		}
		want := []string{"tok-1 one", "tok-1 two", "tok-2 two"}
		if got := a.requests(); strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("API saw %q, want %q", got, want)
		}
		if st := src.Stats(); st.Fetches != 2 || st.Invalidations != 1 {
			t.Errorf("stats %+v, want 2 fetches, 1 invalidation", st)
		}
	})
}

// TestTransportDoesNotLoop: an API that rejects every token gets each request at most twice, and tokens are
// dropped at most once per 5 seconds, so it cannot make the Source fetch a token per request.
func TestTransportDoesNotLoop(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up, a := newUpstream(), newAPI()
		a.rejectAll = true
		src := mustNew(t, testConfig(up))
		client := &http.Client{Transport: src.Transport(handlerTransport{a})}
		if code, body := call(t, client, nil); code != 401 || body != "rejected tok-2" {
			t.Fatalf("call: %d %q, want the second 401 as is", code, body)
		}
		if n, c := len(a.requests()), up.calls.Load(); n != 2 || c != 2 {
			t.Fatalf("API saw %d requests, upstream %d; want 2 and 2", n, c)
		}
		for range 10 {
			if code, _ := call(t, client, nil); code != 401 {
				t.Fatalf("status %d, want 401", code)
			}
		}
		if n, c := len(a.requests()), up.calls.Load(); n != 12 || c != 2 {
			t.Fatalf("after 10 more calls: API saw %d requests, upstream %d; want 12 and 2", n, c)
		}
		time.Sleep(5 * time.Second)
		call(t, client, nil)
		if c := up.calls.Load(); c != 3 {
			t.Fatalf("5s later: %d upstream calls, want 3", c)
		}
	})
}

// TestTransportBodyNotReplayable: a body without GetBody cannot be sent twice: the 401 is returned, and the
// rejected token is still dropped for the next request.
func TestTransportBodyNotReplayable(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up, a := newUpstream(), newAPI()
		src := mustNew(t, testConfig(up))
		client := &http.Client{Transport: src.Transport(handlerTransport{a})}
		call(t, client, nil)
		a.revoke("tok-1")
		if code, _ := call(t, client, io.NopCloser(strings.NewReader("stream"))); code != 401 {
			t.Fatalf("status %d, want 401", code)
		}
		if code, body := call(t, client, nil); code != 200 || body != "ok tok-2" {
			t.Fatalf("next call: %d %q", code, body)
		}
		if n := len(a.requests()); n != 3 {
			t.Errorf("API saw %d requests, want 3 (no replay)", n)
		}
	})
}

// TestTransportConcurrent401: many requests rejected with the same token cause one fetch; all are retried.
func TestTransportConcurrent401(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up, a := newUpstream(), newAPI()
		up.delay = 100 * time.Millisecond
		src := mustNew(t, testConfig(up))
		client := &http.Client{Transport: src.Transport(handlerTransport{a})}
		call(t, client, nil)
		a.revoke("tok-1")
		var wg sync.WaitGroup
		for range 50 {
			wg.Go(func() {
				if code, body := call(t, client, strings.NewReader("x")); code != 200 || body != "ok tok-2" {
					t.Errorf("call: %d %q", code, body)
				}
			})
		}
		wg.Wait()
		if c := up.calls.Load(); c != 2 {
			t.Errorf("%d upstream calls, want 2", c)
		}
	})
}

// TestTransportSharedInvalidation: the rejected token leaves the shared cache too, so another Source that
// meets the same 401 takes the replacement from the cache instead of fetching again.
func TestTransportSharedInvalidation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		up, a := newUpstream(), newAPI()
		cfg := testConfig(up)
		cfg.Cache = tokencache.NewMemoryCache()
		srcA, srcB := mustNew(t, cfg), mustNew(t, cfg)
		clientA := &http.Client{Transport: srcA.Transport(handlerTransport{a})}
		clientB := &http.Client{Transport: srcB.Transport(handlerTransport{a})}
		call(t, clientA, nil)
		call(t, clientB, nil)
		a.revoke("tok-1")
		if code, body := call(t, clientA, nil); code != 200 || body != "ok tok-2" {
			t.Fatalf("A: %d %q", code, body)
		}
		if code, body := call(t, clientB, nil); code != 200 || body != "ok tok-2" {
			t.Fatalf("B: %d %q", code, body)
		}
		if c := up.calls.Load(); c != 2 {
			t.Errorf("%d upstream calls, want 2", c)
		}
		if st := srcB.Stats(); st.SharedHits != 2 || st.Invalidations != 1 {
			t.Errorf("B's stats %+v, want 2 shared hits and 1 invalidation", st)
		}
	})
}

// TestTransportLoopback: the Transport over real HTTP on loopback, as an http.Client is used.
func TestTransportLoopback(t *testing.T) {
	up, a := newUpstream(), newAPI()
	auth := httptest.NewServer(up)
	defer auth.Close()
	apiSrv := httptest.NewServer(a)
	defer apiSrv.Close()
	src := mustNew(t, tokencache.Config{TokenURL: auth.URL, ClientID: "c", ClientSecret: "s"})
	client := &http.Client{Transport: src.Transport(nil)}
	a.revoke("tok-1")
	resp, err := client.Post(apiSrv.URL, "text/plain", strings.NewReader("payload"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "ok tok-2" {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	if got := a.requests(); len(got) != 2 || got[1] != "tok-2 payload" {
		t.Errorf("API saw %q", got)
	}
	// A Token error fails the request.
	bad := mustNew(t, tokencache.Config{TokenURL: apiSrv.URL, ClientID: "c", ClientSecret: "s"})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, apiSrv.URL, nil)
	if _, err := (&http.Client{Transport: bad.Transport(nil)}).Do(req); err == nil {
		t.Error("request without a token succeeded")
	}
}
