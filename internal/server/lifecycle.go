package server

import (
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/accesslog"
	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/issuer"
	"github.com/gatehouse/gatehouse/internal/oauthreq"
	"github.com/gatehouse/gatehouse/internal/revocation"
)

// Error codes of RFC 6750 §3.1, for callers that authenticate with a bearer token.
const (
	codeInvalidToken      = "invalid_token"
	codeInsufficientScope = "insufficient_scope"
)

// authMethods are the client authentication methods of the introspection and revocation endpoints, as discovery
// lists them. A management access token (Authorization: Bearer, RFC 7662 §2.1) is accepted too.
var authMethods = []string{"client_secret_basic", "client_secret_post"}

// The parameters each endpoint reads; the client's credentials are read from the body too.
var (
	introspectParams = map[string]bool{"token": true, "token_type_hint": true, "client_id": true, "client_secret": true}
	revokeParams     = map[string]bool{
		"token": true, "token_type_hint": true, "client_id": true, "client_secret": true,
		"subject": true, "issued_before": true, "disable_client": true,
	}
)

// tokenCaller is who called introspection, revocation or the revocation feed.
type tokenCaller struct {
	clientID string
	bearer   bool                    // authenticated with a management access token rather than a client secret
	can      func(scope string) bool // whether it holds a management scope
}

// callerError is why a caller was refused, ready to answer.
type callerError struct {
	status    int
	code      string
	desc      string
	challenge string // WWW-Authenticate, if any
	err       error  // a failure of the server, answered 503 (status is then 0)
}

// authenticate finds out who is calling: a management access token (Authorization: Bearer, a token this server
// issued for auth.ManagementAudience, checked in process) or a client's credentials (client_secret_basic or
// client_secret_post, checked as the token endpoint checks them).
func (s *Server) authenticate(r *http.Request, params oauthreq.Params) (*tokenCaller, *callerError) {
	if authz := r.Header.Values("Authorization"); len(authz) == 1 && len(authz[0]) > 7 && strings.EqualFold(authz[0][:7], "Bearer ") {
		if params["client_secret"] != "" {
			return nil, &callerError{status: http.StatusBadRequest, code: issuer.CodeInvalidRequest,
				desc: "use one authentication method: a bearer token or client credentials, not both"}
		}
		// Act only on the authority the token's client holds now, as the management API does.
		claims, held, err := s.managementToken(r.Context(), strings.TrimSpace(authz[0][7:]))
		var te *tokenError
		if err != nil && !errors.As(err, &te) {
			return nil, &callerError{err: err}
		}
		if err != nil {
			return nil, &callerError{status: http.StatusUnauthorized, code: codeInvalidToken,
				desc:      "the bearer token is not a valid access token for " + auth.ManagementAudience,
				challenge: `Bearer realm="gatehouse", error="invalid_token"`}
		}
		// introspect:tokens and revoke:tokens reach every token: an organization's administrator never holds them.
		can := func(scope string) bool {
			return claims.OrgID == "" && claims.HasScope(scope) && slices.Contains(held.Scopes, scope)
		}
		return &tokenCaller{clientID: claims.ClientID, bearer: true, can: can}, nil
	}
	id, secret, basic, rerr := params.ClientCredentials(r)
	accesslog.From(r.Context()).ClientID = id
	if rerr != nil {
		ce := &callerError{status: rerr.Status, code: rerr.Code, desc: rerr.Description}
		if rerr.Code == issuer.CodeInvalidClient {
			ce.challenge = `Basic realm="gatehouse", charset="UTF-8"`
		}
		return nil, ce
	}
	c, err := s.Issuer.AuthenticateClient(r.Context(), id, secret)
	if err != nil {
		var oe *issuer.Error
		if !errors.As(err, &oe) {
			return nil, &callerError{err: err}
		}
		ce := &callerError{status: http.StatusUnauthorized, code: oe.Code, desc: oe.Description}
		if basic {
			ce.challenge = `Basic realm="gatehouse", charset="UTF-8"`
		}
		return nil, ce
	}
	return &tokenCaller{clientID: c.ClientID, can: func(scope string) bool {
		return c.OrgID == "" && c.Granted(auth.ManagementAudience, scope)
	}}, nil
}

