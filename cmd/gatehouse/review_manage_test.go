package main

import (
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/gatehouse/gatehouse/internal/auth"
)

// reviewManageOrgs sets up two organizations: Acme (with an administrator holding the given management scopes and an
// allowance for them plus extra) and Bravo (one client with a grant).
type reviewManageOrgs struct {
	ms                 *manageServer
	acme, bravo        string
	admin              manager
	adminSecret        string
	bravoSvc, bravoSec string
	bravoGrant         string
}

func reviewManageSetupOrgs(t *testing.T, adminScopes, allowedMgmt []string) *reviewManageOrgs {
	t.Helper()
	ms := startManage(t)
	adm := ms.admin
	const aud = "https://api.example.com/v1"
	ro := &reviewManageOrgs{ms: ms}
	ro.acme = strOf(adm.must(t, 201, "POST", "/api/v1/orgs", obj{"name": "Acme", "allowed_grants": []obj{
		{"audience": aud, "scopes": []string{"read"}},
		{"audience": auth.ManagementAudience, "scopes": allowedMgmt}}}).json, "id")
	ro.bravo = strOf(adm.must(t, 201, "POST", "/api/v1/orgs", obj{"name": "Bravo"}).json, "id")
	_, ro.bravoSec = adm.createClient(t, obj{"client_id": "bravo-svc", "name": "Bravo service", "org_id": ro.bravo})
	ro.bravoSvc = "bravo-svc"
	ro.bravoGrant = strOf(adm.grant(t, "bravo-svc", aud, "read"), "id")
	_, ro.adminSecret = adm.createClient(t, obj{"client_id": "acme-admin", "name": "Acme administrator", "org_id": ro.acme})
	adm.grant(t, "acme-admin", auth.ManagementAudience, adminScopes...)
	ro.admin = ms.as(t, "acme-admin", ro.adminSecret)
	return ro
}

