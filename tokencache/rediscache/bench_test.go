package rediscache_test

import (
	"context"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/tokencache"
	"github.com/gatehouse/gatehouse/tokencache/rediscache"
)

// BenchmarkSharedHit is what a new process (a cold serverless instance) pays for a token another process
// already fetched: a Redis GET and opening the sealed value, plus creating the Source. The upstream is never
// called after the first fetch.
func BenchmarkSharedHit(b *testing.B) {
	client := newClient(b)
	cache := rediscache.New(client, rediscache.Options{Prefix: testPrefix(b, client)})
	up := newUpstream(b, time.Hour)
	cfg := tokencache.Config{TokenURL: up.URL + "/oauth/token", ClientID: "bench", ClientSecret: "bench-secret", Cache: cache}
	first, err := tokencache.New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := first.Token(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		src, err := tokencache.New(cfg)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := src.Token(ctx); err != nil {
			b.Fatal(err)
		}
	}
	if n := up.calls.Load(); n != 1 {
		b.Fatalf("%d upstream calls, want 1", n)
	}
}

// BenchmarkGet is one Cache.Get round trip to Redis, for comparison with BenchmarkSharedHit.
func BenchmarkGet(b *testing.B) {
	c := newCache(b)
	ctx := context.Background()
	if err := c.Set(ctx, "k", make([]byte, 1200), time.Hour); err != nil { // about a sealed JWT
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Get(ctx, "k"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMemoryHit is a Source's hit on the token it holds in memory: what every call after the first costs.
func BenchmarkMemoryHit(b *testing.B) {
	client := newClient(b)
	up := newUpstream(b, time.Hour)
	src, err := tokencache.New(tokencache.Config{TokenURL: up.URL + "/oauth/token", ClientID: "bench", ClientSecret: "bench-secret",
		Cache: rediscache.New(client, rediscache.Options{Prefix: testPrefix(b, client)})})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := src.Token(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := src.Token(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
