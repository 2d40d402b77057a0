package verify_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/gatehouse/gatehouse/verify"
)

// withKid returns tok with its header's kid replaced, keeping payload and signature: the verifier looks the kid up
// before it checks anything that costs.
func withKid(k testKey, tok, kid string) string {
	h := header(k)
	h["kid"] = kid
	_, rest, _ := strings.Cut(tok, ".")
	return enc.EncodeToString(mustJSON(h)) + "." + rest
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestUnknownKidFlood: 10,000 tokens with random kids, from 100 goroutines while the clock runs through one more
// refetch interval, cost at most a handful of JWKS fetches.
func TestUnknownKidFlood(t *testing.T) {
	srv := newJWKSServer(t, rsaKey)
	clk := newClock()
	v := newVerifier(t, srv, clk, verify.Config{})
	good := token(rsaKey, clk.Now())
	if _, err := v.Verify(context.Background(), good); err != nil {
		t.Fatal(err)
	}
	clk.Advance(verify.DefaultRefetchInterval + time.Second)
	var wg sync.WaitGroup
	var accepted, otherErr atomic.Int64
	for g := range 100 {
		wg.Go(func() {
			for i := range 100 {
				clk.Advance(time.Millisecond) // 10 s over the whole flood
				_, err := v.Verify(context.Background(), withKid(rsaKey, good, fmt.Sprintf("random-%d-%d", g, i)))
				switch {
				case err == nil:
					accepted.Add(1)
				case !errors.Is(err, verify.ErrUnknownKey):
					otherErr.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if accepted.Load() != 0 || otherErr.Load() != 0 {
		t.Errorf("%d accepted, %d refused with an error other than ErrUnknownKey", accepted.Load(), otherErr.Load())
	}
	if n := srv.requests.Load(); n > 3 {
		t.Errorf("10,000 unknown kids caused %d JWKS fetches, want at most 3", n)
	} else {
		t.Logf("10,000 unknown kids: %d JWKS fetches in all", n)
	}
	if _, err := v.Verify(context.Background(), token(rsaKey, clk.Now())); err != nil {
		t.Errorf("good token after the flood: %v", err)
	}
}

// TestUnknownKidRemembered: a kid found missing from a fresh set is not refetched for again for a while, though
// the refetch interval has passed; a different new kid still is.
func TestUnknownKidRemembered(t *testing.T) {
	srv := newJWKSServer(t, rsaKey)
	clk := newClock()
	v := newVerifier(t, srv, clk, verify.Config{})
	good := token(rsaKey, clk.Now())
	v.Verify(context.Background(), good)
	clk.Advance(verify.DefaultRefetchInterval + time.Second)
	v.Verify(context.Background(), withKid(rsaKey, good, "ghost")) // refetch: 2
	clk.Advance(verify.DefaultRefetchInterval + time.Second)
	for range 100 {
		if _, err := v.Verify(context.Background(), withKid(rsaKey, good, "ghost")); !errors.Is(err, verify.ErrUnknownKey) {
			t.Fatalf("ghost kid: %v", err)
		}
	}
	if n := srv.requests.Load(); n != 2 {
		t.Errorf("%d fetches, want 2: the ghost kid was refetched for", n)
	}
	v.Verify(context.Background(), withKid(rsaKey, good, "another")) // a different kid: refetch allowed
	if n := srv.requests.Load(); n != 3 {
		t.Errorf("%d fetches, want 3", n)
	}
}

// TestBadSignatureNoRefetch: signature failures with a known key, however many and however spaced, fetch nothing.
func TestBadSignatureNoRefetch(t *testing.T) {
	srv := newJWKSServer(t, rsaKey, ecKey)
	clk := newClock()
	v := newVerifier(t, srv, clk, verify.Config{})
	if _, err := v.Verify(context.Background(), token(rsaKey, clk.Now())); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		clk.Advance(verify.DefaultRefetchInterval + time.Second)
		tok := token(rsaKey, clk.Now(), func(h, c map[string]any) { c["jti"] = fmt.Sprint(i) })
		forged := withKid(rsaKey, sign("RS256", evilKey.priv, header(rsaKey), claims(clk.Now())), rsaKey.kid)
		parts := strings.Split(tok, ".")
		for _, bad := range []string{forged, parts[0] + "." + parts[1] + ".", parts[0] + "." + parts[1] + "." + enc.EncodeToString([]byte("junk"))} {
			if _, err := v.Verify(context.Background(), bad); !errors.Is(err, verify.ErrSignature) {
				t.Fatalf("bad signature: %v", err)
			}
		}
		// A known kid used with the wrong algorithm does not refetch either.
		wrongAlg := sign("ES256", ecKey.priv, map[string]any{"alg": "ES256", "kid": rsaKey.kid, "typ": "at+jwt"}, claims(clk.Now()))
		if _, err := v.Verify(context.Background(), wrongAlg); !errors.Is(err, verify.ErrUnsupportedAlg) {
			t.Fatalf("wrong alg: %v", err)
		}
	}
	if n := srv.requests.Load(); n != 1 {
		t.Errorf("%d JWKS fetches, want 1: a signature failure caused a refetch", n)
	}
}

// TestConcurrentFetchesCollapse: callers that need the JWKS at the same time — on first use, or for the same new
// kid — share one fetch.
func TestConcurrentFetchesCollapse(t *testing.T) {
	srv := newJWKSServer(t, rsaKey)
	clk := newClock()
	v := newVerifier(t, srv, clk, verify.Config{})
	check := func(tok string, want int64) {
		t.Helper()
		hold := make(chan struct{})
		srv.set(func(s *jwksServer) { s.hold = hold })
		before := srv.requests.Load()
		var wg sync.WaitGroup
		errs := make(chan error, 50)
		for range 50 {
			wg.Go(func() {
				_, err := v.Verify(context.Background(), tok)
				errs <- err
			})
		}
		waitFor(t, "the fetch to start", func() bool { return srv.requests.Load() > before })
		time.Sleep(50 * time.Millisecond) // let the other callers queue behind it
		close(hold)
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Errorf("Verify: %v", err)
			}
		}
		if n := srv.requests.Load(); n != want {
			t.Errorf("%d JWKS fetches, want %d", n, want)
		}
		srv.set(func(s *jwksServer) { s.hold = nil })
	}
	check(token(rsaKey, clk.Now()), 1) // cold cache
	srv.setKeys(rsaKey, rsa2Key)
	clk.Advance(verify.DefaultRefetchInterval + time.Second)
	check(token(rsa2Key, clk.Now()), 2) // a new kid after a rotation
}

// TestJWKSOutage: when the JWKS endpoint fails (500s, then refused connections) after the first fetch, tokens
// signed with known keys still verify.
func TestJWKSOutage(t *testing.T) {
	srv := newJWKSServer(t, rsaKey)
	clk := newClock()
	v := newVerifier(t, srv, clk, verify.Config{})
	ok := func(what string) {
		t.Helper()
		if _, err := v.Verify(context.Background(), token(rsaKey, clk.Now())); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	ok("first use")
	srv.set(func(s *jwksServer) { s.status = http.StatusInternalServerError })
	clk.Advance(2 * time.Hour) // past max-age=3600: a refresh is due, and fails
	ok("refresh due, endpoint answering 500")
	waitFor(t, "the background refresh", func() bool { return srv.requests.Load() == 2 })
	for range 10 {
		ok("after a failed refresh")
	}
	if _, err := v.Verify(context.Background(), token(rsaKey, clk.Now(), func(h, c map[string]any) { h["kid"] = "new" })); !errors.Is(err, verify.ErrUnknownKey) {
		t.Errorf("unknown kid during the outage: %v, want ErrUnknownKey", err)
	}
	if n := srv.requests.Load(); n > 3 {
		t.Errorf("%d fetches during the outage, want at most 3 (no retry before the backoff)", n)
	}
	srv.Close() // connection refused from now on
	for range 5 {
		clk.Advance(time.Hour)
		ok("endpoint refusing connections")
		time.Sleep(10 * time.Millisecond)
	}
	clk.Advance(verify.DefaultRefetchInterval + time.Second)
	if _, err := v.Verify(context.Background(), token(rsaKey, clk.Now(), func(h, c map[string]any) { h["kid"] = "new2" })); !errors.Is(err, verify.ErrUnknownKey) {
		t.Errorf("unknown kid, endpoint refusing connections: %v, want ErrUnknownKey", err)
	}
	ok("at the end")
}

// TestFirstFetchFails: without any key set, Verify says ErrJWKSUnavailable, retries at most once a second, and
// recovers when the endpoint does.
func TestFirstFetchFails(t *testing.T) {
	srv := newJWKSServer(t, rsaKey)
	srv.set(func(s *jwksServer) { s.status = http.StatusServiceUnavailable })
	clk := newClock()
	v := newVerifier(t, srv, clk, verify.Config{})
	for range 20 {
		if _, err := v.Verify(context.Background(), token(rsaKey, clk.Now())); !errors.Is(err, verify.ErrJWKSUnavailable) {
			t.Fatalf("endpoint down: %v, want ErrJWKSUnavailable", err)
		}
	}
	if n := srv.requests.Load(); n != 1 {
		t.Errorf("%d fetches within a second, want 1", n)
	}
	srv.set(func(s *jwksServer) { s.status = 0 })
	clk.Advance(2 * time.Second)
	if _, err := v.Verify(context.Background(), token(rsaKey, clk.Now())); err != nil {
		t.Fatalf("endpoint back: %v", err)
	}
}

// TestFirstFetchCanceled: a caller whose context ends stops waiting for the JWKS.
func TestFirstFetchCanceled(t *testing.T) {
	srv := newJWKSServer(t, rsaKey)
	hold := make(chan struct{})
	defer close(hold)
	srv.set(func(s *jwksServer) { s.hold = hold })
	v := newVerifier(t, srv, newClock(), verify.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := v.Verify(ctx, token(rsaKey, newClock().Now()))
	if !errors.Is(err, verify.ErrJWKSUnavailable) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Verify = %v, want ErrJWKSUnavailable and DeadlineExceeded", err)
	}
}

// handlerClient is an http.Client served by h in memory, for tests in a synctest bubble (where loopback I/O would
// keep the bubble from ever being idle).
func handlerClient(h http.Handler) *http.Client {
	return &http.Client{Transport: roundTripper(func(r *http.Request) (*http.Response, error) {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec.Result(), nil
	})}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestCacheControl: the set is refreshed a little before the issuer's max-age runs out, within the bounds.
func TestCacheControl(t *testing.T) {
	loadKeys()
	for _, tc := range []struct {
		cacheControl, age string
		refresh           time.Duration // when the refresh is due: the TTL less min(TTL/4, 1m)
	}{
		{"public, max-age=600", "", 9 * time.Minute},
		{"max-age=120", "", 90 * time.Second},
		{"max-age=600", "300", 4 * time.Minute},                   // Age is subtracted
		{"max-age=5", "", verify.MinRefresh * 3 / 4},              // raised to MinRefresh
		{"no-store", "", verify.MinRefresh * 3 / 4},               // likewise
		{"max-age=31536000", "", verify.MaxRefresh - time.Minute}, // lowered to MaxRefresh
		{"", "", verify.DefaultRefresh - time.Minute},             // no max-age
		{"max-age=junk", "", verify.MinRefresh * 3 / 4},
	} {
		t.Run(tc.cacheControl+"/age="+tc.age, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				var requests atomic.Int64
				body := mustJSON(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{edKey.jwk()}})
				h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					requests.Add(1)
					if tc.cacheControl != "" {
						w.Header().Set("Cache-Control", tc.cacheControl)
					}
					if tc.age != "" {
						w.Header().Set("Age", tc.age)
					}
					w.Write(body)
				})
				v, err := verify.New(verify.Config{Issuer: testIssuer, Audiences: []string{testAudience}, JWKSURL: "http://jwks.test/", HTTPClient: handlerClient(h), Logger: testLogger(t)})
				if err != nil {
					t.Fatal(err)
				}
				start := time.Now()
				tok := token(edKey, start, func(h, c map[string]any) { c["exp"] = start.Add(48 * time.Hour).Unix() })
				verifyAt := func(at time.Duration, want int64) {
					t.Helper()
					time.Sleep(time.Until(start.Add(at)))
					if _, err := v.Verify(context.Background(), tok); err != nil {
						t.Fatalf("at %v: %v", at, err)
					}
					synctest.Wait()
					if n := requests.Load(); n != want {
						t.Fatalf("at %v: %d fetches, want %d", at, n, want)
					}
				}
				verifyAt(0, 1)
				verifyAt(tc.refresh/2, 1)
				verifyAt(tc.refresh-time.Second, 1)
				verifyAt(tc.refresh, 2)
				verifyAt(tc.refresh+time.Second, 2)
			})
		})
	}
}

