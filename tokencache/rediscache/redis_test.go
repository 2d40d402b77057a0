package rediscache_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/gatehouse/gatehouse/tokencache"
	"github.com/gatehouse/gatehouse/tokencache/cachetest"
	"github.com/gatehouse/gatehouse/tokencache/rediscache"
)

// redisAddr is the real Redis the tests run against: CI starts one on the default port.
func redisAddr() string {
	if addr := os.Getenv("GATEHOUSE_TEST_REDIS_ADDR"); addr != "" {
		return addr
	}
	return "127.0.0.1:6379"
}

// newClient returns a client of the real Redis, failing (never skipping) the test when Redis cannot be reached.
func newClient(t testing.TB) *redis.Client {
	t.Helper()
	client := redis.NewClient(&redis.Options{Addr: redisAddr()})
	t.Cleanup(func() { client.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := client.Ping(ctx).Err(); err != nil {
		t.Fatalf("Redis at %s is unreachable: %v (these tests need a real Redis: run `redis-server` or "+
			"`docker run -p 6379:6379 redis`, or set GATEHOUSE_TEST_REDIS_ADDR)", redisAddr(), err)
	}
	return client
}

// testPrefix returns a key prefix no other test uses, and deletes every key under it when the test ends.
func testPrefix(t testing.TB, client redis.UniversalClient) string {
	t.Helper()
	var b [8]byte
	rand.Read(b[:])
	prefix := "gatehouse-test:" + hex.EncodeToString(b[:]) + ":"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		keys, err := client.Keys(ctx, prefix+"*").Result()
		if err != nil {
			t.Errorf("clean up %s*: %v", prefix, err)
			return
		}
		if len(keys) > 0 {
			if err := client.Del(ctx, keys...).Err(); err != nil {
				t.Errorf("clean up %s*: %v", prefix, err)
			}
		}
	})
	return prefix
}

// newCache returns a Cache on the real Redis under a prefix of its own.
func newCache(t testing.TB) *rediscache.Cache {
	t.Helper()
	client := newClient(t)
	return rediscache.New(client, rediscache.Options{Prefix: testPrefix(t, client)})
}

func TestRedisCache(t *testing.T) {
	cachetest.TestCache(t, func(t *testing.T) tokencache.Cache { return newCache(t) })
}

