package keyset

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/golang-jwt/jwt/v5"
	"github.com/google/go-cmp/cmp"

	"github.com/gatehouse/gatehouse/internal/auth"
)

func randomKey() []byte {
	b := make([]byte, 32)
	rand.Read(b)
	return b
}

func newKeyset(t testing.TB, store auth.Store, encKey []byte, opts Options) *Keyset {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	k, err := New(store, encKey, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Load(t.Context()); err != nil {
		t.Fatal(err)
	}
	return k
}

// claims returns a realistic access token payload (about 300 bytes).
func claims(t testing.TB) []byte {
	now := time.Now().Unix()
	c := map[string]any{
		"iss":       "https://auth.example.com/",
		"sub":       "client_7k2mq4xv9p3nh6ja8r5tz2wb4e",
		"aud":       "https://api.example.com/v1",
		"exp":       now + 86400,
		"iat":       now,
		"jti":       "3f6b1c2e-8a4d-4f7e-9b0a-5c1d2e3f4a5b",
		"client_id": "7k2mq4xv9p3nh6ja8r5tz2wb4e",
		"scope":     "read:items write:items read:orders",
		"org_id":    "org_q2w3e4r5t6y7u8i9o0p1a2s3d4",
	}
	b, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// jwk is a published key as a verifier sees it: every member we publish is a string.
type jwk map[string]string

func parseJWKS(t testing.TB, body []byte) []jwk {
	t.Helper()
	var set struct{ Keys []jwk }
	if err := json.Unmarshal(body, &set); err != nil {
		t.Fatalf("JWKS %s: %v", body, err)
	}
	return set.Keys
}

func b64(t testing.TB, s string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		t.Fatalf("base64url %q: %v", s, err)
	}
	return b
}

// publicKey parses a published JWK by hand, without go-jose, into the key type golang-jwt verifies with.
func publicKey(t testing.TB, k jwk) any {
	t.Helper()
	switch k["kty"] {
	case "RSA":
		return &rsa.PublicKey{N: new(big.Int).SetBytes(b64(t, k["n"])), E: int(new(big.Int).SetBytes(b64(t, k["e"])).Int64())}
	case "EC":
		if k["crv"] != "P-256" {
			t.Fatalf("EC key on curve %q", k["crv"])
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, b64(t, k["x"])...), b64(t, k["y"])...))
		if err != nil {
			t.Fatal(err)
		}
		return pub
	case "OKP":
		if k["crv"] != "Ed25519" {
			t.Fatalf("OKP key on curve %q", k["crv"])
		}
		return ed25519.PublicKey(b64(t, k["x"]))
	}
	t.Fatalf("unexpected kty %q", k["kty"])
	return nil
}

