package keyset

import (
	"errors"
	"fmt"

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
func (k *Keyset) Verify(token string) ([]byte, error) {
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
	pk, ok := k.snap.Load().public[h.KeyID]
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
