package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/gatehouse/gatehouse/internal/apikey"
	"github.com/gatehouse/gatehouse/internal/auth"
)

// apiKeyView is an API key as the management API shows it: never the key, only its hint.
type apiKeyView struct {
	ID         string          `json:"id"`
	Name       string          `json:"name"`
	OrgID      string          `json:"org_id,omitempty"`
	Owner      string          `json:"owner,omitempty"`
	Hint       string          `json:"hint"`
	Grants     []keyGrantView  `json:"grants"`
	ExpiresAt  *time.Time      `json:"expires_at"`
	Metadata   json.RawMessage `json:"metadata,omitempty"`
	Disabled   bool            `json:"disabled"`
	CreatedAt  time.Time       `json:"created_at"`
	UpdatedAt  time.Time       `json:"updated_at"`
	LastUsedAt *time.Time      `json:"last_used_at"`
}

// keyGrantView is an API a key holds scopes of.
type keyGrantView struct {
	APIID    string   `json:"api_id"`
	Audience string   `json:"audience"`
	Scopes   []string `json:"scopes"`
}

func viewAPIKey(k *auth.APIKey, auds map[string]string) apiKeyView {
	v := apiKeyView{ID: k.ID, Name: k.Name, OrgID: k.OrgID, Owner: k.Owner, Hint: k.Hint,
		Grants: make([]keyGrantView, 0, len(k.Grants)), ExpiresAt: timeOrNil(k.ExpiresAt), Metadata: k.Metadata,
		Disabled: k.Disabled, CreatedAt: k.CreatedAt, UpdatedAt: k.UpdatedAt, LastUsedAt: timeOrNil(k.LastUsedAt)}
	for _, g := range k.Grants {
		aud, ok := auds[g.APIID]
		if !ok {
			continue // the API was deleted
		}
		scopes := g.Scopes
		if scopes == nil {
			scopes = []string{}
		}
		v.Grants = append(v.Grants, keyGrantView{APIID: g.APIID, Audience: aud, Scopes: scopes})
	}
	return v
}

// optionalTime is a member that is a time, null (none), or absent.
type optionalTime struct {
	set bool
	t   time.Time
}

func (o *optionalTime) UnmarshalJSON(b []byte) error {
	o.set = true
	if string(b) == "null" {
		o.t = time.Time{}
		return nil
	}
	if err := json.Unmarshal(b, &o.t); err != nil {
		return &fieldDecodeError{"expires_at", "must be an RFC 3339 time (e.g. 2027-01-01T00:00:00Z) or null"}
	}
	o.t = o.t.UTC().Truncate(time.Millisecond)
	return nil
}

// apiKeyInput is the body of POST and PATCH /api/v1/apikeys; PATCH changes the members present, never org_id or
// owner.
type apiKeyInput struct {
	Name      *string          `json:"name"`
	OrgID     *string          `json:"org_id"`
	Owner     *string          `json:"owner"`
	Grants    *[]orgGrantInput `json:"grants"`
	ExpiresAt optionalTime     `json:"expires_at"`
	Metadata  json.RawMessage  `json:"metadata"`
	Disabled  *bool            `json:"disabled"`
}

