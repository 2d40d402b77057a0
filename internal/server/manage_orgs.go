package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gatehouse/gatehouse/internal/auth"
)

// orgView is an organization as the management API shows it.
type orgView struct {
	ID            string         `json:"id"`
	Name          string         `json:"name"`
	Description   string         `json:"description"`
	APIKeyPrefix  string         `json:"api_key_prefix,omitempty"`
	AllowedGrants []orgGrantView `json:"allowed_grants"`
	CreatedAt     time.Time      `json:"created_at"`
	UpdatedAt     time.Time      `json:"updated_at"`
}

// orgGrantView is an API, by id and audience, with the scopes an organization may grant of it.
type orgGrantView struct {
	APIID    string   `json:"api_id"`
	Audience string   `json:"audience"`
	Scopes   []string `json:"scopes"`
}

func viewOrg(o *auth.Org, auds map[string]string) orgView {
	v := orgView{ID: o.ID, Name: o.Name, Description: o.Description, APIKeyPrefix: o.APIKeyPrefix,
		AllowedGrants: make([]orgGrantView, 0, len(o.AllowedGrants)), CreatedAt: o.CreatedAt, UpdatedAt: o.UpdatedAt}
	for _, g := range o.AllowedGrants {
		aud, ok := auds[g.APIID]
		if !ok {
			continue // the API was deleted
		}
		scopes := g.Scopes
		if scopes == nil {
			scopes = []string{}
		}
		v.AllowedGrants = append(v.AllowedGrants, orgGrantView{APIID: g.APIID, Audience: aud, Scopes: scopes})
	}
	return v
}

// orgGrantInput names an API by audience or api_id.
type orgGrantInput struct {
	APIID    string   `json:"api_id"`
	Audience string   `json:"audience"`
	Scopes   []string `json:"scopes"`
}

// orgInput is the body of POST and PATCH /api/v1/orgs; PATCH changes the members present.
type orgInput struct {
	Name          *string          `json:"name"`
	Description   *string          `json:"description"`
	APIKeyPrefix  *string          `json:"api_key_prefix"`
	AllowedGrants *[]orgGrantInput `json:"allowed_grants"`
}

// apply sets the members present in in on o, resolving the APIs of allowed_grants.
func (s *Server) applyOrg(ctx context.Context, in *orgInput, o *auth.Org) (map[string]any, error) {
	changed := map[string]any{}
	if in.Name != nil {
		o.Name, changed["name"] = *in.Name, *in.Name
	}
	if in.Description != nil {
		o.Description, changed["description"] = *in.Description, *in.Description
	}
	if in.APIKeyPrefix != nil {
		o.APIKeyPrefix, changed["api_key_prefix"] = *in.APIKeyPrefix, *in.APIKeyPrefix
	}
	if in.AllowedGrants != nil {
		o.AllowedGrants = make([]auth.OrgGrant, len(*in.AllowedGrants))
		summary := make([]string, len(*in.AllowedGrants))
		for i, g := range *in.AllowedGrants {
			field := fmt.Sprintf("allowed_grants[%d]", i)
			var (
				a   *auth.API
				err error
			)
			switch {
			case g.APIID != "" && g.Audience != "":
				return nil, fieldErr(field+".audience", "give audience or api_id, not both")
			case g.APIID != "":
				a, err = s.Store.FindAPI(ctx, g.APIID)
			case g.Audience != "":
				a, err = s.Store.FindAPIByIdentifier(ctx, g.Audience)
			default:
				return nil, fieldErr(field+".audience", "is required (or api_id)")
			}
			if errors.Is(err, auth.ErrNotFound) {
				return nil, fieldErr(field+".audience", "no such API")
			}
			if err != nil {
				return nil, err
			}
			scopes, err := a.CheckScopes(field+".scopes", g.Scopes)
			if err != nil {
				return nil, err
			}
			o.AllowedGrants[i] = auth.OrgGrant{APIID: a.ID, Scopes: scopes}
			summary[i] = a.Identifier
		}
		changed["allowed_grants"] = summary
	}
	return changed, nil
}

