package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/changes"
	"github.com/gatehouse/gatehouse/internal/limit"
	"github.com/gatehouse/gatehouse/internal/pgnotify"
	"github.com/gatehouse/gatehouse/internal/redislimit"
	"github.com/gatehouse/gatehouse/internal/sqlstore"
)

// dbForms is how --db is written, for usage errors.
const dbForms = "use sqlite:PATH, or postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE for several instances"

// isPostgres reports whether dsn names a PostgreSQL database.
func isPostgres(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// checkDB returns a usage error unless dsn is a database --db can name. The error never repeats a PostgreSQL URL,
// which may hold a password.
func checkDB(dsn string) error {
	switch {
	case isPostgres(dsn):
		return nil
	case strings.HasPrefix(dsn, "sqlite:") && dsn != "sqlite:":
		return nil
	}
	scheme, _, _ := strings.Cut(dsn, ":")
	return usageError{fmt.Errorf("--db: %q is not a database this build can open: %s", scheme, dbForms)}
}

// checkRedis returns a usage error unless url is empty or a Redis URL. The error never repeats the URL, which may
// hold a password.
func checkRedis(url string) error {
	if url == "" {
		return nil
	}
	if _, err := redis.ParseURL(url); err != nil {
		return usageError{errors.New("--redis: not a Redis URL: use redis://[:PASSWORD@]HOST:PORT[/DB] or rediss://…")}
	}
	return nil
}

// openedStore is the store --db names. On PostgreSQL, where several instances may share the database, every
// write that instances cache the result of is published to all of them (internal/changes) over LISTEN/NOTIFY.
type openedStore struct {
	auth.Store
	bus *pgnotify.Bus // nil on SQLite: one instance, whose own changes invalidate its caches directly
}

// openStore opens the store dsn names.
func openStore(ctx context.Context, dsn string, log *slog.Logger) (*openedStore, error) {
	db, err := sqlstore.Open(ctx, dsn)
	if err != nil {
		return nil, err
	}
	if !isPostgres(dsn) {
		return &openedStore{Store: db}, nil
	}
	bus, err := pgnotify.New(dsn, log)
	if err != nil {
		db.Close()
		return nil, err
	}
	pub := changes.NewStore(db, bus)
	pub.OnError = func(c changes.Change, err error) {
		log.Warn("changes: could not tell the other instances of a change; their caches expire it within the cache TTL",
			"change", c.Kind, "err", err)
	}
	return &openedStore{Store: pub, bus: bus}, nil
}

// Close closes the database and the bus.
func (s *openedStore) Close() error {
	var err error
	if s.bus != nil {
		err = s.bus.Close()
	}
	return errors.Join(s.Store.Close(), err)
}

// limiters are the token endpoint's rate limits and authentication throttle: per instance, or shared through
// Redis with a per-instance fallback.
type limiters struct {
	rate, throttle limit.Limiter
	shared         []*limit.Fallback // what /readyz reports on; none without Redis
	client         *redis.Client
}

// newLimiters returns per-instance limiters, or with a Redis URL, limiters shared through that Redis. Redis is not
// reached here: a Redis that is down at start is a Redis that is down, which the limiters fall back from.
func newLimiters(redisURL string, log *slog.Logger) (*limiters, error) {
	if redisURL == "" {
		return &limiters{rate: limit.NewMemory(0), throttle: limit.NewMemory(0)}, nil
	}
	if err := checkRedis(redisURL); err != nil {
		return nil, err
	}
	opts, _ := redis.ParseURL(redisURL)
	opts.ContextTimeoutEnabled = true // each limit call is bounded by its context (redislimit), without a goroutine
	l := &limiters{client: redis.NewClient(opts)}
	shared := func(prefix string) *limit.Fallback {
		f := limit.NewFallback(redislimit.New(l.client, redislimit.Options{Prefix: prefix}), limit.NewMemory(0),
			limit.FallbackOptions{Logger: log.With("limits", strings.TrimSuffix(strings.TrimPrefix(prefix, "gatehouse:"), ":"))})
		l.shared = append(l.shared, f)
		return f
	}
	l.rate, l.throttle = shared("gatehouse:rate:"), shared("gatehouse:throttle:")
	return l, nil
}

// check is the rate_limits line of /readyz: ready either way, since per-instance limits still limit. It asks Redis
// itself too, so that an outage shows even while no limited request comes to notice it.
func (l *limiters) check(ctx context.Context) (string, bool) {
	if l.client == nil {
		return "per instance (no --redis)", true
	}
	pctx, cancel := context.WithTimeout(ctx, 250*time.Millisecond)
	defer cancel()
	if err := l.client.Ping(pctx).Err(); err != nil {
		since := time.Now() // when a limit first found it down, if one has; else now
		for _, f := range l.shared {
			if st := f.Status(); !st.Shared && st.Since.Before(since) {
				since = st.Since
			}
		}
		return "per instance: Redis unreachable since " + since.UTC().Format("2006-01-02T15:04:05Z"), true
	}
	for _, f := range l.shared {
		if st := f.Status(); !st.Shared {
			return fmt.Sprintf("per instance since %s: Redis answers again, and limits are shared again from the next limited request",
				st.Since.UTC().Format("2006-01-02T15:04:05Z")), true
		}
	}
	return "shared (Redis)", true
}

// Close closes the Redis client.
func (l *limiters) Close() error {
	if l.client == nil {
		return nil
	}
	return l.client.Close()
}
