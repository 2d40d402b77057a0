package changes

import (
	"context"
	"log/slog"
	"time"
)

// Cache is a cache of things by ID that a Change drops entries of: the issuer's clients, the API key checker's keys.
type Cache interface {
	Invalidate(id string)
	InvalidateAll()
}

// Applier applies the changes an instance hears of to its caches: dropping a client or key is done at once, in
// Apply; reading the signing keys or the revocations again is done by Run, so that Apply never waits for the store
// and a burst of changes costs one read.
type Applier struct {
	Clients     Cache                           // the issuer's clients; nil for none
	APIKeys     Cache                           // the API key checker's keys; nil for none
	SigningKeys func(ctx context.Context) error // reads the signing keys again; nil for none
	Revocations func(ctx context.Context) error // reads the revocations again; nil for none
	Logger      *slog.Logger

	keys, revs chan struct{}
}

// NewApplier returns an Applier; set its fields before Run.
func NewApplier() *Applier {
	return &Applier{keys: make(chan struct{}, 1), revs: make(chan struct{}, 1), Logger: slog.Default()}
}

// Apply applies c. It does not block: reads of the store it asks for are made by Run, once for any number asked
// for while one is pending.
func (a *Applier) Apply(c Change) {
	switch c.Kind {
	case Client:
		if a.Clients != nil {
			a.Clients.Invalidate(c.ID)
		}
	case APIKey:
		if a.APIKeys != nil {
			a.APIKeys.Invalidate(c.ID)
		}
	case API:
		a.dropAll()
	case SigningKeys:
		signal(a.keys)
	case Revocations:
		signal(a.revs)
	case Reset:
		a.dropAll()
		signal(a.keys)
		signal(a.revs)
	}
}

func (a *Applier) dropAll() {
	if a.Clients != nil {
		a.Clients.InvalidateAll()
	}
	if a.APIKeys != nil {
		a.APIKeys.InvalidateAll()
	}
}

// signal asks for a read unless one is pending already.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// reloadTimeout bounds one read of the signing keys or the revocations.
const reloadTimeout = 10 * time.Second

// Run makes the reads Apply asks for until ctx ends, then returns nil. A failed read is logged; the periodic
// reloads of the keyset and the revocation list catch up after it.
func (a *Applier) Run(ctx context.Context) error {
	for {
		var (
			what string
			f    func(context.Context) error
		)
		select {
		case <-ctx.Done():
			return nil
		case <-a.keys:
			what, f = "signing keys", a.SigningKeys
		case <-a.revs:
			what, f = "revocations", a.Revocations
		}
		if f == nil {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, reloadTimeout)
		err := f(rctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			a.Logger.Warn("changes: reading the "+what+" again after a change failed; the periodic reload will", "err", err)
		}
	}
}
