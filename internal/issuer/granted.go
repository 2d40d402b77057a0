package issuer

import (
	"context"
	"slices"
)

// Granted returns the scopes that the client holds for audience now, read through the client cache (so a change
// made through this process is seen at once): ok is false if the client no longer exists, is disabled, or has
// no grant for audience. A token outlives such changes; callers that act on a token's authority (the management
// API) check it with Granted too.
func (i *Issuer) Granted(ctx context.Context, clientID, audience string) (scopes []string, ok bool, err error) {
	view, err := i.client(ctx, clientID)
	if err != nil || view == nil || view.client.Disabled {
		return nil, false, err
	}
	g := view.grants[audience]
	if g == nil {
		return nil, false, nil
	}
	return slices.Clone(g.scopes), true, nil
}
