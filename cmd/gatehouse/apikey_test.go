package main

// End-to-end tests of API keys: the seed-003 story (a customer's users make long-lived keys for their
// organization, each with its own permissions, and rotate, change and delete them, the old key dying at once) over
// real HTTP, against a server whose caches live for an hour, so that every change seen at once is seen because the
// change invalidated the cache, not because an entry expired.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/apikey"
	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/issuer"
	"github.com/gatehouse/gatehouse/internal/limit"
	"github.com/gatehouse/gatehouse/internal/rootkey"
)

// keyCacheTTL is the client and API key cache TTL of the servers these tests start: longer than any test, so that
// no change is seen through an expired entry.
const keyCacheTTL = time.Hour

// startKeys starts a server like startManage's (manageFixture, gh-admin, a captured debug log, and the check at
// the end that no secret is in the log or the audit log) with caches that live for keyCacheTTL, after configure
// (if not nil) has changed its Main.
func startKeys(tb testing.TB, configure func(*Main)) *manageServer {
	tb.Helper()
	return startManageWith(tb, func(m *Main) {
		m.CacheTTL = keyCacheTTL
		if configure != nil {
			configure(m)
		}
	})
}

// createKey creates an API key and returns the answer and the key, which it remembers as a secret that must never
// be in the log or the audit log.
func (m manager) createKey(tb testing.TB, body obj) (obj, string) {
	tb.Helper()
	r := m.must(tb, http.StatusCreated, "POST", "/api/v1/apikeys", body)
	key := strOf(r.json, "key")
	if key == "" {
		tb.Fatalf("create API key: no key in %s", r.body)
	}
	m.ms.remember(key)
	if loc := r.header.Get("Location"); loc != "/api/v1/apikeys/"+strOf(r.json, "id") {
		tb.Errorf("create API key: Location %q", loc)
	}
	return r.json, key
}

// rotateKey rotates a key (body nil: no grace period) and returns the answer and the new key.
func (m manager) rotateKey(tb testing.TB, id string, body any) (obj, string) {
	tb.Helper()
	r := m.must(tb, http.StatusOK, "POST", "/api/v1/apikeys/"+id+"/rotate", body)
	key := strOf(r.json, "key")
	if key == "" {
		tb.Fatalf("rotate API key: no key in %s", r.body)
	}
	m.ms.remember(key)
	return r.json, key
}

// verifyKey asks POST /api/v1/apikeys/verify about key; extra are more members of the body (audience, scopes).
func (m manager) verifyKey(tb testing.TB, key string, extra ...any) response {
	tb.Helper()
	body := obj{"key": key}
	for i := 0; i+1 < len(extra); i += 2 {
		body[extra[i].(string)] = extra[i+1]
	}
	return m.must(tb, http.StatusOK, "POST", "/api/v1/apikeys/verify", body)
}

// wantCode checks that the gateway check refuses key with exactly {"valid":false,"code":code}.
func (m manager) wantCode(tb testing.TB, what, key, code string, extra ...any) {
	tb.Helper()
	r := m.verifyKey(tb, key, extra...)
	if want := `{"valid":false,"code":"` + code + `"}`; strings.TrimSpace(r.body) != want {
		tb.Errorf("%s: verify answered %s, want %s", what, strings.TrimSpace(r.body), want)
	}
}

// exchangeForm is the form of a token exchange of key, with extra form pairs.
func exchangeForm(key string, params ...string) string {
	return form(append([]string{"grant_type", issuer.GrantTokenExchange, "subject_token", key,
		"subject_token_type", issuer.TokenTypeAPIKey}, params...)...)
}

// exchange exchanges key at the token endpoint with c (nil: the default client); params are extra form pairs.
func (ms *manageServer) exchange(tb testing.TB, c *http.Client, key string, params ...string) response {
	tb.Helper()
	if c == nil {
		c = http.DefaultClient
	}
	req, _ := http.NewRequest("POST", ms.tokenURL(), strings.NewReader(exchangeForm(key, params...)))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := c.Do(req)
	if err != nil {
		tb.Fatalf("exchange: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	r := response{status: resp.StatusCode, header: resp.Header, body: string(b)}
	json.Unmarshal(b, &r.json)
	return r
}

// keyToken is what a token exchanged for an API key must say.
type keyToken struct {
	keyID, orgID, owner string
	audience, scope     string
	lifetime            int64 // seconds
	alg                 string
}

// wantKeyToken exchanges key and checks the answer and the token: signed by a key in the JWKS (with golang-jwt),
// issuer, audience, sub and client_id the key's id, org_id, owner, scope, and exp = iat + lifetime. It returns the
// token's claims.
func (ms *manageServer) wantKeyToken(t *testing.T, what, key string, want keyToken, params ...string) map[string]any {
	t.Helper()
	before := time.Now().Unix()
	r := ms.exchange(t, nil, key, params...)
	if r.status != http.StatusOK {
		t.Fatalf("%s: exchange: %d %s", what, r.status, r.body)
	}
	if r.json["token_type"] != "Bearer" || r.json["issued_token_type"] != issuer.TokenTypeAccessToken ||
		r.json["scope"] != want.scope || r.json["expires_in"] != float64(want.lifetime) {
		t.Errorf("%s: answer %s; want scope %q, expires_in %d", what, r.body, want.scope, want.lifetime)
	}
	if cc := r.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("%s: Cache-Control %q", what, cc)
	}
	tok, _ := r.json["access_token"].(string)
	claims, header := verifyToken(t, ms.URL, ms.IssuerURL, want.audience, tok)
	if want.alg != "" && header["alg"] != want.alg {
		t.Errorf("%s: alg %v, want %s", what, header["alg"], want.alg)
	}
	all := claimsOf(t, tok)
	if claims.Subject != want.keyID || claims.ClientID != want.keyID || claims.Scope != want.scope ||
		strOf(all, "org_id") != want.orgID || strOf(all, "owner") != want.owner {
		t.Errorf("%s: claims %v; want sub and client_id %s, org_id %q, owner %q, scope %q", what, all, want.keyID,
			want.orgID, want.owner, want.scope)
	}
	iat, exp := claims.IssuedAt.Unix(), claims.ExpiresAt.Unix()
	if exp-iat != want.lifetime || iat < before-1 || iat > time.Now().Unix()+1 {
		t.Errorf("%s: iat %d, exp %d (exp-iat %d); want exp = iat + %d, iat now", what, iat, exp, exp-iat, want.lifetime)
	}
	return all
}

// refusal exchanges key and checks that it is refused with the one answer for a bad key, which it returns.
func (ms *manageServer) refusal(t *testing.T, what, key string) string {
	t.Helper()
	r := ms.exchange(t, nil, key)
	if r.status != http.StatusBadRequest || r.json["error"] != issuer.CodeInvalidRequest {
		t.Errorf("%s: exchange: %d %s; want 400 invalid_request", what, r.status, r.body)
	}
	if cc := r.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("%s: Cache-Control %q", what, cc)
	}
	return r.body
}