func (s *Server) listOrgs(w http.ResponseWriter, r *http.Request, c *caller) error {
	p, err := page(r)
	if err != nil {
		return err
	}
	auds, err := s.audiences(r.Context())
	if err != nil {
		return err
	}
	view := func(o *auth.Org) orgView { return viewOrg(o, auds) }
	if !c.global() { // its own organization only
		o, err := s.Store.FindOrg(r.Context(), c.orgID)
		if err != nil {
			return err
		}
		orgs := []*auth.Org{}
		if p.After < o.ID {
			orgs = append(orgs, o)
		}
		writePage(w, orgs, p.Limit, func(o *auth.Org) string { return o.ID }, view)
		return nil
	}
	limit := p.Limit
	p.Limit++
	orgs, err := s.Store.ListOrgs(r.Context(), p)
	if err != nil {
		return err
	}
	writePage(w, orgs, limit, func(o *auth.Org) string { return o.ID }, view)
	return nil
}

func (s *Server) findOrg(r *http.Request, c *caller) (*auth.Org, error) {
	id := r.PathValue("id")
	if !c.sees(id) {
		return nil, errNotFound
	}
	return s.Store.FindOrg(r.Context(), id)
}

func (s *Server) showOrg(w http.ResponseWriter, r *http.Request, c *caller) error {
	o, err := s.findOrg(r, c)
	if err != nil {
		return err
	}
	auds, err := s.audiences(r.Context())
	if err != nil {
		return err
	}
	writeResource(w, http.StatusOK, o.Version, viewOrg(o, auds))
	return nil
}

func (s *Server) createOrg(w http.ResponseWriter, r *http.Request, c *caller) error {
	if !c.global() {
		return errNotFound
	}
	var in orgInput
	if err := decode(w, r, &in); err != nil {
		return err
	}
	now := changeTime()
	o := &auth.Org{ID: auth.NewID("org"), Version: 1, CreatedAt: now, UpdatedAt: now}
	changed, err := s.applyOrg(r.Context(), &in, o)
	if err != nil {
		return err
	}
	if err := o.Normalize(); err != nil {
		return err
	}
	auds, err := s.audiences(r.Context()) // before the write: once it is made, answer it without another read
	if err != nil {
		return err
	}
	if err := s.Store.CreateOrg(r.Context(), o); err != nil {
		if errors.Is(err, auth.ErrConflict) {
			return conflict("an organization named %q exists", o.Name)
		}
		return err
	}
	s.audit(r, c, "org.create", "org/"+o.ID, o.ID, changed)
	w.Header().Set("Location", "/api/v1/orgs/"+o.ID)
	writeResource(w, http.StatusCreated, o.Version, viewOrg(o, auds))
	return nil
}

func (s *Server) updateOrg(w http.ResponseWriter, r *http.Request, c *caller) error {
	if !c.global() {
		return errNotFound // an organization does not set its own allowances
	}
	o, err := s.findOrg(r, c)
	if err != nil {
		return err
	}
	var in orgInput
	if err := patchInput(w, r, o.Version, &in); err != nil {
		return err
	}
	changed, err := s.applyOrg(r.Context(), &in, o)
	if err != nil {
		return err
	}
	if err := o.Normalize(); err != nil {
		return err
	}
	auds, err := s.audiences(r.Context()) // before the write: once it is made, answer it without another read
	if err != nil {
		return err
	}
	o.UpdatedAt = changeTime()
	switch err := s.Store.UpdateOrg(r.Context(), o); {
	case errors.Is(err, auth.ErrStale):
		return staleError(r)
	case errors.Is(err, auth.ErrConflict):
		return conflict("an organization named %q exists", o.Name)
	case err != nil:
		return err
	}
	s.audit(r, c, "org.update", "org/"+o.ID, o.ID, changed)
	writeResource(w, http.StatusOK, o.Version, viewOrg(o, auds))
	return nil
}

func (s *Server) deleteOrg(w http.ResponseWriter, r *http.Request, c *caller) error {
	if !c.global() {
		return errNotFound
	}
	o, err := s.findOrg(r, c)
	if err != nil {
		return err
	}
	if err := checkIfMatch(r, o.Version); err != nil {
		return err
	}
	switch err := s.Store.DeleteOrg(r.Context(), o.ID, deleteVersion(r, o.Version)); {
	case errors.Is(err, auth.ErrStale):
		return staleError(r)
	case errors.Is(err, auth.ErrConflict):
		return conflict("the organization still owns clients or API keys: delete them first")
	case err != nil:
		return err
	}
	s.audit(r, c, "org.delete", "org/"+o.ID, o.ID, map[string]any{"name": o.Name})
	w.WriteHeader(http.StatusNoContent)
	return nil
}
