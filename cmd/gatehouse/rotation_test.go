package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/gatehouse/gatehouse/internal/rootkey"
)

// rotationFixture has an API per algorithm, with token lifetimes of 1 hour and 10 minutes, and a client for all.
const rotationFixture = `
apis:
  - {identifier: "urn:rot:rs256", name: RS, scopes: [a], signing_alg: RS256, token_lifetime: 1h}
  - {identifier: "urn:rot:es256", name: ES, scopes: [a], signing_alg: ES256, token_lifetime: 1h}
  - {identifier: "urn:rot:eddsa", name: Ed, scopes: [a], signing_alg: EdDSA, token_lifetime: 10m}
clients:
  - client_id: rot-client
    name: Rotation
    client_secret: rotation-secret-0123456789abcdefghijklmnopqrstuvwxyz
    grants:
      - {audience: "urn:rot:rs256", scopes: [a]}
      - {audience: "urn:rot:es256", scopes: [a]}
      - {audience: "urn:rot:eddsa", scopes: [a]}
`

// handlerTransport sends requests to a handler in process: inside a synctest bubble, where real network I/O would
// keep the fake clock from moving.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	return rec.Result(), nil
}

// strictVerifier is the least forgiving verifier a rotation must not break: it fetches the JWKS, keeps it exactly as
// long as its Cache-Control max-age says, and never refetches early, not even for a kid it does not know.
type strictVerifier struct {
	client   *http.Client
	url      string
	keys     map[string]jwk
	expires  time.Time
	fetches  int
	failures []string
}

