package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/gatehouse/gatehouse/internal/auth"
)

// clientView is a client as the management API shows it: never a secret, only its metadata.
type clientView struct {
	ClientID    string         `json:"client_id"`
	Name        string         `json:"name"`
	Description string         `json:"description"`
	Disabled    bool           `json:"disabled"`
	OrgID       string         `json:"org_id,omitempty"`
	RateLimit   *rateLimitView `json:"rate_limit,omitempty"`
	Secrets     []secretView   `json:"secrets"`
	CreatedAt   time.Time      `json:"created_at"`
	UpdatedAt   time.Time      `json:"updated_at"`
}

// rateLimitView is a client's token rate limit: count tokens per per seconds.
type rateLimitView struct {
	Count int   `json:"count"`
	Per   int64 `json:"per"`
}

type secretView struct {
	ID        string     `json:"id"`
	Hint      string     `json:"hint"` // the last four characters
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at"`
}

func viewSecret(s auth.Secret) secretView {
	return secretView{ID: s.ID, Hint: s.Hint, CreatedAt: s.CreatedAt, ExpiresAt: timeOrNil(s.ExpiresAt)}
}

func viewClient(c *auth.Client) clientView {
	v := clientView{
		ClientID: c.ID, Name: c.Name, Description: c.Description, Disabled: c.Disabled, OrgID: c.OrgID,
		Secrets: make([]secretView, len(c.Secrets)), CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt,
	}
	if !c.RateLimit.IsZero() {
		v.RateLimit = &rateLimitView{Count: c.RateLimit.Count, Per: int64(c.RateLimit.Per / time.Second)}
	}
	for i, s := range c.Secrets {
		v.Secrets[i] = viewSecret(s)
	}
	return v
}

// rateLimitInput is a rate_limit member: an object, or null for none.
type rateLimitInput struct {
	set   bool
	limit auth.RateLimit
}

func (in *rateLimitInput) UnmarshalJSON(b []byte) error {
	in.set = true
	if string(b) == "null" {
		in.limit = auth.RateLimit{}
		return nil
	}
	var v rateLimitView
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		return &fieldDecodeError{"rate_limit", `must be {"count": N, "per": SECONDS} or null`}
	}
	in.limit = auth.RateLimit{Count: v.Count, Per: seconds(v.Per)}
	return nil
}

// clientInput is the body of POST and PATCH /api/v1/clients; PATCH changes the members present, and not
// client_id or org_id.
type clientInput struct {
	ClientID    *string        `json:"client_id"`
	Name        *string        `json:"name"`
	Description *string        `json:"description"`
	Disabled    *bool          `json:"disabled"`
	OrgID       *string        `json:"org_id"`
	RateLimit   rateLimitInput `json:"rate_limit"`
}

func (in *clientInput) apply(c *auth.Client) map[string]any {
	changed := map[string]any{}
	if in.Name != nil {
		c.Name, changed["name"] = *in.Name, *in.Name
	}
	if in.Description != nil {
		c.Description, changed["description"] = *in.Description, *in.Description
	}
	if in.Disabled != nil {
		c.Disabled, changed["disabled"] = *in.Disabled, *in.Disabled
	}
	if in.RateLimit.set {
		c.RateLimit = in.RateLimit.limit
		changed["rate_limit"] = map[string]any{"count": c.RateLimit.Count, "per": int64(c.RateLimit.Per / time.Second)}
	}
	return changed
}

func (s *Server) listClients(w http.ResponseWriter, r *http.Request, c *caller) error {
	p, err := page(r)
	if err != nil {
		return err
	}
	f := auth.ClientFilter{OrgID: r.URL.Query().Get("org_id"), Page: p}
	if !c.global() {
		if f.OrgID != "" && f.OrgID != c.orgID {
			return errNotFound
		}
		f.OrgID = c.orgID
	}
	limit := p.Limit
	f.Limit++
	clients, err := s.Store.ListClientsPage(r.Context(), f)
	if err != nil {
		return err
	}
	writePage(w, clients, limit, func(c *auth.Client) string { return c.ID }, viewClient)
	return nil
}

