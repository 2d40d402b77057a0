// Package lambdaauth is an Amazon API Gateway Lambda authorizer on package verify: REST API TOKEN and REQUEST
// authorizers answering with an IAM policy, and HTTP API authorizers answering with a simple response.
//
//	v, err := verify.New(verify.Config{Issuer: issuer, Audiences: []string{audience}, JWKSURL: jwksURL})
//	…
//	a, err := lambdaauth.New(v, lambdaauth.Options{})
//	…
//	lambda.Start(a.TokenAuthorizer)
//
// # Policies cover every route the token may call
//
// API Gateway caches an authorizer's policy per token (for the authorizer's TTL, 300 s by default) and applies the
// cached policy to the token's next requests, whatever route they call. A policy that allows only the methodArn of
// the first request therefore denies the token's later requests to other routes with 403 "User is not authorized
// to access this resource" — the documented cause of mysterious 403s behind a Lambda authorizer. So the policy of
// an allowed token names every route the token may call, as resources built from the methodArn's API and stage:
//
//   - without Options.Routes: arn:aws:execute-api:REGION:ACCOUNT:API/STAGE/*/*, every method and path of the
//     stage, and the backend checks scopes itself (they are in the context);
//   - with Options.Routes (scope → route patterns): the routes the token's scopes allow, e.g.
//     arn:aws:execute-api:REGION:ACCOUNT:API/STAGE/GET/reports/*. API Gateway then answers 403 for the others
//     itself, cached or not. A valid token whose scopes allow no route gets an explicit Deny.
//
// # Refusals
//
// A REST authorizer answers a missing or invalid token (malformed, bad signature, expired, another issuer or
// another audience) with the error "Unauthorized", which API Gateway turns into 401 Unauthorized, as the AWS
// documentation prescribes. (Seed 002 returned a Deny policy, which API Gateway turns into 403 for every bad token:
// a client cannot tell a token to renew from a permission it lacks.) A valid token lacking the scopes a route needs
// gets a policy that does not allow that route: 403. When the credential cannot be checked (the issuer's keys cannot
// be fetched, or the Gatehouse server cannot be asked about an API key: verify.ErrUnavailable), the handlers return
// another error, which API Gateway answers with 500, since the caller is not at fault.
//
// An HTTP API simple response can only say isAuthorized true or false (API Gateway: 403 for false); a request
// without the identity source never reaches the authorizer (API Gateway: 401).
//
// # Context
//
// Allowed responses carry a context with sub, client_id, scope (space-separated) and, when the token has one,
// org_id: strings only, as API Gateway requires. REST backends read them as
// $context.authorizer.sub (or event.requestContext.authorizer.sub), HTTP API backends as
// $context.authorizer.lambda.sub.
//
// # Gatehouse API keys
//
// Pass verify.Any(tokens, keys), with keys a *verify.APIKeyVerifier, to accept Gatehouse API keys beside access
// tokens, as "Bearer <key>" in the Authorization header; sub and client_id are then the key's id. Keep the verifier
// for the life of the execution environment, so its cache and management token outlive an invocation. API Gateway
// caches the authorizer's answer for its own TTL (300 s by default) on top of APIKeyConfig.CacheTTL: a deleted key
// may be accepted for the sum of the two, so lower the authorizer's TTL where that matters.
package lambdaauth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/aws/aws-lambda-go/events"

	"github.com/gatehouse/gatehouse/verify"
)

// ErrUnauthorized is the error a REST authorizer returns for a missing or invalid token. Its text,
// "Unauthorized", is what makes API Gateway answer 401.
var ErrUnauthorized = errors.New("Unauthorized")

// Options configures an Authorizer. The zero value allows a valid token every route of the stage.
type Options struct {
	// Routes, when set, limits a token to the routes its scopes allow: for each scope, route patterns
	// "METHOD /path", where METHOD is an HTTP method or * (any) and /path may hold * for any characters, / included
	// ("GET /reports/*", "* /admin", "POST /items"). A token is allowed the union of its scopes' routes.
	Routes map[string][]string
	// Logger receives why tokens were refused (at info) and failures to check them (at error): slog.Default()
	// when nil. Lambda sends it to CloudWatch Logs.
	Logger *slog.Logger
}

// Authorizer answers API Gateway's authorizer events. It is safe for concurrent use.
type Authorizer struct {
	v      verify.TokenVerifier
	routes map[string][]route
	log    *slog.Logger
}

// route is a parsed route pattern.
type route struct {
	method string // upper case, or *
	path   string // starts with /
}

