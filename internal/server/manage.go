package server

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gatehouse/gatehouse/internal/accesslog"
	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/issuer"
)

// The management API (/api/v1) is protected by Gatehouse's own access tokens for auth.ManagementAudience. A token
// that carries org_id is org-scoped: it sees and changes only its organization's clients, grants and API keys, and
// everything else answers 404, as if it did not exist.

// Auditor records management changes in the audit log. Record returns the store's error.
type Auditor interface {
	Record(ctx context.Context, e *auth.AuditEvent) error
}

// caller is who made a management request.
type caller struct {
	subject string // the token's sub: a client_id
	orgID   string // "" for a global administrator
	scopes  []string
}

func (c *caller) has(scope string) bool {
	for _, s := range c.scopes {
		if s == scope {
			return true
		}
	}
	return false
}

// global reports whether the caller is not bound to an organization.
func (c *caller) global() bool { return c.orgID == "" }

// sees reports whether the caller may see something owned by orgID ("" for nothing).
func (c *caller) sees(orgID string) bool { return c.orgID == "" || c.orgID == orgID }

// manageHandler is a management endpoint: it returns an error for writeManageError, or nil once it has answered.
type manageHandler func(w http.ResponseWriter, r *http.Request, c *caller) error

// manage wraps a management endpoint: it authenticates the bearer token and requires scope.
func (s *Server) manage(scope string, h manageHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		c, err := s.authenticateManagement(r)
		if err == nil && !c.has(scope) {
			err = &scopeError{scope: scope}
		}
		if err == nil {
			err = h(w, r, c)
		}
		if err != nil {
			s.writeManageError(w, r, err)
		}
	}
}

// tokenError is a bearer token that is missing or not acceptable (RFC 6750 §3.1).
type tokenError struct {
	missing bool
	reason  string
}

func (e *tokenError) Error() string { return "invalid token: " + e.reason }

// scopeError is a valid token without the scope an endpoint needs.
type scopeError struct{ scope string }

func (e *scopeError) Error() string { return "insufficient scope: needs " + e.scope }

// bearer returns the bearer token of r's Authorization header: "" (no error) when there is none.
func bearer(r *http.Request) (string, error) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return "", nil
	}
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" || strings.ContainsAny(tok, " \t") {
		return "", &tokenError{reason: "the Authorization header is not a Bearer token"}
	}
	return tok, nil
}

func (s *Server) authenticateManagement(r *http.Request) (*caller, error) {
	tok, err := bearer(r)
	if err != nil {
		return nil, err
	}
	if tok == "" {
		return nil, &tokenError{missing: true, reason: "a bearer token for " + auth.ManagementAudience + " is required"}
	}
	claims, held, err := s.managementToken(r.Context(), tok)
	if claims != nil {
		accesslog.From(r.Context()).ClientID = claims.ClientID
	}
	if err != nil {
		return nil, err
	}
	scopes := slices.DeleteFunc(claims.Scopes(), func(s string) bool { return !slices.Contains(held.Scopes, s) })
	return &caller{subject: claims.Subject, orgID: claims.OrgID, scopes: scopes}, nil
}

// managementToken checks a bearer token for the management API and returns its claims with what its client holds
// now. The error is a *tokenError for a token that is not acceptable; any other error is a failure of the store.
// Claims are returned, with the error, once the token itself has checked out.
func (s *Server) managementToken(ctx context.Context, tok string) (*issuer.Claims, issuer.Holding, error) {
	// Issuer.Check costs a map lookup for a token it has seen, not a signature (keyset remembers verified
	// tokens per key set), and it consults the revocation list every time.
	claims, err := s.Issuer.Check(tok)
	if err != nil {
		return nil, issuer.Holding{}, &tokenError{reason: "the token is not valid"}
	}
	if claims.Audience != auth.ManagementAudience {
		return nil, issuer.Holding{}, &tokenError{reason: "the token is not for " + auth.ManagementAudience}
	}
	held, err := s.managementAuthority(ctx, claims)
	return claims, held, err // the claims also with an error, for the access log
}

