package issuer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/gatehouse/gatehouse/internal/apikey"
	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/auth"
)

// Token exchange (RFC 8693) of an API key for an access token.
const (
	GrantTokenExchange   = "urn:ietf:params:oauth:grant-type:token-exchange"
	TokenTypeAPIKey      = "urn:gatehouse:params:oauth:token-type:api-key"
	TokenTypeAccessToken = "urn:ietf:params:oauth:token-type:access_token"
)

// errBadKey is the one answer for a key that is malformed, unknown, deleted, rotated out, expired or disabled
// (RFC 8693 §2.2.2: invalid_request), so the answer tells nothing about which keys exist or existed.
var errBadKey = &Error{Code: CodeInvalidRequest, Description: "the subject_token is not a working API key"}

// errMisplacedKey answers an API key sent in another parameter than subject_token, which the errors about that
// parameter would otherwise repeat: keys never appear in error messages.
var errMisplacedKey = &Error{Code: CodeInvalidRequest,
	Description: "an API key must be sent as the subject_token, and in no other parameter"}

// holdsKey reports whether s holds a well-formed API key as one of its space- or slash-separated parts (the parts
// of a scope list, of <api>/<scope> and of a URL).
func holdsKey(s string) bool {
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ' ' || r == '/' }) {
		if _, err := apikey.Parse(f); err == nil {
			return true
		}
	}
	return false
}

// ExchangeRequest is a token exchange request, already parsed from HTTP.
type ExchangeRequest struct {
	SubjectToken     string
	SubjectTokenType string
	Audience         string // from audience or resource; needed only when the key holds several APIs
	Scope            string // narrows the key's scopes; "" for all of them
	Address          string // the caller's address, for the failure throttle and the audit log
	RequestID        string
}

// ExchangeAPIKey exchanges an API key for an RFC 9068 access token carrying the key's current grants: sub and
// client_id are the key's id, with org_id and owner where set; it lives for the API's key token lifetime. Failed
// key checks count towards the per-address throttle, as failed client authentications do.
func (i *Issuer) ExchangeAPIKey(ctx context.Context, r ExchangeRequest) (*Token, error) {
	if i.keys == nil {
		return nil, oauthErr(CodeUnsupportedGrantType, "token exchange is not enabled on this server")
	}
	if holdsKey(r.SubjectTokenType) || holdsKey(r.Audience) || holdsKey(r.Scope) {
		return nil, errMisplacedKey
	}
	switch r.SubjectTokenType {
	case "":
		return nil, oauthErr(CodeInvalidRequest, "subject_token_type is required: use %s", TokenTypeAPIKey)
	case TokenTypeAPIKey:
	default:
		return nil, oauthErr(CodeInvalidRequest, "subject_token_type %q is not supported: use %s", truncate(r.SubjectTokenType, 100), TokenTypeAPIKey)
	}
	if r.SubjectToken == "" {
		return nil, oauthErr(CodeInvalidRequest, "subject_token is required: the API key")
	}
	now := i.now()
	cred := Request{Address: r.Address, RequestID: r.RequestID}
	if err := i.checkThrottle(ctx, cred, now); err != nil {
		return nil, err
	}
	ch, until, err := i.keys.CheckFor(ctx, r.SubjectToken, nil)
	if errors.Is(err, apikey.ErrRefused) {
		i.keyFailed(ctx, r, apikey.Code(err), now)
		return nil, errBadKey
	}
	if err != nil {
		return nil, err
	}
	g, scopes, err := i.resolve(keyView(ch), r.Audience, r.Scope)
	if err != nil {
		return nil, err
	}
	lifetime := g.api.KeyTokenLifetime
	if lifetime <= 0 || lifetime > g.api.TokenLifetime {
		lifetime = min(auth.DefaultKeyTokenLifetime, g.api.TokenLifetime)
	}
	exp := ch.Key.ExpiresAt
	if !until.IsZero() && (exp.IsZero() || until.Before(exp)) {
		exp = until // a rotated-out key: its tokens do not outlive its grace period either
	}
	if !exp.IsZero() && exp.Sub(now) < lifetime {
		lifetime = exp.Sub(now).Truncate(time.Second) // the token does not outlive the key
		if lifetime < time.Second {
			i.keyFailed(ctx, r, "expired", now) // expires before a token could be used
			return nil, errBadKey
		}
	}
	k := ch.Key
	c := keyClaims{
		Claims: Claims{
			Issuer: i.iss, Subject: k.ID, Audience: g.api.Identifier,
			IssuedAt: now.Unix(), NotBefore: now.Unix(), ExpiresAt: now.Add(lifetime).Unix(),
			ID: newJTI(), ClientID: k.ID, Scope: strings.Join(scopes, " "), OrgID: k.OrgID,
		},
		Owner: k.Owner,
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("marshal claims: %w", err)
	}
	tok, err := i.signer.Sign(ctx, g.api.SigningAlg, payload)
	if err != nil {
		return nil, fmt.Errorf("sign token for %s: %w", g.api.Identifier, err)
	}
	return &Token{AccessToken: tok, ExpiresIn: int64(lifetime / time.Second), Scope: c.Scope, Audience: c.Audience}, nil
}

// keyClaims are the claims of a token exchanged for an API key: the usual ones and the key's owner.
type keyClaims struct {
	Claims
	Owner string `json:"owner,omitempty"`
}

// keyView presents a checked key's grants as resolve reads a client's.
func keyView(ch *apikey.Checked) *clientView {
	v := &clientView{grants: make(map[string]*grant, len(ch.Grants))}
	for aud, g := range ch.Grants {
		if aud == auth.ManagementAudience {
			continue // keys cannot hold management access; the management API refuses such a grant, and so does this
		}
		v.grants[aud] = &grant{api: g.API, scopes: g.Scopes}
	}
	if len(v.grants) == 1 {
		for _, g := range v.grants {
			v.only = g
		}
	}
	return v
}

// keyFailed counts a failed key check for the per-address throttle and records it in the audit log. The key
// itself is never recorded.
func (i *Issuer) keyFailed(ctx context.Context, r ExchangeRequest, code string, now time.Time) {
	if i.throttle != nil {
		if err := i.throttle.Fail(ctx, "", r.Address, now); err != nil {
			i.log.Warn("authentication throttle unavailable; a failure was not counted", "err", err)
		}
	}
	if i.audit != nil {
		i.audit.Security(&auth.AuditEvent{Action: audit.ActionAPIKeyFailure, Address: r.Address, RequestID: r.RequestID,
			Details: json.RawMessage(`{"reason":"` + code + `"}`)})
	}
}
