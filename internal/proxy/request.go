package proxy

import (
	"net/http"
	"sort"
	"strings"

	"github.com/gatehouse/gatehouse/internal/oauthreq"
)

// tokenRequest is a client-credentials token request as the caller sent it.
type tokenRequest struct {
	clientID, clientSecret string
	audience, resource     string
	scopes                 []string
	basic                  bool // the client authenticated with HTTP Basic (else in the body)
	json                   bool // the body was JSON (else a form)
}

// oauthError is an RFC 6749 §5.2 error the proxy answers itself.
type oauthError struct {
	status      int
	code        string
	description string
	challenge   bool // add WWW-Authenticate: Basic
}

func (e *oauthError) Error() string { return e.code + ": " + e.description }

func invalidRequest(desc string) *oauthError {
	return &oauthError{status: http.StatusBadRequest, code: "invalid_request", description: desc}
}

// forwarded lists the parameters the proxy understands. Anything else is refused rather than dropped: a
// parameter it did not forward (Auth0's organization, say) could make the upstream issue a different token
// than the one it would hand out from the cache.
var forwarded = map[string]bool{
	"grant_type": true, "client_id": true, "client_secret": true, "audience": true, "resource": true, "scope": true,
}

// parseRequest reads a token request the way a token endpoint does (oauthreq.Read: RFC 6749 §3.2, §4.4): POST, a
// form or JSON (Auth0 style) body of at most 64 KiB, client authentication by HTTP Basic or in the body, never
// both. Only grant_type=client_credentials is accepted: that is what the proxy caches, and it does not relay other
// grants (which carry user credentials or one-time codes) at all.
func parseRequest(w http.ResponseWriter, r *http.Request) (*tokenRequest, *oauthError) {
	// A nil known: every parameter is read, and every JSON member must be a string, so that none goes unseen.
	params, isJSON, rerr := oauthreq.Read(w, r, nil)
	if rerr != nil {
		return nil, fromRequestError(rerr)
	}
	var unknown []string
	for k := range params {
		if !forwarded[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, invalidRequest("the proxy does not forward the parameter(s) " + oauthreq.Quote(strings.Join(unknown, ", ")) +
			"; send such requests to the token endpoint directly")
	}
	switch gt := params["grant_type"]; gt {
	case "client_credentials":
	case "":
		return nil, invalidRequest("grant_type is required")
	default:
		return nil, &oauthError{status: http.StatusBadRequest, code: "unsupported_grant_type",
			description: "the proxy serves grant_type client_credentials only, not " + oauthreq.Quote(gt) + "; send other grants to the token endpoint directly"}
	}
	id, secret, basic, rerr := params.ClientCredentials(r)
	if rerr != nil {
		return nil, fromRequestError(rerr)
	}
	if id == "" || secret == "" {
		// A token endpoint's authenticator would refuse these; the proxy has none, and must neither forward nor
		// cache under incomplete credentials.
		desc := "client authentication is required: HTTP Basic, or client_id and client_secret in the body"
		if basic {
			desc = "malformed HTTP Basic credentials"
		}
		return nil, &oauthError{status: http.StatusUnauthorized, code: "invalid_client", challenge: true, description: desc}
	}
	return &tokenRequest{
		clientID: id, clientSecret: secret, basic: basic, json: isJSON,
		audience: params["audience"], resource: params["resource"], scopes: strings.Fields(params["scope"]),
	}, nil
}

// fromRequestError is e as the proxy answers it. An invalid_client (401) gets a Basic challenge: the client sent
// no credentials, or unreadable Basic ones.
func fromRequestError(e *oauthreq.Error) *oauthError {
	return &oauthError{status: e.Status, code: e.Code, description: e.Description, challenge: e.Status == http.StatusUnauthorized}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