// require refuses a caller that does not hold scope.
func (c *tokenCaller) require(scope string) *callerError {
	if c.can(scope) {
		return nil
	}
	ce := &callerError{status: http.StatusForbidden, code: codeInsufficientScope,
		desc: "this needs the " + scope + " scope of " + auth.ManagementAudience}
	if c.bearer {
		ce.challenge = `Bearer realm="gatehouse", error="insufficient_scope", scope="` + scope + `"`
	}
	return ce
}

// writeCallerError answers a refused caller, as an RFC 6749 §5.2 / RFC 6750 §3 error.
func (s *Server) writeCallerError(w http.ResponseWriter, r *http.Request, ce *callerError) {
	if ce.err != nil {
		s.writeOAuthError(w, r, ce.err, false) // 503 temporarily_unavailable, logged
		return
	}
	accesslog.From(r.Context()).Error = ce.code
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	if ce.challenge != "" {
		h.Set("WWW-Authenticate", ce.challenge)
	}
	writeJSON(w, ce.status, oauthBody{Error: ce.code, Description: ce.desc})
}

// readRequest reads a POST form (or JSON) request to one of these endpoints and authenticates its caller.
func (s *Server) readRequest(w http.ResponseWriter, r *http.Request, known map[string]bool) (oauthreq.Params, *tokenCaller, bool) {
	params, _, rerr := oauthreq.Read(w, r, known)
	if rerr != nil {
		if rerr.Status == http.StatusMethodNotAllowed {
			rerr.Description = "this endpoint accepts only POST"
		}
		s.writeRequestError(w, r, rerr)
		return nil, nil, false
	}
	c, ce := s.authenticate(r, params)
	if ce != nil {
		s.writeCallerError(w, r, ce)
		return nil, nil, false
	}
	accesslog.From(r.Context()).ClientID = c.clientID
	return params, c, true
}

// introspection is the RFC 7662 §2.2 answer.
type introspection struct {
	Active    bool   `json:"active"`
	Scope     string `json:"scope,omitempty"`
	ClientID  string `json:"client_id,omitempty"`
	TokenType string `json:"token_type,omitempty"`
	ExpiresAt int64  `json:"exp,omitempty"`
	IssuedAt  int64  `json:"iat,omitempty"`
	NotBefore int64  `json:"nbf,omitempty"`
	Subject   string `json:"sub,omitempty"`
	Audience  string `json:"aud,omitempty"`
	Issuer    string `json:"iss,omitempty"`
	JTI       string `json:"jti,omitempty"`
	OrgID     string `json:"org_id,omitempty"`
}

// handleIntrospect is token introspection (RFC 7662). Callers hold the introspect:tokens scope of the management
// API. A token this server issued that is unexpired and unrevoked is active, with its claims; any other token —
// expired, revoked, malformed, signed by another key, issued by another server — is {"active": false}. A valid
// token costs no database read: its signature check is remembered and revocations are in memory.
func (s *Server) handleIntrospect(w http.ResponseWriter, r *http.Request) {
	params, c, ok := s.readRequest(w, r, introspectParams)
	if !ok {
		return
	}
	if ce := c.require(auth.ScopeIntrospect); ce != nil {
		s.writeCallerError(w, r, ce)
		return
	}
	token := params["token"]
	if token == "" {
		s.writeCallerError(w, r, &callerError{status: http.StatusBadRequest, code: issuer.CodeInvalidRequest, desc: "token is required"})
		return
	}
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	claims, err := s.Issuer.Check(token)
	if err != nil {
		writeJSON(w, http.StatusOK, introspection{Active: false})
		return
	}
	writeJSON(w, http.StatusOK, introspection{
		Active: true, Scope: claims.Scope, ClientID: claims.ClientID, TokenType: "Bearer",
		ExpiresAt: claims.ExpiresAt, IssuedAt: claims.IssuedAt, NotBefore: claims.NotBefore,
		Subject: claims.Subject, Audience: claims.Audience, Issuer: claims.Issuer, JTI: claims.ID, OrgID: claims.OrgID,
	})
}

// maxFutureCutoff is how far ahead of now an admin's issued_before may be.
const maxFutureCutoff = time.Minute

