package issuer

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/gatehouse/gatehouse/internal/audit"
	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/limit"
)

// SecurityLog receives the issuer's security events: audit.ActionAuthFailure for every failed client
// authentication, audit.ActionRateLimited for every refusal with too_many_requests. Security is called on the
// token endpoint's path and must not block. *audit.Recorder is one.
type SecurityLog interface {
	Security(e *auth.AuditEvent)
}

// Why a client authentication failed, as the audit log records it ("reason" in Details). The caller only ever
// sees errBadClient, whatever the reason.
const (
	reasonMalformed     = "malformed" // no client_id or secret, or one too long to be real
	reasonUnknownClient = "unknown_client"
	reasonWrongSecret   = "wrong_secret"
	reasonExpiredSecret = "expired_secret"
	reasonDisabled      = "disabled" // the secret was right
)

// checkThrottle refuses a request, before its secret is checked, when its source (or the client_id from its
// source) has failed authentication too often. A Limiter error lets the request through: the throttle is a
// brake on guessing 256-bit secrets, not what keeps them safe.
func (i *Issuer) checkThrottle(ctx context.Context, r Request, now time.Time) error {
	if i.throttle == nil {
		return nil
	}
	ok, wait, err := i.throttle.Check(ctx, clampID(r.ClientID), r.Address, now)
	if err != nil {
		i.log.Warn("authentication throttle unavailable; not throttling", "err", err)
		return nil
	}
	if ok {
		return nil
	}
	i.security(r, audit.ActionRateLimited, nil, `{"limit":"auth_failures"}`)
	return tooMany(wait, "too many failed client authentications")
}

// authFailed counts a failed authentication for the throttle and records it.
func (i *Issuer) authFailed(ctx context.Context, r Request, view *clientView, reason string, now time.Time) {
	if i.throttle != nil {
		if err := i.throttle.Fail(ctx, clampID(r.ClientID), r.Address, now); err != nil {
			i.log.Warn("authentication throttle unavailable; a failure was not counted", "err", err)
		}
	}
	var c *auth.Client
	if view != nil {
		c = view.client
	}
	i.security(r, audit.ActionAuthFailure, c, `{"reason":"`+reason+`"}`)
}

// checkRateLimit takes one token from the client's RateLimit, or refuses the request. A Limiter error lets it
// through: an outage of a shared limiter must not stop token issuance.
func (i *Issuer) checkRateLimit(ctx context.Context, r Request, c *auth.Client, now time.Time) error {
	if i.limiter == nil || c.RateLimit.IsZero() {
		return nil
	}
	rate := limit.Rate(c.RateLimit)
	ok, wait, err := i.limiter.Allow(ctx, c.ID, rate, now)
	if err != nil {
		i.log.Warn("rate limiter unavailable; not limiting", "err", err)
		return nil
	}
	if ok {
		return nil
	}
	details, _ := json.Marshal(map[string]string{"limit": "client", "rate": rate.String()})
	i.security(r, audit.ActionRateLimited, c, string(details))
	return tooMany(wait, fmt.Sprintf("this client may get %s tokens", rate))
}

// tooMany is the too_many_requests error: what was exceeded, and when to retry in whole seconds (at least one).
func tooMany(wait time.Duration, what string) *Error {
	secs := max(1, int64((wait+time.Second-1)/time.Second))
	return &Error{Code: CodeTooManyRequests, Description: fmt.Sprintf("%s; retry after %d seconds", what, secs),
		RetryAfter: time.Duration(secs) * time.Second}
}

// security hands a security event about r to the audit log. c is the client, when it exists.
func (i *Issuer) security(r Request, action string, c *auth.Client, details string) {
	if i.audit == nil {
		return
	}
	id := clampID(r.ClientID)
	e := &auth.AuditEvent{Actor: id, Action: action, Address: r.Address, RequestID: r.RequestID, Details: json.RawMessage(details)}
	if id != "" {
		e.Resource = "client/" + id
	}
	if c != nil {
		e.OrgID = c.OrgID
	}
	i.audit.Security(e)
}

// clampID cuts a client_id that is too long to be real, so that what a caller sends cannot grow the throttle's
// keys or the audit log.
func clampID(id string) string {
	if len(id) > auth.MaxClientIDLen {
		return id[:auth.MaxClientIDLen]
	}
	return id
}