// flipLast returns key with its last character changed, so that its checksum no longer matches.
func flipLast(key string) string {
	if key[len(key)-1] == 'A' {
		return key[:len(key)-1] + "B"
	}
	return key[:len(key)-1] + "A"
}

// eventually calls f every 50 ms until it returns true, and fails the test if it has not within d.
func eventually(t *testing.T, d time.Duration, what string, f func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !f(); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, d)
		}
	}
}

// TestSeed003APIKeys is the seed-003 story end to end. A customer (hokan) makes a key for its organization and a
// user, with its own permissions; exchanges it for a JWT the API verifies against the JWKS; a gateway checks it
// directly; its permissions change, it is rotated (the old key refused by the very next exchange and check),
// rotated with a grace period, disabled, made to expire and deleted. The server's caches live for an hour, so
// every "at once" below is the change invalidating them.
func TestSeed003APIKeys(t *testing.T) {
	t.Parallel()
	ms := startKeys(t, func(m *Main) {
		// The story refuses a key about ten times from one address; the throttle has a test of its own.
		lots := limit.Rate{Count: 1000, Per: time.Minute}
		m.AuthThrottle = limit.ThrottleOptions{PerClient: lots, PerSource: lots}
	})
	adm := ms.admin
	ctx := context.Background()
	const aud = "https://api.example.com/v1" // RS256, token lifetime 1h: key tokens live the default 15 minutes
	const lifetime = int64(auth.DefaultKeyTokenLifetime / time.Second)

	org := strOf(adm.must(t, 201, "POST", "/api/v1/orgs", obj{"name": "hokan", "api_key_prefix": "hokan",
		"allowed_grants": []obj{{"audience": aud, "scopes": []string{"read", "write"}}}}).json, "id")
	// The gateway in front of the customer's API checks keys directly, with nothing but verify:apikeys.
	_, gwSecret := adm.createClient(t, obj{"client_id": "gateway", "name": "API gateway"})
	adm.grant(t, "gateway", auth.ManagementAudience, auth.ScopeVerifyAPIKeys)
	gw := ms.as(t, "gateway", gwSecret)

	// Keys that never existed, to compare every refusal with.
	never, _ := apikey.New("hokan")
	neverBody := ms.refusal(t, "a key that never existed", never)
	if !strings.Contains(neverBody, "not a working API key") {
		t.Errorf("refusal %s does not say what is wrong", neverBody)
	}
	gw.wantCode(t, "a key that never existed", never, "not_found")
	malformed := flipLast(never)
	if got := ms.refusal(t, "a malformed key", malformed); got != neverBody {
		t.Errorf("a malformed key is refused with %s, a key that never existed with %s", got, neverBody)
	}
	gw.wantCode(t, "a malformed key", malformed, "malformed")

	// 1. A user makes a key that does not expire, for the organization and a user in the customer's own system,
	// with permissions of its own.
	start := time.Now().UTC().Add(-time.Second)
	created, key := adm.createKey(t, obj{"name": "CI deploys", "org_id": org, "owner": "user-42",
		"grants": []obj{{"audience": aud, "scopes": []string{"read"}}}, "metadata": obj{"team": "payments"}})
	id := strOf(created, "id")
	if !regexp.MustCompile(`^hokan_[0-9A-Za-z]{39}$`).MatchString(key) {
		t.Errorf("key %q does not match the documented pattern for the organization's prefix", key)
	}
	if p, err := apikey.Parse(key); err != nil || p != "hokan" {
		t.Errorf("Parse(key) = %q, %v", p, err)
	}
	if !strings.HasPrefix(id, "key_") || created["hint"] != apikey.Hint(key) || created["org_id"] != org ||
		created["owner"] != "user-42" || created["expires_at"] != nil || created["last_used_at"] != nil ||
		created["disabled"] != false || !equalJSON(created["metadata"], obj{"team": "payments"}) ||
		!equalJSON(created["grants"], []any{obj{"api_id": adm.apiID(t, aud), "audience": aud, "scopes": []any{"read"}}}) {
		t.Errorf("created: %v", created)
	}
	shown := adm.must(t, 200, "GET", "/api/v1/apikeys/"+id, nil)
	if strings.Contains(shown.body, key) || strings.Contains(shown.body, key[len(key)-10:]) {
		t.Errorf("GET shows the key again: %s", shown.body)
	}
	if shown.json["created_at"] != created["created_at"] || shown.json["updated_at"] != created["updated_at"] {
		t.Errorf("GET shows times %v/%v, the create answer %v/%v", shown.json["created_at"], shown.json["updated_at"],
			created["created_at"], created["updated_at"])
	}
	want := keyToken{keyID: id, orgID: org, owner: "user-42", audience: aud, scope: "read", lifetime: lifetime, alg: "RS256"}

	// 2. Exchanged for a JWT (RFC 8693), which the API verifies against the JWKS like any other token.
	ms.wantKeyToken(t, "first exchange", key, want)

	// 3. The gateway checks it directly.
	r := gw.verifyKey(t, key)
	if r.json["valid"] != true || r.json["key_id"] != id || r.json["org_id"] != org || r.json["owner"] != "user-42" ||
		r.json["audience"] != aud || !equalJSON(r.json["scopes"], []any{"read"}) || !equalJSON(r.json["metadata"], obj{"team": "payments"}) {
		t.Errorf("verify: %s", r.body)
	}
	if r := gw.verifyKey(t, key, "audience", aud, "scopes", []string{"read"}); r.json["valid"] != true {
		t.Errorf("verify for %s, read: %s", aud, r.body)
	}
	for _, tc := range []struct {
		what, code string
		extra      []any
	}{
		{"a scope it does not hold", "insufficient_scope", []any{"scopes", []string{"write"}}},
		{"another API", "wrong_audience", []any{"audience", "urn:example:reports"}},
	} {
		r := gw.verifyKey(t, key, tc.extra...)
		if r.json["valid"] != false || r.json["code"] != tc.code || r.json["key_id"] != id {
			t.Errorf("verify, %s: %s; want code %s", tc.what, r.body, tc.code)
		}
	}

	// Last used: written in batches; the test writes the batch now rather than wait for it.
	ms.APIKeys.Flush(ctx)
	used, err := time.Parse(time.RFC3339Nano, strOf(adm.must(t, 200, "GET", "/api/v1/apikeys/"+id, nil).json, "last_used_at"))
	if err != nil || used.Before(start) || used.After(time.Now().Add(time.Second)) {
		t.Errorf("last_used_at after a flush: %v (%v), want a time after %v", used, err, start)
	}

	// The cache is real: a change made behind the server's back (straight into the database) is not seen within
	// the hour. Every change below goes through the API, which invalidates the cache in the same step.
	k, err := ms.Store.FindAPIKey(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	k.Disabled = true
	if err := ms.Store.UpdateAPIKey(ctx, k); err != nil {
		t.Fatal(err)
	}
	ms.wantKeyToken(t, "disabled behind the server's back: still cached", key, want)
	k.Disabled = false
	if err := ms.Store.UpdateAPIKey(ctx, k); err != nil {
		t.Fatal(err)
	}

	// 4. Its permissions change: the very next exchange and check carry the new scopes.
	etag := adm.must(t, 200, "GET", "/api/v1/apikeys/"+id, nil).header.Get("ETag")
	wantProblem(t, "a stale ETag", adm.call(t, "PATCH", "/api/v1/apikeys/"+id, obj{"name": "x"}, "If-Match", `"1"`), 412, "")
	adm.must(t, 200, "PATCH", "/api/v1/apikeys/"+id, obj{"grants": []obj{{"audience": aud, "scopes": []string{"read", "write"}}}}, "If-Match", etag)
	want.scope = "read write"
	ms.wantKeyToken(t, "after the permission change", key, want)
	if r := gw.verifyKey(t, key, "scopes", []string{"write"}); r.json["valid"] != true || !equalJSON(r.json["scopes"], []any{"read", "write"}) {
		t.Errorf("verify after the permission change: %s", r.body)
	}
	narrow := want
	narrow.scope = "write"
	ms.wantKeyToken(t, "narrowed to write", key, narrow, "scope", "write")
	wantProblem(t, "org_id cannot change", adm.call(t, "PATCH", "/api/v1/apikeys/"+id, obj{"org_id": ""}), 400, "org_id")
	wantProblem(t, "owner cannot change", adm.call(t, "PATCH", "/api/v1/apikeys/"+id, obj{"owner": "user-43"}), 400, "owner")

	// 5. Rotation: the old key is refused by the very next exchange and check, exactly as a key that never
	// existed; the new key, with the same id and permissions, works.
	rotated, key2 := adm.rotateKey(t, id, nil)
	if key2 == key || !strings.HasPrefix(key2, "hokan_") || rotated["id"] != id || rotated["hint"] != apikey.Hint(key2) ||
		rotated["previous_key_expires_at"] != nil {
		t.Errorf("rotated: %v", rotated)
	}
	if got := ms.refusal(t, "the rotated-out key", key); got != neverBody {
		t.Errorf("the rotated-out key is refused with %s, a key that never existed with %s", got, neverBody)
	}
	gw.wantCode(t, "the rotated-out key", key, "not_found")
	ms.wantKeyToken(t, "the new key", key2, want)

	// 6. Rotation with a grace period: the old key keeps working until it ends, then is refused like any other.
	wantProblem(t, "a grace period over 7 days", adm.call(t, "POST", "/api/v1/apikeys/"+id+"/rotate", obj{"grace_period": 7*24*3600 + 1}), 400, "grace_period")
	wantProblem(t, "a negative grace period", adm.call(t, "POST", "/api/v1/apikeys/"+id+"/rotate", obj{"grace_period": -1}), 400, "grace_period")
	rotated, key3 := adm.rotateKey(t, id, obj{"grace_period": 2})
	prevEnd, err := time.Parse(time.RFC3339Nano, strOf(rotated, "previous_key_expires_at"))
	if err != nil || prevEnd.Before(time.Now().Add(time.Second)) || prevEnd.After(time.Now().Add(3*time.Second)) {
		t.Errorf("previous_key_expires_at %v (%v), want about 2s from now", rotated["previous_key_expires_at"], err)
	}
	// The previous key still exchanges, for tokens that do not outlive its grace period.
	if r := ms.exchange(t, nil, key2); r.status != http.StatusOK {
		t.Errorf("the previous key in its grace period: %d %s", r.status, r.body)
	} else if exp := int64(claimsOf(t, strOf(r.json, "access_token"))["exp"].(float64)); exp > prevEnd.Unix() {
		t.Errorf("the previous key's token expires at %d, after its grace period ends at %d", exp, prevEnd.Unix())
	}
	ms.wantKeyToken(t, "the new key during the grace period", key3, want)
	eventually(t, 10*time.Second, "the previous key refused after its grace period", func() bool {
		// The exchange refuses it in its last second (a token would be useless); the check, from the end.
		return ms.exchange(t, nil, key2).status != http.StatusOK && time.Now().After(prevEnd.Add(10*time.Millisecond))
	})
	if got := ms.refusal(t, "the previous key after its grace period", key2); got != neverBody {
		t.Errorf("a key past its grace period is refused with %s, want %s", got, neverBody)
	}
	gw.wantCode(t, "the previous key after its grace period", key2, "not_found")
	ms.wantKeyToken(t, "the new key after the grace period", key3, want)

	// 7. Disabled, then enabled again.
	adm.must(t, 200, "PATCH", "/api/v1/apikeys/"+id, obj{"disabled": true})
	if got := ms.refusal(t, "disabled", key3); got != neverBody {
		t.Errorf("a disabled key is refused with %s, want %s", got, neverBody)
	}
	gw.wantCode(t, "disabled", key3, "disabled")
	adm.must(t, 200, "PATCH", "/api/v1/apikeys/"+id, obj{"disabled": false})
	ms.wantKeyToken(t, "enabled again", key3, want)

	// 8. Expiry: a token never outlives its key; an expired key is refused.
	wantProblem(t, "an expiry in the past", adm.call(t, "PATCH", "/api/v1/apikeys/"+id, obj{"expires_at": "2020-01-01T00:00:00Z"}), 400, "expires_at")
	expiresAt := time.Now().Add(5 * time.Minute).UTC().Truncate(time.Second)
	adm.must(t, 200, "PATCH", "/api/v1/apikeys/"+id, obj{"expires_at": expiresAt})
	r = ms.exchange(t, nil, key3)
	if exp := int64(claimsOf(t, strOf(r.json, "access_token"))["exp"].(float64)); exp > expiresAt.Unix() || exp < expiresAt.Unix()-2 {
		t.Errorf("a key expiring at %d gave a token expiring at %d", expiresAt.Unix(), exp)
	}
	if in := r.json["expires_in"].(float64); in > 300 || in < 297 {
		t.Errorf("expires_in %v for a key expiring in 5 minutes", in)
	}
	soon := time.Now().Add(2 * time.Second).UTC()
	adm.must(t, 200, "PATCH", "/api/v1/apikeys/"+id, obj{"expires_at": soon})
	eventually(t, 10*time.Second, "the key refused once it expired", func() bool {
		// The exchange refuses a key in its last second (a token would be useless); the check, from its expiry.
		return ms.exchange(t, nil, key3).status != http.StatusOK && time.Now().After(soon.Add(10*time.Millisecond))
	})
	if got := ms.refusal(t, "expired", key3); got != neverBody {
		t.Errorf("an expired key is refused with %s, want %s", got, neverBody)
	}
	gw.wantCode(t, "expired", key3, "expired")
	adm.must(t, 200, "PATCH", "/api/v1/apikeys/"+id, obj{"expires_at": nil})
	ms.wantKeyToken(t, "no longer expiring", key3, want)

	// 9. Deletion: refused at once, exactly as a key that never existed.
	adm.must(t, 204, "DELETE", "/api/v1/apikeys/"+id, nil)
	if got := ms.refusal(t, "deleted", key3); got != neverBody {
		t.Errorf("a deleted key is refused with %s, a key that never existed with %s", got, neverBody)
	}
	gw.wantCode(t, "deleted", key3, "not_found")
	wantProblem(t, "GET a deleted key", adm.call(t, "GET", "/api/v1/apikeys/"+id, nil), 404, "")
	wantProblem(t, "rotate a deleted key", adm.call(t, "POST", "/api/v1/apikeys/"+id+"/rotate", nil), 404, "")

	// The audit log has every change, and no key; every refused exchange is a security event with its reason.
	if err := ms.Audit.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	events, _ := adm.walk(t, "/api/v1/audit-events", 500)
	var actions []string
	reasons := map[string]bool{}
	for _, e := range events {
		if e["resource"] == "apikey/"+id {
			actions = append(actions, strOf(e, "action"))
		}
		if e["action"] == audit.ActionAPIKeyFailure {
			var d struct{ Reason string }
			b, _ := json.Marshal(e["details"])
			json.Unmarshal(b, &d)
			reasons[d.Reason] = true
		}
	}
	slices.Sort(actions)
	actions = slices.Compact(actions)
	if want := []string{"apikey.create", "apikey.delete", "apikey.rotate", "apikey.update"}; !slices.Equal(actions, want) {
		t.Errorf("audit actions on the key: %v, want %v", actions, want)
	}
	for _, reason := range []string{"not_found", "malformed", "disabled", "expired"} {
		if !reasons[reason] {
			t.Errorf("no %s event with reason %q (reasons: %v)", audit.ActionAPIKeyFailure, reason, reasons)
		}
	}
	all, _ := json.Marshal(events)
	for _, k := range []string{key, key2, key3, never} {
		if bytes.Contains(all, []byte(k)) || strings.Contains(ms.logs.String(), k) {
			t.Errorf("a key (hint %s) is in the audit log or the server's log", apikey.Hint(k))
		}
	}
}

// TestAPIKeyGrants: a key granted several APIs needs an audience (or resource, or scopes naming the API) to be
// exchanged; each API signs with its own algorithm and sets the key tokens' lifetime; scopes narrow; changes to
// an API are seen at once; API keys cannot hold management access.
func TestAPIKeyGrants(t *testing.T) {
	t.Parallel()
	ms := startKeys(t, nil)
	adm := ms.admin
	const aud, reports, edge = "https://api.example.com/v1", "urn:example:reports", "https://edge.example.com"
	created, key := adm.createKey(t, obj{"name": "several", "grants": []obj{
		{"audience": aud, "scopes": []string{"read", "write"}},
		{"audience": reports, "scopes": []string{"reports:read"}},
		{"api_id": adm.apiID(t, edge), "scopes": []string{"edge"}},
	}})
	id := strOf(created, "id")
	base := keyToken{keyID: id}

	r := ms.exchange(t, nil, key)
	if r.status != http.StatusBadRequest || r.json["error"] != issuer.CodeInvalidRequest || !strings.Contains(strOf(r.json, "error_description"), "audience") {
		t.Errorf("no audience for a key of several APIs: %d %s", r.status, r.body)
	}
	for _, tc := range []struct {
		what   string
		params []string
		want   keyToken
	}{
		{"audience, RS256", []string{"audience", aud}, keyToken{audience: aud, scope: "read write", lifetime: 900, alg: "RS256"}},
		{"audience, ES256", []string{"audience", reports}, keyToken{audience: reports, scope: "reports:read", lifetime: 900, alg: "ES256"}},
		{"resource, EdDSA; the API's 10-minute token lifetime caps the key's", []string{"resource", edge}, keyToken{audience: edge, scope: "edge", lifetime: 600, alg: "EdDSA"}},
		{"narrowed", []string{"audience", aud, "scope", "read"}, keyToken{audience: aud, scope: "read", lifetime: 900}},
		{"scopes naming the API", []string{"scope", aud + "/write"}, keyToken{audience: aud, scope: "write", lifetime: 900}},
	} {
		w := tc.want
		w.keyID = base.keyID
		ms.wantKeyToken(t, tc.what, key, w, tc.params...)
	}
	for _, tc := range []struct {
		what   string
		params []string
		code   string
	}{
		{"a scope not granted", []string{"audience", aud, "scope", "admin"}, issuer.CodeInvalidScope},
		{"an API not granted", []string{"audience", "urn:nope"}, issuer.CodeInvalidTarget},
		{"scopes of two APIs", []string{"scope", aud + "/read " + reports + "/reports:read"}, issuer.CodeInvalidScope},
	} {
		if r := ms.exchange(t, nil, key, tc.params...); r.status != http.StatusBadRequest || r.json["error"] != tc.code {
			t.Errorf("%s: %d %s, want %s", tc.what, r.status, r.body, tc.code)
		}
	}

	// An API's key token lifetime, and changes to the API, seen at once by every key that names it.
	api := adm.must(t, 201, "POST", "/api/v1/apis", obj{"identifier": "urn:example:short", "name": "Short",
		"scopes": []obj{{"name": "x"}, {"name": "y"}}, "key_token_lifetime": 120}).json
	shortKey, short := adm.createKey(t, obj{"name": "short", "grants": []obj{{"audience": "urn:example:short", "scopes": []string{"x", "y"}}}})
	sw := keyToken{keyID: strOf(shortKey, "id"), audience: "urn:example:short", scope: "x y", lifetime: 120}
	ms.wantKeyToken(t, "an API's own key token lifetime", short, sw)
	adm.must(t, 200, "PATCH", "/api/v1/apis/"+strOf(api, "id"), obj{"key_token_lifetime": 300, "scopes": []obj{{"name": "x"}}})
	sw.scope, sw.lifetime = "x", 300
	ms.wantKeyToken(t, "right after the API changed", short, sw)
	adm.must(t, 204, "DELETE", "/api/v1/apis/"+strOf(api, "id"), nil)
	if r := ms.exchange(t, nil, short); r.status == http.StatusOK {
		t.Errorf("a key whose only API was deleted still gets tokens: %s", r.body)
	}

	// Management access is for clients, never for API keys; nor can a key name an API twice.
	wantProblem(t, "a key for the management API", adm.call(t, "POST", "/api/v1/apikeys", obj{"name": "m",
		"grants": []obj{{"audience": auth.ManagementAudience, "scopes": []string{auth.ScopeReadAPIKeys}}}}), 400, "grants[0].audience")
	wantProblem(t, "a key for the management API, by id", adm.call(t, "POST", "/api/v1/apikeys", obj{"name": "m",
		"grants": []obj{{"api_id": adm.apiID(t, auth.ManagementAudience)}}}), 400, "grants[0].audience")
	wantProblem(t, "given management access later", adm.call(t, "PATCH", "/api/v1/apikeys/"+id,
		obj{"grants": []obj{{"audience": auth.ManagementAudience}}}), 400, "grants[0].audience")
	wantProblem(t, "an API twice", adm.call(t, "POST", "/api/v1/apikeys", obj{"name": "twice",
		"grants": []obj{{"audience": aud}, {"audience": aud}}}), 400, "grants[1]")
	wantProblem(t, "no name", adm.call(t, "POST", "/api/v1/apikeys", obj{"grants": []obj{}}), 400, "name")
	if r := ms.exchange(t, nil, key, "audience", auth.ManagementAudience); r.status != http.StatusBadRequest {
		t.Errorf("exchange for the management API: %d %s", r.status, r.body)
	}
}

// TestAPIKeyOrgScoped: an organization's administrator sees, changes and checks only its organization's keys
// (another's answer 404, or not_found, as if they did not exist), and grants keys only what the organization may
// grant.
func TestAPIKeyOrgScoped(t *testing.T) {
	t.Parallel()
	ms := startKeys(t, nil)
	adm := ms.admin
	const aud = "https://api.example.com/v1"
	a := strOf(adm.must(t, 201, "POST", "/api/v1/orgs", obj{"name": "Acme", "api_key_prefix": "acme",
		"allowed_grants": []obj{{"audience": aud, "scopes": []string{"read"}}}}).json, "id")
	b := strOf(adm.must(t, 201, "POST", "/api/v1/orgs", obj{"name": "Bravo"}).json, "id")
	bKey, bSecretKey := adm.createKey(t, obj{"name": "Bravo's", "org_id": b, "grants": []obj{{"audience": aud, "scopes": []string{"read"}}}})
	gKey, gSecretKey := adm.createKey(t, obj{"name": "global", "grants": []obj{{"audience": aud, "scopes": []string{"read"}}}})
	if !strings.HasPrefix(bSecretKey, apikey.DefaultPrefix+"_") {
		t.Errorf("a key of an organization without a prefix: %q", apikey.Hint(bSecretKey))
	}

	_, secret := adm.createClient(t, obj{"client_id": "acme-admin", "name": "Acme administrator", "org_id": a})
	adm.grant(t, "acme-admin", auth.ManagementAudience, auth.ScopeReadAPIKeys, auth.ScopeWriteAPIKeys, auth.ScopeVerifyAPIKeys)
	org := ms.as(t, "acme-admin", secret)

	// It creates keys in its organization only, with what the organization may grant.
	wantProblem(t, "in another organization", org.call(t, "POST", "/api/v1/apikeys", obj{"name": "x", "org_id": b}), 400, "org_id")
	wantProblem(t, "a scope Acme may not grant", org.call(t, "POST", "/api/v1/apikeys", obj{"name": "x",
		"grants": []obj{{"audience": aud, "scopes": []string{"read", "write"}}}}), 400, "grants[0].scopes[1]")
	r1 := org.call(t, "POST", "/api/v1/apikeys", obj{"name": "x", "grants": []obj{{"audience": "urn:example:reports"}}})
	r2 := org.call(t, "POST", "/api/v1/apikeys", obj{"name": "x", "grants": []obj{{"audience": "urn:nope"}}})
	wantProblem(t, "an API Acme may not grant", r1, 400, "grants[0].audience")
	wantProblem(t, "no such API", r2, 400, "grants[0].audience")
	if !equalJSON(r1.json["errors"], r2.json["errors"]) {
		t.Errorf("an API the organization may not grant answers %s, one that does not exist %s", r1.body, r2.body)
	}
	aKey, aSecretKey := org.createKey(t, obj{"name": "Acme's", "owner": "u1", "grants": []obj{{"audience": aud, "scopes": []string{"read"}}}})
	aID := strOf(aKey, "id")
	if aKey["org_id"] != a || !strings.HasPrefix(aSecretKey, "acme_") {
		t.Errorf("created by Acme's administrator: org_id %v, hint %v", aKey["org_id"], aKey["hint"])
	}
	ms.wantKeyToken(t, "Acme's key", aSecretKey, keyToken{keyID: aID, orgID: a, owner: "u1", audience: aud, scope: "read", lifetime: 900})

	// It sees only its organization's keys.
	keys, _ := org.walk(t, "/api/v1/apikeys", 1)
	if got := memberOf(keys, "id"); !slices.Equal(got, []string{aID}) {
		t.Errorf("Acme's administrator lists keys %v, want [%s]", got, aID)
	}
	for _, other := range []string{strOf(bKey, "id"), strOf(gKey, "id")} {
		for _, tc := range []struct{ method, path string }{
			{"GET", "/api/v1/apikeys/" + other},
			{"PATCH", "/api/v1/apikeys/" + other},
			{"DELETE", "/api/v1/apikeys/" + other},
			{"POST", "/api/v1/apikeys/" + other + "/rotate"},
		} {
			var body any
			if tc.method == "PATCH" {
				body = obj{"disabled": true}
			}
			wantProblem(t, tc.method+" another's key", org.call(t, tc.method, tc.path, body), 404, "")
		}
	}
	wantProblem(t, "list another organization's keys", org.call(t, "GET", "/api/v1/apikeys?org_id="+b, nil), 404, "")
	ms.wantKeyToken(t, "Bravo's key after the refused changes", bSecretKey, keyToken{keyID: strOf(bKey, "id"), orgID: b, audience: aud, scope: "read", lifetime: 900})

	// The gateway check: another organization's key is not_found, exactly as a key that never existed, whatever
	// state it is in.
	never, _ := apikey.New("acme")
	if r := org.verifyKey(t, aSecretKey); r.json["valid"] != true {
		t.Errorf("Acme's administrator checks Acme's key: %s", r.body)
	}
	org.wantCode(t, "a key that never existed", never, "not_found")
	org.wantCode(t, "Bravo's key", bSecretKey, "not_found")
	org.wantCode(t, "a key of no organization", gSecretKey, "not_found")
	adm.must(t, 200, "PATCH", "/api/v1/apikeys/"+strOf(bKey, "id"), obj{"disabled": true})
	org.wantCode(t, "Bravo's disabled key", bSecretKey, "not_found")
	adm.wantCode(t, "Bravo's disabled key, to the global administrator", bSecretKey, "disabled")

	// The global administrator filters by organization and owner.
	byOrg, _ := adm.walk(t, "/api/v1/apikeys?org_id="+a, 10)
	byOwner, _ := adm.walk(t, "/api/v1/apikeys?owner=u1", 10)
	if !slices.Equal(memberOf(byOrg, "id"), []string{aID}) || !slices.Equal(memberOf(byOwner, "id"), []string{aID}) {
		t.Errorf("?org_id=%s lists %v, ?owner=u1 %v; want [%s]", a, memberOf(byOrg, "id"), memberOf(byOwner, "id"), aID)
	}

	// Its own keys it may change, rotate and delete.
	org.must(t, 200, "PATCH", "/api/v1/apikeys/"+aID, obj{"name": "renamed"})
	_, rotated := org.rotateKey(t, aID, nil)
	ms.refusal(t, "Acme's rotated-out key", aSecretKey)
	org.must(t, 204, "DELETE", "/api/v1/apikeys/"+aID, nil)
	ms.refusal(t, "Acme's deleted key", rotated)
}

// TestAPIKeyInURL: a key in a query string is refused wherever it is sent, with a message saying where to send
// it, and is not logged; the key is not looked up, so it still works where it belongs.
func TestAPIKeyInURL(t *testing.T) {
	t.Parallel()
	ms := startKeys(t, nil)
	adm := ms.admin
	created, key := adm.createKey(t, obj{"name": "leaky", "grants": []obj{{"audience": "https://api.example.com/v1", "scopes": []string{"read"}}}})
	const message = "an API key must not be sent in a URL, where logs and proxies keep it: send it in the Authorization header or the request body"

	req, _ := http.NewRequest("POST", ms.tokenURL()+"?subject_token="+url.QueryEscape(key), strings.NewReader(exchangeForm(key)))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r := fetchResponse(t, req)
	if r.status != http.StatusBadRequest || r.json["error"] != "invalid_request" || r.json["error_description"] != message ||
		r.header.Get("Cache-Control") != "no-store" {
		t.Errorf("POST /oauth/token?subject_token=<key>: %d %s", r.status, r.body)
	}
	for _, tc := range []struct{ method, path string }{
		{"GET", "/api/v1/apikeys?key=" + key},
		{"POST", "/api/v1/apikeys/verify?key=" + key},
		{"GET", "/api/v1/apikeys/" + strOf(created, "id") + "?x=1&api_key=" + key},
		{"GET", "/.well-known/jwks.json?k=" + key},
	} {
		var body any
		if tc.method == "POST" {
			body = obj{"key": key}
		}
		r := adm.call(t, tc.method, tc.path, body)
		if r.status != http.StatusBadRequest || r.json["detail"] != message || r.header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s %s=<key>: %d %s", tc.method, tc.path[:strings.LastIndexByte(tc.path, '=')], r.status, r.body)
		}
		if strings.Contains(r.body, key) {
			t.Errorf("%s: the refusal repeats the key", tc.method)
		}
	}
	// A query that only looks like one (a bad checksum) is not refused.
	adm.must(t, 200, "GET", "/api/v1/apikeys?key="+flipLast(key), nil)

	if logs := ms.logs.String(); strings.Contains(logs, key) || strings.Contains(logs, key[len(key)-12:]) {
		t.Errorf("the server's log holds the key")
	}
	ms.wantKeyToken(t, "the key, sent in the body", key, keyToken{keyID: strOf(created, "id"), audience: "https://api.example.com/v1", scope: "read", lifetime: 900})
}

