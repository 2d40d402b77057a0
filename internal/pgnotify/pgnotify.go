// Package pgnotify carries changes (internal/changes) between the instances of Gatehouse that share a PostgreSQL
// database, over LISTEN/NOTIFY: no other service is needed for a change made through one instance to reach the
// others, and a change reaches exactly the instances that can see the database it was made in.
//
// PostgreSQL delivers a notification to every session listening on the channel when it is sent, in a few
// milliseconds on a LAN, but keeps none for a session that is not connected. So a Bus tells its listener's caller
// to drop everything (changes.Reset) each time it (re)connects: what it may have missed meanwhile is read again.
package pgnotify

import (
	"context"
	"database/sql"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/gatehouse/gatehouse/internal/changes"
)

// Channel is the notification channel of Gatehouse's changes.
const Channel = "gatehouse_changes"

// Timing of the listener.
const (
	connectTimeout = 5 * time.Second        // one connection attempt
	heartbeatEvery = 10 * time.Second       // an idle listener checks its connection this often
	retryMin       = 100 * time.Millisecond // the first wait before reconnecting
	retryMax       = 2 * time.Second        // the longest wait between attempts
)

// Bus publishes changes with NOTIFY and listens for them with LISTEN, on a database shared by the instances.
type Bus struct {
	connCfg *pgx.ConnConfig
	pool    *sql.DB // for NOTIFY
	log     *slog.Logger

	mu        sync.Mutex
	listening bool
	since     time.Time // when listening last changed
	lastErr   error
}

// New returns a Bus on the database dsn (a postgres:// URL), which it does not connect to yet. A DSN without a
// connect_timeout gets 5 seconds, so that a database that is down fails a publish fast.
func New(dsn string, log *slog.Logger) (*Bus, error) {
	if log == nil {
		log = slog.Default()
	}
	cfg, err := pgx.ParseConfig(dsn)
	if err != nil {
		return nil, errors.New("pgnotify: the database URL does not parse") // never echo it: it may hold a password
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = connectTimeout
	}
	// The store's pool size, in the same URL: pgx would send it to the server, which refuses unknown parameters.
	delete(cfg.RuntimeParams, "pool_max_conns")
	pool := stdlib.OpenDB(*cfg.Copy())
	pool.SetMaxOpenConns(4)
	pool.SetMaxIdleConns(2)
	pool.SetConnMaxIdleTime(time.Minute)
	return &Bus{connCfg: cfg, pool: pool, log: log, since: time.Now()}, nil
}

// Close releases the publishing connections. Run ends with its context.
func (b *Bus) Close() error { return b.pool.Close() }

// Publish sends c to every listening instance, this one included. It returns once PostgreSQL has taken the
// notification.
func (b *Bus) Publish(ctx context.Context, c changes.Change) error {
	_, err := b.pool.ExecContext(ctx, "SELECT pg_notify($1, $2)", Channel, c.String())
	return err
}

// Status reports whether the listener is connected and listening, since when, and why not when it is not.
func (b *Bus) Status() (listening bool, since time.Time, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.listening, b.since, b.lastErr
}

// Run listens for changes until ctx ends, then returns nil, calling apply with each in the order sent, and with
// changes.Reset each time it connects, before any other. A notification that is not a change this build knows is
// applied as a Reset too: it may be from a newer build, about something this one caches. Losing the connection is
// logged once, and Run reconnects with backoff until it succeeds.
func (b *Bus) Run(ctx context.Context, apply func(changes.Change)) error {
	wait := retryMin
	for {
		err := b.listen(ctx, apply, func() { wait = retryMin })
		if ctx.Err() != nil {
			b.set(false, nil)
			return nil
		}
		b.set(false, err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(2*wait, retryMax)
	}
}

// listen connects, listens and applies changes until the connection fails or ctx ends.
func (b *Bus) listen(ctx context.Context, apply func(changes.Change), connected func()) error {
	cctx, cancel := context.WithTimeout(ctx, connectTimeout)
	conn, err := pgx.ConnectConfig(cctx, b.connCfg)
	cancel()
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+Channel); err != nil {
		return err
	}
	connected()
	b.set(true, nil)
	apply(changes.Change{Kind: changes.Reset})
	for {
		wctx, cancel := context.WithTimeout(ctx, heartbeatEvery)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case err == nil:
			c, perr := changes.Parse(n.Payload)
			if perr != nil {
				b.log.Warn("changes: an unknown notification; dropping every cache", "payload_len", len(n.Payload))
				c = changes.Change{Kind: changes.Reset}
			}
			apply(c)
		case errors.Is(err, context.DeadlineExceeded):
			// Idle: make sure the connection is still there, since a silent network loss would otherwise go unseen.
			pctx, cancel := context.WithTimeout(ctx, connectTimeout)
			err = conn.Ping(pctx)
			cancel()
			if err != nil {
				return err
			}
		default:
			return err
		}
	}
}

// set records the listener's state and logs when it changes.
func (b *Bus) set(listening bool, err error) {
	b.mu.Lock()
	changed := listening != b.listening
	failing := err != nil && (changed || b.lastErr == nil) // the first failure since it last listened, or ever
	if changed {
		b.since = time.Now()
	}
	b.listening, b.lastErr = listening, err
	b.mu.Unlock()
	switch {
	case changed && listening:
		b.log.Info("changes: listening for other instances' changes")
	case failing:
		b.log.Warn("changes: lost the connection that hears other instances' changes; reconnecting (cached clients and keys expire by their TTL meanwhile)", "err", err)
	}
}
