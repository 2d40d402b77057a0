package verify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// keySet is one fetched JWKS, immutable once stored.
type keySet struct {
	keys    map[string][]*key // by kid
	body    []byte
	etag    string
	fetched time.Time
	ttl     time.Duration // how long the issuer says it may be cached, within [MinRefresh, MaxRefresh]
}

// fetchReason says why a fetch was asked for, which decides whether it may run.
type fetchReason int

const (
	fetchFirst      fetchReason = iota // no set yet: at most once per firstFetchRetry
	fetchScheduled                     // the set is due (Run or lazily): when nextTry has come
	fetchUnknownKid                    // a token names a kid the set lacks: at most once per RefetchInterval
)

// Run keeps the JWKS fresh until ctx ends, then returns nil: it fetches the set at once, then again a little
// before the issuer's Cache-Control max-age runs out (within [MinRefresh, MaxRefresh]); a failed refresh is logged
// and retried with backoff while the last good set stays in use. With Config.Revocations it also polls the
// revocation feed, every PollInterval. While Run runs, Verify does not refresh either itself. Run is optional:
// without it, Verify fetches on first use and refreshes in the background when due.
func (v *Verifier) Run(ctx context.Context) error {
	if v.revs != nil {
		var wg sync.WaitGroup
		wg.Go(func() { v.revs.run(ctx) })
		defer wg.Wait()
	}
	v.running.Add(1)
	defer v.running.Add(-1)
	for {
		reason := fetchScheduled
		if v.set.Load() == nil {
			reason = fetchFirst
		}
		if reason == fetchFirst || !v.now().Before(v.due()) {
			v.refresh(ctx, reason) // failures are logged and set the next try
		}
		wait := v.due().Sub(v.now())
		if v.set.Load() == nil {
			wait = min(wait, firstFetchRetry)
		}
		t := time.NewTimer(max(wait, 10*time.Millisecond))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// due returns when the set is due for a refresh.
func (v *Verifier) due() time.Time { return time.Unix(0, v.nextTry.Load()) }

// key returns the key for kid that may verify alg, fetching the JWKS if there is none yet or the kid is unknown.
func (v *Verifier) key(ctx context.Context, kid string, alg algSet) (*key, error) {
	s := v.set.Load()
	if s == nil {
		var err error
		if s, err = v.refresh(ctx, fetchFirst); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrJWKSUnavailable, err)
		}
	} else if v.running.Load() == 0 {
		v.refreshIfDue()
	}
	if kid == "" {
		return nil, fmt.Errorf("%w: the token has no kid", ErrUnknownKey)
	}
	if k, ok := s.find(kid, alg); ok {
		return k, nil
	}
	if v.knownUnknown(kid) {
		return nil, fmt.Errorf("%w: %q", ErrUnknownKey, truncate(kid, 64))
	}
	if !v.mayRefetch() {
		// No refetch yet, and none to join; but a fetch may have ended since s was read.
		if k, ok := v.set.Load().find(kid, alg); ok {
			return k, nil
		}
		return nil, fmt.Errorf("%w: %q", ErrUnknownKey, truncate(kid, 64))
	}
	s2, err := v.refresh(ctx, fetchUnknownKid)
	if err != nil {
		return nil, fmt.Errorf("%w: %q (refetching the JWKS failed: %w)", ErrUnknownKey, truncate(kid, 64), err)
	}
	if k, ok := s2.find(kid, alg); ok {
		return k, nil
	}
	if s2 != s || v.now().Sub(s2.fetched) < v.refetch {
		v.rememberUnknown(kid) // the kid is absent from a set fetched just now
	}
	return nil, fmt.Errorf("%w: %q", ErrUnknownKey, truncate(kid, 64))
}

// find returns the key for kid. When kid names keys but none for alg, it returns the first and true: the caller's
// check of the algorithm then fails without a refetch.
func (s *keySet) find(kid string, alg algSet) (*key, bool) {
	ks := s.keys[kid]
	for _, k := range ks {
		if k.algs&alg != 0 {
			return k, true
		}
	}
	if len(ks) > 0 {
		return ks[0], true
	}
	return nil, false
}