// TestAPIKeyThrottle: bad keys from one address are throttled after ten (429 with Retry-After; the key is then
// not even checked, so a good key from that address is refused too), while a good key from another address
// still works; failures and refusals are in the audit log, never a key.
func TestAPIKeyThrottle(t *testing.T) {
	t.Parallel()
	ms := startKeys(t, nil)
	_, good := ms.admin.createKey(t, obj{"name": "good", "grants": []obj{{"audience": "https://api.example.com/v1", "scopes": []string{"read"}}}})
	attacker, owner := from(t, "127.0.0.3"), from(t, "127.0.0.2")
	statuses := map[int]int{}
	var retryAfter string
	for i := range 40 {
		bad, _ := apikey.New(apikey.DefaultPrefix) // well formed, so each would cost a lookup
		if i%2 == 1 {
			bad = "gate_" + strconv.Itoa(i) // malformed
		}
		ms.remember(bad)
		r := ms.exchange(t, attacker, bad)
		statuses[r.status]++
		if r.status == http.StatusTooManyRequests {
			retryAfter = r.header.Get("Retry-After")
			if r.json["error"] != "too_many_requests" {
				t.Errorf("429 body %s", r.body)
			}
		}
	}
	// Ten failures a minute per address; one more every 6 s, should the loop be that slow.
	refused, throttled := statuses[http.StatusBadRequest], statuses[http.StatusTooManyRequests]
	if refused < 10 || refused > 12 || refused+throttled != 40 {
		t.Errorf("40 bad keys from one address: %v, want 10 refusals then 429s", statuses)
	}
	if n, err := strconv.Atoi(retryAfter); err != nil || n < 1 || n > 60 {
		t.Errorf("Retry-After %q, want 1–60 seconds", retryAfter)
	}
	if r := ms.exchange(t, attacker, good); r.status != http.StatusTooManyRequests {
		t.Errorf("a good key from the throttled address: %d %s, want 429", r.status, r.body)
	}
	if r := ms.exchange(t, owner, good); r.status != http.StatusOK {
		t.Errorf("a good key from another address: %d %s", r.status, r.body)
	}

	if err := ms.Audit.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	events, err := ms.Store.ListAuditEvents(context.Background(), auth.AuditFilter{})
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]int{}
	for _, e := range events {
		if e.Address == "127.0.0.3" {
			var d struct{ Count int }
			json.Unmarshal(e.Details, &d)
			counts[e.Action] += max(1, d.Count)
		}
	}
	if counts[audit.ActionAPIKeyFailure] != refused || counts[audit.ActionRateLimited] != throttled+1 {
		t.Errorf("audit events from the attacker: %v, want %d %s and %d %s", counts, refused, audit.ActionAPIKeyFailure,
			throttled+1, audit.ActionRateLimited)
	}
}

