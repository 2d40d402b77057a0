package limit

import (
	"context"
	"net/netip"
	"strings"
	"time"
)

// Default limits of a Throttle on failed client authentication. A client that knows its secret never fails, so
// these only need to leave room for a misconfigured deployment retrying; each source and client_id recovers one
// attempt every Per/Count.
var (
	// DefaultPerClient: 10 failures of one client_id from one source a minute (then one every 6 s).
	DefaultPerClient = Rate{Count: 10, Per: time.Minute}
	// DefaultPerSource: 100 failures from one source a minute, whatever the client_id (then one every 0.6 s).
	DefaultPerSource = Rate{Count: 100, Per: time.Minute}
)

// ThrottleOptions configure a Throttle. A Rate with Count 0 takes the default; a negative Count is no limit.
type ThrottleOptions struct {
	// PerClient bounds the failures of one client_id from one source: a flood of wrong secrets is throttled
	// while the client, from its own addresses, is not. Default DefaultPerClient.
	PerClient Rate
	// PerSource bounds the failures from one source across client_ids, so spraying many client_ids is throttled
	// too. Default DefaultPerSource. Callers behind one NAT or proxy share a source: configure trusted proxies.
	PerSource Rate
}

// Throttle slows down the guessing of client secrets (RFC 6749 §2.3.1). It counts failed client authentications
// by client_id and source address, and by source address alone; a success counts nothing. Before checking a
// secret, callers ask Check; while a limit is exceeded they refuse the request without checking the secret, so a
// flood of guesses learns nothing. It is safe for concurrent use.
//
// Check does not reserve anything: requests in flight at once can each fail once more than the limit allows. The
// overshoot is bounded by the concurrency of one caller, which is fine against guessing a 256-bit secret.
type Throttle struct {
	lim       Limiter
	perClient Rate
	perSource Rate
}

// NewThrottle returns a Throttle keeping its counts in l. l must not be shared with other users of the same keys:
// source keys are addresses as Source returns them in braces ("{192.0.2.1}"), and client keys are a source key,
// NUL and the client_id.
func NewThrottle(l Limiter, o ThrottleOptions) *Throttle {
	if o.PerClient.Count == 0 {
		o.PerClient = DefaultPerClient
	}
	if o.PerSource.Count == 0 {
		o.PerSource = DefaultPerSource
	}
	return &Throttle{lim: l, perClient: o.PerClient, perSource: o.PerSource}
}

// Check reports whether an authentication of clientID from addr (an IP, or IP:port) may go ahead at now: whether
// the failures counted for the source, and for the client_id from the source, leave room for one more. It counts
// nothing. When the answer is no, retryAfter is how long until it is yes. Errors are the Limiter's.
//
// Both counts are checked in one step of the Limiter when it is a MultiChecker (one round trip to Redis).
func (t *Throttle) Check(ctx context.Context, clientID, addr string, now time.Time) (ok bool, retryAfter time.Duration, err error) {
	src := sourceKey(Source(addr))
	wants := [2]Want{{Key: src, Rate: t.perSource}, {Key: clientKey(clientID, src), Rate: t.perClient}}
	return CheckAll(ctx, t.lim, wants[:], now)
}

// Fail counts a failed authentication of clientID from addr at now. Errors are the Limiter's.
func (t *Throttle) Fail(ctx context.Context, clientID, addr string, now time.Time) error {
	src := sourceKey(Source(addr))
	if _, _, err := t.lim.Allow(ctx, src, t.perSource, now); err != nil {
		return err
	}
	_, _, err := t.lim.Allow(ctx, clientKey(clientID, src), t.perClient, now)
	return err
}

// The keys of a source and of a client_id from a source both start with the source in braces: a Redis Cluster
// hash tag, which puts both in one slot, so that one script may check both. A NUL separates the client_id, so that
// a client key is never a source key, not even for the empty client_id of API key exchanges.
func sourceKey(src string) string { return "{" + src + "}" }

func clientKey(clientID, srcKey string) string { return srcKey + "\x00" + clientID }

// Source returns what a Throttle counts failures by for a network address addr, an IP or IP:port: the IP without
// port or zone, an IPv4-mapped IPv6 address as IPv4, and an IPv6 address as its /64, which usually belongs to one
// host. Anything that is not an IP is returned as it is. It does not allocate for a plain IPv4 address.
func Source(addr string) string {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		if _, perr := netip.ParseAddrPort(addr); perr != nil {
			return addr
		}
		host := strings.TrimSuffix(strings.TrimPrefix(addr[:strings.LastIndexByte(addr, ':')], "["), "]")
		return Source(host)
	}
	switch {
	case ip.Is4():
		return addr
	case ip.Is4In6():
		return ip.Unmap().String()
	}
	p, _ := ip.WithZone("").Prefix(64)
	return p.String()
}