// applyAPIKey sets the members present in in on k, checking grants against what the caller may hand out.
func (s *Server) applyAPIKey(ctx context.Context, c *caller, in *apiKeyInput, k *auth.APIKey) (map[string]any, error) {
	changed := map[string]any{}
	if in.Name != nil {
		if err := auth.ValidateName("name", *in.Name); err != nil {
			return nil, err
		}
		k.Name, changed["name"] = *in.Name, *in.Name
	}
	if in.ExpiresAt.set {
		if !in.ExpiresAt.t.IsZero() && !in.ExpiresAt.t.After(time.Now()) {
			return nil, fieldErr("expires_at", "must be in the future (or null for a key that does not expire)")
		}
		k.ExpiresAt, changed["expires_at"] = in.ExpiresAt.t, timeOrNil(in.ExpiresAt.t)
	}
	if in.Metadata != nil {
		md, err := checkMetadata(in.Metadata)
		if err != nil {
			return nil, err
		}
		k.Metadata, changed["metadata"] = md, "(changed)"
	}
	if in.Disabled != nil {
		k.Disabled, changed["disabled"] = *in.Disabled, *in.Disabled
	}
	if in.Grants != nil {
		if len(*in.Grants) > auth.MaxScopes {
			return nil, fieldErr("grants", "has more than %d entries", auth.MaxScopes)
		}
		k.Grants = make([]auth.KeyGrant, 0, len(*in.Grants))
		summary := make([]string, 0, len(*in.Grants))
		for i, g := range *in.Grants {
			field := fmt.Sprintf("grants[%d]", i)
			gi := grantInput{Scopes: &g.Scopes}
			if g.Audience != "" {
				gi.Audience = &g.Audience
			}
			if g.APIID != "" {
				gi.APIID = &g.APIID
			}
			a, err := s.grantAPI(ctx, &gi)
			var pe *problemError
			if errors.As(err, &pe) && len(pe.fields) == 1 {
				pe.fields[0].Field = field + "." + pe.fields[0].Field
				pe.detail = pe.fields[0].Field + ": " + pe.fields[0].Message
			}
			if err != nil {
				return nil, err
			}
			if a.Identifier == auth.ManagementAudience {
				return nil, fieldErr(field+".audience", "API keys cannot hold management access: use a client")
			}
			if slices.ContainsFunc(k.Grants, func(x auth.KeyGrant) bool { return x.APIID == a.ID }) {
				return nil, fieldErr(field, "names %s twice", a.Identifier)
			}
			apiField := field + ".audience"
			if g.APIID != "" {
				apiField = field + ".api_id"
			}
			if err := s.orgAllows(ctx, c, a, g.Scopes, apiField, field+".scopes"); err != nil {
				return nil, err
			}
			scopes, err := a.CheckScopes(field+".scopes", g.Scopes)
			if err != nil {
				return nil, err
			}
			k.Grants = append(k.Grants, auth.KeyGrant{APIID: a.ID, Scopes: scopes})
			summary = append(summary, a.Identifier+" "+strings.Join(scopes, " "))
		}
		changed["grants"] = summary
	}
	return changed, nil
}

// checkMetadata checks a metadata member: a JSON object of at most auth.MaxKeyMetadata bytes, stored compacted.
func checkMetadata(raw json.RawMessage) (json.RawMessage, error) {
	if string(raw) == "null" {
		return nil, nil
	}
	var obj map[string]any
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, fieldErr("metadata", "must be a JSON object")
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return nil, fieldErr("metadata", "must be a JSON object")
	}
	if buf.Len() > auth.MaxKeyMetadata {
		return nil, fieldErr("metadata", "is larger than %d bytes", auth.MaxKeyMetadata)
	}
	return buf.Bytes(), nil
}

// validateOwner checks an owner: a subject from the customer's user system, printable, at most auth.MaxOwnerLen.
func validateOwner(s string) error {
	if len(s) > auth.MaxOwnerLen {
		return fieldErr("owner", "is longer than %d bytes", auth.MaxOwnerLen)
	}
	if !utf8.ValidString(s) || strings.ContainsFunc(s, unicode.IsControl) {
		return fieldErr("owner", "must be UTF-8 text without control characters")
	}
	return nil
}

