package config

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/gatehouse/gatehouse/internal/auth"
)

// Management API defaults: short-lived tokens (an administrator's token should not outlive a working session)
// signed with ES256, which the server verifies cheaply on every management request.
const (
	managementTokenLifetime = time.Hour
	managementSigningAlg    = auth.ES256
)

// EnsureManagementAPI creates Gatehouse's built-in management API (auth.ManagementAudience) if the store lacks it,
// and adds any management scope it is missing (a newer version may define more). Clients get management access
// the ordinary way, through a grant for it. It is safe to run from several instances at once.
func EnsureManagementAPI(ctx context.Context, s auth.Store, now time.Time) error {
	for attempt := 0; attempt < 3; attempt++ {
		a, err := s.FindAPIByIdentifier(ctx, auth.ManagementAudience)
		if errors.Is(err, auth.ErrNotFound) {
			a = &auth.API{ID: auth.NewID("api"), Identifier: auth.ManagementAudience, Name: "Gatehouse management API",
				TokenLifetime: managementTokenLifetime, SigningAlg: managementSigningAlg, Version: 1,
				CreatedAt: now, UpdatedAt: now}
			for _, sc := range auth.ManagementScopes {
				a.Scopes = append(a.Scopes, auth.Scope{Name: sc})
			}
			if err := a.Normalize(); err != nil {
				return err
			}
			err = s.CreateAPI(ctx, a)
			if errors.Is(err, auth.ErrConflict) {
				continue // another instance made it first
			}
			return err
		}
		if err != nil {
			return fmt.Errorf("find the management API: %w", err)
		}
		changed := false
		for _, sc := range auth.ManagementScopes {
			if !slices.ContainsFunc(a.Scopes, func(x auth.Scope) bool { return x.Name == sc }) {
				a.Scopes, changed = append(a.Scopes, auth.Scope{Name: sc}), true
			}
		}
		if !changed {
			return nil
		}
		a.UpdatedAt = now
		if err = s.UpdateAPI(ctx, a); !errors.Is(err, auth.ErrStale) {
			return err
		}
	}
	return errors.New("the management API kept changing while it was being ensured")
}
