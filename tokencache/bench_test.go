package tokencache_test

import (
	"context"
	"testing"
)

// BenchmarkHit is the hot path: a fresh token in memory.
func BenchmarkHit(b *testing.B) {
	src := mustNew(b, testConfig(newUpstream()))
	ctx := context.Background()
	mustToken(b, src)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := src.Token(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkHitParallel is the hot path from every CPU at once.
func BenchmarkHitParallel(b *testing.B) {
	src := mustNew(b, testConfig(newUpstream()))
	ctx := context.Background()
	mustToken(b, src)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := src.Token(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkOAuth2TokenSourceHit is the hot path through the golang.org/x/oauth2 adapter.
func BenchmarkOAuth2TokenSourceHit(b *testing.B) {
	src := mustNew(b, testConfig(newUpstream()))
	ts := src.TokenSource(context.Background())
	mustToken(b, src)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ts.Token(); err != nil {
			b.Fatal(err)
		}
	}
}

// TestHitDoesNotAllocate keeps the hot path allocation-free.
func TestHitDoesNotAllocate(t *testing.T) {
	src := mustNew(t, testConfig(newUpstream()))
	ctx := context.Background()
	mustToken(t, src)
	ts := src.TokenSource(ctx)
	if n := testing.AllocsPerRun(1000, func() { src.Token(ctx) }); n != 0 {
		t.Errorf("Token on a hit: %v allocations, want 0", n)
	}
	if n := testing.AllocsPerRun(1000, func() { ts.Token() }); n != 0 {
		t.Errorf("TokenSource().Token on a hit: %v allocations, want 0", n)
	}
}