func (s *Server) listAPIKeys(w http.ResponseWriter, r *http.Request, c *caller) error {
	p, err := page(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	f := auth.APIKeyFilter{OrgID: q.Get("org_id"), Owner: q.Get("owner"), Page: p}
	if !c.global() {
		if f.OrgID != "" && f.OrgID != c.orgID {
			return errNotFound
		}
		f.OrgID = c.orgID
	}
	limit := p.Limit
	f.Limit++
	keys, err := s.Store.ListAPIKeys(r.Context(), f)
	if err != nil {
		return err
	}
	auds, err := s.audiences(r.Context())
	if err != nil {
		return err
	}
	writePage(w, keys, limit, func(k *auth.APIKey) string { return k.ID },
		func(k *auth.APIKey) apiKeyView { return viewAPIKey(k, auds) })
	return nil
}

func (s *Server) findAPIKey(r *http.Request, c *caller) (*auth.APIKey, error) {
	k, err := s.Store.FindAPIKey(r.Context(), r.PathValue("id"))
	if err != nil {
		return nil, err
	}
	if !c.sees(k.OrgID) {
		return nil, errNotFound
	}
	return k, nil
}

// writeAPIKey answers one key with its ETag, its grants' APIs named from auds (audiences). A handler that
// changes the key reads auds before the change: once the change is made, the answer must not depend on another
// read, whose failure would answer 503 for a change that was made, and lose a new key, which is shown only once.
func writeAPIKey(w http.ResponseWriter, status int, k *auth.APIKey, auds map[string]string, extra func(apiKeyView) any) {
	v := viewAPIKey(k, auds)
	var body any = v
	if extra != nil {
		body = extra(v)
	}
	writeResource(w, status, k.Version, body)
}

func (s *Server) showAPIKey(w http.ResponseWriter, r *http.Request, c *caller) error {
	k, err := s.findAPIKey(r, c)
	if err != nil {
		return err
	}
	auds, err := s.audiences(r.Context())
	if err != nil {
		return err
	}
	writeAPIKey(w, http.StatusOK, k, auds, nil)
	return nil
}

// createdAPIKey is a new (or rotated) key, shown this once.
type createdAPIKey struct {
	apiKeyView
	Key string `json:"key"`
	// PreviousKeyExpiresAt is when the key it replaced stops working (rotation with a grace period).
	PreviousKeyExpiresAt *time.Time `json:"previous_key_expires_at,omitempty"`
}

// keyPrefix is the prefix for a new key of the organization: its own, or the server's default.
func (s *Server) keyPrefix(ctx context.Context, orgID string) (string, error) {
	if orgID != "" {
		o, err := s.Store.FindOrg(ctx, orgID)
		if errors.Is(err, auth.ErrNotFound) {
			return "", fieldErr("org_id", "no such organization")
		}
		if err != nil {
			return "", err
		}
		if o.APIKeyPrefix != "" {
			return o.APIKeyPrefix, nil
		}
	}
	if s.APIKeyPrefix != "" {
		return s.APIKeyPrefix, nil
	}
	return apikey.DefaultPrefix, nil
}

func (s *Server) createAPIKey(w http.ResponseWriter, r *http.Request, c *caller) error {
	var in apiKeyInput
	if err := decode(w, r, &in); err != nil {
		return err
	}
	now := changeTime()
	k := &auth.APIKey{ID: auth.NewID("key"), Version: 1, CreatedAt: now, UpdatedAt: now, Grants: []auth.KeyGrant{}}
	if in.OrgID != nil {
		k.OrgID = *in.OrgID
	}
	if !c.global() {
		if k.OrgID != "" && k.OrgID != c.orgID {
			return fieldErr("org_id", "no such organization")
		}
		k.OrgID = c.orgID
	}
	if in.Owner != nil {
		if err := validateOwner(*in.Owner); err != nil {
			return err
		}
		k.Owner = *in.Owner
	}
	if in.Name == nil {
		return fieldErr("name", "is required")
	}
	changed, err := s.applyAPIKey(r.Context(), c, &in, k)
	if err != nil {
		return err
	}
	prefix, err := s.keyPrefix(r.Context(), k.OrgID)
	if err != nil {
		return err
	}
	key, err := apikey.New(prefix)
	if err != nil {
		return err
	}
	k.Hint = apikey.Hint(key)
	auds, err := s.audiences(r.Context()) // before the write: see writeAPIKey
	if err != nil {
		return err
	}
	switch err := s.Store.CreateAPIKey(r.Context(), k, s.APIKeys.Hash(key)); {
	case errors.Is(err, auth.ErrNotFound):
		return fieldErr("org_id", "no such organization")
	case err != nil:
		return err
	}
	changed["org_id"], changed["owner"] = k.OrgID, k.Owner
	s.audit(r, c, "apikey.create", "apikey/"+k.ID, k.OrgID, changed)
	w.Header().Set("Location", "/api/v1/apikeys/"+k.ID)
	writeAPIKey(w, http.StatusCreated, k, auds, func(v apiKeyView) any { return createdAPIKey{apiKeyView: v, Key: key} })
	return nil
}

func (s *Server) updateAPIKey(w http.ResponseWriter, r *http.Request, c *caller) error {
	k, err := s.findAPIKey(r, c)
	if err != nil {
		return err
	}
	var in apiKeyInput
	if err := patchInput(w, r, k.Version, &in); err != nil {
		return err
	}
	if in.OrgID != nil && *in.OrgID != k.OrgID {
		return fieldErr("org_id", "cannot be changed: make a new key")
	}
	if in.Owner != nil && *in.Owner != k.Owner {
		return fieldErr("owner", "cannot be changed: make a new key")
	}
	changed, err := s.applyAPIKey(r.Context(), c, &in, k)
	if err != nil {
		return err
	}
	auds, err := s.audiences(r.Context()) // before the write: see writeAPIKey
	if err != nil {
		return err
	}
	k.UpdatedAt = changeTime()
	err = s.Store.UpdateAPIKey(r.Context(), k)
	s.APIKeys.Invalidate(k.ID) // in the same step as the change, whatever its outcome
	switch {
	case errors.Is(err, auth.ErrStale):
		return staleError(r)
	case err != nil:
		return err
	}
	s.audit(r, c, "apikey.update", "apikey/"+k.ID, k.OrgID, changed)
	writeAPIKey(w, http.StatusOK, k, auds, nil)
	return nil
}

// rotateInput is the optional body of POST /api/v1/apikeys/{id}/rotate.
type rotateInput struct {
	// GracePeriod is how many seconds the old key keeps working, at most 7 days; absent or 0: it stops at once.
	GracePeriod int64 `json:"grace_period"`
}

func (s *Server) rotateAPIKey(w http.ResponseWriter, r *http.Request, c *caller) error {
	k, err := s.findAPIKey(r, c)
	if err != nil {
		return err
	}
	if err := checkIfMatch(r, k.Version); err != nil {
		return err
	}
	var in rotateInput
	if err := decodeOptional(w, r, &in); err != nil {
		return err
	}
	grace := seconds(in.GracePeriod)
	if grace < 0 || grace > auth.MaxKeyGracePeriod {
		return fieldErr("grace_period", "must be from 0 to %d seconds (7 days)", int64(auth.MaxKeyGracePeriod/time.Second))
	}
	prefix, err := s.keyPrefix(r.Context(), k.OrgID)
	if err != nil {
		return err
	}
	key, err := apikey.New(prefix)
	if err != nil {
		return err
	}
	now := changeTime()
	var oldExpire time.Time
	if grace > 0 {
		oldExpire = now.Add(grace)
	}
	auds, err := s.audiences(r.Context()) // before the write: see writeAPIKey
	if err != nil {
		return err
	}
	k.Hint, k.UpdatedAt = apikey.Hint(key), now
	err = s.Store.RotateAPIKey(r.Context(), k, s.APIKeys.Hash(key), oldExpire)
	s.APIKeys.Invalidate(k.ID)
	switch {
	case errors.Is(err, auth.ErrStale):
		return staleError(r)
	case err != nil:
		return err
	}
	s.audit(r, c, "apikey.rotate", "apikey/"+k.ID, k.OrgID, map[string]any{"grace_period": in.GracePeriod})
	writeAPIKey(w, http.StatusOK, k, auds, func(v apiKeyView) any {
		return createdAPIKey{apiKeyView: v, Key: key, PreviousKeyExpiresAt: timeOrNil(oldExpire)}
	})
	return nil
}

func (s *Server) deleteAPIKey(w http.ResponseWriter, r *http.Request, c *caller) error {
	k, err := s.findAPIKey(r, c)
	if err != nil {
		return err
	}
	if err := checkIfMatch(r, k.Version); err != nil {
		return err
	}
	err = s.Store.DeleteAPIKey(r.Context(), k.ID, deleteVersion(r, k.Version))
	s.APIKeys.Invalidate(k.ID)
	switch {
	case errors.Is(err, auth.ErrStale):
		return staleError(r)
	case err != nil:
		return err
	}
	s.audit(r, c, "apikey.delete", "apikey/"+k.ID, k.OrgID, map[string]any{"name": k.Name})
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// verifyKeyInput is the body of POST /api/v1/apikeys/verify.
type verifyKeyInput struct {
	Key      string   `json:"key"`
	Audience string   `json:"audience"`
	Scopes   []string `json:"scopes"`
}

// verifyKeyResult answers a gateway's key check: valid with the key's facts, or not valid with a code.
type verifyKeyResult struct {
	Valid     bool            `json:"valid"`
	Code      string          `json:"code,omitempty"` // malformed, not_found, expired, disabled, wrong_audience, insufficient_scope
	KeyID     string          `json:"key_id,omitempty"`
	OrgID     string          `json:"org_id,omitempty"`
	Owner     string          `json:"owner,omitempty"`
	Audience  string          `json:"audience,omitempty"`
	Scopes    []string        `json:"scopes,omitempty"`
	Grants    []keyGrantView  `json:"grants,omitempty"`
	ExpiresAt *time.Time      `json:"expires_at,omitempty"`
	Metadata  json.RawMessage `json:"metadata,omitempty"`
}

// verifyAPIKey is the direct check for gateways: is this key good (for this audience, with these scopes)? One code,
// not_found, answers both a key that never existed and one that was deleted or rotated out. An organization's
// caller gets not_found for another organization's keys.
func (s *Server) verifyAPIKey(w http.ResponseWriter, r *http.Request, c *caller) error {
	var in verifyKeyInput
	if err := decode(w, r, &in); err != nil {
		return err
	}
	if in.Key == "" {
		return fieldErr("key", "is required")
	}
	if len(in.Scopes) > auth.MaxScopes {
		return fieldErr("scopes", "has more than %d entries", auth.MaxScopes)
	}
	// Another organization's key is unknown to this caller, whatever its state, and its use is not recorded.
	ch, _, err := s.APIKeys.CheckFor(r.Context(), in.Key, func(k *auth.APIKey) bool { return c.sees(k.OrgID) })
	if errors.Is(err, apikey.ErrRefused) {
		writeJSON(w, http.StatusOK, verifyKeyResult{Code: apikey.Code(err)})
		return nil
	}
	if err != nil {
		return err
	}
	k := ch.Key
	res := verifyKeyResult{Valid: true, KeyID: k.ID, OrgID: k.OrgID, Owner: k.Owner, ExpiresAt: timeOrNil(k.ExpiresAt), Metadata: k.Metadata}
	for aud, g := range ch.Grants {
		res.Grants = append(res.Grants, keyGrantView{APIID: g.API.ID, Audience: aud, Scopes: g.Scopes})
	}
	slices.SortFunc(res.Grants, func(a, b keyGrantView) int { return strings.Compare(a.Audience, b.Audience) })
	g := ch.Only
	if in.Audience != "" {
		g = ch.Grants[in.Audience]
		if g == nil {
			writeJSON(w, http.StatusOK, verifyKeyResult{Code: "wrong_audience", KeyID: k.ID})
			return nil
		}
	}
	if g != nil {
		res.Audience, res.Scopes = g.API.Identifier, g.Scopes
	}
	for _, sc := range in.Scopes {
		if g == nil || !slices.Contains(g.Scopes, sc) {
			writeJSON(w, http.StatusOK, verifyKeyResult{Code: "insufficient_scope", KeyID: k.ID})
			return nil
		}
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}