// mayRefetch reports whether a fetch for an unknown kid is under way, to be joined, or may start.
func (v *Verifier) mayRefetch() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.fetching || v.now().Sub(v.lastFetch) >= v.refetch
}

func (v *Verifier) knownUnknown(kid string) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	exp, ok := v.unknown[kid]
	return ok && v.now().Before(exp)
}

func (v *Verifier) rememberUnknown(kid string) {
	if len(kid) > 128 {
		return // not worth the memory: the refetch interval still bounds what it costs
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	now := v.now()
	if len(v.unknown) >= maxUnknownKids {
		for k, exp := range v.unknown {
			if !now.Before(exp) {
				delete(v.unknown, k)
			}
		}
		if len(v.unknown) >= maxUnknownKids {
			clear(v.unknown)
		}
	}
	v.unknown[kid] = now.Add(unknownKidTTL)
}

// refreshIfDue starts a background refresh if the set is due, without waiting for it. The fetch runs in a
// goroutine owned by the singleflight call, which ends within DefaultFetchTimeout.
func (v *Verifier) refreshIfDue() {
	if v.now().Before(v.due()) {
		return
	}
	v.fetches.DoChan("jwks", func() (any, error) {
		return v.fetchAndStore(context.Background(), fetchScheduled)
	})
}

// refresh fetches the JWKS for reason, if reason allows a fetch now, and returns the set in use afterwards.
// Concurrent callers share one fetch; a caller whose ctx ends stops waiting, and the fetch carries on.
func (v *Verifier) refresh(ctx context.Context, reason fetchReason) (*keySet, error) {
	ch := v.fetches.DoChan("jwks", func() (any, error) {
		return v.fetchAndStore(context.WithoutCancel(ctx), reason)
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*keySet), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// fetchAndStore fetches the JWKS if reason allows it now and stores the result. It runs in one goroutine at a time.
func (v *Verifier) fetchAndStore(ctx context.Context, reason fetchReason) (*keySet, error) {
	prev := v.set.Load()
	now := v.now()
	v.mu.Lock()
	switch {
	case reason == fetchFirst && prev == nil && v.lastErr != nil && now.Sub(v.lastFetch) < firstFetchRetry:
		err := v.lastErr
		v.mu.Unlock()
		return nil, err
	case reason == fetchUnknownKid && prev != nil && now.Sub(v.lastFetch) < v.refetch:
		v.mu.Unlock()
		return prev, nil
	case reason == fetchScheduled && prev != nil && now.Before(v.due()):
		v.mu.Unlock()
		return prev, nil
	case prev != nil && reason == fetchFirst:
		v.mu.Unlock()
		return prev, nil // another caller got the first set meanwhile
	}
	v.lastFetch, v.fetching = now, true
	v.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, DefaultFetchTimeout)
	defer cancel()
	s, err := v.fetch(ctx, prev)
	if v.onRefresh != nil {
		v.onRefresh(err)
	}

	v.mu.Lock()
	defer v.mu.Unlock()
	v.fetching = false
	if err != nil {
		v.failures++
		v.lastErr = err
		backoff := min(v.refetch<<min(v.failures-1, 16), DefaultRefresh)
		v.nextTry.Store(v.now().Add(backoff).UnixNano())
		if prev != nil {
			v.log.Warn("verify: JWKS refresh failed; keeping the keys in use", "issuer", v.iss, "err", err,
				"failures", v.failures, "retry_in", backoff)
			return prev, nil
		}
		v.log.Warn("verify: JWKS fetch failed; no keys yet", "issuer", v.iss, "err", err, "failures", v.failures)
		return nil, err
	}
	v.failures, v.lastErr = 0, nil
	if prev == nil || !bytes.Equal(prev.body, s.body) {
		clear(v.unknown) // kids unknown to the old set may be in the new one
	}
	v.set.Store(s)
	v.nextTry.Store(s.fetched.Add(s.ttl - min(s.ttl/4, time.Minute)).UnixNano())
	return s, nil
}

// fetch gets the JWKS, conditionally on prev's ETag, discovering its URL first if need be.
func (v *Verifier) fetch(ctx context.Context, prev *keySet) (*keySet, error) {
	u, err := v.jwksLocation(ctx)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("JWKS URL %q: %w", u, err)
	}
	req.Header.Set("Accept", "application/jwk-set+json, application/json")
	if prev != nil && prev.etag != "" {
		req.Header.Set("If-None-Match", prev.etag)
	}
	resp, err := v.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch JWKS: %w", err)
	}
	defer resp.Body.Close()
	fetched := v.now()
	ttl := cacheTTL(resp.Header)
	if resp.StatusCode == http.StatusNotModified && prev != nil {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		s := *prev
		s.fetched, s.ttl = fetched, ttl
		if etag := resp.Header.Get("ETag"); etag != "" {
			s.etag = etag
		}
		return &s, nil
	}
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return nil, fmt.Errorf("fetch JWKS %s: status %d", u, resp.StatusCode)
	}
	body, err := readLimited(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("fetch JWKS %s: %w", u, err)
	}
	keys, err := v.parseJWKS(body)
	if err != nil {
		return nil, fmt.Errorf("JWKS from %s: %w", u, err)
	}
	return &keySet{keys: keys, body: body, etag: resp.Header.Get("ETag"), fetched: fetched, ttl: ttl}, nil
}

