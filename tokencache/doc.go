// Package tokencache gets OAuth 2.0 client-credentials access tokens from any token endpoint (Auth0, Amazon
// Cognito, Okta, Keycloak, Gatehouse) and caches them, because every token costs a round trip and, with most
// providers, money.
//
// A Source holds the current token in memory: a hit is an atomic load and a clock read. Before the token expires the
// Source refreshes it ahead of time: from the advisory point (a jittered fraction of the lifetime before expiry) one
// background fetch runs while callers keep getting the still-valid token; in the last, mandatory, window callers wait
// for the new one. Concurrent fetches collapse into one; a failed refresh keeps the valid token in service and is
// retried with exponential back-off and full jitter; an expired token is never returned.
//
// With a shared Cache (NewMemoryCache in one process, package rediscache across processes) Sources with the same
// configuration share tokens; a Cache that is also a Coordinator lets exactly one process fetch while the others
// wait for its result. Tokens are sealed with a key derived from the client secret before they reach the cache, and
// a Cache that fails is skipped: the upstream still serves the caller.
//
// Source.Transport adds the token to outgoing requests and, on a 401, drops exactly the rejected token and retries
// once. Source.TokenSource adapts a Source to golang.org/x/oauth2.
package tokencache
