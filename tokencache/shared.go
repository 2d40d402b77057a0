package tokencache

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	mrand "math/rand/v2"
	"slices"
	"time"
)

const (
	keyPrefix        = "tokencache:v1:"
	fingerprintLabel = "gatehouse tokencache v1 secret fingerprint"
	sealLabel        = "gatehouse tokencache v1 seal"
	sealVersion      = 1
	// pollMin and pollMax bound the waits of a process that lost the lease while it polls for the winner's token.
	pollMin = 20 * time.Millisecond
	pollMax = 500 * time.Millisecond
)

// Fingerprint returns a fingerprint of a client secret: HMAC-SHA256 keyed with the secret over a fixed label.
// It identifies the secret without revealing it; compare fingerprints with crypto/subtle.ConstantTimeCompare.
func Fingerprint(secret string) []byte {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(fingerprintLabel))
	return m.Sum(nil)
}

// CacheKey returns the key under which Sources with this configuration share a token: "tokencache:v1:" and the
// base64url SHA-256 of the token URL, the client ID, the Fingerprint of the secret (never the secret), the
// audience, the resource and the sorted, de-duplicated scopes. How the client authenticates and encodes its
// request does not change the key.
func (c Config) CacheKey() string {
	h := sha256.New()
	field := func(b []byte) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	field([]byte(c.TokenURL))
	field([]byte(c.ClientID))
	field(Fingerprint(c.ClientSecret))
	field([]byte(c.Audience))
	field([]byte(c.Resource))
	scopes := slices.Compact(slices.Sorted(slices.Values(c.Scopes)))
	for _, sc := range scopes {
		field([]byte(sc))
	}
	return keyPrefix + base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

func newAEAD(secret string) (cipher.AEAD, error) {
	key, err := hkdf.Key(func() hash.Hash { return sha256.New() }, []byte(secret), nil, sealLabel, 32)
	if err != nil {
		return nil, fmt.Errorf("tokencache: derive sealing key: %w", err)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("tokencache: sealing key: %w", err)
	}
	return cipher.NewGCM(block)
}

// sealed is what a shared cache holds, encrypted.
type sealedToken struct {
	AccessToken string `json:"a"`
	TokenType   string `json:"t"`
	Scope       string `json:"s,omitempty"`
	Expiry      int64  `json:"e"` // Unix nanoseconds
	Issued      int64  `json:"i"`
	Raw         []byte `json:"r,omitempty"`
}

// seal encrypts tok with AES-256-GCM under the secret's key, bound to the cache key: version ‖ nonce ‖ ciphertext.
func (s *Source) seal(tok *Token) []byte {
	plain, _ := json.Marshal(sealedToken{ // strings and bytes always marshal
		AccessToken: tok.AccessToken, TokenType: tok.TokenType, Scope: tok.Scope,
		Expiry: tok.Expiry.UnixNano(), Issued: tok.issued.UnixNano(), Raw: tok.Raw,
	})
	out := make([]byte, 1+s.aead.NonceSize(), 1+s.aead.NonceSize()+len(plain)+s.aead.Overhead())
	out[0] = sealVersion
	rand.Read(out[1:]) // never fails (crypto/rand)
	return s.aead.Seal(out, out[1:], plain, []byte(s.key))
}

// open reverses seal; anything else is an error.
func (s *Source) open(v []byte) (*Token, error) {
	ns := s.aead.NonceSize()
	if len(v) < 1+ns || v[0] != sealVersion {
		return nil, errors.New("tokencache: shared cache value has an unknown format")
	}
	plain, err := s.aead.Open(nil, v[1:1+ns], v[1+ns:], []byte(s.key))
	if err != nil {
		return nil, errors.New("tokencache: shared cache value does not open with this secret")
	}
	var st sealedToken
	if err := json.Unmarshal(plain, &st); err != nil || st.AccessToken == "" {
		return nil, errors.New("tokencache: shared cache value is malformed")
	}
	return &Token{
		AccessToken: st.AccessToken, TokenType: st.TokenType, Scope: st.Scope,
		Expiry: time.Unix(0, st.Expiry), issued: time.Unix(0, st.Issued), Raw: st.Raw,
	}, nil
}

func (s *Source) cacheError(err error) {
	s.stats.cacheErrors.Add(1)
	if s.hooks.CacheError != nil {
		s.hooks.CacheError(err)
	}
}

// obtain gets a new token: from the shared cache if it has one that is not yet due, else from the token
// endpoint, coordinating with other processes through a Coordinator so that only one of them fetches. A cache
// that fails is skipped.
func (s *Source) obtain(ctx context.Context) (*state, error) {
	if s.cache == nil {
		tok, err := s.fetchUpstream(ctx)
		if err != nil {
			return nil, err
		}
		return s.newState(tok, nil, mrand.Float64()), nil
	}
	st, healthy := s.readShared(ctx)
	if st != nil {
		return st, nil
	}
	if healthy && s.coord != nil {
		if st, err, done := s.coordinate(ctx); done {
			return st, err
		}
	}
	return s.fetchAndShare(ctx)
}

// fetchAndShare fetches from the token endpoint and stores the sealed token in the shared cache until its
// mandatory window (no Source would take it later).
func (s *Source) fetchAndShare(ctx context.Context) (*state, error) {
	tok, err := s.fetchUpstream(ctx)
	if err != nil {
		return nil, err
	}
	sealed := s.seal(tok)
	st := s.newState(tok, sealed, mrand.Float64())
	if ttl := st.mandatoryAt.Sub(s.now()); ttl > 0 {
		if err := s.cache.Set(ctx, s.key, sealed, ttl); err != nil {
			s.cacheError(err)
			st.sealed = nil
		}
	}
	return st, nil
}

// readShared returns the shared token if it is one this Source would not refresh yet and not the one last
// rejected by an API. healthy is false if the cache failed.
func (s *Source) readShared(ctx context.Context) (st *state, healthy bool) {
	v, err := s.cache.Get(ctx, s.key)
	if errors.Is(err, ErrMiss) {
		return nil, true
	}
	if err != nil {
		s.cacheError(err)
		return nil, false
	}
	tok, err := s.open(v)
	if err != nil {
		return nil, true // a value we cannot use is a miss; the next fetch overwrites it
	}
	s.mu.Lock() // Invalidate swaps cur and sets rejected under mu: read both consistently
	rejected, cur := s.rejected, s.cur.Load()
	s.mu.Unlock()
	if tok.AccessToken == rejected {
		return nil, true
	}
	if cur != nil && cur.tok.AccessToken == tok.AccessToken {
		return nil, true // the token we are refreshing
	}
	st = s.newState(tok, v, mrand.Float64())
	if !s.now().Before(st.refreshAt) {
		return nil, true
	}
	s.stats.sharedHits.Add(1)
	if s.hooks.SharedHit != nil {
		s.hooks.SharedHit()
	}
	return st, true
}

// coordinate takes the lease and fetches, or waits for the process that holds it and takes its token. done is
// false if the cache failed, and the caller should fetch on its own.
func (s *Source) coordinate(ctx context.Context) (st *state, err error, done bool) {
	wait := pollMin
	for {
		release, ok, err := s.coord.Lease(ctx, s.key, s.fetchTimeout)
		if err != nil {
			s.cacheError(err)
			return nil, nil, false
		}
		if ok {
			defer release()
			// Someone may have stored a token between our read and our lease.
			if st, _ := s.readShared(ctx); st != nil {
				return st, nil, true
			}
			st, err := s.fetchAndShare(ctx)
			return st, err, true
		}
		// Another process is fetching: wait for its token. If it dies, its lease expires and we take it.
		t := time.NewTimer(wait/2 + time.Duration(mrand.Int64N(int64(wait/2)+1)))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("tokencache: waiting for another process to fetch the token: %w", ctx.Err()), true
		case <-t.C:
		}
		wait = min(2*wait, pollMax)
		st, healthy := s.readShared(ctx)
		if st != nil {
			return st, nil, true
		}
		if !healthy {
			return nil, nil, false
		}
	}
}
