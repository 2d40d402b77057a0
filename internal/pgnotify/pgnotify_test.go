package pgnotify

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/gatehouse/gatehouse/internal/changes"
)

// serverURL is the PostgreSQL the tests use: GATEHOUSE_TEST_POSTGRES, else the machine's own on 127.0.0.1:5432.
func serverURL() string {
	if u := os.Getenv("GATEHOUSE_TEST_POSTGRES"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

// newDatabase creates a database of its own for a test (notifications are scoped to a database, so tests running
// at once do not hear each other) and returns its name and URL.
func newDatabase(t *testing.T) (name, dsn string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, serverURL())
	if err != nil {
		t.Fatalf("connect to PostgreSQL (set GATEHOUSE_TEST_POSTGRES, or start it): %v", err)
	}
	defer conn.Close(ctx)
	b := make([]byte, 6)
	rand.Read(b)
	name = "gh_notify_" + hex.EncodeToString(b)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c, err := pgx.Connect(ctx, serverURL())
		if err == nil {
			c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
			c.Close(ctx)
		}
	})
	u, _ := url.Parse(serverURL())
	u.Path = "/" + name
	return name, u.String()
}

// withApp returns dsn with the application name app, by which a test finds its sessions.
func withApp(dsn, app string) string { return withParam(dsn, "application_name", app) }

// withParam returns dsn with the query parameter name set to value.
func withParam(dsn, name, value string) string {
	u, _ := url.Parse(dsn)
	q := u.Query()
	q.Set(name, value)
	u.RawQuery = q.Encode()
	return u.String()
}

// heard collects what a listener applies.
type heard struct {
	mu  sync.Mutex
	got []changes.Change
}

func (h *heard) apply(c changes.Change) { h.mu.Lock(); h.got = append(h.got, c); h.mu.Unlock() }

// wait returns once the listener has applied want after the n-th change it applied, failing after 10 seconds.
func (h *heard) wait(t *testing.T, n int, want changes.Change) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		h.mu.Lock()
		for i := n; i < len(h.got); i++ {
			if h.got[i] == want {
				h.mu.Unlock()
				return i + 1
			}
		}
		h.mu.Unlock()
		time.Sleep(5 * time.Millisecond)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	t.Fatalf("did not hear %v; heard %v", want, h.got)
	return 0
}

func newBus(t *testing.T, dsn string) *Bus {
	t.Helper()
	b, err := New(dsn, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// run runs b's listener until the test ends.
func run(t *testing.T, b *Bus, h *heard) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { b.Run(ctx, h.apply); close(done) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Run did not end with its context")
		}
	})
}

var reset = changes.Change{Kind: changes.Reset}

// TestPublishListen: a change published through one Bus reaches the listener of another on the same database,
// after the Reset of its connection; one it cannot parse is applied as a Reset.
func TestPublishListen(t *testing.T) {
	_, dsn := newDatabase(t)
	// The store's pool_max_conns may be in the URL: it must not reach the server, which would refuse to connect.
	pub, sub := newBus(t, dsn), newBus(t, withParam(dsn, "pool_max_conns", "3"))
	h := &heard{}
	run(t, sub, h)
	n := h.wait(t, 0, reset)
	if listening, _, err := sub.Status(); !listening || err != nil {
		t.Errorf("Status = %v, %v; want listening", listening, err)
	}
	for _, c := range []changes.Change{{Kind: changes.Client, ID: "billing"}, {Kind: changes.APIKey, ID: "key_1"},
		{Kind: changes.SigningKeys}} {
		if err := pub.Publish(context.Background(), c); err != nil {
			t.Fatal(err)
		}
		n = h.wait(t, n, c)
	}
	if _, err := pub.pool.Exec("SELECT pg_notify($1, 'from a newer build:x')", Channel); err != nil {
		t.Fatal(err)
	}
	h.wait(t, n, reset)
}

// TestReconnect: when its connection is killed, the listener reconnects by itself, applies a Reset (it may have
// missed changes meanwhile) and hears changes again.
func TestReconnect(t *testing.T) {
	const app = "gh_listener"
	db, dsn := newDatabase(t)
	pub, sub := newBus(t, dsn), newBus(t, withApp(dsn, app))
	h := &heard{}
	run(t, sub, h)
	n := h.wait(t, 0, reset)
	var killed int
	if err := pub.pool.QueryRow(`SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
WHERE datname = $1 AND application_name = $2`, db, app).Scan(&killed); err != nil {
		t.Fatal(err)
	}
	if killed != 1 {
		t.Fatalf("terminated %d listening sessions, want 1", killed)
	}
	n = h.wait(t, n, reset)
	c := changes.Change{Kind: changes.Client, ID: "after"}
	if err := pub.Publish(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	h.wait(t, n, c)
	if listening, _, _ := sub.Status(); !listening {
		t.Error("not listening after reconnecting")
	}
}

// TestPublishDown: publishing to a database that cannot be reached fails within the connect timeout, never hangs.
func TestPublishDown(t *testing.T) {
	b := newBus(t, "postgres://postgres@127.0.0.1:1/none?sslmode=disable")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := b.Publish(ctx, changes.Change{Kind: changes.API}); err == nil || ctx.Err() != nil {
		t.Fatalf("Publish = %v (ctx %v); want a prompt error", err, ctx.Err())
	}
}
