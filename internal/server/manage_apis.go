package server

import (
	"errors"
	"net/http"
	"time"

	"github.com/gatehouse/gatehouse/internal/auth"
)

// apiView is an API as the management API shows it. Lifetimes are seconds, as Auth0's are.
type apiView struct {
	ID               string      `json:"id"`
	Identifier       string      `json:"identifier"`
	Name             string      `json:"name"`
	Scopes           []scopeView `json:"scopes"`
	TokenLifetime    int64       `json:"token_lifetime"`
	KeyTokenLifetime int64       `json:"key_token_lifetime"`
	SigningAlg       string      `json:"signing_alg"`
	CreatedAt        time.Time   `json:"created_at"`
	UpdatedAt        time.Time   `json:"updated_at"`
}

type scopeView struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
}

func viewAPI(a *auth.API) apiView {
	v := apiView{
		ID: a.ID, Identifier: a.Identifier, Name: a.Name, Scopes: make([]scopeView, len(a.Scopes)),
		TokenLifetime:    int64(a.TokenLifetime / time.Second),
		KeyTokenLifetime: int64(a.KeyTokenLifetime / time.Second),
		SigningAlg:       string(a.SigningAlg), CreatedAt: a.CreatedAt, UpdatedAt: a.UpdatedAt,
	}
	for i, s := range a.Scopes {
		v.Scopes[i] = scopeView(s)
	}
	return v
}

// apiInput is the body of POST and PATCH /api/v1/apis; PATCH changes the members present.
type apiInput struct {
	Identifier       *string      `json:"identifier"`
	Name             *string      `json:"name"`
	Scopes           *[]scopeView `json:"scopes"`
	TokenLifetime    *int64       `json:"token_lifetime"`
	KeyTokenLifetime *int64       `json:"key_token_lifetime"`
	SigningAlg       *string      `json:"signing_alg"`
}

// apply sets the members present in in on a, and returns their names for the audit log.
func (in *apiInput) apply(a *auth.API) map[string]any {
	changed := map[string]any{}
	if in.Identifier != nil {
		a.Identifier, changed["identifier"] = *in.Identifier, *in.Identifier
	}
	if in.Name != nil {
		a.Name, changed["name"] = *in.Name, *in.Name
	}
	if in.Scopes != nil {
		a.Scopes = make([]auth.Scope, len(*in.Scopes))
		names := make([]string, len(*in.Scopes))
		for i, s := range *in.Scopes {
			a.Scopes[i], names[i] = auth.Scope(s), s.Name
		}
		changed["scopes"] = names
	}
	if in.TokenLifetime != nil {
		a.TokenLifetime, changed["token_lifetime"] = seconds(*in.TokenLifetime), *in.TokenLifetime
	}
	if in.KeyTokenLifetime != nil {
		a.KeyTokenLifetime, changed["key_token_lifetime"] = seconds(*in.KeyTokenLifetime), *in.KeyTokenLifetime
	}
	if in.SigningAlg != nil {
		a.SigningAlg, changed["signing_alg"] = auth.Algorithm(*in.SigningAlg), *in.SigningAlg
	}
	return changed
}

// seconds converts a count of seconds, saturating instead of overflowing (validation then refuses it).
func seconds(n int64) time.Duration {
	const maxSeconds = int64(1<<63-1) / int64(time.Second)
	if n > maxSeconds || n < -maxSeconds {
		return time.Duration(1<<63 - 1)
	}
	return time.Duration(n) * time.Second
}

func (s *Server) listAPIs(w http.ResponseWriter, r *http.Request, c *caller) error {
	if !c.global() {
		return errNotFound
	}
	p, err := page(r)
	if err != nil {
		return err
	}
	limit := p.Limit
	p.Limit++
	apis, err := s.Store.ListAPIsPage(r.Context(), p)
	if err != nil {
		return err
	}
	writePage(w, apis, limit, func(a *auth.API) string { return a.ID }, viewAPI)
	return nil
}

// findAPI returns the API a global caller names by id; org-scoped callers see none.
func (s *Server) findAPI(r *http.Request, c *caller) (*auth.API, error) {
	if !c.global() {
		return nil, errNotFound
	}
	return s.Store.FindAPI(r.Context(), r.PathValue("id"))
}

