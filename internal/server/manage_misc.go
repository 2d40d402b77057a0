package server

import (
	"encoding/json"
	"net/http"
	"time"

	"github.com/gatehouse/gatehouse/internal/auth"
)

// signingKeyView is a signing key's public facts: never its private half.
type signingKeyView struct {
	KID       string    `json:"kid"`
	Alg       string    `json:"alg"`
	State     string    `json:"state"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

func (s *Server) listSigningKeys(w http.ResponseWriter, r *http.Request, c *caller) error {
	if !c.global() {
		return errNotFound
	}
	keys, err := s.Store.ListSigningKeys(r.Context())
	if err != nil {
		return err
	}
	out := list[signingKeyView]{Items: make([]signingKeyView, len(keys))}
	for i, k := range keys {
		out.Items[i] = signingKeyView{KID: k.ID, Alg: string(k.Alg), State: string(k.State), CreatedAt: k.CreatedAt, UpdatedAt: k.UpdatedAt}
	}
	writeJSON(w, http.StatusOK, out)
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
