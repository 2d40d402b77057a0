package verify_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse/gatehouse/verify"
)

// keyVectors are API keys computed outside Go (Python's zlib.crc32 and a hand-written base62; the same vectors pin
// the format in internal/apikey), so they test IsAPIKey against the format, not against this package's reading of it.
var keyVectors = []string{
	"gate_0123456789ABCDEFGHIJKLMNOPQRSTUVW1hX0W1",
	"acme_XYZabcdefghijklmnopqrstuvwxyz01233TySlH",
	"gate_0000000000000000000000000000000004E8DGG",
	"zz_zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz34JhX8",
	"abcdefghijk9_9876543210zyxwvutsrqponmlkjihgfed3o2KRl",
	"gate_bcdefghijklmnopqrstuvwxyz0123A00000NPTu",
}

func TestIsAPIKey(t *testing.T) {
	for _, k := range keyVectors {
		if !verify.IsAPIKey(k) {
			t.Errorf("IsAPIKey(%q) = false, want true", k)
		}
	}
	good := keyVectors[0]
	tail := good[len("gate_"):]
	for _, tc := range []struct{ name, s string }{
		{"empty", ""},
		{"prefix only", "gate_"},
		{"too short", good[:len(good)-1]},
		{"too long", good + "0"},
		{"prefix too short", "g_" + tail},
		{"prefix too long", "abcdefghijklm_" + tail},
		{"no prefix", "_" + tail + "ab"},
		{"uppercase prefix", "GATE_" + tail},
		{"prefix starts with a digit", "1ate_" + tail},
		{"underscore in prefix", "ga_e_" + tail},
		{"dash separator", "gate-" + tail},
		{"dash in body", "gate_0123456789ABCDEFGHIJK-MNOPQRSTUVW1hX0W1"},
		{"unicode in body", "gate_0123456789ABCDEFGHIJKÄMNOPQRSTUVW1hX0W"},
		{"NUL", "gate_0123456789ABCDEFGHIJK\x00MNOPQRSTUVW1hX0W1"},
		{"leading space", " " + good},
		{"Bearer", "Bearer " + good},
		{"bad checksum", good[:len(good)-1] + "2"},
		{"checksum above 2^32", "gate_0123456789ABCDEFGHIJKLMNOPQRSTUVWzzzzzz"},
		{"other prefix, same body and checksum", "acme_" + tail},
		{"case swapped", "gate_0123456789abcdefghijklmnopqrstuvw1hX0W1"},
		{"a JWT", "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"},
	} {
		if verify.IsAPIKey(tc.s) {
			t.Errorf("%s: IsAPIKey(%q) = true, want false", tc.name, tc.s)
		}
	}
	// Every single-character change of a key is caught (CRC-32 catches every burst of up to 32 bits).
	for i := range good {
		for _, c := range []byte("0aZ9_") {
			if c == good[i] {
				continue
			}
			s := good[:i] + string(c) + good[i+1:]
			if verify.IsAPIKey(s) {
				t.Errorf("IsAPIKey(%q), one character off a key, = true", s)
			}
		}
	}
}

// makeKey returns a well-formed key of prefix whose body is n in base62, left-padded: distinct keys for tests.
func makeKey(prefix string, n int) string {
	const digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	body := []byte(strings.Repeat("0", 33))
	for i := len(body) - 1; n > 0; i-- {
		body[i] = digits[n%62]
		n /= 62
	}
	s := prefix + "_" + string(body)
	sum := crc32.ChecksumIEEE([]byte(s))
	var sumDigits [6]byte
	for i := 5; i >= 0; i-- {
		sumDigits[i] = digits[sum%62]
		sum /= 62
	}
	return s + string(sumDigits[:])
}

// Audiences of the fake server's keys.
const (
	itemsAPI   = "https://api.example.com"
	reportsAPI = "urn:example:reports"
)

// fakeKey is what the fake server knows of a key.
type fakeKey struct {
	id, org, owner string
	grants         map[string][]string // audience → scopes
	expires        time.Time
	code           string // a refusal: not_found, disabled, expired
}