// TestConditionalRefresh: the ETag is sent back, and a 304 keeps the set for another max-age.
func TestConditionalRefresh(t *testing.T) {
	srv := newJWKSServer(t, rsaKey)
	srv.set(func(s *jwksServer) { s.cacheControl = "max-age=60" })
	clk := newClock()
	v := newVerifier(t, srv, clk, verify.Config{})
	v.Verify(context.Background(), token(rsaKey, clk.Now()))
	var notModified atomic.Int64
	inner := srv.Config.Handler
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("If-None-Match") != "" {
			notModified.Add(1)
		}
		inner.ServeHTTP(w, r)
	})
	clk.Advance(time.Minute)
	if _, err := v.Verify(context.Background(), token(rsaKey, clk.Now())); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the refresh", func() bool { return notModified.Load() == 1 })
	clk.Advance(30 * time.Second) // within the new max-age: no refresh
	v.Verify(context.Background(), token(rsaKey, clk.Now()))
	time.Sleep(20 * time.Millisecond)
	if n := srv.requests.Load(); n != 2 {
		t.Errorf("%d fetches, want 2", n)
	}
}

// TestRun: Run fetches at once, refreshes when due, keeps the set when a refresh fails, and ends with ctx.
func TestRun(t *testing.T) {
	loadKeys()
	synctest.Test(t, func(t *testing.T) {
		var requests atomic.Int64
		var failing atomic.Bool
		body := mustJSON(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{edKey.jwk()}})
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			requests.Add(1)
			if failing.Load() {
				http.Error(w, "down", http.StatusBadGateway)
				return
			}
			w.Header().Set("Cache-Control", "max-age=600")
			w.Write(body)
		})
		v, err := verify.New(verify.Config{Issuer: testIssuer, Audiences: []string{testAudience}, JWKSURL: "http://jwks.test/",
			HTTPClient: handlerClient(h), Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- v.Run(ctx) }()
		synctest.Wait()
		if n := requests.Load(); n != 1 {
			t.Fatalf("Run made %d fetches at start, want 1", n)
		}
		start := time.Now()
		tok := token(edKey, start, func(h, c map[string]any) { c["exp"] = start.Add(48 * time.Hour).Unix() })
		time.Sleep(9*time.Minute + time.Second) // due at 9 min (max-age 10 min, less 1 min)
		synctest.Wait()
		if n := requests.Load(); n != 2 {
			t.Fatalf("after 9 min, %d fetches, want 2", n)
		}
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatal(err)
		}
		failing.Store(true)
		time.Sleep(9 * time.Minute)
		synctest.Wait()
		// Failed at 18 min, then retried after 10 s, 20 s, 40 s, 80 s, 160 s: 18:10, 18:30, 19:10, 20:30, 23:10.
		time.Sleep(5*time.Minute + 10*time.Second) // to 23:11
		synctest.Wait()
		if n := requests.Load(); n != 8 {
			t.Errorf("%d fetches after 5 min of failures, want 8", n)
		}
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Errorf("Verify while refreshes fail: %v", err)
		}
		if n := requests.Load(); n != 8 {
			t.Errorf("Verify fetched while Run runs")
		}
		failing.Store(false)
		time.Sleep(5 * time.Minute)
		synctest.Wait()
		if n := requests.Load(); n != 9 {
			t.Errorf("%d fetches, want 9 after the endpoint recovered", n)
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run = %v, want nil", err)
		}
	})
}