func (s *Server) showAPI(w http.ResponseWriter, r *http.Request, c *caller) error {
	a, err := s.findAPI(r, c)
	if err != nil {
		return err
	}
	writeResource(w, http.StatusOK, a.Version, viewAPI(a))
	return nil
}

func (s *Server) createAPI(w http.ResponseWriter, r *http.Request, c *caller) error {
	if !c.global() {
		return errNotFound
	}
	var in apiInput
	if err := decode(w, r, &in); err != nil {
		return err
	}
	if in.Identifier == nil {
		return fieldErr("identifier", "is required")
	}
	now := changeTime()
	a := &auth.API{ID: auth.NewID("api"), Version: 1, CreatedAt: now, UpdatedAt: now}
	changed := in.apply(a)
	if err := a.Normalize(); err != nil {
		return err
	}
	if err := s.Store.CreateAPI(r.Context(), a); err != nil {
		if errors.Is(err, auth.ErrConflict) {
			return conflict("an API with the identifier %q exists", a.Identifier)
		}
		return err
	}
	s.audit(r, c, "api.create", "api/"+a.ID, "", changed)
	w.Header().Set("Location", "/api/v1/apis/"+a.ID)
	writeResource(w, http.StatusCreated, a.Version, viewAPI(a))
	return nil
}

func (s *Server) updateAPI(w http.ResponseWriter, r *http.Request, c *caller) error {
	a, err := s.findAPI(r, c)
	if err != nil {
		return err
	}
	var in apiInput
	if err := patchInput(w, r, a.Version, &in); err != nil {
		return err
	}
	if a.Identifier == auth.ManagementAudience && (in.Identifier != nil && *in.Identifier != a.Identifier || in.Scopes != nil) {
		return conflict("the identifier and scopes of the built-in management API cannot be changed")
	}
	changed := in.apply(a)
	if in.TokenLifetime != nil && in.KeyTokenLifetime == nil && a.KeyTokenLifetime > a.TokenLifetime {
		a.KeyTokenLifetime = 0 // follow a shortened token lifetime
	}
	if err := a.Normalize(); err != nil {
		return err
	}
	a.UpdatedAt = changeTime()
	switch err := s.Store.UpdateAPI(r.Context(), a); {
	case errors.Is(err, auth.ErrStale):
		return staleError(r)
	case errors.Is(err, auth.ErrConflict):
		return conflict("an API with the identifier %q exists", a.Identifier)
	case err != nil:
		return err
	}
	s.Issuer.InvalidateAll()
	s.APIKeys.InvalidateAll()
	s.audit(r, c, "api.update", "api/"+a.ID, "", changed)
	writeResource(w, http.StatusOK, a.Version, viewAPI(a))
	return nil
}

func (s *Server) deleteAPI(w http.ResponseWriter, r *http.Request, c *caller) error {
	a, err := s.findAPI(r, c)
	if err != nil {
		return err
	}
	if err := checkIfMatch(r, a.Version); err != nil {
		return err
	}
	if a.Identifier == auth.ManagementAudience {
		return conflict("the built-in management API cannot be deleted")
	}
	switch err := s.Store.DeleteAPI(r.Context(), a.ID, deleteVersion(r, a.Version)); {
	case errors.Is(err, auth.ErrStale):
		return staleError(r)
	case err != nil:
		return err
	}
	s.Issuer.InvalidateAll()
	s.APIKeys.InvalidateAll()
	s.audit(r, c, "api.delete", "api/"+a.ID, "", map[string]any{"identifier": a.Identifier})
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// deleteVersion is the version a store's delete is conditioned on, for a resource read at version that passed
// checkIfMatch: that version when the request carried If-Match with entity tags, so that a change made between
// the read and the delete makes it fail (auth.ErrStale, which staleError answers 412) rather than delete the
// changed resource; else 0, any version. ("*" asks only that the resource exist.)
func deleteVersion(r *http.Request, version int64) int64 {
	if m := r.Header.Get("If-Match"); m == "" || m == "*" {
		return 0
	}
	return version
}