// TestAPIKeyGatewayToken: the gateway's management token is remembered after its first check, so that checking
// keys does not cost a signature verification each time; it still stops working at once when the gateway loses its
// grant, and when the signing key that signed it is withdrawn.
func TestAPIKeyGatewayToken(t *testing.T) {
	t.Parallel()
	ms := startKeys(t, nil)
	adm := ms.admin
	ctx := context.Background()
	_, key := adm.createKey(t, obj{"name": "k", "grants": []obj{{"audience": "https://api.example.com/v1", "scopes": []string{"read"}}}})
	_, gwSecret := adm.createClient(t, obj{"client_id": "gateway", "name": "API gateway"})
	g := adm.grant(t, "gateway", auth.ManagementAudience, auth.ScopeVerifyAPIKeys)
	gw := ms.as(t, "gateway", gwSecret)
	valid := func(what string) {
		t.Helper()
		if r := gw.verifyKey(t, key); r.json["valid"] != true {
			t.Errorf("%s: %s", what, r.body)
		}
	}
	refused := func(what string) {
		t.Helper()
		if r := gw.call(t, "POST", "/api/v1/apikeys/verify", obj{"key": key}); r.status != http.StatusUnauthorized {
			t.Errorf("%s: %d %s, want 401", what, r.status, r.body)
		}
	}
	for i := range 3 {
		valid("check " + strconv.Itoa(i+1))
	}

	adm.must(t, 204, "DELETE", "/api/v1/grants/"+strOf(g, "id"), nil)
	refused("the gateway's grant removed")
	adm.grant(t, "gateway", auth.ManagementAudience, auth.ScopeVerifyAPIKeys)
	valid("granted again")

	// Withdraw the signing key of the gateway's token, as an operator would a compromised one.
	var header struct{ Kid string }
	hb, _ := base64.RawURLEncoding.DecodeString(strings.Split(gw.token, ".")[0])
	if err := json.Unmarshal(hb, &header); err != nil || header.Kid == "" {
		t.Fatalf("the token's header %s: %v", hb, err)
	}
	if err := ms.Store.DeleteSigningKey(ctx, header.Kid); err != nil {
		t.Fatal(err)
	}
	if err := ms.Keys.Load(ctx); err != nil {
		t.Fatal(err)
	}
	refused("its signing key withdrawn")
}

