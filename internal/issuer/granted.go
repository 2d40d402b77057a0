package issuer

import (
	"context"
	"slices"
	"time"
)

// Holding is what a client holds now for one API: the scopes of its grant, and the facts about the client that a
// token of it must still match.
type Holding struct {
	Scopes    []string
	OrgID     string    // the client's organization; "" for none
	CreatedAt time.Time // when the client was created: a token issued before then was issued to an earlier client of this id
}

// Granted returns what the client holds for audience now, read through the client cache (so a change made
// through this process is seen at once): ok is false if the client no longer exists, is disabled, or has no grant
// for audience. A token outlives such changes; callers that act on a token's authority (the management API,
// introspection and revocation) check it with Granted too.
func (i *Issuer) Granted(ctx context.Context, clientID, audience string) (h Holding, ok bool, err error) {
	view, err := i.client(ctx, clientID)
	if err != nil || view == nil || view.client.Disabled {
		return Holding{}, false, err
	}
	g := view.grants[audience]
	if g == nil {
		return Holding{}, false, nil
	}
	return Holding{Scopes: slices.Clone(g.scopes), OrgID: view.client.OrgID, CreatedAt: view.client.CreatedAt}, true, nil
}

// tokenClockSkew is how far apart the clocks of the instance that issued a token and the one that created its
// client may be.
const tokenClockSkew = 30 * time.Second

// Speaks reports whether a token with these claims still speaks for the client that holds h: it names the client's
// organization (a client_id deleted and created again in another organization does not inherit the old token's
// reach), and it was not issued before the client was created.
func (h Holding) Speaks(c *Claims) bool {
	return c.OrgID == h.OrgID && c.IssuedAt >= h.CreatedAt.Add(-tokenClockSkew).Unix()
}