func TestRedisGetSet(t *testing.T) {
	ctx := context.Background()
	c := newCache(t)
	if _, err := c.Get(ctx, "k"); !errors.Is(err, tokencache.ErrMiss) {
		t.Fatalf("Get of a missing key: err = %v, want ErrMiss", err)
	}
	if err := c.Set(ctx, "k", []byte("v1"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := c.Set(ctx, "k", []byte("v2\x00\xff"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Get(ctx, "k"); err != nil || string(got) != "v2\x00\xff" {
		t.Fatalf("Get = %q, %v; want the last value set", got, err)
	}
	if err := c.Set(ctx, "short", []byte("v"), 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	time.Sleep(150 * time.Millisecond)
	if _, err := c.Get(ctx, "short"); !errors.Is(err, tokencache.ErrMiss) {
		t.Fatalf("Get after the ttl: err = %v, want ErrMiss", err)
	}
	if err := c.Set(ctx, "k", []byte("v"), 0); err == nil {
		t.Error("Set with ttl 0: err = nil, want an error")
	}
}

func TestRedisPrefixesAreSeparate(t *testing.T) {
	ctx := context.Background()
	client := newClient(t)
	a := rediscache.New(client, rediscache.Options{Prefix: testPrefix(t, client)})
	b := rediscache.New(client, rediscache.Options{Prefix: testPrefix(t, client)})
	if err := a.Set(ctx, "k", []byte("a"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Get(ctx, "k"); !errors.Is(err, tokencache.ErrMiss) {
		t.Fatalf("another prefix's Get: err = %v, want ErrMiss", err)
	}
	// A lease and a value under the same key do not collide.
	release, ok, err := a.Lease(ctx, "k", time.Minute)
	if err != nil || !ok {
		t.Fatalf("Lease = %v, %v; want ok", ok, err)
	}
	defer release()
	if got, err := a.Get(ctx, "k"); err != nil || string(got) != "a" {
		t.Fatalf("Get after Lease = %q, %v; want the value", got, err)
	}
}

func TestRedisLease(t *testing.T) {
	ctx := context.Background()
	c := newCache(t)
	release1, ok, err := c.Lease(ctx, "k", time.Minute)
	if err != nil || !ok {
		t.Fatalf("first Lease = %v, %v; want ok", ok, err)
	}
	if _, ok, err := c.Lease(ctx, "k", time.Minute); err != nil || ok {
		t.Fatalf("second Lease while held = %v, %v; want not ok", ok, err)
	}
	if _, ok, err := c.Lease(ctx, "other", time.Minute); err != nil || !ok {
		t.Fatalf("Lease of another key = %v, %v; want ok", ok, err)
	}
	release1()
	release1() // idempotent
	release2, ok, err := c.Lease(ctx, "k", time.Minute)
	if err != nil || !ok {
		t.Fatalf("Lease after release = %v, %v; want ok", ok, err)
	}
	defer release2()
	release1() // must not release the second holder's lease
	if _, ok, err := c.Lease(ctx, "k", time.Minute); err != nil || ok {
		t.Fatalf("Lease after a stale release = %v, %v; want not ok", ok, err)
	}
}

func TestRedisLeaseExpires(t *testing.T) {
	ctx := context.Background()
	c := newCache(t)
	release1, ok, err := c.Lease(ctx, "k", 50*time.Millisecond)
	if err != nil || !ok {
		t.Fatalf("Lease = %v, %v; want ok", ok, err)
	}
	time.Sleep(150 * time.Millisecond) // the holder died without releasing
	release2, ok, err := c.Lease(ctx, "k", time.Minute)
	if err != nil || !ok {
		t.Fatalf("Lease after the first expired = %v, %v; want ok", ok, err)
	}
	defer release2()
	release1() // late: the lease it names is gone, and the current one is not its own
	if _, ok, err := c.Lease(ctx, "k", time.Minute); err != nil || ok {
		t.Fatalf("Lease after a late release = %v, %v; want not ok (the late release freed another's lease)", ok, err)
	}
}

func TestRedisLeaseExclusiveUnderContention(t *testing.T) {
	ctx := context.Background()
	client := newClient(t)
	prefix := testPrefix(t, client)
	var caches []*rediscache.Cache
	for range 4 { // as if four processes
		caches = append(caches, rediscache.New(client, rediscache.Options{Prefix: prefix}))
	}
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		winners int
	)
	start := make(chan struct{})
	for i := range 200 {
		wg.Go(func() {
			<-start
			_, ok, err := caches[i%len(caches)].Lease(ctx, "k", time.Minute)
			if err != nil {
				t.Error(err)
			}
			if ok {
				mu.Lock()
				winners++
				mu.Unlock()
			}
		})
	}
	close(start)
	wg.Wait()
	if winners != 1 {
		t.Fatalf("%d callers got the lease, want exactly 1", winners)
	}
}

func TestRedisDeleteIf(t *testing.T) {
	ctx := context.Background()
	c := newCache(t)
	if err := c.DeleteIf(ctx, "missing", []byte("v")); err != nil {
		t.Fatalf("DeleteIf of a missing key: %v", err)
	}
	if err := c.Set(ctx, "k", []byte("new"), time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteIf(ctx, "k", []byte("old")); err != nil {
		t.Fatal(err)
	}
	if got, err := c.Get(ctx, "k"); err != nil || string(got) != "new" {
		t.Fatalf("after DeleteIf of another value: Get = %q, %v; want the value kept", got, err)
	}
	if err := c.DeleteIf(ctx, "k", []byte("new")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, "k"); !errors.Is(err, tokencache.ErrMiss) {
		t.Fatalf("after DeleteIf of the value: err = %v, want ErrMiss", err)
	}
}

// returnsWithin fails the test unless f returns within d: a hung Redis must not hang callers. The bound is
// generous; what it tells apart is our timeout (milliseconds) from the client's (tens of seconds).
func returnsWithin(t *testing.T, d time.Duration, name string, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Fatalf("%s did not return within %v", name, d)
		return nil
	}
}

// checkAllFail calls every method of c and checks each returns an error, and returns in time.
func checkAllFail(t *testing.T, c *rediscache.Cache) {
	t.Helper()
	ctx := context.Background()
	calls := []struct {
		name string
		f    func() error
	}{
		{"Get", func() error { _, err := c.Get(ctx, "k"); return err }},
		{"Set", func() error { return c.Set(ctx, "k", []byte("v"), time.Minute) }},
		{"Lease", func() error { _, _, err := c.Lease(ctx, "k", time.Minute); return err }},
		{"DeleteIf", func() error { return c.DeleteIf(ctx, "k", []byte("v")) }},
	}
	for _, call := range calls {
		err := returnsWithin(t, 5*time.Second, call.name, call.f)
		if err == nil || errors.Is(err, tokencache.ErrMiss) {
			t.Errorf("%s with Redis down: err = %v, want an error other than ErrMiss", call.name, err)
		}
	}
}

func TestRedisDown(t *testing.T) {
	// Nothing listens on a port just closed: connections are refused.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	client := redis.NewClient(&redis.Options{Addr: addr})
	defer client.Close()
	c := rediscache.New(client, rediscache.Options{})
	checkAllFail(t, c)
	if _, err := c.Get(context.Background(), "k"); !errors.Is(err, rediscache.ErrUnavailable) {
		t.Errorf("Get right after a failure: err = %v, want ErrUnavailable", err)
	}
}

func TestRedisHung(t *testing.T) {
	// A Redis that accepts connections and never answers, behind a client that would wait 30 s for it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	defer wg.Wait()
	defer close(stop)
	defer l.Close()
	wg.Go(func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { io.Copy(io.Discard, conn) })
			wg.Go(func() { <-stop; conn.Close() })
		}
	})
	client := redis.NewClient(&redis.Options{Addr: l.Addr().String(), DialTimeout: 30 * time.Second,
		ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, MaxRetries: -1})
	defer client.Close()

	// RetryAfter is tiny so that every call really goes to the hung Redis.
	c := rediscache.New(client, rediscache.Options{Timeout: 50 * time.Millisecond, RetryAfter: time.Nanosecond})
	checkAllFail(t, c)

	// A lease taken while Redis was up is released in bounded time when it hangs later: covered by the Lease
	// call above failing in time; release uses the same bound (see TestRedisRecovers for a release that runs).
}

// toggleProxy forwards TCP to the real Redis while up, and refuses (and cuts) connections while down.
type toggleProxy struct {
	l     net.Listener
	mu    sync.Mutex
	up    bool
	conns map[net.Conn]bool
}

func newToggleProxy(t *testing.T) *toggleProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &toggleProxy{l: l, up: true, conns: map[net.Conn]bool{}}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		l.Close()
		p.set(false)
		wg.Wait()
	})
	wg.Go(func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			if !p.up {
				p.mu.Unlock()
				conn.Close()
				continue
			}
			upstream, err := net.Dial("tcp", redisAddr())
			if err != nil {
				p.mu.Unlock()
				conn.Close()
				continue
			}
			p.conns[conn], p.conns[upstream] = true, true
			p.mu.Unlock()
			wg.Go(func() { io.Copy(upstream, conn); upstream.Close() })
			wg.Go(func() { io.Copy(conn, upstream); conn.Close() })
		}
	})
	return p
}

