package server

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"time"

	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/keyset"
)

// signingKeyView is a signing key's public facts and schedule: never its private half.
type signingKeyView struct {
	KID       string    `json:"kid"`
	Alg       string    `json:"alg"`
	State     string    `json:"state"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"` // when it entered its state, as Since
	Since     time.Time `json:"since"`
	// NextStepAt is when its next step is due: a next key signs, a current key has a successor published (or is
	// retired, when it has one), a retired key leaves the JWKS.
	NextStepAt time.Time `json:"next_step_at"`
}

func viewSigningKey(k keyset.KeyInfo) signingKeyView {
	return signingKeyView{KID: k.ID, Alg: string(k.Alg), State: string(k.State), CreatedAt: k.CreatedAt.UTC(),
		UpdatedAt: k.Since.UTC(), Since: k.Since.UTC(), NextStepAt: k.Next.UTC()}
}

func (s *Server) listSigningKeys(w http.ResponseWriter, r *http.Request, c *caller) error {
	if !c.global() {
		return errNotFound
	}
	keys, err := s.Keys.List(r.Context())
	if err != nil {
		return err
	}
	out := list[signingKeyView]{Items: make([]signingKeyView, len(keys))}
	for i, k := range keys {
		out.Items[i] = viewSigningKey(k)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// rotateKeyInput is the body of POST /api/v1/signing-keys/rotate.
type rotateKeyInput struct {
	Alg         string `json:"alg"`
	Immediately bool   `json:"immediately"`
}

// rotateSigningKey starts a rotation of an algorithm's key now (keyset.RotateNow), or makes a new key sign at once
// (keyset.RotateImmediately), and answers the key that signs next.
func (s *Server) rotateSigningKey(w http.ResponseWriter, r *http.Request, c *caller) error {
	if !c.global() {
		return errNotFound
	}
	var in rotateKeyInput
	if err := decode(w, r, &in); err != nil {
		return err
	}
	alg := auth.Algorithm(in.Alg)
	if !alg.Valid() {
		return fieldErr("alg", "must be RS256, ES256 or EdDSA")
	}
	rotate := s.Keys.RotateNow
	if in.Immediately {
		rotate = s.Keys.RotateImmediately
	}
	k, err := rotate(r.Context(), alg)
	if errors.Is(err, auth.ErrNotFound) {
		return conflict("%s has no current signing key to rotate: no API signs with it", alg)
	}
	if err != nil {
		return err
	}
	s.audit(r, c, "signing_key.rotate", "signing_key/"+k.ID, "", map[string]any{"alg": alg, "immediately": in.Immediately,
		"state": k.State})
	writeJSON(w, http.StatusOK, viewSigningKey(k))
	return nil
}

// revokedKeyView is the answer to a revocation: the key that is gone.
type revokedKeyView struct {
	KID       string    `json:"kid"`
	Alg       string    `json:"alg"`
	RevokedAt time.Time `json:"revoked_at"`
}

// revokeSigningKey removes a key at once (keyset.Revoke): the tokens it signed stop verifying.
func (s *Server) revokeSigningKey(w http.ResponseWriter, r *http.Request, c *caller) error {
	if !c.global() {
		return errNotFound
	}
	kid := r.PathValue("kid")
	keys, err := s.Keys.List(r.Context())
	if err != nil {
		return err
	}
	i := slices.IndexFunc(keys, func(k keyset.KeyInfo) bool { return k.ID == kid })
	if i < 0 {
		return notFound("signing key " + truncate(kid, 100))
	}
	if err := s.Keys.Revoke(r.Context(), kid); err != nil {
		if errors.Is(err, auth.ErrNotFound) {
			return notFound("signing key " + truncate(kid, 100))
		}
		return err
	}
	k, now := keys[i], changeTime()
	s.audit(r, c, "signing_key.revoke", "signing_key/"+k.ID, "", map[string]any{"alg": k.Alg, "state": k.State})
	writeJSON(w, http.StatusOK, revokedKeyView{KID: k.ID, Alg: string(k.Alg), RevokedAt: now})
	return nil
}

// auditView is an audit event as the management API shows it.
type auditView struct {
	ID        string          `json:"id"`
	Time      time.Time       `json:"time"`
	Actor     string          `json:"actor"`
	Action    string          `json:"action"`
	Resource  string          `json:"resource,omitempty"`
	OrgID     string          `json:"org_id,omitempty"`
	RequestID string          `json:"request_id,omitempty"`
	Address   string          `json:"address,omitempty"`
	Details   json.RawMessage `json:"details,omitempty"`
}

func viewAudit(e *auth.AuditEvent) auditView {
	return auditView{ID: e.ID, Time: e.Time, Actor: e.Actor, Action: e.Action, Resource: e.Resource, OrgID: e.OrgID,
		RequestID: e.RequestID, Address: e.Address, Details: e.Details}
}

// listAuditEvents answers GET /api/v1/audit-events, newest first: ?from=&to= (RFC 3339), actor, action, resource,
// org_id, limit and cursor. An organization's administrator sees its organization's events only.
func (s *Server) listAuditEvents(w http.ResponseWriter, r *http.Request, c *caller) error {
	p, err := page(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	f := auth.AuditFilter{Actor: q.Get("actor"), Action: q.Get("action"), Resource: q.Get("resource"),
		OrgID: q.Get("org_id"), Before: p.After, Limit: p.Limit + 1}
	for _, t := range []struct {
		name string
		dst  *time.Time
	}{{"from", &f.From}, {"to", &f.To}} {
		if v := q.Get(t.name); v != "" {
			if *t.dst, err = time.Parse(time.RFC3339, v); err != nil {
				return fieldErr(t.name, "must be an RFC 3339 time, e.g. 2026-11-21T09:00:00Z")
			}
		}
	}
	if !c.global() {
		if f.OrgID != "" && f.OrgID != c.orgID {
			return errNotFound
		}
		f.OrgID = c.orgID
	}
	events, err := s.Store.ListAuditEvents(r.Context(), f)
	if err != nil {
		return err
	}
	writePage(w, events, p.Limit, func(e *auth.AuditEvent) string { return e.ID }, viewAudit)
	return nil
}