func readLimited(r io.Reader) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r, maxJWKSSize+1))
	if err != nil {
		return nil, err
	}
	if len(body) > maxJWKSSize {
		return nil, fmt.Errorf("larger than %d bytes", maxJWKSSize)
	}
	return body, nil
}

// cacheTTL reads how long a response may be cached from Cache-Control max-age, less Age, within [MinRefresh,
// MaxRefresh]; DefaultRefresh without max-age. no-store and no-cache mean MinRefresh.
func cacheTTL(h http.Header) time.Duration {
	ttl := time.Duration(-1)
	for _, cc := range h.Values("Cache-Control") {
		for _, d := range strings.Split(cc, ",") {
			d = strings.ToLower(strings.TrimSpace(d))
			switch {
			case d == "no-store" || d == "no-cache":
				return MinRefresh
			case strings.HasPrefix(d, "max-age="):
				n, err := strconv.ParseInt(strings.Trim(d[len("max-age="):], `"`), 10, 64)
				if err != nil || n < 0 {
					return MinRefresh
				}
				ttl = time.Duration(min(n, int64(MaxRefresh/time.Second))) * time.Second
			}
		}
	}
	if ttl < 0 {
		return DefaultRefresh
	}
	if age, err := strconv.ParseInt(h.Get("Age"), 10, 64); err == nil && age > 0 {
		ttl -= time.Duration(min(age, int64(MaxRefresh/time.Second))) * time.Second
	}
	return min(max(ttl, MinRefresh), MaxRefresh)
}

// parseJWKS reads a JWK Set (RFC 7517 §5), keeping the public signature keys of the algorithms allowed. Other keys
// (encryption keys, symmetric keys, unknown types, RSA under 2048 bits) are skipped; a set with no usable key is an
// error, so that a broken deployment of the issuer does not replace a good set.
func (v *Verifier) parseJWKS(body []byte) (map[string][]*key, error) {
	var doc struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("not a JWK Set: %w", err)
	}
	keys := make(map[string][]*key, len(doc.Keys))
	for _, raw := range doc.Keys {
		k, err := v.parseJWK(raw)
		if err != nil {
			v.log.Debug("verify: JWK skipped", "issuer", v.iss, "err", err)
		}
		if k == nil {
			continue
		}
		keys[k.kid] = append(keys[k.kid], k)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("no usable signature key among %d keys", len(doc.Keys))
	}
	return keys, nil
}