// managementAuthority returns what the client of a management token holds now. A token may outlive its authority:
// its client disabled, deleted or created again (in an organization, say: the only way to "move" a client), its
// grant narrowed or removed. Only what the client holds now counts, read through the issuer's client cache, which
// this process's changes invalidate: the error is a *tokenError when the token no longer speaks for anyone.
func (s *Server) managementAuthority(ctx context.Context, claims *issuer.Claims) (issuer.Holding, error) {
	held, ok, err := s.Issuer.Granted(ctx, claims.ClientID, auth.ManagementAudience)
	if err != nil {
		return issuer.Holding{}, err
	}
	if !ok || claims.Subject != claims.ClientID || !held.Speaks(claims) {
		return issuer.Holding{}, &tokenError{reason: "the token's client no longer has management access"}
	}
	return held, nil
}

// Management errors, mapped to problem details by writeManageError.
var (
	errNotFound = errors.New("not found")
	errGone     = errors.New("precondition failed")
)

// problemError is an error answered with its own status and detail.
type problemError struct {
	status int
	detail string
	fields []fieldError
}

func (e *problemError) Error() string { return e.detail }

type fieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

func badRequest(format string, args ...any) error {
	return &problemError{status: http.StatusBadRequest, detail: fmt.Sprintf(format, args...)}
}

func fieldErr(field, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	return &problemError{status: http.StatusBadRequest, detail: field + ": " + msg, fields: []fieldError{{field, msg}}}
}

func conflict(format string, args ...any) error {
	return &problemError{status: http.StatusConflict, detail: fmt.Sprintf(format, args...)}
}

func notFound(what string) error {
	return &problemError{status: http.StatusNotFound, detail: what + " not found"}
}

// manageProblem is an RFC 9457 problem with the fields at fault.
type manageProblem struct {
	Type      string       `json:"type"`
	Title     string       `json:"title"`
	Status    int          `json:"status"`
	Detail    string       `json:"detail,omitempty"`
	Errors    []fieldError `json:"errors,omitempty"`
	RequestID string       `json:"request_id,omitempty"`
}

// writeManageError answers a management request's error as RFC 9457 problem JSON; bearer-token failures also carry
// an RFC 6750 WWW-Authenticate challenge. A store failure is 503 and logged, never described.
func (s *Server) writeManageError(w http.ResponseWriter, r *http.Request, err error) {
	p := manageProblem{Type: "about:blank", RequestID: accesslog.From(r.Context()).ID}
	var (
		te *tokenError
		se *scopeError
		pe *problemError
		ve *auth.ValidationError
	)
	switch {
	case errors.As(err, &te):
		p.Status, p.Detail = http.StatusUnauthorized, te.reason
		challenge := `Bearer realm="gatehouse"`
		if !te.missing {
			challenge += `, error="invalid_token", error_description="` + te.reason + `"`
		}
		w.Header().Set("WWW-Authenticate", challenge)
	case errors.As(err, &se):
		p.Status, p.Detail = http.StatusForbidden, "the token lacks the scope "+se.scope
		w.Header().Set("WWW-Authenticate", `Bearer realm="gatehouse", error="insufficient_scope", scope="`+se.scope+`"`)
	case errors.As(err, &pe):
		p.Status, p.Detail, p.Errors = pe.status, pe.detail, pe.fields
	case errors.As(err, &ve):
		p.Status, p.Detail, p.Errors = http.StatusBadRequest, ve.Error(), []fieldError{{ve.Field, ve.Message}}
	case errors.Is(err, errGone), errors.Is(err, auth.ErrStale):
		p.Status, p.Detail = http.StatusPreconditionFailed, "the resource has changed since the ETag given in If-Match; read it again"
	case errors.Is(err, auth.ErrNotFound), errors.Is(err, errNotFound):
		p.Status, p.Detail = http.StatusNotFound, "not found"
	case errors.Is(err, auth.ErrConflict):
		p.Status, p.Detail = http.StatusConflict, "conflicts with an existing resource"
	case errors.Is(err, context.Canceled):
		return
	case errors.Is(err, auth.ErrUnavailable):
		s.Logger.Warn("management request failed: the database is unreachable", "err", err, "request_id", p.RequestID)
		w.Header().Set("Retry-After", "1")
		p.Status, p.Detail = http.StatusServiceUnavailable, "the database cannot be reached right now; retry shortly"
	default:
		s.Logger.Error("management request failed", "err", err, "request_id", p.RequestID)
		w.Header().Set("Retry-After", "1")
		p.Status, p.Detail = http.StatusServiceUnavailable, "the server cannot serve this right now; retry shortly"
	}
	p.Title = http.StatusText(p.Status)
	b, _ := json.Marshal(p)
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(p.Status)
	w.Write(append(b, '\n'))
}

