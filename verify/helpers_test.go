package verify_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"

	"github.com/gatehouse/gatehouse/verify"
)

const (
	testIssuer   = "https://issuer.example/"
	testAudience = "https://api.example.com"
)

// testKey is a signing key with the kid and alg its JWK publishes.
type testKey struct {
	kid  string
	alg  string // the JWK's alg; "" publishes none
	priv crypto.Signer
}

func (k testKey) jwk() jose.JSONWebKey {
	return jose.JSONWebKey{Key: k.priv.Public(), KeyID: k.kid, Algorithm: k.alg, Use: "sig"}
}

var (
	keysOnce sync.Once
	rsaKey   testKey
	rsa2Key  testKey // a second RSA key, for rotations
	ecKey    testKey
	ec384Key testKey
	edKey    testKey
	evilKey  testKey // an attacker's key, never published
)

func loadKeys() {
	keysOnce.Do(func() {
		r1, _ := rsa.GenerateKey(rand.Reader, 2048)
		r2, _ := rsa.GenerateKey(rand.Reader, 2048)
		r3, _ := rsa.GenerateKey(rand.Reader, 2048)
		p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
		_, ed, _ := ed25519.GenerateKey(rand.Reader)
		rsaKey = testKey{"rsa-1", "RS256", r1}
		rsa2Key = testKey{"rsa-2", "RS256", r2}
		ecKey = testKey{"ec-1", "ES256", p256}
		ec384Key = testKey{"ec384-1", "ES384", p384}
		edKey = testKey{"ed-1", "EdDSA", ed}
		evilKey = testKey{"evil", "RS256", r3}
	})
}

// clock is a settable Config.Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Unix(1_800_000_000, 0)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// jwksServer serves a JWK Set on loopback and counts the requests for it.
type jwksServer struct {
	*httptest.Server
	requests atomic.Int64

	mu           sync.Mutex
	keys         []jose.JSONWebKey
	cacheControl string
	status       int           // 0: 200
	hold         chan struct{} // when set, requests wait for it to close
}

func newJWKSServer(t testing.TB, keys ...testKey) *jwksServer {
	t.Helper()
	loadKeys()
	s := &jwksServer{cacheControl: "public, max-age=3600"}
	s.setKeys(keys...)
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

func (s *jwksServer) url() string { return s.URL + "/.well-known/jwks.json" }

func (s *jwksServer) setKeys(keys ...testKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = nil
	for _, k := range keys {
		s.keys = append(s.keys, k.jwk())
	}
}

func (s *jwksServer) set(f func(s *jwksServer)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s)
}

func (s *jwksServer) serve(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/.well-known/jwks.json" {
		http.NotFound(w, r)
		return
	}
	s.requests.Add(1)
	s.mu.Lock()
	hold, status, cc := s.hold, s.status, s.cacheControl
	body, err := json.Marshal(jose.JSONWebKeySet{Keys: s.keys})
	s.mu.Unlock()
	if err != nil {
		panic(err)
	}
	if hold != nil {
		<-hold
	}
	if status != 0 && status != http.StatusOK {
		http.Error(w, "down", status)
		return
	}
	etag := `"` + strconv.Itoa(len(body)) + fmt.Sprintf("-%x", crc(body)) + `"`
	w.Header().Set("Cache-Control", cc)
	w.Header().Set("ETag", etag)
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Write(body)
}

func crc(b []byte) uint32 {
	var h uint32 = 2166136261
	for _, c := range b {
		h = (h ^ uint32(c)) * 16777619
	}
	return h
}

// newVerifier returns a Verifier of testIssuer and testAudience reading s, on clk, with cfg's other fields.
func newVerifier(t testing.TB, s *jwksServer, clk *clock, cfg verify.Config) *verify.Verifier {
	t.Helper()
	if cfg.Issuer == "" {
		cfg.Issuer = testIssuer
	}
	if cfg.Audiences == nil {
		cfg.Audiences = []string{testAudience}
	}
	if cfg.JWKSURL == "" && s != nil {
		cfg.JWKSURL = s.url()
	}
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	if cfg.Now == nil && clk != nil {
		cfg.Now = clk.Now
	}
	v, err := verify.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// claims returns the claims of a good token at now.
func claims(now time.Time) map[string]any {
	return map[string]any{
		"iss":       testIssuer,
		"sub":       "svc-one",
		"aud":       testAudience,
		"exp":       now.Add(time.Hour).Unix(),
		"nbf":       now.Unix(),
		"iat":       now.Unix(),
		"jti":       "jti-1",
		"client_id": "svc-one",
		"scope":     "read write",
	}
}

// header returns the header of a good token signed with k.
func header(k testKey) map[string]any {
	return map[string]any{"alg": k.alg, "kid": k.kid, "typ": "at+jwt"}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

var enc = base64.RawURLEncoding

// sign returns the compact JWS of hdr and payload (JSON values or raw JSON bytes) signed with priv by alg; for
// "none" the signature is empty.
func sign(alg string, priv any, hdr, payload any) string {
	raw := func(v any) []byte {
		if b, ok := v.([]byte); ok {
			return b
		}
		return mustJSON(v)
	}
	input := enc.EncodeToString(raw(hdr)) + "." + enc.EncodeToString(raw(payload))
	if alg == "none" {
		return input + "."
	}
	m := jwt.GetSigningMethod(alg)
	if m == nil {
		panic("no signing method " + alg)
	}
	sig, err := m.Sign(input, priv)
	if err != nil {
		panic(fmt.Sprintf("sign %s: %v", alg, err))
	}
	return input + "." + enc.EncodeToString(sig)
}

// token returns a good token signed with k at now, with edits applied to its header and claims.
func token(k testKey, now time.Time, edit ...func(h, c map[string]any)) string {
	h, c := header(k), claims(now)
	for _, e := range edit {
		e(h, c)
	}
	return sign(k.alg, k.priv, h, c)
}

type rsaPublicKey = rsa.PublicKey

func rsaGenerate(bits int) (*rsa.PrivateKey, error) { return rsa.GenerateKey(rand.Reader, bits) }

// b64n returns the base64url modulus of an RSA test key.
func b64n(k testKey) string { return enc.EncodeToString(k.priv.Public().(*rsa.PublicKey).N.Bytes()) }

func TestMain(m *testing.M) {
	loadKeys()
	os.Exit(m.Run())
}

// testLogger logs to the test's output, shown when it fails or runs with -v.
func testLogger(t testing.TB) *slog.Logger { return slog.New(slog.NewTextHandler(t.Output(), nil)) }