// findClient returns the client the path names, if the caller may see it.
func (s *Server) findClient(r *http.Request, c *caller) (*auth.Client, error) {
	cl, err := s.Store.FindClient(r.Context(), r.PathValue("id"))
	if err != nil {
		return nil, err
	}
	if !c.sees(cl.OrgID) {
		return nil, errNotFound
	}
	return cl, nil
}

func (s *Server) showClient(w http.ResponseWriter, r *http.Request, c *caller) error {
	cl, err := s.findClient(r, c)
	if err != nil {
		return err
	}
	writeResource(w, http.StatusOK, cl.Version, viewClient(cl))
	return nil
}

// createdClient is a new client with its secret, shown this once.
type createdClient struct {
	clientView
	ClientSecret string `json:"client_secret"`
}

func (s *Server) createClient(w http.ResponseWriter, r *http.Request, c *caller) error {
	var in clientInput
	if err := decode(w, r, &in); err != nil {
		return err
	}
	now := changeTime()
	cl := &auth.Client{ID: auth.NewClientID(), Version: 1, CreatedAt: now, UpdatedAt: now}
	if in.ClientID != nil {
		if !c.global() {
			// An organization's administrator could otherwise learn which client_ids other organizations use.
			return fieldErr("client_id", "is chosen by the server for an organization's clients")
		}
		cl.ID = *in.ClientID
	}
	if in.OrgID != nil {
		cl.OrgID = *in.OrgID
	}
	if !c.global() {
		if cl.OrgID != "" && cl.OrgID != c.orgID {
			return fieldErr("org_id", "no such organization")
		}
		cl.OrgID = c.orgID
	}
	changed := in.apply(cl)
	if err := cl.Normalize(); err != nil {
		return err
	}
	secret := auth.NewSecret()
	cl.Secrets = []auth.Secret{{ID: auth.NewID("sec"), Hash: s.Hasher.Hash(secret), Hint: auth.SecretHint(secret), CreatedAt: now}}
	switch err := s.Store.CreateClient(r.Context(), cl); {
	case errors.Is(err, auth.ErrConflict):
		return conflict("a client with the client_id %q exists", cl.ID)
	case errors.Is(err, auth.ErrNotFound):
		return fieldErr("org_id", "no such organization")
	case err != nil:
		return err
	}
	s.invalidateClient(cl.ID) // a cached "no such client"
	changed["org_id"] = cl.OrgID
	s.audit(r, c, "client.create", "client/"+cl.ID, cl.OrgID, changed)
	w.Header().Set("Location", "/api/v1/clients/"+cl.ID)
	writeResource(w, http.StatusCreated, cl.Version, createdClient{viewClient(cl), secret})
	return nil
}

func (s *Server) updateClient(w http.ResponseWriter, r *http.Request, c *caller) error {
	cl, err := s.findClient(r, c)
	if err != nil {
		return err
	}
	var in clientInput
	if err := patchInput(w, r, cl.Version, &in); err != nil {
		return err
	}
	if in.ClientID != nil && *in.ClientID != cl.ID {
		return fieldErr("client_id", "cannot be changed")
	}
	if in.OrgID != nil && *in.OrgID != cl.OrgID {
		return fieldErr("org_id", "cannot be changed: create a client in the other organization")
	}
	changed := in.apply(cl)
	if err := cl.Normalize(); err != nil {
		return err
	}
	cl.UpdatedAt = changeTime()
	switch err := s.Store.UpdateClient(r.Context(), cl); {
	case errors.Is(err, auth.ErrStale):
		return staleError(r)
	case err != nil:
		return err
	}
	s.invalidateClient(cl.ID)
	s.audit(r, c, "client.update", "client/"+cl.ID, cl.OrgID, changed)
	writeResource(w, http.StatusOK, cl.Version, viewClient(cl))
	return nil
}