// TestDiscovery: with only Issuer set, the JWKS is found from the issuer's metadata, which must name the issuer.
func TestDiscovery(t *testing.T) {
	loadKeys()
	jwks := mustJSON(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{rsaKey.jwk()}})
	for _, tc := range []struct {
		name     string
		path     string // the issuer's path
		metadata string // where the metadata is served
		mdIssuer string // the issuer it names; "" the right one
		wantErr  error
	}{
		{"OpenID Connect, root", "/", "/.well-known/openid-configuration", "", nil},
		{"OpenID Connect, path", "/tenant1", "/tenant1/.well-known/openid-configuration", "", nil},
		{"RFC 8414, root", "/", "/.well-known/oauth-authorization-server", "", nil},
		{"RFC 8414, path", "/tenant1", "/.well-known/oauth-authorization-server/tenant1", "", nil},
		{"another issuer's metadata", "/", "/.well-known/openid-configuration", "https://evil.example/", verify.ErrJWKSUnavailable},
		{"no metadata", "/", "/nowhere", "", verify.ErrJWKSUnavailable},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var base string
			mux := http.NewServeMux()
			mux.HandleFunc("GET /keys", func(w http.ResponseWriter, r *http.Request) { w.Write(jwks) })
			mux.HandleFunc("GET "+tc.metadata, func(w http.ResponseWriter, r *http.Request) {
				iss := tc.mdIssuer
				if iss == "" {
					iss = base + tc.path
				}
				w.Write(mustJSON(map[string]string{"issuer": iss, "jwks_uri": base + "/keys"}))
			})
			srv := httptest.NewServer(mux)
			defer srv.Close()
			base = srv.URL
			clk := newClock()
			iss := base + tc.path
			v, err := verify.New(verify.Config{Issuer: iss, Audiences: []string{testAudience}, Now: clk.Now})
			if err != nil {
				t.Fatal(err)
			}
			tok := token(rsaKey, clk.Now(), func(h, c map[string]any) { c["iss"] = iss })
			if _, err := v.Verify(context.Background(), tok); !errors.Is(err, tc.wantErr) && err != tc.wantErr {
				t.Errorf("Verify = %v, want %v", err, tc.wantErr)
			}
		})
	}
}