// rfc7638 computes the RFC 7638 SHA-256 thumbprint of a published JWK by hand.
func rfc7638(t testing.TB, k jwk) string {
	t.Helper()
	var members string
	switch k["kty"] {
	case "RSA":
		members = fmt.Sprintf(`{"e":%q,"kty":"RSA","n":%q}`, k["e"], k["n"])
	case "EC":
		members = fmt.Sprintf(`{"crv":%q,"kty":"EC","x":%q,"y":%q}`, k["crv"], k["x"], k["y"])
	case "OKP":
		members = fmt.Sprintf(`{"crv":%q,"kty":"OKP","x":%q}`, k["crv"], k["x"])
	default:
		t.Fatalf("unexpected kty %q", k["kty"])
	}
	sum := sha256.Sum256([]byte(members))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// verify checks token with golang-jwt against the keys in jwks, and returns its header.
func verify(t testing.TB, jwksBody []byte, alg auth.Algorithm, token string) map[string]any {
	t.Helper()
	keys := parseJWKS(t, jwksBody)
	tok, err := jwt.Parse(token, func(tok *jwt.Token) (any, error) {
		kid, _ := tok.Header["kid"].(string)
		for _, k := range keys {
			if k["kid"] == kid {
				return publicKey(t, k), nil
			}
		}
		return nil, fmt.Errorf("no key %q in the JWKS", kid)
	}, jwt.WithValidMethods([]string{string(alg)}), jwt.WithExpirationRequired())
	if err != nil {
		t.Fatalf("verify %s token: %v", alg, err)
	}
	return tok.Header
}

// currentKey returns the stored current key for alg.
func currentKey(t testing.TB, s *memStore, alg auth.Algorithm) *auth.SigningKey {
	t.Helper()
	for _, k := range s.stored() {
		if k.Alg == alg && k.State == auth.KeyCurrent {
			return k
		}
	}
	t.Fatalf("no current %s key stored", alg)
	return nil
}

func TestSignVerifiesWithAnotherLibrary(t *testing.T) {
	for _, alg := range auth.Algorithms {
		t.Run(string(alg), func(t *testing.T) {
			store := newMemStore()
			k := newKeyset(t, store, randomKey(), Options{})
			if err := k.Ensure(t.Context(), alg); err != nil {
				t.Fatal(err)
			}
			payload := claims(t)
			token, err := k.Sign(t.Context(), alg, payload)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := k.JWKS()
			keys := parseJWKS(t, body)
			if len(keys) != 1 {
				t.Fatalf("JWKS has %d keys, want 1: %s", len(keys), body)
			}
			kid := rfc7638(t, keys[0])
			if keys[0]["kid"] != kid {
				t.Errorf("JWKS kid = %q, want the RFC 7638 thumbprint %q", keys[0]["kid"], kid)
			}
			if got := currentKey(t, store, alg).ID; got != kid {
				t.Errorf("stored kid = %q, want %q", got, kid)
			}

			header := verify(t, body, alg, token)
			want := map[string]any{"alg": string(alg), "kid": kid, "typ": "at+jwt"}
			if diff := cmp.Diff(want, header); diff != "" {
				t.Errorf("header (-want +got):\n%s", diff)
			}
			if got := b64(t, strings.Split(token, ".")[1]); !bytes.Equal(got, payload) {
				t.Errorf("payload = %s, want the claims as given: %s", got, payload)
			}
		})
	}
}

func TestSignCreatesKeyLazily(t *testing.T) {
	store := newMemStore()
	k := newKeyset(t, store, randomKey(), Options{})
	if got := k.Algorithms(); len(got) != 0 {
		t.Fatalf("Algorithms() = %v before any key, want none", got)
	}
	token, err := k.Sign(t.Context(), auth.EdDSA, claims(t))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := k.JWKS()
	verify(t, body, auth.EdDSA, token)
	if diff := cmp.Diff([]auth.Algorithm{auth.EdDSA}, k.Algorithms()); diff != "" {
		t.Errorf("Algorithms() (-want +got):\n%s", diff)
	}
	if _, err := k.Sign(t.Context(), auth.EdDSA, claims(t)); err != nil {
		t.Fatal(err)
	}
	if got := len(store.stored()); got != 1 {
		t.Errorf("%d keys stored after two signatures, want 1", got)
	}
	if got := store.createCalls(); got != 1 {
		t.Errorf("CreateSigningKey called %d times, want 1", got)
	}
}

func TestSignUnsupportedAlgorithm(t *testing.T) {
	store := newMemStore()
	k := newKeyset(t, store, randomKey(), Options{})
	for _, alg := range []auth.Algorithm{"", "none", "HS256", "RS512", "rs256"} {
		if token, err := k.Sign(t.Context(), alg, claims(t)); err == nil {
			t.Errorf("Sign(%q) = %q, want an error", alg, token)
		}
		if err := k.Ensure(t.Context(), alg); err == nil {
			t.Errorf("Ensure(%q) succeeded, want an error", alg)
		}
	}
	if got := len(store.stored()); got != 0 {
		t.Errorf("%d keys stored, want 0", got)
	}
}

func TestJWKS(t *testing.T) {
	store := newMemStore()
	clock := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	now := func() time.Time { clock = clock.Add(time.Second); return clock }
	encKey := randomKey()
	k := newKeyset(t, store, encKey, Options{Now: now})
	ctx := t.Context()
	_, emptyTag := k.JWKS()

	// A retired ES256 key, a current key for each algorithm, and a next RS256 key.
	if err := k.Ensure(ctx, auth.ES256); err != nil {
		t.Fatal(err)
	}
	retired := currentKey(t, store, auth.ES256).ID
	if err := store.UpdateSigningKeyState(ctx, retired, auth.KeyCurrent, auth.KeyRetired, now()); err != nil {
		t.Fatal(err)
	}
	if err := k.Load(ctx); err != nil {
		t.Fatal(err)
	}
	for _, alg := range []auth.Algorithm{auth.EdDSA, auth.ES256, auth.RS256} {
		if err := k.Ensure(ctx, alg); err != nil {
			t.Fatal(err)
		}
	}
	next, err := k.newKey(auth.RS256, auth.KeyNext, now())
	if err != nil {
		t.Fatal(err)
	}
	if err := store.CreateSigningKey(ctx, next); err != nil {
		t.Fatal(err)
	}
	if err := k.Load(ctx); err != nil {
		t.Fatal(err)
	}

	body, etag := k.JWKS()
	keys := parseJWKS(t, body)
	want := []string{
		currentKey(t, store, auth.RS256).ID,
		currentKey(t, store, auth.ES256).ID,
		currentKey(t, store, auth.EdDSA).ID,
		next.ID,
		retired,
	}
	var got []string
	for _, key := range keys {
		got = append(got, key["kid"])
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("JWKS kids, current then next then retired (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]auth.Algorithm{auth.RS256, auth.ES256, auth.EdDSA}, k.Algorithms()); diff != "" {
		t.Errorf("Algorithms() (-want +got):\n%s", diff)
	}

	stored := map[string]*auth.SigningKey{}
	for _, sk := range store.stored() {
		stored[sk.ID] = sk
	}
	for _, key := range keys {
		for _, private := range []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k", "priv"} {
			if _, ok := key[private]; ok {
				t.Errorf("key %s (%s) publishes private member %q", key["kid"], key["kty"], private)
			}
		}
		sk := stored[key["kid"]]
		if key["use"] != "sig" || key["alg"] != string(sk.Alg) || key["kid"] != rfc7638(t, key) {
			t.Errorf("key %v: want use sig, alg %s, kid the thumbprint %s", key, sk.Alg, rfc7638(t, key))
		}
		var storedJWK jwk
		if err := json.Unmarshal(sk.PublicJWK, &storedJWK); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(storedJWK, key); diff != "" {
			t.Errorf("published key differs from the stored PublicJWK (-stored +published):\n%s", diff)
		}
	}

	if len(etag) < 3 || etag[0] != '"' || etag[len(etag)-1] != '"' {
		t.Errorf("ETag %s is not a quoted string", etag)
	}
	if etag == emptyTag {
		t.Errorf("ETag %s did not change when keys were added", etag)
	}
	other := newKeyset(t, store, encKey, Options{})
	otherBody, otherTag := other.JWKS()
	if !bytes.Equal(otherBody, body) || otherTag != etag {
		t.Errorf("another instance over the same store publishes\n%s %s\nwant\n%s %s", otherBody, otherTag, body, etag)
	}
}

func TestMaxAge(t *testing.T) {
	store := newMemStore()
	if got, want := newKeyset(t, store, randomKey(), Options{}).MaxAge(), 5*time.Minute; got != want {
		t.Errorf("default MaxAge() = %v, want %v", got, want)
	}
	if got, want := newKeyset(t, store, randomKey(), Options{JWKSMaxAge: 90 * time.Second}).MaxAge(), 90*time.Second; got != want {
		t.Errorf("MaxAge() = %v, want %v", got, want)
	}
}

func TestNewRejectsBadKey(t *testing.T) {
	for _, n := range []int{0, 16, 24, 31, 33, 64} {
		if _, err := New(newMemStore(), make([]byte, n), Options{}); err == nil {
			t.Errorf("New with a %d-byte key succeeded, want an error", n)
		}
	}
}

func TestPrivateKeysAreSealed(t *testing.T) {
	for _, alg := range auth.Algorithms {
		t.Run(string(alg), func(t *testing.T) {
			store := newMemStore()
			encKey := randomKey()
			k := newKeyset(t, store, encKey, Options{})
			if err := k.Ensure(t.Context(), alg); err != nil {
				t.Fatal(err)
			}
			sk := currentKey(t, store, alg)
			if _, err := x509.ParsePKCS8PrivateKey(sk.Private); err == nil {
				t.Error("the stored private key parses as PKCS#8")
			}
			priv, _, err := k.open(sk)
			if err != nil {
				t.Fatal(err)
			}
			der, err := x509.MarshalPKCS8PrivateKey(priv)
			if err != nil {
				t.Fatal(err)
			}
			var secret []byte // the key's secret scalar
			switch p := priv.(type) {
			case *rsa.PrivateKey:
				secret = p.D.Bytes()
			case *ecdsa.PrivateKey:
				secret, _ = p.Bytes()
			case ed25519.PrivateKey:
				secret = p.Seed()
			}
			if bytes.Contains(sk.Private, der) || bytes.Contains(sk.Private, secret) {
				t.Error("the stored private key contains the plaintext key")
			}
			if bytes.Contains(sk.PublicJWK, secret) || bytes.Contains(sk.PublicJWK, []byte(base64.RawURLEncoding.EncodeToString(secret))) {
				t.Error("the stored public JWK contains the private key")
			}

			wrong, err := New(store, randomKey(), Options{Logger: slog.New(slog.DiscardHandler)})
			if err != nil {
				t.Fatal(err)
			}
			err = wrong.Load(t.Context())
			if !errors.Is(err, ErrDecrypt) || !strings.Contains(err.Error(), sk.ID) {
				t.Errorf("Load with another key: %v, want ErrDecrypt naming %s", err, sk.ID)
			}

			same := newKeyset(t, store, encKey, Options{})
			if diff := cmp.Diff([]auth.Algorithm{alg}, same.Algorithms()); diff != "" {
				t.Errorf("Algorithms() with the right key (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadRejectsTamperedKeys(t *testing.T) {
	tests := []struct {
		name    string
		tamper  func(t *testing.T, s *memStore, k *Keyset, a, b *auth.SigningKey) // a, b: a retired and the current EdDSA key
		decrypt bool                                                              // whether the error is ErrDecrypt
	}{
		{"sealed key moved to another kid", func(t *testing.T, s *memStore, k *Keyset, a, b *auth.SigningKey) {
			s.edit(a.ID, func(sk *auth.SigningKey) { sk.Private = b.Private })
			s.edit(b.ID, func(sk *auth.SigningKey) { sk.Private = a.Private })
		}, true},
		{"algorithm relabelled", func(t *testing.T, s *memStore, k *Keyset, a, b *auth.SigningKey) {
			s.edit(a.ID, func(sk *auth.SigningKey) { sk.Alg = auth.ES256 })
		}, true},
		{"ciphertext bit flipped", func(t *testing.T, s *memStore, k *Keyset, a, b *auth.SigningKey) {
			s.edit(b.ID, func(sk *auth.SigningKey) { sk.Private[len(sk.Private)/2] ^= 1 })
		}, true},
		{"nonce bit flipped", func(t *testing.T, s *memStore, k *Keyset, a, b *auth.SigningKey) {
			s.edit(b.ID, func(sk *auth.SigningKey) { sk.Private[0] ^= 1 })
		}, true},
		{"truncated", func(t *testing.T, s *memStore, k *Keyset, a, b *auth.SigningKey) {
			s.edit(b.ID, func(sk *auth.SigningKey) { sk.Private = sk.Private[:10] })
		}, true},
		{"public key replaced", func(t *testing.T, s *memStore, k *Keyset, a, b *auth.SigningKey) {
			_, pub, _ := ed25519.GenerateKey(rand.Reader)
			forged, err := json.Marshal(jose.JSONWebKey{Key: pub.Public(), KeyID: b.ID, Algorithm: "EdDSA", Use: "sig"})
			if err != nil {
				t.Fatal(err)
			}
			s.edit(b.ID, func(sk *auth.SigningKey) { sk.PublicJWK = forged })
		}, false},
		{"second current key", func(t *testing.T, s *memStore, k *Keyset, a, b *auth.SigningKey) {
			s.edit(a.ID, func(sk *auth.SigningKey) { sk.State = auth.KeyCurrent })
		}, false},
		{"unknown state", func(t *testing.T, s *memStore, k *Keyset, a, b *auth.SigningKey) {
			s.edit(a.ID, func(sk *auth.SigningKey) { sk.State = "revoked" })
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			store := newMemStore()
			k := newKeyset(t, store, randomKey(), Options{})
			if err := k.Ensure(ctx, auth.EdDSA); err != nil {
				t.Fatal(err)
			}
			a := currentKey(t, store, auth.EdDSA)
			if err := store.UpdateSigningKeyState(ctx, a.ID, auth.KeyCurrent, auth.KeyRetired, time.Now()); err != nil {
				t.Fatal(err)
			}
			if err := k.Load(ctx); err != nil {
				t.Fatal(err)
			}
			if err := k.Ensure(ctx, auth.EdDSA); err != nil {
				t.Fatal(err)
			}
			b := currentKey(t, store, auth.EdDSA)
			body, etag := k.JWKS()

			tt.tamper(t, store, k, a, b)
			err := k.Load(ctx)
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			if errors.Is(err, ErrDecrypt) != tt.decrypt {
				t.Errorf("Load: %v; errors.Is(err, ErrDecrypt) = %t, want %t", err, !tt.decrypt, tt.decrypt)
			}
			if gotBody, gotTag := k.JWKS(); !bytes.Equal(gotBody, body) || gotTag != etag {
				t.Error("a failed Load changed the JWKS")
			}
			if token, err := k.Sign(ctx, auth.EdDSA, claims(t)); err != nil {
				t.Errorf("Sign after a failed Load: %v", err)
			} else if kid := verify(t, body, auth.EdDSA, token)["kid"]; kid != b.ID {
				t.Errorf("Sign after a failed Load used kid %v, want %s", kid, b.ID)
			}
		})
	}
}

func TestRestart(t *testing.T) {
	store := newMemStore()
	encKey := randomKey()
	first := newKeyset(t, store, encKey, Options{})
	if err := first.Ensure(t.Context(), auth.ES256); err != nil {
		t.Fatal(err)
	}
	before, err := first.Sign(t.Context(), auth.ES256, claims(t))
	if err != nil {
		t.Fatal(err)
	}
	firstBody, firstTag := first.JWKS()

	second := newKeyset(t, store, encKey, Options{})
	if err := second.Ensure(t.Context(), auth.ES256); err != nil {
		t.Fatal(err)
	}
	after, err := second.Sign(t.Context(), auth.ES256, claims(t))
	if err != nil {
		t.Fatal(err)
	}
	body, etag := second.JWKS()
	if !bytes.Equal(body, firstBody) || etag != firstTag {
		t.Errorf("JWKS after restart:\n%s %s\nwant\n%s %s", body, etag, firstBody, firstTag)
	}
	kid := currentKey(t, store, auth.ES256).ID
	for name, token := range map[string]string{"before restart": before, "after restart": after} {
		if got := verify(t, body, auth.ES256, token)["kid"]; got != kid {
			t.Errorf("token %s has kid %v, want %s", name, got, kid)
		}
	}
	if got := len(store.stored()); got != 1 {
		t.Errorf("%d keys stored, want 1", got)
	}
}

func TestEnsureRace(t *testing.T) {
	store := newMemStore()
	encKey := randomKey()
	const instances = 8
	keysets := make([]*Keyset, instances)
	for i := range keysets {
		keysets[i] = newKeyset(t, store, encKey, Options{})
	}

	var start, done sync.WaitGroup
	start.Add(1)
	tokens := make([]string, instances)
	errs := make([]error, instances)
	for i, k := range keysets {
		done.Go(func() {
			start.Wait()
			if errs[i] = k.Ensure(t.Context(), auth.RS256); errs[i] == nil {
				tokens[i], errs[i] = k.Sign(t.Context(), auth.RS256, claims(t))
			}
		})
	}
	start.Done()
	done.Wait()

	stored := store.stored()
	if len(stored) != 1 || stored[0].Alg != auth.RS256 || stored[0].State != auth.KeyCurrent {
		t.Fatalf("stored keys after %d instances ensured RS256: %d, want exactly one current RS256 key", instances, len(stored))
	}
	kid := stored[0].ID
	for i, k := range keysets {
		if errs[i] != nil {
			t.Errorf("instance %d: %v", i, errs[i])
			continue
		}
		body, _ := k.JWKS()
		if got := verify(t, body, auth.RS256, tokens[i])["kid"]; got != kid {
			t.Errorf("instance %d signed with kid %v, want %s", i, got, kid)
		}
	}
}

func TestEnsureCollapsesConcurrentCalls(t *testing.T) {
	store := newMemStore()
	k := newKeyset(t, store, randomKey(), Options{})
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			if _, err := k.Sign(t.Context(), auth.ES256, claims(t)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if got := store.createCalls(); got != 1 {
		t.Errorf("16 concurrent first signatures called CreateSigningKey %d times, want 1", got)
	}
}

// flakyStore fails ListSigningKeys while fail is set.
type flakyStore struct {
	*memStore
	fail atomic.Bool
}

var errStoreDown = errors.New("store down")

func (s *flakyStore) ListSigningKeys(ctx context.Context) ([]*auth.SigningKey, error) {
	if s.fail.Load() {
		return nil, errStoreDown
	}
	return s.memStore.ListSigningKeys(ctx)
}

// syncBuffer is a bytes.Buffer safe to log to from one goroutine and read from another.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &flakyStore{memStore: newMemStore()}
		encKey := randomKey()
		writer := newKeyset(t, store, encKey, Options{})
		var logs syncBuffer
		reader := newKeyset(t, store, encKey, Options{
			ReloadEvery: time.Minute,
			Logger:      slog.New(slog.NewTextHandler(&logs, nil)),
		})
		ctx, cancel := context.WithCancel(t.Context())
		ran := make(chan error)
		go func() { ran <- reader.Run(ctx) }()

		// Another instance creates a key; the reader picks it up at the next reload.
		if err := writer.Ensure(t.Context(), auth.EdDSA); err != nil {
			t.Fatal(err)
		}
		time.Sleep(59 * time.Second)
		synctest.Wait()
		if got := reader.Algorithms(); len(got) != 0 {
			t.Errorf("Algorithms() before the reload = %v, want none", got)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if diff := cmp.Diff([]auth.Algorithm{auth.EdDSA}, reader.Algorithms()); diff != "" {
			t.Errorf("Algorithms() after the reload (-want +got):\n%s", diff)
		}
		body, etag := reader.JWKS()

		// The store fails: the reader logs it and keeps signing with the keys it has.
		store.fail.Store(true)
		time.Sleep(time.Minute)
		synctest.Wait()
		if !strings.Contains(logs.String(), errStoreDown.Error()) {
			t.Errorf("a failed reload was not logged; logs:\n%s", logs.String())
		}
		if gotBody, gotTag := reader.JWKS(); !bytes.Equal(gotBody, body) || gotTag != etag {
			t.Error("a failed reload changed the JWKS")
		}
		token, err := reader.Sign(t.Context(), auth.EdDSA, claims(t))
		if err != nil {
			t.Fatalf("Sign while the store is down: %v", err)
		}
		verify(t, body, auth.EdDSA, token)

		// The store is back.
		store.fail.Store(false)
		if err := writer.Ensure(t.Context(), auth.ES256); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		if diff := cmp.Diff([]auth.Algorithm{auth.ES256, auth.EdDSA}, reader.Algorithms()); diff != "" {
			t.Errorf("Algorithms() once the store is back (-want +got):\n%s", diff)
		}

		cancel()
		if err := <-ran; err != nil {
			t.Errorf("Run returned %v when its context ended, want nil", err)
		}
	})
}

func BenchmarkSign(b *testing.B) {
	for _, alg := range auth.Algorithms {
		b.Run(string(alg), func(b *testing.B) {
			k := newKeyset(b, newMemStore(), randomKey(), Options{})
			if err := k.Ensure(b.Context(), alg); err != nil {
				b.Fatal(err)
			}
			payload := claims(b)
			ctx := b.Context()
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := k.Sign(ctx, alg, payload); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// benchKey makes a Keyset's current key for alg and returns it with its private half.
func benchKey(b *testing.B, alg auth.Algorithm) (*auth.SigningKey, crypto.Signer) {
	b.Helper()
	store := newMemStore()
	k := newKeyset(b, store, randomKey(), Options{})
	if err := k.Ensure(b.Context(), alg); err != nil {
		b.Fatal(err)
	}
	sk := currentKey(b, store, alg)
	priv, _, err := k.open(sk)
	if err != nil {
		b.Fatal(err)
	}
	return sk, priv
}

// BenchmarkRawSign is the ceiling for BenchmarkSign: the bare signature primitive over a signing input of the same
// size, with the same key. What Sign adds on top is the base64 of the claims and the assembly of the token.
func BenchmarkRawSign(b *testing.B) {
	for _, alg := range auth.Algorithms {
		b.Run(string(alg), func(b *testing.B) {
			_, priv := benchKey(b, alg)
			input := []byte(strings.Repeat("h", 100) + "." + base64.RawURLEncoding.EncodeToString(claims(b)))
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					var err error
					switch key := priv.(type) {
					case *rsa.PrivateKey:
						d := sha256.Sum256(input)
						_, err = rsa.SignPKCS1v15(nil, key, crypto.SHA256, d[:])
					case *ecdsa.PrivateKey:
						d := sha256.Sum256(input)
						_, err = ecdsa.SignASN1(rand.Reader, key, d[:])
					case ed25519.PrivateKey:
						ed25519.Sign(key, input)
					}
					if err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkGoJoseSign signs the same payload with the same key and header through go-jose, which Sign used to do:
// it re-encodes the header for every token and allocates about twice as much (see BENCHMARKS.md).
func BenchmarkGoJoseSign(b *testing.B) {
	for _, alg := range auth.Algorithms {
		b.Run(string(alg), func(b *testing.B) {
			sk, priv := benchKey(b, alg)
			signer, err := jose.NewSigner(
				jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg), Key: jose.JSONWebKey{Key: priv, KeyID: sk.ID}},
				(&jose.SignerOptions{}).WithType("at+jwt"))
			if err != nil {
				b.Fatal(err)
			}
			payload := claims(b)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					jws, err := signer.Sign(payload)
					if err != nil {
						b.Error(err)
						return
					}
					if _, err := jws.CompactSerialize(); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkVerify is Verify of a token it has verified before (remembered: a map lookup), and the signature check
// itself, which every token costs the first time (parsing with go-jose and the signature).
func BenchmarkVerify(b *testing.B) {
	for _, alg := range auth.Algorithms {
		k := newKeyset(b, newMemStore(), randomKey(), Options{})
		token, err := k.Sign(b.Context(), alg, claims(b))
		if err != nil {
			b.Fatal(err)
		}
		for _, v := range []struct {
			name   string
			verify func(string) ([]byte, error)
		}{
			{"remembered", k.Verify},
			{"signature", func(t string) ([]byte, error) { return k.snap.Load().verify(t) }},
		} {
			verify := v.verify
			b.Run(string(alg)+"/"+v.name, func(b *testing.B) {
				if _, err := verify(token); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := verify(token); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
		}
	}
}