// maxManageBody bounds a management request body.
const maxManageBody = 64 << 10

// decode reads a JSON object from r's body into v: at most maxManageBody bytes, unknown fields refused, one value.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || mt != "application/json" && mt != "application/merge-patch+json" {
			return &problemError{status: http.StatusUnsupportedMediaType, detail: "send a JSON body (Content-Type: application/json)"}
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxManageBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &problemError{status: http.StatusRequestEntityTooLarge, detail: fmt.Sprintf("the body is larger than %d bytes", maxManageBody)}
		}
		return badRequest("the body could not be read")
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return badRequest("a JSON object body is required")
	}
	if !utf8.Valid(body) {
		// encoding/json would quietly turn the invalid bytes into U+FFFD and store that.
		return badRequest("the body is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return badRequest("the body holds more than one JSON value")
	}
	return nil
}

// decodeOptional is decode for an optional body: none leaves v as it is.
func decodeOptional(w http.ResponseWriter, r *http.Request, v any) error {
	if r.ContentLength == 0 {
		return nil
	}
	return decode(w, r, v)
}

// patchInput reads the body of a change to a resource at version: If-Match is checked first, so a stale write
// fails before its body is looked at.
func patchInput(w http.ResponseWriter, r *http.Request, version int64, in any) error {
	if err := checkIfMatch(r, version); err != nil {
		return err
	}
	return decode(w, r, in)
}

// jsonError turns a decoding error into a problem naming the field.
func jsonError(err error) error {
	var (
		te *json.UnmarshalTypeError
		se *json.SyntaxError
		fe *fieldDecodeError
	)
	switch {
	case errors.As(err, &fe):
		return fieldErr(fe.field, "%s", fe.msg)
	case errors.As(err, &te) && te.Field != "":
		return fieldErr(te.Field, "must be %s", jsonKind(te.Type.Kind().String()))
	case errors.As(err, &te):
		return badRequest("the body must be a JSON object")
	case errors.As(err, &se):
		return badRequest("the body is not valid JSON (at byte %d)", se.Offset)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name, _ := strconv.Unquote(strings.TrimPrefix(err.Error(), "json: unknown field "))
		return fieldErr(name, "is not a known field")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return badRequest("the body is not valid JSON (it ends early)")
	}
	return badRequest("the body is not valid JSON")
}

func jsonKind(k string) string {
	switch k {
	case "string":
		return "a string"
	case "bool":
		return "true or false"
	case "slice", "array":
		return "an array"
	case "struct", "map", "ptr":
		return "an object"
	}
	return "a number"
}

// fieldDecodeError is a value a custom UnmarshalJSON refused.
type fieldDecodeError struct{ field, msg string }

func (e *fieldDecodeError) Error() string { return e.field + ": " + e.msg }

// Pagination.

const (
	defaultPageSize = 50
	maxPageSize     = 500
)