func (p *toggleProxy) set(up bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.up = up
	if !up {
		for c := range p.conns {
			c.Close()
		}
		clear(p.conns)
	}
}

func TestRedisRecovers(t *testing.T) {
	ctx := context.Background()
	real := newClient(t)
	prefix := testPrefix(t, real)
	p := newToggleProxy(t)
	client := redis.NewClient(&redis.Options{Addr: p.l.Addr().String(), MaxRetries: -1})
	defer client.Close()
	c := rediscache.New(client, rediscache.Options{Prefix: prefix, RetryAfter: 100 * time.Millisecond})

	release, ok, err := c.Lease(ctx, "k", time.Minute)
	if err != nil || !ok {
		t.Fatalf("Lease = %v, %v; want ok", ok, err)
	}
	p.set(false)
	returnsWithin(t, 5*time.Second, "release with Redis down", func() error { release(); return nil })
	checkAllFail(t, c)

	p.set(true)
	time.Sleep(200 * time.Millisecond) // RetryAfter passes
	if _, err := c.Get(ctx, "k"); !errors.Is(err, tokencache.ErrMiss) {
		t.Fatalf("Get after Redis came back: err = %v, want ErrMiss", err)
	}
	if err := c.Set(ctx, "k", []byte("v"), time.Minute); err != nil {
		t.Fatalf("Set after Redis came back: %v", err)
	}
}
