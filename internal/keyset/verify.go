package keyset

import (
	"errors"
	"fmt"
	"sync"

	"github.com/go-jose/go-jose/v4"

	"github.com/gatehouse/gatehouse/internal/auth"
)

// ErrInvalidToken means a token is not one this keyset signed: it is malformed, has the wrong typ, names a key
// that is not published (or no longer is), uses another algorithm than its key, or its signature does not verify.
var ErrInvalidToken = errors.New("invalid token")

// maxTokenSize bounds the tokens Verify parses.
const maxTokenSize = 16 << 10

// verifyAlgs are the algorithms go-jose may parse; the key's own algorithm is then required.
var verifyAlgs = []jose.SignatureAlgorithm{jose.RS256, jose.ES256, jose.EdDSA}

// Verify checks that token is a compact JWS with typ at+jwt signed by a key this keyset publishes (in any state),
// with that key's algorithm, and returns its payload. It checks no claims: callers check iss, aud and times. The
// error wraps ErrInvalidToken for every token that fails.
//
// A token that verified is remembered with the keys it verified with, so that checking it again costs a map
// lookup rather than a signature verification; whatever changes the published keys forgets them all. The payload
// returned may be shared: callers must not modify it.
func (k *Keyset) Verify(token string) ([]byte, error) {
	s := k.snap.Load()
	if payload, ok := s.verified.get(token); ok {
		return payload, nil
	}
	payload, err := s.verify(token)
	if err != nil {
		return nil, err
	}
	s.verified.put(token, payload)
	return payload, nil
}

// verify checks a token's signature against the snapshot's published keys.
func (s *snapshot) verify(token string) ([]byte, error) {
	if len(token) > maxTokenSize {
		return nil, fmt.Errorf("%w: longer than %d bytes", ErrInvalidToken, maxTokenSize)
	}
	jws, err := jose.ParseSignedCompact(token, verifyAlgs)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	if len(jws.Signatures) != 1 {
		return nil, fmt.Errorf("%w: not one signature", ErrInvalidToken)
	}
	h := jws.Signatures[0].Protected
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != tokenType {
		return nil, fmt.Errorf("%w: typ is not %s", ErrInvalidToken, tokenType)
	}
	if _, ok := h.ExtraHeaders["crit"]; ok {
		return nil, fmt.Errorf("%w: crit header", ErrInvalidToken)
	}
	pk, ok := s.public[h.KeyID]
	if !ok {
		return nil, fmt.Errorf("%w: unknown kid", ErrInvalidToken)
	}
	if auth.Algorithm(h.Algorithm) != pk.alg {
		return nil, fmt.Errorf("%w: alg %s is not the key's %s", ErrInvalidToken, h.Algorithm, pk.alg)
	}
	payload, err := jws.Verify(pk.key)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	return payload, nil
}

// Bounds of what Verify remembers, per set of keys: tokens up to maxCachedToken bytes, maxCachedTokens of them.
// Only tokens whose signature verified get in, so only tokens this server issued can fill it.
const (
	maxCachedToken  = 4 << 10
	maxCachedTokens = 8192
)

// verifiedCache maps tokens that verified to their payloads. It is safe for concurrent use.
type verifiedCache struct {
	mu sync.RWMutex
	m  map[string][]byte
}

func newVerifiedCache() *verifiedCache { return &verifiedCache{m: make(map[string][]byte)} }

func (c *verifiedCache) get(token string) ([]byte, bool) {
	c.mu.RLock()
	p, ok := c.m[token]
	c.mu.RUnlock()
	return p, ok
}

// put remembers a token. When the cache is full, an eighth of it, chosen by map order (that is, at random), makes
// room: an expired token still in it costs nothing but memory, since callers check exp on every use.
func (c *verifiedCache) put(token string, payload []byte) {
	if len(token) > maxCachedToken {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= maxCachedTokens {
		n := maxCachedTokens / 8
		for t := range c.m {
			delete(c.m, t)
			if n--; n == 0 {
				break
			}
		}
	}
	c.m[token] = payload
}