// parseJWK returns the verification key of one JWK, or nil if it is not one this verifier may use.
func (v *Verifier) parseJWK(raw []byte) (*key, error) {
	var meta struct {
		Kty    string   `json:"kty"`
		Kid    string   `json:"kid"`
		Use    string   `json:"use"`
		Alg    string   `json:"alg"`
		KeyOps []string `json:"key_ops"`
	}
	if err := json.Unmarshal(raw, &meta); err != nil {
		return nil, err
	}
	if meta.Use != "" && meta.Use != "sig" {
		return nil, nil
	}
	if meta.KeyOps != nil && !contains(meta.KeyOps, "verify") {
		return nil, nil
	}
	if meta.Kty != "RSA" && meta.Kty != "EC" && meta.Kty != "OKP" {
		return nil, nil // "oct" above all: never verify with a symmetric key
	}
	var jk jose.JSONWebKey
	if err := jk.UnmarshalJSON(raw); err != nil {
		return nil, err
	}
	pub := jk.Public()
	if pub.Key == nil {
		return nil, errors.New("not a public key")
	}
	algs := typeAlgs(pub.Key)
	if meta.Alg != "" {
		algs &= algBit(meta.Alg)
	}
	algs &= v.algs
	if algs == 0 {
		return nil, nil
	}
	return &key{kid: meta.Kid, algs: algs, pub: pub.Key}, nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// jwksLocation returns the JWKS URL, discovering it from the issuer's metadata the first time if none was
// configured: OpenID Connect Discovery (<issuer>/.well-known/openid-configuration), then RFC 8414
// (/.well-known/oauth-authorization-server inserted before the issuer's path).
func (v *Verifier) jwksLocation(ctx context.Context) (string, error) {
	if u := v.jwksURL.Load(); u != nil {
		return *u, nil
	}
	iss, err := url.Parse(v.iss)
	if err != nil || (iss.Scheme != "https" && iss.Scheme != "http") || iss.Host == "" {
		return "", fmt.Errorf("discover the JWKS: issuer %q is not an http(s) URL; set Config.JWKSURL", v.iss)
	}
	oidc := strings.TrimSuffix(v.iss, "/") + "/.well-known/openid-configuration"
	rfc8414 := iss.Scheme + "://" + iss.Host + "/.well-known/oauth-authorization-server" + strings.TrimSuffix(iss.EscapedPath(), "/")
	var errs []error
	for _, doc := range []string{oidc, rfc8414} {
		u, err := v.discover(ctx, doc)
		if err == nil {
			v.jwksURL.Store(&u)
			return u, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return "", fmt.Errorf("discover the JWKS: %w", errors.Join(errs...))
}

func (v *Verifier) discover(ctx context.Context, docURL string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, docURL, nil)
	if err != nil {
		return "", err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := v.client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return "", fmt.Errorf("%s: status %d", docURL, resp.StatusCode)
	}
	body, err := readLimited(resp.Body)
	if err != nil {
		return "", fmt.Errorf("%s: %w", docURL, err)
	}
	var md struct {
		Issuer  string `json:"issuer"`
		JWKSURI string `json:"jwks_uri"`
	}
	if err := json.Unmarshal(body, &md); err != nil {
		return "", fmt.Errorf("%s: %w", docURL, err)
	}
	if md.Issuer != v.iss {
		return "", fmt.Errorf("%s names issuer %q, not %q", docURL, md.Issuer, v.iss)
	}
	ju, err := url.Parse(md.JWKSURI)
	if err != nil || ju.Host == "" || !(ju.Scheme == "https" || ju.Scheme == "http" && strings.HasPrefix(v.iss, "http:")) {
		return "", fmt.Errorf("%s: jwks_uri %q is not an absolute https URL", docURL, md.JWKSURI)
	}
	return md.JWKSURI, nil
}