// TestAPIKeyBench runs `gatehouse bench` in its API key modes, briefly: the key is made, exchanged and checked
// without a single error, and the report has a table for each.
func TestAPIKeyBench(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two processes and loads them")
	}
	t.Setenv(helperEnv, "1") // the bench's children are this test binary: see init in bench_test.go
	var stdout, stderr bytes.Buffer
	args := []string{"bench", "--modes", "exchange,verify", "--algs", "EdDSA", "--concurrency", "1,4", "--duration", "300ms", "--warmup", "100ms"}
	if code := run(t.Context(), args, &stdout, &stderr); code != 0 {
		t.Fatalf("gatehouse bench exited %d\nstdout:\n%s\nstderr:\n%s", code, &stdout, &stderr)
	}
	report := stdout.String()
	for _, want := range []string{
		"API key exchange EdDSA  signing ceiling",
		"API key verify  no token is signed",
		"CHECKS/S",
		"VERIFY/TRIVIAL",
		"API key verify checks/s ≥ 40% of the trivial handler",
	} {
		if !strings.Contains(report, want) {
			t.Errorf("the report has no %q:\n%s", want, report)
		}
	}
	if !regexp.MustCompile(`(?m)^\s+PASS\s+every request succeeded\s+0 errors$`).MatchString(report) {
		t.Errorf("the bench had errors:\n%s", report)
	}
	for _, bad := range []string{"nope", "verify,verify", ""} {
		var out, errOut bytes.Buffer
		if code := run(t.Context(), []string{"bench", "--modes", bad}, &out, &errOut); code != 2 {
			t.Errorf("gatehouse bench --modes %q exited %d, want 2", bad, code)
		}
	}
}