// handleRevoke is token revocation (RFC 7009), plus two operations for holders of the revoke:tokens scope.
//
//   - token=T: revoke T. Any authenticated client may revoke its own tokens (client_id its own); with revoke:tokens,
//     any token. A token of another client, or one that is invalid, expired or revoked already, is answered 200 and
//     left alone, as RFC 7009 §2.2 says.
//   - subject=S [issued_before=TIME]: revoke every token whose sub is S (a client id, or an API key id) issued
//     before TIME — unix seconds or RFC 3339, default now — and in its second. Answered with the cut-off.
//   - disable_client=C: disable client C, so it gets no more tokens, and revoke every token it got so far.
//
// Revocations take effect on this instance at once, on others within their revocation poll interval (at once on
// PostgreSQL, which announces them).
func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request) {
	params, c, ok := s.readRequest(w, r, revokeParams)
	if !ok {
		return
	}
	ops := 0
	for _, p := range []string{"token", "subject", "disable_client"} {
		if params[p] != "" {
			ops++
		}
	}
	switch {
	case ops == 0:
		s.writeCallerError(w, r, &callerError{status: http.StatusBadRequest, code: issuer.CodeInvalidRequest, desc: "token is required"})
		return
	case ops > 1:
		s.writeCallerError(w, r, &callerError{status: http.StatusBadRequest, code: issuer.CodeInvalidRequest,
			desc: "send one of token, subject and disable_client"})
		return
	case params["issued_before"] != "" && params["subject"] == "":
		s.writeCallerError(w, r, &callerError{status: http.StatusBadRequest, code: issuer.CodeInvalidRequest,
			desc: "issued_before goes with subject"})
		return
	}
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	switch {
	case params["token"] != "":
		s.revokeToken(w, r, c, params["token"])
	case params["subject"] != "":
		s.revokeSubject(w, r, c, params["subject"], params["issued_before"])
	default:
		s.disableClient(w, r, c, params["disable_client"])
	}
}

func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request, c *tokenCaller, token string) {
	claims, err := s.Issuer.Check(token)
	switch {
	case err != nil:
		accesslog.From(r.Context()).Result = "invalid token"
	case claims.ClientID != c.clientID && !c.can(auth.ScopeRevokeTokens):
		accesslog.From(r.Context()).Result = "another client's token: left alone"
	default:
		if err := s.Revocations.RevokeToken(r.Context(), claims.ID, time.Unix(claims.ExpiresAt, 0)); err != nil {
			s.writeOAuthError(w, r, err, false)
			return
		}
		accesslog.From(r.Context()).Result = "revoked"
		if claims.ClientID != c.clientID { // an administrator's act; a client revoking its own token is routine
			s.audit(r, &caller{subject: c.clientID}, "token.revoke", "token/"+claims.ID, claims.OrgID,
				map[string]any{"sub": claims.Subject, "client_id": claims.ClientID})
		}
	}
	w.WriteHeader(http.StatusOK)
}

// cutoffResponse answers the operations on a subject.
type cutoffResponse struct {
	Subject      string `json:"subject"`
	IssuedBefore int64  `json:"issued_before"` // unix seconds: tokens whose iat is below it are revoked
	Disabled     bool   `json:"client_disabled,omitempty"`
}

func (s *Server) revokeSubject(w http.ResponseWriter, r *http.Request, c *tokenCaller, subject, before string) {
	if ce := c.require(auth.ScopeRevokeTokens); ce != nil {
		s.writeCallerError(w, r, ce)
		return
	}
	now := time.Now()
	at := now
	if before != "" {
		var err error
		if at, err = parseTime(before); err != nil || at.After(now.Add(maxFutureCutoff)) {
			s.writeCallerError(w, r, &callerError{status: http.StatusBadRequest, code: issuer.CodeInvalidRequest,
				desc: "issued_before must be a time, in unix seconds or RFC 3339, not in the future (to stop a client getting tokens, disable it)"})
			return
		}
	}
	if err := s.Revocations.RevokeSubject(r.Context(), subject, at); err != nil {
		s.writeOAuthError(w, r, err, false)
		return
	}
	s.audit(r, &caller{subject: c.clientID}, "token.revoke_subject", "subject/"+subject, "",
		map[string]any{"issued_before": at.UTC()})
	writeJSON(w, http.StatusOK, cutoffResponse{Subject: subject, IssuedBefore: revocation.IatBelow(at)})
}