func (v *strictVerifier) jwks(t *testing.T) map[string]jwk {
	t.Helper()
	if v.keys != nil && time.Now().Before(v.expires) {
		return v.keys
	}
	resp, err := v.client.Get(v.url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set struct{ Keys []jwk }
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	cc := resp.Header.Get("Cache-Control")
	_, age, ok := strings.Cut(cc, "max-age=")
	n, err := strconv.Atoi(age)
	if !ok || err != nil || n <= 0 {
		t.Fatalf("JWKS Cache-Control %q has no max-age", cc)
	}
	v.keys = make(map[string]jwk, len(set.Keys))
	for _, k := range set.Keys {
		v.keys[k.Kid] = k
	}
	v.expires = time.Now().Add(time.Duration(n) * time.Second)
	v.fetches++
	return v.keys
}

// check verifies token with the cached JWKS and records a failure.
func (v *strictVerifier) check(t *testing.T, token, what string) {
	t.Helper()
	keys := v.jwks(t)
	_, err := jwt.Parse(token, func(tok *jwt.Token) (any, error) {
		kid, _ := tok.Header["kid"].(string)
		k, ok := keys[kid]
		if !ok {
			return nil, fmt.Errorf("kid %s is not in the cached JWKS", kid)
		}
		return k.publicKey(t), nil
	}, jwt.WithValidMethods([]string{"RS256", "ES256", "EdDSA"}), jwt.WithExpirationRequired())
	if err != nil {
		v.failures = append(v.failures, fmt.Sprintf("%s at %s: %v", what, time.Now().UTC().Format(time.TimeOnly), err))
	}
}

// issued is a token the rotation test checks again just before it expires.
type issued struct {
	token, kid, alg string
	exp             time.Time
}

// TestRotationEndToEnd runs the real server wiring through three rotations of every algorithm (a 2-hour period)
// with the default schedule and a 5-minute JWKS max-age, issuing tokens all along, and every 30 seconds around each
// rotation. Ten verifiers cache the JWKS for exactly its max-age, each fetching it at another 30-second phase, and
// verify every token when it is issued and again in its last 30 seconds: none may fail. No token may be signed by
// a key the JWKS has published for less than the max-age, and no key may leave the JWKS before the last token it
// signed has expired.
func TestRotationEndToEnd(t *testing.T) {
	dir := t.TempDir()
	key := rootkey.Generate()
	if err := writeFile(filepath.Join(dir, "gatehouse.yaml"), rotationFixture); err != nil {
		t.Fatal(err)
	}
	synctest.Test(t, func(t *testing.T) {
		const (
			period = 2 * time.Hour
			maxAge = 5 * time.Minute
			step   = 30 * time.Second // the keys' reload interval: the schedule moves in these steps
		)
		m := &Main{Addr: "127.0.0.1:0", DB: "sqlite:" + filepath.Join(dir, "gatehouse.db"), RootKey: key,
			ConfigFile: filepath.Join(dir, "gatehouse.yaml"), JWKSMaxAge: maxAge, RotateEvery: period}
		ctx, cancel := context.WithCancel(t.Context())
		if err := m.Open(ctx); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { defer close(done); m.Keys.Run(ctx) }()
		defer func() { cancel(); <-done; m.Close() }()

		client := &http.Client{Transport: handlerTransport{m.http.Handler}}
		jwksURL := m.URL + "/.well-known/jwks.json"
		verifiers := make([]*strictVerifier, int(maxAge/step))
		for i := range verifiers {
			verifiers[i] = &strictVerifier{client: client, url: jwksURL}
		}
		var (
			firstSeen = map[string]time.Time{} // when each kid first appeared in the JWKS
			lastSeen  = map[string]time.Time{} // and last
			lastExp   = map[string]time.Time{} // the latest exp of the tokens each kid signed
			signers   = map[string]map[string]bool{}
			pending   []issued
			tokens    int
			tooEarly  []string
			start     = time.Now()
			end       = start.Add(3*period + 90*time.Minute)
			audiences = map[string]string{"RS256": "urn:rot:rs256", "ES256": "urn:rot:es256", "EdDSA": "urn:rot:eddsa"}
		)
		nearRotation := func(now time.Time) bool {
			since := now.Sub(start) % period
			return since < 12*time.Minute || since > period-12*time.Minute
		}
		for i := 0; ; i++ {
			now := time.Now()
			// The observer: every step, right after the keyset's round, the JWKS as any verifier would get it.
			for _, kid := range jwksKids(t, client, jwksURL) {
				if _, ok := firstSeen[kid]; !ok {
					firstSeen[kid] = now
				}
				lastSeen[kid] = now
			}
			// Verifier j fetches first at step j, then whenever its copy expires.
			for j, v := range verifiers {
				if i >= j {
					v.jwks(t)
				}
			}
			if i%20 == 0 || nearRotation(now) {
				for alg, aud := range audiences {
					tok := rotationToken(t, client, m.URL, aud)
					kid := tokenKid(t, tok)
					// The first keys are made at start and sign at once: no verifier can hold an older JWKS.
					if seen, ok := firstSeen[kid]; !ok || (seen != start && now.Sub(seen) < maxAge) {
						tooEarly = append(tooEarly, fmt.Sprintf("%s token at %s signed by %s, published %s before", alg, now.Sub(start), kid, now.Sub(seen)))
					}
					if signers[alg] == nil {
						signers[alg] = map[string]bool{}
					}
					signers[alg][kid] = true
					p := issued{token: tok, kid: kid, alg: alg, exp: now.Add(lifetimeOf(alg))}
					lastExp[kid] = p.exp
					for _, v := range verifiers[:min(i+1, len(verifiers))] {
						v.check(t, p.token, alg+" token when issued")
					}
					pending = append(pending, p)
					tokens++
				}
			}
			// Each token again in its last step before it expires.
			kept := pending[:0]
			for _, p := range pending {
				if p.exp.Sub(now) <= step {
					for _, v := range verifiers {
						v.check(t, p.token, p.alg+" token just before it expires")
					}
					continue
				}
				kept = append(kept, p)
			}
			pending = kept
			if !now.Before(end) {
				break
			}
			time.Sleep(step)
			synctest.Wait()
		}

		for _, v := range verifiers {
			for _, f := range v.failures {
				t.Errorf("verification failed: %s", f)
			}
		}
		for _, s := range tooEarly {
			t.Errorf("signed by a key published for less than the max-age: %s", s)
		}
		final := jwksKids(t, client, jwksURL)
		for kid, exp := range lastExp {
			if !slices.Contains(final, kid) && lastSeen[kid].Before(exp) {
				t.Errorf("key %s left the JWKS at %s, before its last token expired (%s)", kid, lastSeen[kid].Sub(start), exp.Sub(start))
			}
		}
		for alg, kids := range signers {
			if len(kids) != 4 {
				t.Errorf("%s: %d keys signed, want 4: the first and one per rotation", alg, len(kids))
			}
		}
		// 90 minutes after the last rotation, the keys it retired are gone and the next ones not yet published.
		if len(final) != 3 {
			t.Errorf("the JWKS at the end has %d keys, want the current key of each algorithm: %v", len(final), final)
		}
		t.Logf("%d tokens issued over %s; %d keys published", tokens, end.Sub(start), len(firstSeen))
	})
}

func lifetimeOf(alg string) time.Duration {
	if alg == "EdDSA" {
		return 10 * time.Minute
	}
	return time.Hour
}

// rotationToken gets a token for audience from the server behind client.
func rotationToken(t *testing.T, client *http.Client, base, audience string) string {
	t.Helper()
	req, _ := http.NewRequest("POST", base+"/oauth/token", strings.NewReader(url.Values{
		"grant_type": {"client_credentials"}, "audience": {audience}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("rot-client", "rotation-secret-0123456789abcdefghijklmnopqrstuvwxyz")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(b, &tok) != nil {
		t.Fatalf("token for %s: %d %s", audience, resp.StatusCode, b)
	}
	return tok.AccessToken
}

// tokenKid returns the kid in a token's header.
func tokenKid(t *testing.T, token string) string {
	t.Helper()
	h, err := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var header struct{ Kid string }
	if err := json.Unmarshal(h, &header); err != nil {
		t.Fatal(err)
	}
	return header.Kid
}

// jwksKids returns the kids the JWKS publishes.
func jwksKids(t *testing.T, client *http.Client, u string) []string {
	t.Helper()
	resp, err := client.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var set struct{ Keys []jwk }
	if err := json.NewDecoder(resp.Body).Decode(&set); err != nil {
		t.Fatal(err)
	}
	var kids []string
	for _, k := range set.Keys {
		kids = append(kids, k.Kid)
	}
	return kids
}