// benchKeyServer opens the real wiring without listening for the in-process benchmarks, and returns its handler,
// an API key granted the three fixture APIs, and a management token that may check keys.
func benchKeyServer(b *testing.B) (http.Handler, string, string) {
	dir := b.TempDir()
	m := &Main{
		Addr: "127.0.0.1:0", DB: "sqlite:" + filepath.Join(dir, "gh.db"), RootKey: rootkey.Generate(),
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)), // the log line is formatted, then discarded
		LookupEnv: func(k string) (string, bool) { v, ok := fixtureEnv[k]; return v, ok },
	}
	m.ConfigFile = filepath.Join(dir, "gatehouse.yaml")
	if err := writeFile(m.ConfigFile, manageFixture); err != nil {
		b.Fatal(err)
	}
	if err := m.Open(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close() })
	h := m.http.Handler
	serve := func(req *http.Request, want int) map[string]any {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != want {
			b.Fatalf("%s %s: %d %s", req.Method, req.URL, w.Code, w.Body)
		}
		var v map[string]any
		json.Unmarshal(w.Body.Bytes(), &v)
		return v
	}
	req := httptest.NewRequest("POST", "/oauth/token", strings.NewReader("grant_type=client_credentials&audience="+auth.ManagementAudience))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("gh-admin", secretAdmin)
	mgmt := serve(req, 200)["access_token"].(string)
	body, _ := json.Marshal(obj{"name": "bench", "grants": []obj{
		{"audience": "https://api.example.com/v1", "scopes": []string{"read"}},
		{"audience": "urn:example:reports", "scopes": []string{"reports:read"}},
		{"audience": "https://edge.example.com", "scopes": []string{"edge"}},
	}})
	req = httptest.NewRequest("POST", "/api/v1/apikeys", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+mgmt)
	return h, serve(req, 201)["key"].(string), mgmt
}