func (s *Server) disableClient(w http.ResponseWriter, r *http.Request, c *tokenCaller, clientID string) {
	if ce := c.require(auth.ScopeRevokeTokens); ce != nil {
		s.writeCallerError(w, r, ce)
		return
	}
	ctx := r.Context()
	cl, err := s.Store.FindClient(ctx, clientID)
	if errors.Is(err, auth.ErrNotFound) {
		s.writeCallerError(w, r, &callerError{status: http.StatusBadRequest, code: issuer.CodeInvalidRequest,
			desc: "no client " + oauthreq.Quote(clientID)})
		return
	}
	if err != nil {
		s.writeOAuthError(w, r, err, false)
		return
	}
	now := time.Now()
	for attempt := 0; !cl.Disabled; attempt++ {
		cl.Disabled, cl.UpdatedAt = true, changeTime()
		err = s.Store.UpdateClient(ctx, cl)
		if errors.Is(err, auth.ErrStale) && attempt < 3 {
			if cl, err = s.Store.FindClient(ctx, clientID); err == nil {
				continue // changed meanwhile: disable what is there now
			}
		}
		if err != nil {
			s.writeOAuthError(w, r, err, false)
			return
		}
	}
	s.Issuer.Invalidate(clientID)
	// Other instances may issue tokens to the client until their cached copy of it expires: revoke those too.
	at := now.Add(max(s.Issuer.CacheTTL(), 0) + time.Second)
	if err := s.Revocations.RevokeSubject(ctx, clientID, at); err != nil {
		s.writeOAuthError(w, r, err, false)
		return
	}
	s.Logger.Warn("client disabled and its tokens revoked", "client_id", clientID, "by", c.clientID)
	s.audit(r, &caller{subject: c.clientID}, "client.disable", "client/"+clientID, cl.OrgID,
		map[string]any{"disabled": true, "issued_before": at.UTC()})
	writeJSON(w, http.StatusOK, cutoffResponse{Subject: clientID, IssuedBefore: revocation.IatBelow(at), Disabled: true})
}

// parseTime reads unix seconds or an RFC 3339 time.
func parseTime(s string) (time.Time, error) {
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		if n < 0 || n > 1<<40 {
			return time.Time{}, errors.New("out of range")
		}
		return time.Unix(n, 0), nil
	}
	return time.Parse(time.RFC3339, s)
}

// feed is the revocation feed's answer.
type feed struct {
	Cursor   string        `json:"cursor"` // what to send as since next time
	Tokens   []feedToken   `json:"revoked_tokens"`
	Subjects []feedSubject `json:"revoked_subjects"`
}

type feedToken struct {
	JTI       string `json:"jti"`
	ExpiresAt int64  `json:"exp"` // unix seconds; the entry may be dropped once it has passed
}

type feedSubject struct {
	Subject      string `json:"sub"`
	IssuedBefore int64  `json:"issued_before"` // unix seconds: tokens of sub whose iat is below it are revoked
	ExpiresAt    int64  `json:"exp"`           // unix seconds; the entry may be dropped once it has passed
}

// handleRevocations is the revocation feed for verifiers (GET /oauth/revocations[?since=CURSOR]): the revoked
// tokens that have not expired, and the subjects' cut-offs, that this instance learned of since the cursor (every
// one without since), and the cursor to send next. Callers authenticate like introspection's, with HTTP Basic or a
// bearer token, and hold introspect:tokens. Entries may be sent more than once.
func (s *Server) handleRevocations(w http.ResponseWriter, r *http.Request) {
	c, ce := s.authenticate(r, oauthreq.Params{})
	if ce == nil {
		accesslog.From(r.Context()).ClientID = c.clientID
		ce = c.require(auth.ScopeIntrospect)
	}
	if ce != nil {
		s.writeCallerError(w, r, ce)
		return
	}
	var since time.Time
	if v := r.URL.Query().Get("since"); v != "" {
		ms, err := strconv.ParseInt(v, 10, 64)
		if err != nil || ms < 0 {
			s.writeCallerError(w, r, &callerError{status: http.StatusBadRequest, code: issuer.CodeInvalidRequest,
				desc: "since must be a cursor from an earlier answer"})
			return
		}
		since = time.UnixMilli(ms)
	}
	tokens, cutoffs, cursor := s.Revocations.Changes(since)
	f := feed{Cursor: strconv.FormatInt(cursor.UnixMilli(), 10),
		Tokens: make([]feedToken, len(tokens)), Subjects: make([]feedSubject, len(cutoffs))}
	for i, t := range tokens {
		f.Tokens[i] = feedToken{JTI: t.JTI, ExpiresAt: t.ExpiresAt.Unix()}
	}
	for i, c := range cutoffs {
		f.Subjects[i] = feedSubject{Subject: c.Subject, IssuedBefore: revocation.IatBelow(c.IssuedBefore), ExpiresAt: c.ExpiresAt.Unix()}
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, f)
}
