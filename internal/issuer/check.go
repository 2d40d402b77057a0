package issuer

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// ErrInvalidToken means a token was not issued by this server, or is no longer valid: Check's errors wrap it.
var ErrInvalidToken = errors.New("invalid token")

// checkLeeway is the clock skew tolerated on nbf and iat, for instances whose clocks differ a little. exp has
// none: a token is not accepted after the time it says it ends.
const checkLeeway = 30 * time.Second

// RevocationChecker reports whether a token is revoked, from its jti, sub and iat (unix seconds).
type RevocationChecker interface {
	Revoked(jti, sub string, iat int64) bool
}

// Check verifies an access token this server issued — signature by a published key, iss, exp, nbf and iat, and
// that it is not revoked (with Options.Revocations) — and returns its claims. The audience is the caller's to
// check. Every error wraps ErrInvalidToken.
func (i *Issuer) Check(token string) (*Claims, error) {
	if i.verify == nil {
		return nil, fmt.Errorf("%w: no verifier configured", ErrInvalidToken)
	}
	payload, err := i.verify.Verify(token)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	var c Claims
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, fmt.Errorf("%w: claims: %v", ErrInvalidToken, err)
	}
	now := i.now().Unix()
	leeway := int64(checkLeeway / time.Second)
	switch {
	case c.Issuer != i.iss:
		return nil, fmt.Errorf("%w: issuer %q", ErrInvalidToken, truncate(c.Issuer, 100))
	case c.ExpiresAt == 0 || now >= c.ExpiresAt:
		return nil, fmt.Errorf("%w: expired", ErrInvalidToken)
	case c.NotBefore > now+leeway || c.IssuedAt > now+leeway:
		return nil, fmt.Errorf("%w: not yet valid", ErrInvalidToken)
	case c.Subject == "" || c.Audience == "":
		return nil, fmt.Errorf("%w: no sub or aud", ErrInvalidToken)
	case i.revoke != nil && i.revoke.Revoked(c.ID, c.Subject, c.IssuedAt):
		return nil, fmt.Errorf("%w: revoked", ErrInvalidToken)
	}
	return &c, nil
}