// New returns an Authorizer that verifies tokens with v: a *verify.Verifier, or verify.Any of one and a
// *verify.APIKeyVerifier to accept Gatehouse API keys too.
func New(v verify.TokenVerifier, opts Options) (*Authorizer, error) {
	if v == nil {
		return nil, errors.New("lambdaauth: no verifier")
	}
	a := &Authorizer{v: v, log: opts.Logger}
	if a.log == nil {
		a.log = slog.Default()
	}
	if opts.Routes != nil {
		a.routes = make(map[string][]route, len(opts.Routes))
		for scope, patterns := range opts.Routes {
			for _, p := range patterns {
				r, err := parseRoute(p)
				if err != nil {
					return nil, fmt.Errorf("lambdaauth: Routes[%q]: %w", scope, err)
				}
				a.routes[scope] = append(a.routes[scope], r)
			}
		}
	}
	return a, nil
}

func parseRoute(p string) (route, error) {
	method, path, ok := strings.Cut(strings.TrimSpace(p), " ")
	path = strings.TrimSpace(path)
	method = strings.ToUpper(method)
	if !ok || !strings.HasPrefix(path, "/") || strings.ContainsAny(path, " ?#") {
		return route{}, fmt.Errorf("route %q: use \"METHOD /path\", e.g. \"GET /reports/*\"", p)
	}
	if method != "*" && !slices.Contains([]string{"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}, method) {
		return route{}, fmt.Errorf("route %q: the method must be GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS or *", p)
	}
	return route{method: method, path: path}, nil
}

// TokenAuthorizer answers a REST API TOKEN authorizer event, whose authorizationToken is the Authorization header:
// "Bearer <JWT>".
func (a *Authorizer) TokenAuthorizer(ctx context.Context, e events.APIGatewayCustomAuthorizerRequest) (events.APIGatewayCustomAuthorizerResponse, error) {
	if e.AuthorizationToken == "" {
		return a.unauthorized(verify.ErrNoToken)
	}
	return a.policy(ctx, e.MethodArn, e.AuthorizationToken)
}

// RequestAuthorizer answers a REST API REQUEST authorizer event, reading the token from its Authorization header
// (the header name in any case).
func (a *Authorizer) RequestAuthorizer(ctx context.Context, e events.APIGatewayCustomAuthorizerRequestTypeRequest) (events.APIGatewayCustomAuthorizerResponse, error) {
	var values []string
	for k, vs := range e.MultiValueHeaders {
		if strings.EqualFold(k, "Authorization") {
			values = append(values, vs...)
		}
	}
	if len(values) == 0 {
		for k, v := range e.Headers {
			if strings.EqualFold(k, "Authorization") {
				values = append(values, v)
			}
		}
	}
	switch len(values) {
	case 0:
		return a.unauthorized(verify.ErrNoToken)
	case 1:
	default: // lest API Gateway, this authorizer and the backend read different ones
		return a.unauthorized(fmt.Errorf("%w: more than one Authorization header", verify.ErrMalformed))
	}
	return a.policy(ctx, e.MethodArn, values[0])
}

// HTTPSimple answers an HTTP API authorizer event of payload format 2.0 with a simple response (enable simple
// responses on the authorizer). With Options.Routes, the decision is for the route called, so turn the
// authorizer's caching off or add $context.routeKey to its identity sources, lest a cached true let the token call
// routes its scopes do not allow.
func (a *Authorizer) HTTPSimple(ctx context.Context, e events.APIGatewayV2CustomAuthorizerV2Request) (events.APIGatewayV2CustomAuthorizerSimpleResponse, error) {
	var values []string
	for k, v := range e.Headers {
		if strings.EqualFold(k, "Authorization") {
			values = append(values, v)
		}
	}
	deny := events.APIGatewayV2CustomAuthorizerSimpleResponse{IsAuthorized: false}
	if len(values) != 1 {
		a.log.InfoContext(ctx, "lambdaauth: refused", "reason", "no single Authorization header")
		return deny, nil
	}
	c, err := a.verify(ctx, values[0])
	if err != nil {
		if errors.Is(err, verify.ErrUnavailable) {
			return deny, err
		}
		return deny, nil
	}
	if a.routes != nil && !a.allows(c, e.RequestContext.HTTP.Method, e.RequestContext.HTTP.Path) {
		a.log.InfoContext(ctx, "lambdaauth: refused", "reason", "no scope of the token allows the route",
			"sub", c.Subject, "method", e.RequestContext.HTTP.Method, "path", e.RequestContext.HTTP.Path)
		return deny, nil
	}
	return events.APIGatewayV2CustomAuthorizerSimpleResponse{IsAuthorized: true, Context: contextOf(c)}, nil
}

// policy verifies the Authorization header value authz and answers with the policy for the token.
func (a *Authorizer) policy(ctx context.Context, methodArn, authz string) (events.APIGatewayCustomAuthorizerResponse, error) {
	api, err := parseMethodArn(methodArn)
	if err != nil {
		return events.APIGatewayCustomAuthorizerResponse{}, err
	}
	c, err := a.verify(ctx, authz)
	if err != nil {
		if errors.Is(err, verify.ErrUnavailable) {
			return events.APIGatewayCustomAuthorizerResponse{}, err
		}
		return events.APIGatewayCustomAuthorizerResponse{}, ErrUnauthorized
	}
	resp := events.APIGatewayCustomAuthorizerResponse{PrincipalID: c.Subject, Context: contextOf(c)}
	if a.routes == nil {
		resp.PolicyDocument = document("Allow", []string{api + "/*/*"})
		return resp, nil
	}
	var resources []string
	for _, scope := range c.Scopes {
		for _, r := range a.routes[scope] {
			res := api + "/" + r.method + r.path
			if !slices.Contains(resources, res) {
				resources = append(resources, res)
			}
		}
	}
	if len(resources) == 0 {
		a.log.InfoContext(ctx, "lambdaauth: refused", "reason", "no scope of the token allows any route", "sub", c.Subject)
		resp.PolicyDocument = document("Deny", []string{api + "/*/*"})
		return resp, nil
	}
	resp.PolicyDocument = document("Allow", resources)
	return resp, nil
}

// verify returns the claims of the token in authz, an Authorization header value, logging why it was refused.
func (a *Authorizer) verify(ctx context.Context, authz string) (*verify.Claims, error) {
	token, err := verify.BearerToken(authz)
	if err == nil {
		var c *verify.Claims
		if c, err = a.v.Verify(ctx, token); err == nil {
			return c, nil
		}
	}
	if errors.Is(err, verify.ErrUnavailable) {
		a.log.ErrorContext(ctx, "lambdaauth: cannot verify credentials", "err", err)
		return nil, fmt.Errorf("lambdaauth: %w", err)
	}
	a.log.InfoContext(ctx, "lambdaauth: refused", "reason", err.Error())
	return nil, err
}

// unauthorized logs why a token is missing or unusable and returns ErrUnauthorized.
func (a *Authorizer) unauthorized(err error) (events.APIGatewayCustomAuthorizerResponse, error) {
	a.log.Info("lambdaauth: refused", "reason", err.Error())
	return events.APIGatewayCustomAuthorizerResponse{}, ErrUnauthorized
}

// allows reports whether a scope of c allows method and path (HTTP API simple responses).
func (a *Authorizer) allows(c *verify.Claims, method, path string) bool {
	for _, scope := range c.Scopes {
		for _, r := range a.routes[scope] {
			if (r.method == "*" || strings.EqualFold(r.method, method)) && glob(r.path, path) {
				return true
			}
		}
	}
	return false
}

// glob reports whether s matches pattern, where * matches any characters, / included, as in execute-api ARNs.
func glob(pattern, s string) bool {
	before, after, wild := strings.Cut(pattern, "*")
	if !wild {
		return pattern == s
	}
	if !strings.HasPrefix(s, before) {
		return false
	}
	s = s[len(before):]
	for i := 0; i <= len(s); i++ {
		if glob(after, s[i:]) {
			return true
		}
	}
	return false
}

// parseMethodArn returns the API-and-stage prefix of a methodArn,
// arn:aws:execute-api:REGION:ACCOUNT:API/STAGE/METHOD/PATH → arn:aws:execute-api:REGION:ACCOUNT:API/STAGE.
func parseMethodArn(arn string) (string, error) {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) == 6 && parts[0] == "arn" && parts[2] == "execute-api" {
		segs := strings.SplitN(parts[5], "/", 3)
		if len(segs) == 3 && segs[0] != "" && segs[1] != "" {
			return strings.Join(parts[:5], ":") + ":" + segs[0] + "/" + segs[1], nil
		}
	}
	return "", fmt.Errorf("lambdaauth: methodArn %q is not arn:aws:execute-api:REGION:ACCOUNT:API/STAGE/METHOD/PATH", arn)
}

func document(effect string, resources []string) events.APIGatewayCustomAuthorizerPolicy {
	return events.APIGatewayCustomAuthorizerPolicy{
		Version:   "2012-10-17",
		Statement: []events.IAMPolicyStatement{{Action: []string{"execute-api:Invoke"}, Effect: effect, Resource: resources}},
	}
}

// contextOf is the authorizer context of an allowed token: strings only, as API Gateway requires.
func contextOf(c *verify.Claims) map[string]any {
	ctx := map[string]any{"sub": c.Subject, "client_id": c.ClientID, "scope": strings.Join(c.Scopes, " ")}
	if c.OrgID != "" {
		ctx["org_id"] = c.OrgID
	}
	return ctx
}