// keyServer is a stand-in for Gatehouse's token endpoint and key check, on loopback, counting requests.
type keyServer struct {
	*httptest.Server
	checks, tokens atomic.Int64
	inFlight       atomic.Int64 // checks being answered
	maxInFlight    atomic.Int64

	mu     sync.Mutex
	keys   map[string]fakeKey // by key; absent: not_found
	token  string             // the management token it accepts
	status int                // non-zero: checks answer this status (with a problem echoing the key)
	body   []byte             // non-nil: checks answer this body
	hold   chan struct{}      // non-nil: checks wait for it to close
	arrive chan struct{}      // non-nil: each check sends on it as it arrives
}

const (
	keyClientID     = "edge"
	keyClientSecret = "edge-secret-0123456789abcdefghijklmnopqrstuvwxyz"
)

func newKeyServer(t testing.TB) *keyServer {
	t.Helper()
	s := &keyServer{keys: map[string]fakeKey{}, token: "mgmt-1"}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /oauth/token", func(w http.ResponseWriter, r *http.Request) {
		id, secret, _ := r.BasicAuth()
		r.ParseForm()
		if id != keyClientID || secret != keyClientSecret || r.Form.Get("audience") != "urn:gatehouse:management" ||
			r.Form.Get("scope") != "verify:apikeys" || r.Form.Get("grant_type") != "client_credentials" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			io.WriteString(w, `{"error":"invalid_client"}`)
			return
		}
		s.tokens.Add(1)
		s.mu.Lock()
		tok := s.token
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"access_token":%q,"token_type":"Bearer","expires_in":3600}`, tok)
	})
	mux.HandleFunc("POST /api/v1/apikeys/verify", func(w http.ResponseWriter, r *http.Request) {
		s.checks.Add(1)
		n := s.inFlight.Add(1)
		defer s.inFlight.Add(-1)
		for m := s.maxInFlight.Load(); n > m && !s.maxInFlight.CompareAndSwap(m, n); m = s.maxInFlight.Load() {
		}
		s.mu.Lock()
		tok, status, body, hold, arrive := s.token, s.status, s.body, s.hold, s.arrive
		s.mu.Unlock()
		if arrive != nil {
			select {
			case arrive <- struct{}{}:
			default:
			}
		}
		if hold != nil {
			<-hold
		}
		var in struct{ Key string }
		if err := json.NewDecoder(r.Body).Decode(&in); err != nil || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		if r.Header.Get("Authorization") != "Bearer "+tok {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if status != 0 {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(status)
			json.NewEncoder(w).Encode(map[string]any{"status": status, "detail": "cannot check " + in.Key})
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if body != nil {
			w.Write(body)
			return
		}
		s.mu.Lock()
		k, ok := s.keys[in.Key]
		s.mu.Unlock()
		switch {
		case !ok:
			io.WriteString(w, `{"valid":false,"code":"not_found"}`)
		case k.code != "":
			fmt.Fprintf(w, `{"valid":false,"code":%q,"key_id":%q}`, k.code, k.id)
		default:
			type grant struct {
				Audience string   `json:"audience"`
				Scopes   []string `json:"scopes"`
			}
			ans := map[string]any{"valid": true, "key_id": k.id, "org_id": k.org, "owner": k.owner,
				"metadata": map[string]string{"plan": "gold"}}
			var gs []grant
			for aud, sc := range k.grants {
				gs = append(gs, grant{aud, sc})
			}
			ans["grants"] = gs
			if !k.expires.IsZero() {
				ans["expires_at"] = k.expires
			}
			json.NewEncoder(w).Encode(ans)
		}
	})
	s.Server = httptest.NewServer(mux)
	t.Cleanup(s.Close)
	return s
}

func (s *keyServer) set(f func(s *keyServer)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

// newKeyVerifier returns an APIKeyVerifier of s for itemsAPI on clk (nil: real time), with cfg's other fields.
func newKeyVerifier(t testing.TB, s *keyServer, clk *clock, cfg verify.APIKeyConfig) *verify.APIKeyVerifier {
	t.Helper()
	cfg.ServerURL, cfg.ClientID, cfg.ClientSecret = s.URL, keyClientID, keyClientSecret
	if cfg.Audience == "" {
		cfg.Audience = itemsAPI
	}
	if clk != nil {
		cfg.Now = clk.Now
	}
	v, err := verify.NewAPIKeyVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestAPIKeyVerifier(t *testing.T) {
	s := newKeyServer(t)
	clk := newClock()
	now := clk.Now()
	good, reportsOnly, expiring := makeKey("gate", 1), makeKey("acme", 2), makeKey("gate", 3)
	s.keys[good] = fakeKey{id: "key_1", org: "org_acme", owner: "user-42",
		grants: map[string][]string{itemsAPI: {"read", "write"}, reportsAPI: {"reports:read"}}}
	s.keys[reportsOnly] = fakeKey{id: "key_2", grants: map[string][]string{reportsAPI: {}}}
	s.keys[expiring] = fakeKey{id: "key_3", grants: map[string][]string{itemsAPI: nil}, expires: now.Add(10 * time.Second)}
	s.keys[makeKey("gate", 4)] = fakeKey{id: "key_4", code: "disabled"}
	s.keys[makeKey("gate", 5)] = fakeKey{id: "key_5", code: "expired"}
	v := newKeyVerifier(t, s, clk, verify.APIKeyConfig{})

	c, err := v.Verify(context.Background(), good)
	if err != nil {
		t.Fatalf("Verify(good): %v", err)
	}
	want := &verify.Claims{Issuer: s.URL, Subject: "key_1", ClientID: "key_1", OrgID: "org_acme", Audience: []string{itemsAPI},
		Scopes: []string{"read", "write"}, IssuedAt: now, ExpiresAt: now.Add(verify.DefaultAPIKeyCacheTTL)}
	if diff := cmp.Diff(want, c, cmpIgnoreRaw); diff != "" {
		t.Errorf("claims (-want +got):\n%s", diff)
	}
	var extra struct {
		Owner    string            `json:"owner"`
		Metadata map[string]string `json:"metadata"`
	}
	if err := c.Decode(&extra); err != nil || extra.Owner != "user-42" || extra.Metadata["plan"] != "gold" {
		t.Errorf("Decode: %+v, %v; want owner user-42 and the metadata", extra, err)
	}
	if !c.HasScopes("read", "write") || c.HasScopes("admin") {
		t.Errorf("HasScopes on %v", c.Scopes)
	}

	// The same key for another API, from the same answer.
	c, err = v.ForAudience(reportsAPI).Verify(context.Background(), good)
	if err != nil || !cmp.Equal(c.Audience, []string{reportsAPI}) || !cmp.Equal(c.Scopes, []string{"reports:read"}) {
		t.Errorf("ForAudience(reports).Verify(good) = %+v, %v", c, err)
	}
	if n := s.checks.Load(); n != 1 {
		t.Errorf("%d checks for one key on two APIs, want 1", n)
	}

	c, err = v.Verify(context.Background(), expiring)
	if err != nil || !c.ExpiresAt.Equal(now.Add(10*time.Second)) || c.Scopes == nil || len(c.Scopes) != 0 {
		t.Errorf("Verify(expiring) = %+v, %v; want ExpiresAt at the key's expiry and no scopes", c, err)
	}

	for _, tc := range []struct {
		name string
		key  string
		also error // besides ErrInvalidAPIKey
	}{
		{"unknown", makeKey("gate", 99), nil},
		{"disabled", makeKey("gate", 4), nil},
		{"expired", makeKey("gate", 5), verify.ErrExpired},
		{"no grant for the API", reportsOnly, verify.ErrAudience},
		{"not a key", "gate_123", verify.ErrMalformed},
		{"a JWT", "eyJhbGciOiJFUzI1NiJ9.e30.c2ln", verify.ErrMalformed},
	} {
		c, err := v.Verify(context.Background(), tc.key)
		if c != nil || !errors.Is(err, verify.ErrInvalidAPIKey) || (tc.also != nil && !errors.Is(err, tc.also)) {
			t.Errorf("%s: Verify = %v, %v; want ErrInvalidAPIKey and %v", tc.name, c, err, tc.also)
		}
		if errors.Is(err, verify.ErrUnavailable) {
			t.Errorf("%s: %v matches ErrUnavailable", tc.name, err)
		}
	}
	if n := s.checks.Load(); n != 6 { // good, expiring, unknown, disabled, expired, reportsOnly: no request for the malformed
		t.Errorf("%d checks, want 6", n)
	}
	if n := s.tokens.Load(); n != 1 {
		t.Errorf("%d management tokens fetched, want 1", n)
	}
}

var cmpIgnoreRaw = cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".Raw" }, cmp.Ignore())

// TestAPIKeyCache: an accepted key is trusted for CacheTTL (or until the key expires, if sooner), a refused one for
// NegativeCacheTTL; after that the server is asked again, and a key it has since deleted is refused.
func TestAPIKeyCache(t *testing.T) {
	s := newKeyServer(t)
	clk := newClock()
	key, later := makeKey("gate", 1), makeKey("gate", 2)
	s.keys[key] = fakeKey{id: "key_1", grants: map[string][]string{itemsAPI: {"read"}}}
	v := newKeyVerifier(t, s, clk, verify.APIKeyConfig{CacheTTL: time.Minute, NegativeCacheTTL: 10 * time.Second})
	ctx := context.Background()
	wantChecks := func(step string, n int64) {
		t.Helper()
		if got := s.checks.Load(); got != n {
			t.Errorf("%s: %d checks, want %d", step, got, n)
		}
	}
	mustVerify := func(step, key string, ok bool) {
		t.Helper()
		_, err := v.Verify(ctx, key)
		if (err == nil) != ok || (!ok && !errors.Is(err, verify.ErrInvalidAPIKey)) {
			t.Errorf("%s: Verify: %v, want accepted %v", step, err, ok)
		}
	}

	mustVerify("first", key, true)
	mustVerify("again", key, true)
	wantChecks("a key seen before", 1)
	s.set(func(s *keyServer) { delete(s.keys, key) }) // deleted on the server
	clk.Advance(time.Minute - time.Second)
	mustVerify("deleted, within the TTL", key, true) // the revocation delay
	wantChecks("within the TTL", 1)
	clk.Advance(time.Second)
	mustVerify("deleted, TTL over", key, false)
	wantChecks("TTL over", 2)

	mustVerify("refused", later, false)
	mustVerify("refused again", later, false)
	wantChecks("a refused key seen before", 3)
	s.set(func(s *keyServer) { s.keys[later] = fakeKey{id: "key_2", grants: map[string][]string{itemsAPI: {}}} })
	clk.Advance(10*time.Second - time.Millisecond)
	mustVerify("created, within the negative TTL", later, false)
	clk.Advance(time.Millisecond)
	mustVerify("created, negative TTL over", later, true)
	wantChecks("negative TTL over", 4)

	// A key that expires before the TTL is over is asked about again at its expiry.
	exp := makeKey("gate", 3)
	s.set(func(s *keyServer) {
		s.keys[exp] = fakeKey{id: "key_3", grants: map[string][]string{itemsAPI: {}}, expires: clk.Now().Add(5 * time.Second)}
	})
	mustVerify("expiring key", exp, true)
	clk.Advance(5 * time.Second)
	s.set(func(s *keyServer) { s.keys[exp] = fakeKey{id: "key_3", code: "expired"} })
	mustVerify("expiring key, expired", exp, false)
	wantChecks("after the key's expiry", 6)
}

// TestAPIKeyNoCache: with a negative CacheTTL every Verify asks the server, so a deleted key is refused at once.
func TestAPIKeyNoCache(t *testing.T) {
	s := newKeyServer(t)
	clk := newClock()
	key := makeKey("gate", 1)
	s.keys[key] = fakeKey{id: "key_1", grants: map[string][]string{itemsAPI: {"read"}}}
	v := newKeyVerifier(t, s, clk, verify.APIKeyConfig{CacheTTL: -1})
	for range 3 {
		c, err := v.Verify(context.Background(), key)
		if err != nil || !c.ExpiresAt.Equal(clk.Now()) {
			t.Fatalf("Verify = %+v, %v; want ExpiresAt now: nothing may keep the answer", c, err)
		}
	}
	s.set(func(s *keyServer) { delete(s.keys, key) })
	for range 2 {
		if _, err := v.Verify(context.Background(), key); !errors.Is(err, verify.ErrInvalidAPIKey) {
			t.Fatalf("deleted key: %v, want ErrInvalidAPIKey at once", err)
		}
	}
	if n := s.checks.Load(); n != 5 {
		t.Errorf("%d checks for 5 calls, want 5 (no cache, refusals included)", n)
	}
}

// TestAPIKeyCacheBounds: each cache holds MaxCacheEntries keys, least recently used first out, and a flood of
// made-up keys does not push out accepted ones.
func TestAPIKeyCacheBounds(t *testing.T) {
	s := newKeyServer(t)
	var keys []string
	for i := range 3 {
		k := makeKey("gate", i+1)
		keys = append(keys, k)
		s.keys[k] = fakeKey{id: fmt.Sprintf("key_%d", i+1), grants: map[string][]string{itemsAPI: {}}}
	}
	v := newKeyVerifier(t, s, newClock(), verify.APIKeyConfig{MaxCacheEntries: 2})
	ctx := context.Background()
	verifyAll := func(ks ...string) {
		t.Helper()
		for _, k := range ks {
			if _, err := v.Verify(ctx, k); err != nil {
				t.Fatal(err)
			}
		}
	}
	verifyAll(keys[0], keys[1], keys[0], keys[1])
	if n := s.checks.Load(); n != 2 {
		t.Fatalf("two keys, twice: %d checks, want 2", n)
	}
	for i := range 100 {
		v.Verify(ctx, makeKey("evil", i)) // refused, and kept in the cache of refusals
	}
	verifyAll(keys[0], keys[1])
	if n := s.checks.Load(); n != 102 {
		t.Fatalf("after 100 made-up keys: %d checks, want 102 (the accepted keys still cached)", n)
	}
	verifyAll(keys[2], keys[1]) // keys[2] evicts keys[0], the least recently used; keys[1] is still there
	verifyAll(keys[0])
	if n := s.checks.Load(); n != 104 {
		t.Errorf("after the third key: %d checks, want 104", n)
	}
}

// TestAPIKeySingleflight: concurrent checks of one key share one request (never two at once: a caller that comes
// after the request ended may find the answer cached, or start the next); a caller that stops waiting gets
// ErrAPIKeyUnavailable without failing the others, and the answer is cached for the next.
func TestAPIKeySingleflight(t *testing.T) {
	s := newKeyServer(t)
	key := makeKey("gate", 1)
	s.keys[key] = fakeKey{id: "key_1", grants: map[string][]string{itemsAPI: {"read"}}}
	hold, arrive := make(chan struct{}), make(chan struct{}, 10)
	s.set(func(s *keyServer) { s.hold, s.arrive = hold, arrive })
	v := newKeyVerifier(t, s, nil, verify.APIKeyConfig{})

	const n = 50
	errs, started := make(chan error, n), make(chan struct{}, n)
	for range n {
		go func() {
			started <- struct{}{}
			_, err := v.Verify(context.Background(), key)
			errs <- err
		}()
	}
	for range n {
		<-started
	}
	<-arrive // a request is at the server, held
	ctx, cancel := context.WithCancel(context.Background())
	impatient := make(chan error, 1)
	go func() {
		_, err := v.Verify(ctx, key)
		impatient <- err
	}()
	cancel()
	if err := <-impatient; !errors.Is(err, verify.ErrAPIKeyUnavailable) || !errors.Is(err, context.Canceled) {
		t.Errorf("a caller that stopped waiting: %v, want ErrAPIKeyUnavailable and context.Canceled", err)
	}
	close(hold)
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("Verify: %v", err)
		}
	}
	if _, err := v.Verify(context.Background(), key); err != nil {
		t.Errorf("after the flight: %v", err)
	}
	if got := s.maxInFlight.Load(); got != 1 {
		t.Errorf("%d concurrent checks of one key: up to %d requests at once, want 1", n+2, got)
	}
	if got := s.checks.Load(); got >= n/2 {
		t.Errorf("%d concurrent checks of one key made %d requests", n+2, got)
	}
	t.Logf("%d checks of one key, %d requests", n+2, s.checks.Load())
}

// TestAPIKeyUnavailable: when the server cannot say, Verify fails closed with ErrAPIKeyUnavailable, which is not
// ErrInvalidAPIKey and is not cached; the errors never hold the key, even when the server echoes it.
func TestAPIKeyUnavailable(t *testing.T) {
	key := makeKey("gate", 1)
	var errs []error
	for _, tc := range []struct {
		name  string
		setup func(s *keyServer)
		cfg   verify.APIKeyConfig
		want  string // in the error
	}{
		{"server error", func(s *keyServer) { s.status = 500 }, verify.APIKeyConfig{}, "500"},
		{"forbidden", func(s *keyServer) { s.status = 403 }, verify.APIKeyConfig{}, "needs the scope verify:apikeys"},
		{"unreachable", func(s *keyServer) { s.Close() }, verify.APIKeyConfig{}, "connect"},
		{"wrong client secret", nil, verify.APIKeyConfig{ClientSecret: "wrong"}, "invalid_client"},
		{"not a check answer", func(s *keyServer) { s.body = []byte(`{"ok":true}`) }, verify.APIKeyConfig{}, "did not answer"},
		{"not JSON", func(s *keyServer) { s.body = []byte(`<html>`) }, verify.APIKeyConfig{}, "did not answer"},
		{"answer too large", func(s *keyServer) {
			s.body = []byte(`{"valid":true,"key_id":"key_1","metadata":"` + strings.Repeat("x", 2<<20) + `"}`)
		}, verify.APIKeyConfig{}, "larger than"},
	} {
		s := newKeyServer(t)
		s.keys[key] = fakeKey{id: "key_1", grants: map[string][]string{itemsAPI: {"read"}}}
		if tc.setup != nil {
			s.set(tc.setup)
		}
		cfg := tc.cfg
		cfg.ServerURL, cfg.ClientID, cfg.Audience = s.URL, keyClientID, itemsAPI
		if cfg.ClientSecret == "" {
			cfg.ClientSecret = keyClientSecret
		}
		v, err := verify.NewAPIKeyVerifier(cfg)
		if err != nil {
			t.Fatal(err)
		}
		_, err = v.Verify(context.Background(), key)
		if !errors.Is(err, verify.ErrAPIKeyUnavailable) || !errors.Is(err, verify.ErrUnavailable) || errors.Is(err, verify.ErrInvalidAPIKey) {
			t.Errorf("%s: %v, want ErrAPIKeyUnavailable only", tc.name, err)
		} else if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %q does not say %q", tc.name, err, tc.want)
		}
		errs = append(errs, err)
		if tc.name == "server error" { // failures are not cached: the next check asks again, and succeeds
			s.set(func(s *keyServer) { s.status = 0 })
			if _, err := v.Verify(context.Background(), key); err != nil {
				t.Errorf("after the server recovered: %v", err)
			}
		}
	}
	for _, err := range errs {
		if strings.Contains(err.Error(), key) || strings.Contains(err.Error(), key[5:20]) {
			t.Errorf("error %q holds the key", err)
		}
	}
}

// TestAPIKeyManagementToken: the management token is fetched once and reused; when the server stops accepting it
// (rotated signing keys, say), the check is retried once with a new one.
func TestAPIKeyManagementToken(t *testing.T) {
	s := newKeyServer(t)
	v := newKeyVerifier(t, s, nil, verify.APIKeyConfig{CacheTTL: -1})
	key := makeKey("gate", 1)
	s.keys[key] = fakeKey{id: "key_1", grants: map[string][]string{itemsAPI: {"read"}}}
	for range 3 {
		if _, err := v.Verify(context.Background(), key); err != nil {
			t.Fatal(err)
		}
	}
	s.set(func(s *keyServer) { s.token = "mgmt-2" })
	if _, err := v.Verify(context.Background(), key); err != nil {
		t.Fatalf("after the server dropped the token: %v", err)
	}
	if checks, tokens := s.checks.Load(), s.tokens.Load(); checks != 5 || tokens != 2 {
		t.Errorf("checks, tokens = %d, %d; want 5, 2", checks, tokens)
	}
}

// TestAPIKeyNoRedirect: a redirect from the check endpoint is an error, and the key is not sent on.
func TestAPIKeyNoRedirect(t *testing.T) {
	var elsewhere atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { elsewhere.Add(1) }))
	defer other.Close()
	s := newKeyServer(t)
	mux := s.Config.Handler
	s.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/v1/apikeys/verify" {
			http.Redirect(w, r, other.URL+r.URL.Path, http.StatusTemporaryRedirect)
			return
		}
		mux.ServeHTTP(w, r)
	})
	v := newKeyVerifier(t, s, nil, verify.APIKeyConfig{})
	if _, err := v.Verify(context.Background(), makeKey("gate", 1)); !errors.Is(err, verify.ErrAPIKeyUnavailable) {
		t.Errorf("redirected check: %v, want ErrAPIKeyUnavailable", err)
	}
	if n := elsewhere.Load(); n != 0 {
		t.Errorf("the redirect was followed: %d requests elsewhere", n)
	}
}

func TestNewAPIKeyVerifierErrors(t *testing.T) {
	ok := verify.APIKeyConfig{ServerURL: "https://auth.example.com/", ClientID: "edge", ClientSecret: "s", Audience: itemsAPI}
	if _, err := verify.NewAPIKeyVerifier(ok); err != nil {
		t.Fatalf("good config: %v", err)
	}
	for _, tc := range []struct {
		name string
		edit func(c *verify.APIKeyConfig)
		want string
	}{
		{"no server", func(c *verify.APIKeyConfig) { c.ServerURL = "" }, "ServerURL"},
		{"relative server", func(c *verify.APIKeyConfig) { c.ServerURL = "auth.example.com" }, "ServerURL"},
		{"server with a query", func(c *verify.APIKeyConfig) { c.ServerURL = "https://auth.example.com/?x=1" }, "ServerURL"},
		{"plain http", func(c *verify.APIKeyConfig) { c.ServerURL = "http://auth.example.com" }, "loopback"},
		{"no client", func(c *verify.APIKeyConfig) { c.ClientID = "" }, "ClientID"},
		{"no secret", func(c *verify.APIKeyConfig) { c.ClientSecret = "" }, "ClientSecret"},
		{"no audience", func(c *verify.APIKeyConfig) { c.Audience = "" }, "Audience"},
		{"negative size", func(c *verify.APIKeyConfig) { c.MaxCacheEntries = -1 }, "MaxCacheEntries"},
	} {
		cfg := ok
		tc.edit(&cfg)
		if _, err := verify.NewAPIKeyVerifier(cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error naming %s", tc.name, err, tc.want)
		}
	}
	insecure := ok
	insecure.ServerURL, insecure.AllowInsecureHTTP = "http://gatehouse.internal:8080", true
	if _, err := verify.NewAPIKeyVerifier(insecure); err != nil {
		t.Errorf("http with AllowInsecureHTTP: %v", err)
	}
}

// TestAPIKeyMiddleware: one Middleware accepts access tokens and API keys (Any), in the Authorization header or the
// X-API-Key header; refuses keys in URLs and requests with two credentials; fails closed with 503 when the server
// cannot be asked; and no key reaches the log of refusals.
func TestAPIKeyMiddleware(t *testing.T) {
	s := newKeyServer(t)
	clk := newClock()
	key, readOnly, unknown := makeKey("gate", 1), makeKey("gate", 2), makeKey("gate", 3)
	s.keys[key] = fakeKey{id: "key_1", org: "org_acme", grants: map[string][]string{testAudience: {"read", "write"}}}
	s.keys[readOnly] = fakeKey{id: "key_2", grants: map[string][]string{testAudience: {"read"}}}
	keys := newKeyVerifier(t, s, clk, verify.APIKeyConfig{Audience: testAudience})
	jwt := newVerifier(t, newJWKSServer(t, rsaKey), clk, verify.Config{})

	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	h := verify.Middleware(verify.Any(jwt, keys), verify.Realm("api"), verify.RequireScopes("write"), verify.APIKeyHeader("x-api-key"),
		verify.OnError(func(r *http.Request, err error) { log.Info("refused", "err", err) }))(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c, _ := verify.ClaimsFrom(r.Context())
			fmt.Fprintf(w, "%s %s %v", c.Subject, c.OrgID, c.Scopes)
		}))
	do := func(target string, header ...string) (int, string, string) {
		req := httptest.NewRequest("GET", target, nil)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Add(header[i], header[i+1])
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w.Code, w.Header().Get("WWW-Authenticate"), w.Body.String()
	}
	for _, tc := range []struct {
		name      string
		target    string
		header    []string
		status    int
		challenge string // WWW-Authenticate, or the body of a 200
	}{
		{"key as bearer", "/items", []string{"Authorization", "Bearer " + key}, 200, "key_1 org_acme [read write]"},
		{"key in X-API-Key", "/items", []string{"X-API-Key", key}, 200, "key_1 org_acme [read write]"},
		{"access token", "/items", []string{"Authorization", "Bearer " + token(rsaKey, clk.Now())}, 200, "svc-one  [read write]"},
		{"key without the scope", "/items", []string{"Authorization", "Bearer " + readOnly}, 403,
			`Bearer realm="api", error="insufficient_scope", error_description="the token lacks a scope this request needs", scope="write"`},
		{"unknown key", "/items", []string{"X-API-Key", unknown}, 401,
			`Bearer realm="api", error="invalid_token", error_description="the API key is not valid"`},
		{"not a key in X-API-Key", "/items", []string{"X-API-Key", token(rsaKey, clk.Now())}, 401,
			`Bearer realm="api", error="invalid_token", error_description="the API key is malformed"`},
		{"key and token", "/items", []string{"X-API-Key", key, "Authorization", "Bearer " + token(rsaKey, clk.Now())}, 400,
			`Bearer realm="api", error="invalid_request", error_description="more than one credential: an API key header and an Authorization header, or two"`},
		{"two keys", "/items", []string{"X-API-Key", key, "X-API-Key", readOnly}, 400, `Bearer realm="api", error="invalid_request"`},
		{"key in the query", "/items?api_key=" + key, []string{"Authorization", "Bearer " + key}, 400,
			`Bearer realm="api", error="invalid_request", error_description="an API key must not be sent in a URL, where logs keep it: send it in a header"`},
		{"escaped key in the query", "/items?x=1&k=%20" + key, nil, 400, `Bearer realm="api", error="invalid_request"`},
		{"key as a query name", "/items?" + key, nil, 400, `Bearer realm="api", error="invalid_request"`},
		{"nothing", "/items", nil, 401, `Bearer realm="api"`},
	} {
		status, challenge, body := do(tc.target, tc.header...)
		got := challenge
		if status == 200 {
			got = body
		}
		if status != tc.status || !strings.HasPrefix(got, tc.challenge) {
			t.Errorf("%s: %d %q, want %d %q", tc.name, status, got, tc.status, tc.challenge)
		}
	}

	s.set(func(s *keyServer) { s.status = http.StatusBadGateway })
	if status, _, _ := do("/items", "Authorization", "Bearer "+readOnly); status != 403 {
		t.Errorf("cached key while the server is down: %d, want 403 (its cached answer, within the TTL)", status)
	}
	clk.Advance(verify.DefaultAPIKeyCacheTTL)
	if status, _, _ := do("/items", "Authorization", "Bearer "+key); status != 503 {
		t.Errorf("server down, TTL over: %d, want 503 (fail closed)", status)
	}
	for _, k := range []string{key, readOnly, unknown} {
		if strings.Contains(logs.String(), k) {
			t.Errorf("the log of refusals holds a key:\n%s", logs.String())
		}
	}
}