func reviewManagePostForm(t *testing.T, u string, vals url.Values, header ...string) response {
	t.Helper()
	req, _ := http.NewRequest("POST", u, strings.NewReader(vals.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return fetchResponse(t, req)
}

// An organization's administrator may hand out only the management scopes it holds itself: with write:clients and
// write:grants alone it must not mint a client (or widen its own grant) with read:audit or write:apikeys, even
// when the organization's allowed_grants list them.
func TestReviewManageOrgAdminCannotGrantManagementScopesItLacks(t *testing.T) {
	t.Parallel()
	held := []string{auth.ScopeReadClients, auth.ScopeWriteClients, auth.ScopeReadGrants, auth.ScopeWriteGrants}
	allowed := append(slices.Clone(held), auth.ScopeReadAudit, auth.ScopeWriteAPIKeys, auth.ScopeReadAPIKeys)
	ro := reviewManageSetupOrgs(t, held, allowed)
	org, ms := ro.admin, ro.ms

	c, secret := org.createClient(t, obj{"name": "Acme helper"})
	id := strOf(c, "client_id")
	wantProblem(t, "grant a management scope it lacks", org.call(t, "POST", "/api/v1/grants",
		obj{"client_id": id, "audience": auth.ManagementAudience, "scopes": []string{auth.ScopeReadClients, auth.ScopeReadAudit}}), 400, "scopes[1]")
	ms.wantNoToken(t, "the helper after the refused grant", id, secret, auth.ManagementAudience, "invalid_target")

	// What it holds it may hand out; then it may not widen that grant beyond what it holds.
	g := org.must(t, 201, "POST", "/api/v1/grants", obj{"client_id": id, "audience": auth.ManagementAudience,
		"scopes": []string{auth.ScopeReadClients}}).json
	wantProblem(t, "widen a grant with a management scope it lacks", org.call(t, "PATCH", "/api/v1/grants/"+strOf(g, "id"),
		obj{"scopes": []string{auth.ScopeReadClients, auth.ScopeWriteAPIKeys}}), 400, "scopes[1]")
	ms.wantToken(t, "the helper keeps what it was given", id, secret, auth.ManagementAudience, auth.ScopeReadClients)

	// Nor its own grant.
	own := listItems(t, org.must(t, 200, "GET", "/api/v1/grants?client_id=acme-admin", nil))
	if len(own) != 1 {
		t.Fatalf("acme-admin's grants: %v", own)
	}
	wantProblem(t, "widen its own grant", org.call(t, "PATCH", "/api/v1/grants/"+strOf(own[0], "id"),
		obj{"scopes": append(slices.Clone(held), auth.ScopeReadAudit)}), 400, "scopes[4]")
	if r := org.call(t, "GET", "/api/v1/audit-events", nil); r.status != 403 {
		t.Errorf("acme-admin reads the audit log after the refused changes: %d", r.status)
	}

	// A global administrator may hand out any allowed scope; the organization's administrator may then narrow it.
	g2 := ms.admin.must(t, 201, "POST", "/api/v1/grants", obj{"client_id": strOf(org.must(t, 201, "POST", "/api/v1/clients",
		obj{"name": "Acme auditor"}).json, "client_id"), "audience": auth.ManagementAudience,
		"scopes": []string{auth.ScopeReadAudit, auth.ScopeReadClients}}).json
	org.must(t, 200, "PATCH", "/api/v1/grants/"+strOf(g2, "id"), obj{"scopes": []string{auth.ScopeReadAudit}})
}

// A management token speaks for its client as it is now: a token issued to a global client must not keep global
// reach once that client_id belongs to an organization (deleted, then created again in one — the way to "move" a
// client, since a client cannot change organization).
func TestReviewManageTokenOfRecreatedClientKeepsNoGlobalReach(t *testing.T) {
	t.Parallel()
	ms := startManage(t)
	adm := ms.admin
	acme := strOf(adm.must(t, 201, "POST", "/api/v1/orgs", obj{"name": "Acme"}).json, "id")
	_, secret := adm.createClient(t, obj{"client_id": "ops", "name": "Ops"})
	adm.grant(t, "ops", auth.ManagementAudience, auth.ScopeReadClients)
	old := ms.as(t, "ops", secret)
	if n := len(listItems(t, old.must(t, 200, "GET", "/api/v1/clients?limit=500", nil))); n < 4 {
		t.Fatalf("the global client lists %d clients", n)
	}

	adm.must(t, 204, "DELETE", "/api/v1/clients/ops", nil)
	_, secret2 := adm.createClient(t, obj{"client_id": "ops", "name": "Ops of Acme", "org_id": acme})
	adm.grant(t, "ops", auth.ManagementAudience, auth.ScopeReadClients)
	wantProblem(t, "the old client's token", old.call(t, "GET", "/api/v1/clients/svc-one", nil), 401, "")
	if r := old.call(t, "GET", "/api/v1/clients?limit=500", nil); r.status == 200 && len(listItems(t, r)) != 1 {
		t.Errorf("the old global token lists %d clients, though its client is now Acme's", len(listItems(t, r)))
	}
	// The new client's own token works, within Acme.
	cur := ms.as(t, "ops", secret2)
	if got := memberOf(listItems(t, cur.must(t, 200, "GET", "/api/v1/clients", nil)), "client_id"); !slices.Equal(got, []string{"ops"}) {
		t.Errorf("Acme's ops lists %v", got)
	}
	wantProblem(t, "Acme's ops reads a global client", cur.call(t, "GET", "/api/v1/clients/svc-one", nil), 404, "")
}

// An organization's administrator with every management scope learns nothing of another organization through
// the list filters, and cannot introspect or revoke another organization's tokens.
func TestReviewManageOrgAdminReachesNoOtherOrganization(t *testing.T) {
	t.Parallel()
	all := auth.ManagementScopes
	ro := reviewManageSetupOrgs(t, all, all)
	org, ms := ro.admin, ro.ms
	for _, path := range []string{"/api/v1/grants?client_id=bravo-svc", "/api/v1/grants?audience=https://api.example.com/v1&client_id=bravo-svc",
		"/api/v1/audit-events?resource=client/bravo-svc"} {
		if items := listItems(t, org.must(t, 200, "GET", path, nil)); len(items) != 0 {
			t.Errorf("GET %s by Acme's administrator: %v", path, items)
		}
	}
	same := func(what string, r1, r2 response) {
		t.Helper()
		delete(r1.json, "request_id")
		delete(r2.json, "request_id")
		if r1.status != r2.status || !equalJSON(r1.json, r2.json) {
			t.Errorf("%s: another organization's client answers %d %s, a nonexistent one %d %s", what, r1.status, r1.body, r2.status, r2.body)
		}
	}
	same("grant", org.call(t, "POST", "/api/v1/grants", obj{"client_id": "bravo-svc", "audience": "https://api.example.com/v1", "scopes": []string{"read"}}),
		org.call(t, "POST", "/api/v1/grants", obj{"client_id": "nope-svc", "audience": "https://api.example.com/v1", "scopes": []string{"read"}}))
	same("grant by id", org.call(t, "GET", "/api/v1/grants/"+ro.bravoGrant, nil), org.call(t, "GET", "/api/v1/grants/grt_nope", nil))

	tok := strOf(ms.requestToken(t, "bravo-svc", ro.bravoSec, "audience", "https://api.example.com/v1").json, "access_token")
	bearer := []string{"Authorization", "Bearer " + org.token}
	if r := reviewManagePostForm(t, ms.URL+"/oauth/introspect", url.Values{"token": {tok}}, bearer...); r.status != 403 {
		t.Errorf("introspection by Acme's administrator: %d %s", r.status, r.body)
	}
	for _, v := range []url.Values{{"subject": {"bravo-svc"}}, {"disable_client": {"bravo-svc"}}} {
		if r := reviewManagePostForm(t, ms.URL+"/oauth/revoke", v, bearer...); r.status != 403 {
			t.Errorf("revoke %v by Acme's administrator: %d %s", v, r.status, r.body)
		}
	}
	reviewManagePostForm(t, ms.URL+"/oauth/revoke", url.Values{"token": {tok}}, bearer...)
	r := reviewManagePostForm(t, ms.URL+"/oauth/introspect", url.Values{"token": {tok}}, "Authorization", "Bearer "+ms.admin.token)
	if r.status != 200 || r.json["active"] != true {
		t.Errorf("Bravo's token after Acme's administrator tried to revoke it: %d %s", r.status, r.body)
	}
	ms.wantToken(t, "Bravo's client", "bravo-svc", ro.bravoSec, "https://api.example.com/v1", "read")
}