func (s *Server) deleteClient(w http.ResponseWriter, r *http.Request, c *caller) error {
	cl, err := s.findClient(r, c)
	if err != nil {
		return err
	}
	if err := checkIfMatch(r, cl.Version); err != nil {
		return err
	}
	switch err := s.Store.DeleteClient(r.Context(), cl.ID, deleteVersion(r, cl.Version)); {
	case errors.Is(err, auth.ErrStale):
		return staleError(r)
	case err != nil:
		return err
	}
	s.invalidateClient(cl.ID)
	s.audit(r, c, "client.delete", "client/"+cl.ID, cl.OrgID, nil)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// Secrets.

// maxGracePeriod bounds how long the old secrets of a rotation may keep working.
const maxGracePeriod = 30 * 24 * time.Hour

func (s *Server) listSecrets(w http.ResponseWriter, r *http.Request, c *caller) error {
	cl, err := s.findClient(r, c)
	if err != nil {
		return err
	}
	out := list[secretView]{Items: make([]secretView, len(cl.Secrets))}
	for i, sec := range cl.Secrets {
		out.Items[i] = viewSecret(sec)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// secretInput is the optional body of POST /api/v1/clients/{id}/secrets.
type secretInput struct {
	// ExpireOthersIn, when present, makes the client's other secrets stop working that many seconds from now (0:
	// at once): a rotation with a grace period. Absent, the other secrets are left as they are.
	ExpireOthersIn *int64 `json:"expire_others_in"`
}

// createdSecret is a new secret, shown this once.
type createdSecret struct {
	secretView
	ClientSecret string `json:"client_secret"`
}

func (s *Server) addSecret(w http.ResponseWriter, r *http.Request, c *caller) error {
	cl, err := s.findClient(r, c)
	if err != nil {
		return err
	}
	var in secretInput
	if err := decodeOptional(w, r, &in); err != nil {
		return err
	}
	now := changeTime()
	var othersAt time.Time
	details := map[string]any{}
	if in.ExpireOthersIn != nil {
		grace := seconds(*in.ExpireOthersIn)
		if grace < 0 || grace > maxGracePeriod {
			return fieldErr("expire_others_in", "must be from 0 to %d seconds (30 days)", int64(maxGracePeriod/time.Second))
		}
		othersAt = now.Add(grace)
		if grace == 0 {
			othersAt = now.Add(-time.Millisecond) // already past: they stop at once
		}
		details["expire_others_in"] = *in.ExpireOthersIn
	}
	const maxSecrets = 10 // working ones; expired secrets stay listed until deleted, and do not count
	active := 0
	for _, sec := range cl.Secrets {
		if sec.Active(now) {
			active++
		}
	}
	if active >= maxSecrets {
		return conflict("the client has %d working secrets; delete one first", maxSecrets)
	}
	secret := auth.NewSecret()
	sec := auth.Secret{ID: auth.NewID("sec"), Hash: s.Hasher.Hash(secret), Hint: auth.SecretHint(secret), CreatedAt: now}
	if err := s.Store.AddClientSecret(r.Context(), cl.ID, sec, othersAt); err != nil {
		return err
	}
	s.invalidateClient(cl.ID)
	details["secret_id"] = sec.ID
	s.audit(r, c, "client.secret.add", "client/"+cl.ID, cl.OrgID, details)
	w.Header().Set("Location", "/api/v1/clients/"+cl.ID+"/secrets/"+sec.ID)
	writeJSON(w, http.StatusCreated, createdSecret{viewSecret(sec), secret})
	return nil
}

func (s *Server) deleteSecret(w http.ResponseWriter, r *http.Request, c *caller) error {
	cl, err := s.findClient(r, c)
	if err != nil {
		return err
	}
	id := r.PathValue("secret_id")
	switch err := s.Store.DeleteClientSecret(r.Context(), cl.ID, id); {
	case errors.Is(err, auth.ErrConflict):
		return conflict("a client keeps at least one secret: add another before deleting this one")
	case err != nil:
		return err
	}
	s.invalidateClient(cl.ID)
	s.audit(r, c, "client.secret.delete", "client/"+cl.ID, cl.OrgID, map[string]any{"secret_id": id})
	w.WriteHeader(http.StatusNoContent)
	return nil
}