// page reads ?limit= and ?cursor=. The cursor is opaque to callers: the sort key of the last item, base64url.
func page(r *http.Request) (auth.Page, error) {
	q := r.URL.Query()
	p := auth.Page{Limit: defaultPageSize}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > maxPageSize {
			return p, fieldErr("limit", "must be a whole number from 1 to %d", maxPageSize)
		}
		p.Limit = n
	}
	if c := q.Get("cursor"); c != "" {
		b, err := base64.RawURLEncoding.DecodeString(c)
		if err != nil || len(b) == 0 || len(b) > 600 {
			return p, fieldErr("cursor", "is not a cursor this server returned")
		}
		p.After = string(b)
	}
	return p, nil
}

// list is a page of a list endpoint's answer.
type list[T any] struct {
	Items      []T    `json:"items"`
	NextCursor string `json:"next_cursor,omitempty"`
}

// writePage answers one page. items holds up to limit+1 elements, fetched so: the extra one says there is a next
// page, whose cursor is the key of the last element shown.
func writePage[S, T any](w http.ResponseWriter, items []S, limit int, key func(S) string, view func(S) T) {
	out := list[T]{Items: make([]T, 0, min(len(items), limit))}
	for i, it := range items {
		if i == limit {
			out.NextCursor = base64.RawURLEncoding.EncodeToString([]byte(key(items[i-1])))
			break
		}
		out.Items = append(out.Items, view(it))
	}
	writeJSON(w, http.StatusOK, out)
}

// ETags: a resource's Version, quoted.

func etag(version int64) string { return `"` + strconv.FormatInt(version, 10) + `"` }

// checkIfMatch compares an If-Match header with the current version: errGone on a mismatch. No header, or "*",
// matches anything.
func checkIfMatch(r *http.Request, version int64) error {
	m := r.Header.Get("If-Match")
	if m == "" || m == "*" {
		return nil
	}
	for _, tag := range strings.Split(m, ",") {
		tag = strings.TrimPrefix(strings.TrimSpace(tag), "W/")
		if tag == etag(version) {
			return nil
		}
	}
	return errGone
}

// staleError is the error of an update that lost a compare-and-swap: 412 when the caller sent If-Match, else 409
// (someone changed the resource between our read and our write).
func staleError(r *http.Request) error {
	if r.Header.Get("If-Match") != "" {
		return errGone
	}
	return conflict("the resource changed while this request was applied; retry")
}

// writeResource answers a single resource with its ETag.
func writeResource(w http.ResponseWriter, status int, version int64, v any) {
	w.Header().Set("ETag", etag(version))
	writeJSON(w, status, v)
}

// audit records a management change. A failure to record is logged: the change itself is made.
func (s *Server) audit(r *http.Request, c *caller, action, resource, orgID string, details map[string]any) {
	if s.Audit == nil {
		return
	}
	e := &auth.AuditEvent{
		Time:      time.Now().UTC(),
		Actor:     c.subject,
		Action:    action,
		Resource:  resource,
		OrgID:     orgID,
		RequestID: accesslog.From(r.Context()).ID,
		Address:   r.RemoteAddr,
	}
	if len(details) > 0 {
		e.Details, _ = json.Marshal(details)
	}
	// The change is made: record it even if the caller has gone, but not for longer than auditTimeout, so that a
	// database that stops answering cannot hold the answer (a secret shown once, perhaps) past it.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), auditTimeout)
	defer cancel()
	if err := s.Audit.Record(ctx, e); err != nil {
		s.Logger.Error("audit: recording a management change failed", "err", err, "action", action, "resource", resource,
			"request_id", e.RequestID)
	}
}

// auditTimeout bounds the recording of one management change in the audit log.
const auditTimeout = 5 * time.Second

// changeTime is the time of a change, to the millisecond: what the store keeps, so that the answer to a change
// shows the times that reading the resource again will.
func changeTime() time.Time { return time.Now().UTC().Truncate(time.Millisecond) }

// timeOrNil formats an optional time for JSON.
func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

// invalidateClient drops a client from the issuer's cache after a change.
func (s *Server) invalidateClient(id string) { s.Issuer.Invalidate(id) }
