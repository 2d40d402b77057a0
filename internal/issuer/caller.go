package issuer

import (
	"context"
	"slices"
	"time"
)

// Caller is a client that proved who it is, as the endpoints beside the token endpoint (introspection, revocation)
// see it: its id and what it was granted.
type Caller struct {
	ClientID string
	OrgID    string // the client's organization; "" for none
	view     *clientView
}

// Granted reports whether the caller's grant for the API whose identifier is audience includes scope.
func (c *Caller) Granted(audience, scope string) bool {
	g := c.view.grants[audience]
	if g == nil {
		return false
	}
	_, ok := slices.BinarySearch(g.scopes, scope)
	return ok
}

// AuthenticateClient checks a client's id and secret exactly as the token endpoint does: against its active
// secrets in constant time, from the same cache. Every failure of the credentials — unknown client, wrong or
// expired secret, disabled client — is the same *Error, invalid_client; any other error is a failure of the store.
func (i *Issuer) AuthenticateClient(ctx context.Context, clientID, secret string) (*Caller, error) {
	view, _, err := i.authenticate(ctx, clientID, secret, i.now())
	if err != nil {
		return nil, err
	}
	return &Caller{ClientID: view.client.ID, OrgID: view.client.OrgID, view: view}, nil
}

// CacheTTL is how long a client read from the store is reused: the longest a change to a client made through
// another process, such as disabling it, can go unseen by this one. Zero or less means no cache.
func (i *Issuer) CacheTTL() time.Duration { return i.ttl }
