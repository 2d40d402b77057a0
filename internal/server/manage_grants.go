package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/gatehouse/gatehouse/internal/auth"
)

// grantView is a grant as the management API shows it.
type grantView struct {
	ID        string    `json:"id"`
	ClientID  string    `json:"client_id"`
	APIID     string    `json:"api_id"`
	Audience  string    `json:"audience"`
	Scopes    []string  `json:"scopes"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

func viewGrant(g *auth.Grant, audience string) grantView {
	scopes := g.Scopes
	if scopes == nil {
		scopes = []string{}
	}
	return grantView{ID: g.ID, ClientID: g.ClientID, APIID: g.APIID, Audience: audience, Scopes: scopes,
		CreatedAt: g.CreatedAt, UpdatedAt: g.UpdatedAt}
}

// grantInput is the body of POST /api/v1/grants (client_id, audience or api_id, scopes) and PATCH (scopes).
type grantInput struct {
	ClientID *string   `json:"client_id"`
	Audience *string   `json:"audience"`
	APIID    *string   `json:"api_id"`
	Scopes   *[]string `json:"scopes"`
}

// grantAPI finds the API a grant input names, by audience or id.
func (s *Server) grantAPI(ctx context.Context, in *grantInput) (*auth.API, error) {
	var (
		a   *auth.API
		err error
	)
	switch {
	case in.Audience != nil && in.APIID != nil:
		return nil, fieldErr("audience", "give audience or api_id, not both")
	case in.Audience != nil:
		a, err = s.Store.FindAPIByIdentifier(ctx, *in.Audience)
		if errors.Is(err, auth.ErrNotFound) {
			return nil, fieldErr("audience", "no such API")
		}
	case in.APIID != nil:
		a, err = s.Store.FindAPI(ctx, *in.APIID)
		if errors.Is(err, auth.ErrNotFound) {
			return nil, fieldErr("api_id", "no such API")
		}
	default:
		return nil, fieldErr("audience", "is required (or api_id)")
	}
	return a, err
}

// apiField is the member a grant input names its API by, for errors about the API.
func (in *grantInput) apiField() string {
	if in.APIID != nil && in.Audience == nil {
		return "api_id"
	}
	return "audience"
}

// orgAllows checks that an organization's administrator may grant scopes of api: the organization's AllowedGrants
// must list the API with every scope. An API it does not list is "no such API" on apiField, exactly as for an
// unknown one. Call it with the scopes as the caller sent them, before checking them against the API, so that
// neither the answer nor the index in its field tells anything about an API the organization may not grant.
func (s *Server) orgAllows(ctx context.Context, c *caller, a *auth.API, scopes []string, apiField, field string) error {
	if c.global() {
		return nil
	}
	org, err := s.Store.FindOrg(ctx, c.orgID)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(org.AllowedGrants, func(g auth.OrgGrant) bool { return g.APIID == a.ID })
	if i < 0 {
		return fieldErr(apiField, "no such API")
	}
	for j, sc := range scopes {
		if !slices.Contains(org.AllowedGrants[i].Scopes, sc) {
			return fieldErr(fmt.Sprintf("%s[%d]", field, j), "%q is not a scope this organization may grant", sc)
		}
	}
	return nil
}

// holdsManagement checks that an organization's administrator hands out no management scope it does not hold
// itself: allowed_grants bounds what the organization may have, but an administrator with write:grants alone must
// not mint a client (or widen a grant, its own included) with read:audit or write:apikeys. Scopes in kept (the
// grant's scopes before a change) are not new, and may stay.
func holdsManagement(c *caller, a *auth.API, scopes, kept []string, field string) error {
	if c.global() || a.Identifier != auth.ManagementAudience {
		return nil
	}
	for j, sc := range scopes {
		if !c.has(sc) && !slices.Contains(kept, sc) {
			return fieldErr(fmt.Sprintf("%s[%d]", field, j), "%q is a management scope this administrator does not hold itself", sc)
		}
	}
	return nil
}

func (s *Server) listGrants(w http.ResponseWriter, r *http.Request, c *caller) error {
	p, err := page(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	f := auth.GrantFilter{ClientID: q.Get("client_id"), APIID: q.Get("api_id"), OrgID: q.Get("org_id"), Page: p}
	if aud := q.Get("audience"); aud != "" {
		a, err := s.Store.FindAPIByIdentifier(r.Context(), aud)
		if errors.Is(err, auth.ErrNotFound) {
			writeJSON(w, http.StatusOK, list[grantView]{Items: []grantView{}})
			return nil
		}
		if err != nil {
			return err
		}
		f.APIID = a.ID
	}
	if !c.global() {
		if f.OrgID != "" && f.OrgID != c.orgID {
			return errNotFound
		}
		f.OrgID = c.orgID
	}
	limit := p.Limit
	f.Limit++
	grants, err := s.Store.ListGrantsPage(r.Context(), f)
	if err != nil {
		return err
	}
	auds, err := s.audiences(r.Context())
	if err != nil {
		return err
	}
	writePage(w, grants, limit, func(g *auth.Grant) string { return g.ID },
		func(g *auth.Grant) grantView { return viewGrant(g, auds[g.APIID]) })
	return nil
}

// audiences maps every API's id to its identifier.
func (s *Server) audiences(ctx context.Context) (map[string]string, error) {
	apis, err := s.Store.ListAPIs(ctx)
	if err != nil {
		return nil, err
	}
	m := make(map[string]string, len(apis))
	for _, a := range apis {
		m[a.ID] = a.Identifier
	}
	return m, nil
}

// findGrant returns the grant the path names, its client and its API, if the caller may see the client.
func (s *Server) findGrant(r *http.Request, c *caller) (*auth.Grant, *auth.Client, *auth.API, error) {
	g, err := s.Store.FindGrant(r.Context(), r.PathValue("id"))
	if err != nil {
		return nil, nil, nil, err
	}
	cl, err := s.Store.FindClient(r.Context(), g.ClientID)
	if err != nil {
		return nil, nil, nil, err
	}
	if !c.sees(cl.OrgID) {
		return nil, nil, nil, errNotFound
	}
	a, err := s.Store.FindAPI(r.Context(), g.APIID)
	if err != nil {
		return nil, nil, nil, err
	}
	return g, cl, a, nil
}

func (s *Server) showGrant(w http.ResponseWriter, r *http.Request, c *caller) error {
	g, _, a, err := s.findGrant(r, c)
	if err != nil {
		return err
	}
	writeResource(w, http.StatusOK, g.Version, viewGrant(g, a.Identifier))
	return nil
}

func (s *Server) createGrant(w http.ResponseWriter, r *http.Request, c *caller) error {
	var in grantInput
	if err := decode(w, r, &in); err != nil {
		return err
	}
	if in.ClientID == nil {
		return fieldErr("client_id", "is required")
	}
	cl, err := s.Store.FindClient(r.Context(), *in.ClientID)
	if errors.Is(err, auth.ErrNotFound) || err == nil && !c.sees(cl.OrgID) {
		return fieldErr("client_id", "no such client")
	}
	if err != nil {
		return err
	}
	a, err := s.grantAPI(r.Context(), &in)
	if err != nil {
		return err
	}
	var scopes []string
	if in.Scopes != nil {
		scopes = *in.Scopes
	}
	if err := s.orgAllows(r.Context(), c, a, scopes, in.apiField(), "scopes"); err != nil {
		return err
	}
	if err := holdsManagement(c, a, scopes, nil, "scopes"); err != nil {
		return err
	}
	if in.Scopes != nil {
		if scopes, err = a.CheckScopes("scopes", scopes); err != nil {
			return err
		}
	}
	now := changeTime()
	g := &auth.Grant{ID: auth.NewID("grt"), ClientID: cl.ID, APIID: a.ID, Scopes: scopes, Version: 1, CreatedAt: now, UpdatedAt: now}
	switch err := s.Store.CreateGrant(r.Context(), g); {
	case errors.Is(err, auth.ErrConflict):
		return conflict("the client already has a grant for %s: change its scopes with PATCH", a.Identifier)
	case err != nil:
		return err
	}
	s.invalidateClient(cl.ID)
	s.audit(r, c, "grant.create", "grant/"+g.ID, cl.OrgID, map[string]any{"client_id": cl.ID, "audience": a.Identifier, "scopes": g.Scopes})
	w.Header().Set("Location", "/api/v1/grants/"+g.ID)
	writeResource(w, http.StatusCreated, g.Version, viewGrant(g, a.Identifier))
	return nil
}

func (s *Server) updateGrant(w http.ResponseWriter, r *http.Request, c *caller) error {
	g, cl, a, err := s.findGrant(r, c)
	if err != nil {
		return err
	}
	var in grantInput
	if err := patchInput(w, r, g.Version, &in); err != nil {
		return err
	}
	switch {
	case in.ClientID != nil && *in.ClientID != g.ClientID:
		return fieldErr("client_id", "cannot be changed: create another grant")
	case in.APIID != nil && *in.APIID != g.APIID:
		return fieldErr("api_id", "cannot be changed: create another grant")
	case in.Audience != nil && *in.Audience != a.Identifier:
		return fieldErr("audience", "cannot be changed: create another grant")
	case in.Scopes == nil:
		writeResource(w, http.StatusOK, g.Version, viewGrant(g, a.Identifier))
		return nil
	}
	if err := s.orgAllows(r.Context(), c, a, *in.Scopes, "audience", "scopes"); err != nil {
		return err
	}
	if err := holdsManagement(c, a, *in.Scopes, g.Scopes, "scopes"); err != nil {
		return err
	}
	scopes, err := a.CheckScopes("scopes", *in.Scopes)
	if err != nil {
		return err
	}
	g.Scopes, g.UpdatedAt = scopes, changeTime()
	switch err := s.Store.UpdateGrant(r.Context(), g); {
	case errors.Is(err, auth.ErrStale):
		return staleError(r)
	case err != nil:
		return err
	}
	s.invalidateClient(g.ClientID)
	s.audit(r, c, "grant.update", "grant/"+g.ID, cl.OrgID, map[string]any{"scopes": g.Scopes})
	writeResource(w, http.StatusOK, g.Version, viewGrant(g, a.Identifier))
	return nil
}

func (s *Server) deleteGrant(w http.ResponseWriter, r *http.Request, c *caller) error {
	g, cl, a, err := s.findGrant(r, c)
	if err != nil {
		return err
	}
	if err := checkIfMatch(r, g.Version); err != nil {
		return err
	}
	switch err := s.Store.DeleteGrant(r.Context(), g.ID, deleteVersion(r, g.Version)); {
	case errors.Is(err, auth.ErrStale):
		return staleError(r)
	case err != nil:
		return err
	}
	s.invalidateClient(g.ClientID)
	s.audit(r, c, "grant.delete", "grant/"+g.ID, cl.OrgID, map[string]any{"client_id": g.ClientID, "audience": a.Identifier})
	w.WriteHeader(http.StatusNoContent)
	return nil
}
