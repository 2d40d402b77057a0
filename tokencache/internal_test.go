package tokencache

import (
	"bytes"
	"testing"
	"time"
)

// TestBackoffBounds: the n-th consecutive failure waits u·min(60s, 1s·2^(n-1)): the bound doubles, then is
// capped; u (full jitter) spreads it over [0, bound).
func TestBackoffBounds(t *testing.T) {
	want := []time.Duration{1, 2, 4, 8, 16, 32, 60, 60, 60}
	for i, w := range want {
		n := i + 1
		if got := backoff(n, 0); got != 0 {
			t.Errorf("backoff(%d, 0) = %v, want 0", n, got)
		}
		if got := backoff(n, 0.5); got != w*time.Second/2 {
			t.Errorf("backoff(%d, 0.5) = %v, want %v", n, got, w*time.Second/2)
		}
		if got, bound := backoff(n, 0.999999), w*time.Second; got >= bound || got < bound*99/100 {
			t.Errorf("backoff(%d, ~1) = %v, want just under %v", n, got, bound)
		}
	}
	for _, n := range []int{30, 64, 1000} {
		if got := backoff(n, 0.999999); got > time.Minute {
			t.Errorf("backoff(%d) = %v, want ≤ 1m", n, got)
		}
	}
}

// TestWindows: the advisory point is 0.25 of the lifetime ± 20% before expiry, the mandatory point min(30s, 10%)
// before, and neither leaves the token's lifetime.
func TestWindows(t *testing.T) {
	issued := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name                         string
		life, mandatory              time.Duration // mandatory: Config.MandatoryWindow
		advisory                     float64       // Config.AdvisoryFraction
		wantRefreshLo, wantRefreshHi time.Duration // before expiry, for u=0 and u=1
		wantMandatory                time.Duration
	}{
		{"1h default", time.Hour, 0, 0.25, 12 * time.Minute, 18 * time.Minute, 30 * time.Second},
		{"24h default", 24 * time.Hour, 0, 0.25, 288 * time.Minute, 432 * time.Minute, 30 * time.Second},
		{"60s default", time.Minute, 0, 0.25, 12 * time.Second, 18 * time.Second, 6 * time.Second},
		{"mandatory larger than advisory", time.Hour, 20 * time.Minute, 0.25, 20 * time.Minute, 20 * time.Minute, 20 * time.Minute},
		{"mandatory capped at half", time.Minute, time.Hour, 0.5, 30 * time.Second, 36 * time.Second, 30 * time.Second},
		{"zero lifetime", 0, 0, 0.25, 0, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &Source{advisory: tt.advisory, mandatory: tt.mandatory}
			tok := &Token{AccessToken: "a", issued: issued, Expiry: issued.Add(tt.life)}
			for _, c := range []struct {
				u    float64
				want time.Duration
			}{{0, tt.wantRefreshLo}, {1, tt.wantRefreshHi}} {
				st := s.newState(tok, nil, c.u)
				if got := tok.Expiry.Sub(st.refreshAt); got != c.want {
					t.Errorf("u=%v: refresh %v before expiry, want %v", c.u, got, c.want)
				}
				if got := tok.Expiry.Sub(st.mandatoryAt); got != tt.wantMandatory {
					t.Errorf("mandatory window %v, want %v", got, tt.wantMandatory)
				}
				if st.refreshAt.Before(issued) || st.mandatoryAt.Before(st.refreshAt) {
					t.Errorf("windows out of order: issued %v refresh %v mandatory %v", issued, st.refreshAt, st.mandatoryAt)
				}
			}
		})
	}
}

// TestSeal: a sealed token opens only with the same secret and cache key, and not after tampering.
func TestSeal(t *testing.T) {
	newSource := func(secret, audience string) *Source {
		s, err := New(Config{TokenURL: "https://a.example/t", ClientID: "c", ClientSecret: secret, Audience: audience})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	a := newSource("secret-a", "x")
	now := time.Unix(1_700_000_000, 123)
	tok := &Token{AccessToken: "at", TokenType: "Bearer", Scope: "s", Expiry: now.Add(time.Hour), Raw: []byte(`{"x":1}`), issued: now}
	v := a.seal(tok)
	got, err := a.open(v)
	if err != nil {
		t.Fatal(err)
	}
	if got.AccessToken != "at" || got.Scope != "s" || !got.Expiry.Equal(tok.Expiry) || !got.issued.Equal(now) || !bytes.Equal(got.Raw, tok.Raw) {
		t.Errorf("open(seal(tok)) = %+v", got)
	}
	if bytes.Equal(a.seal(tok), v) {
		t.Error("two seals are equal: the nonce is not random")
	}
	if _, err := newSource("secret-b", "x").open(v); err == nil {
		t.Error("opened with another secret")
	}
	b := newSource("secret-a", "y") // same secret, another key: the AAD differs
	if _, err := b.open(v); err == nil {
		t.Error("opened under another cache key")
	}
	for i := range v {
		bad := bytes.Clone(v)
		bad[i] ^= 1
		if _, err := a.open(bad); err == nil {
			t.Fatalf("opened with byte %d flipped", i)
		}
	}
	if _, err := a.open(v[:10]); err == nil {
		t.Error("opened a truncated value")
	}
}
