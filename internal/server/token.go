package server

import (
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/gatehouse/gatehouse/internal/accesslog"
	"github.com/gatehouse/gatehouse/internal/issuer"
	"github.com/gatehouse/gatehouse/internal/oauthreq"
)

// Grant types.
const grantClientCredentials = "client_credentials"

// tokenResponse is the RFC 6749 §5.1 success body.
type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	Scope       string `json:"scope,omitempty"`
}

// knownParams are the parameters the token endpoint reads. They must be strings in a JSON body; other members are
// ignored, whatever their type.
var knownParams = map[string]bool{
	"grant_type": true, "client_id": true, "client_secret": true, "audience": true, "resource": true, "scope": true,
	"subject_token": true, "subject_token_type": true, "requested_token_type": true, "actor_token": true,
	"actor_token_type": true,
}

// handleToken is the token endpoint (RFC 6749 §3.2): POST, form or JSON body, client_secret_basic or
// client_secret_post, audience or resource (RFC 8707) to choose the API, scope to narrow it.
func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	params, _, rerr := oauthreq.Read(w, r, knownParams)
	if rerr != nil {
		s.writeRequestError(w, r, rerr)
		return
	}

	grantType := params["grant_type"]
	switch grantType {
	case "":
		s.writeOAuthError(w, r, &issuer.Error{Code: issuer.CodeInvalidRequest, Description: "grant_type is required"}, false)
		return
	case grantClientCredentials:
	case issuer.GrantTokenExchange:
		s.handleTokenExchange(w, r, params)
		return
	default:
		s.writeOAuthError(w, r, &issuer.Error{Code: issuer.CodeUnsupportedGrantType,
			Description: "grant_type " + oauthreq.Quote(grantType) + " is not supported; use client_credentials or " +
				issuer.GrantTokenExchange}, false)
		return
	}

	clientID, secret, basic, rerr := params.ClientCredentials(r)
	accesslog.From(r.Context()).ClientID = clientID
	if rerr != nil {
		s.writeRequestError(w, r, rerr)
		return
	}
	audience, rerr := params.Target()
	if rerr != nil {
		s.writeRequestError(w, r, rerr)
		return
	}
	tok, err := s.Issuer.ClientCredentials(r.Context(), issuer.Request{
		ClientID: clientID, ClientSecret: secret, Audience: audience, Scope: params["scope"],
		Address: s.clientAddr(r), RequestID: accesslog.From(r.Context()).ID,
	})
	if err != nil {
		s.writeOAuthError(w, r, err, basic)
		return
	}
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, tokenResponse{AccessToken: tok.AccessToken, TokenType: "Bearer", ExpiresIn: tok.ExpiresIn, Scope: tok.Scope})
}

// exchangeResponse is the RFC 8693 §2.2.1 success body.
type exchangeResponse struct {
	tokenResponse
	IssuedTokenType string `json:"issued_token_type"`
}

// handleTokenExchange exchanges an API key (subject_token, with subject_token_type
// urn:gatehouse:params:oauth:token-type:api-key) for an access token with the key's current grants. The key is the
// credential: no client authentication is needed.
func (s *Server) handleTokenExchange(w http.ResponseWriter, r *http.Request, params oauthreq.Params) {
	audience, rerr := params.Target()
	if rerr != nil {
		s.writeRequestError(w, r, rerr)
		return
	}
	switch rt := params["requested_token_type"]; {
	case rt != "" && rt != issuer.TokenTypeAccessToken:
		s.writeOAuthError(w, r, &issuer.Error{Code: issuer.CodeInvalidRequest,
			Description: "requested_token_type: only " + issuer.TokenTypeAccessToken + " is issued"}, false)
		return
	case params["actor_token"] != "" || params["actor_token_type"] != "":
		s.writeOAuthError(w, r, &issuer.Error{Code: issuer.CodeInvalidRequest,
			Description: "actor_token is not supported: an API key acts for itself"}, false)
		return
	}
	tok, err := s.Issuer.ExchangeAPIKey(r.Context(), issuer.ExchangeRequest{
		SubjectToken: params["subject_token"], SubjectTokenType: params["subject_token_type"],
		Audience: audience, Scope: params["scope"],
		Address: s.clientAddr(r), RequestID: accesslog.From(r.Context()).ID,
	})
	if err != nil {
		s.writeOAuthError(w, r, err, false)
		return
	}
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, exchangeResponse{
		tokenResponse:   tokenResponse{AccessToken: tok.AccessToken, TokenType: "Bearer", ExpiresIn: tok.ExpiresIn, Scope: tok.Scope},
		IssuedTokenType: issuer.TokenTypeAccessToken,
	})
}

// writeRequestError answers an error in the token request itself. 405 and 413 are answered as they are; the
// rest like the issuer's errors, with a Basic challenge for invalid_client, which here means that the client sent
// no credentials or an Authorization header that is not readable Basic (RFC 6749 §5.2).
func (s *Server) writeRequestError(w http.ResponseWriter, r *http.Request, e *oauthreq.Error) {
	switch e.Status {
	case http.StatusMethodNotAllowed, http.StatusRequestEntityTooLarge:
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, e.Status, oauthBody{Error: e.Code, Description: e.Description})
	default:
		s.writeOAuthError(w, r, &issuer.Error{Code: e.Code, Description: e.Description}, true)
	}
}

// clientAddr returns the caller's IP address: the peer's, or, when the peer is one of TrustedProxies, the
// rightmost X-Forwarded-For entry that is not (entries left of it are the caller's to forge). An entry that is
// not an IP stops the walk at the last trusted hop.
func (s *Server) clientAddr(r *http.Request) string {
	host := r.RemoteAddr
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if len(s.TrustedProxies) == 0 {
		return host
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !s.trustedProxy(ip) {
		return host
	}
	hops := r.Header.Values("X-Forwarded-For")
	for i := len(hops) - 1; i >= 0; i-- {
		list := strings.Split(hops[i], ",")
		for j := len(list) - 1; j >= 0; j-- {
			hop, err := netip.ParseAddr(strings.TrimSpace(list[j]))
			if err != nil {
				return host
			}
			if !s.trustedProxy(hop) {
				return hop.Unmap().String()
			}
			host = hop.String()
		}
	}
	return host
}

func (s *Server) trustedProxy(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, p := range s.TrustedProxies {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}