// BenchmarkAPIKeyExchange is a whole RFC 8693 exchange of an API key through the real handler (form parsing, the
// key check from the cache, the grant, signing, the JSON answer and the access log line), without the network,
// per signing algorithm.
func BenchmarkAPIKeyExchange(b *testing.B) {
	h, key, _ := benchKeyServer(b)
	for _, tc := range []struct{ alg, aud string }{
		{"RS256", "https://api.example.com/v1"},
		{"ES256", "urn:example:reports"},
		{"EdDSA", "https://edge.example.com"},
	} {
		body := exchangeForm(key, "audience", tc.aud)
		b.Run(tc.alg, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req := httptest.NewRequest("POST", "/oauth/token", strings.NewReader(body))
					req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
					w := httptest.NewRecorder()
					h.ServeHTTP(w, req)
					if w.Code != http.StatusOK {
						b.Fatalf("status %d: %s", w.Code, w.Body)
					}
				}
			})
		})
	}
}

// BenchmarkAPIKeyVerify is a whole gateway check, POST /api/v1/apikeys/verify, through the real handler: the
// management token (an ES256 signature), the caller's grant from the cache, the JSON body, the key check from the
// cache, the answer and the access log line.
func BenchmarkAPIKeyVerify(b *testing.B) {
	h, key, mgmt := benchKeyServer(b)
	body, _ := json.Marshal(obj{"key": key, "audience": "https://api.example.com/v1", "scopes": []string{"read"}})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest("POST", "/api/v1/apikeys/verify", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+mgmt)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != http.StatusOK || !bytes.HasPrefix(w.Body.Bytes(), []byte(`{"valid":true`)) {
				b.Fatalf("status %d: %s", w.Code, w.Body)
			}
		}
	})
}
