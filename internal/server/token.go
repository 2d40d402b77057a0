package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"

	"github.com/gatehouse/gatehouse/internal/issuer"
)

// maxTokenBody bounds a token request body.
const maxTokenBody = 64 << 10

// Grant types.
const grantClientCredentials = "client_credentials"

// tokenResponse is the RFC 6749 §5.1 success body.
type tokenResponse struct {
	AccessToken string `json:"access_token"`
	TokenType   string `json:"token_type"`
	ExpiresIn   int64  `json:"expires_in"`
	Scope       string `json:"scope,omitempty"`
}

// handleToken is the token endpoint (RFC 6749 §3.2): POST, form or JSON body, client_secret_basic or
// client_secret_post, audience or resource (RFC 8707) to choose the API, scope to narrow it.
func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		w.Header().Set("Cache-Control", "no-store")
		writeJSON(w, http.StatusMethodNotAllowed, oauthBody{Error: issuer.CodeInvalidRequest, Description: "the token endpoint accepts only POST"})
		return
	}
	params, status, err := readParams(w, r)
	if err != nil {
		if status == http.StatusRequestEntityTooLarge {
			w.Header().Set("Cache-Control", "no-store")
			writeJSON(w, status, oauthBody{Error: issuer.CodeInvalidRequest, Description: err.Error()})
			return
		}
		s.writeOAuthError(w, r, err, false)
		return
	}

	grantType := params["grant_type"]
	switch grantType {
	case "":
		s.writeOAuthError(w, r, badRequest("grant_type is required"), false)
		return
	case grantClientCredentials:
	default:
		s.writeOAuthError(w, r, &issuer.Error{Code: issuer.CodeUnsupportedGrantType,
			Description: "grant_type " + quote(grantType) + " is not supported; use client_credentials"}, false)
		return
	}

	clientID, secret, basic, err := clientCredentials(r, params)
	if info := reqInfoFrom(r.Context()); info != nil {
		info.clientID = truncate(clientID, 128)
	}
	if err != nil {
		s.writeOAuthError(w, r, err, basic || secret == "")
		return
	}
	audience, err := target(params)
	if err != nil {
		s.writeOAuthError(w, r, err, false)
		return
	}
	tok, err := s.Issuer.ClientCredentials(r.Context(), issuer.Request{
		ClientID: clientID, ClientSecret: secret, Audience: audience, Scope: params["scope"],
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

// clientCredentials takes the client's credentials from HTTP Basic (RFC 6749 §2.3.1: each part form-encoded) or from
// the body, never both. basic reports whether the Authorization header was used.
func clientCredentials(r *http.Request, params map[string]string) (id, secret string, basic bool, err error) {
	bodyID, bodySecret := params["client_id"], params["client_secret"]
	authz := r.Header.Values("Authorization")
	if len(authz) == 0 {
		if bodySecret == "" {
			return bodyID, "", false, &issuer.Error{Code: issuer.CodeInvalidClient,
				Description: "client authentication is required: HTTP Basic, or client_id and client_secret in the body"}
		}
		return bodyID, bodySecret, false, nil
	}
	if len(authz) > 1 {
		return "", "", true, badRequest("more than one Authorization header")
	}
	rawID, rawSecret, ok := r.BasicAuth()
	if !ok {
		return "", "", true, &issuer.Error{Code: issuer.CodeInvalidClient,
			Description: "the Authorization header must use the Basic scheme with base64(client_id:client_secret)"}
	}
	if bodySecret != "" {
		return "", "", true, badRequest("use one client authentication method: HTTP Basic or client_secret in the body, not both")
	}
	id, err1 := url.QueryUnescape(rawID)
	secret, err2 := url.QueryUnescape(rawSecret)
	if err1 != nil || err2 != nil {
		return "", "", true, &issuer.Error{Code: issuer.CodeInvalidClient, Description: "malformed HTTP Basic credentials"}
	}
	if bodyID != "" && bodyID != id {
		return "", "", true, badRequest("client_id in the body differs from the one in the Authorization header")
	}
	return id, secret, true, nil
}

// target returns the API the caller names with audience (Auth0) or resource (RFC 8707); "" when neither is given.
func target(params map[string]string) (string, error) {
	aud, res := params["audience"], params["resource"]
	switch {
	case aud != "" && res != "" && aud != res:
		return "", badRequest("audience and resource name different APIs; send one")
	case aud != "":
		return aud, nil
	}
	return res, nil
}

// readParams reads the body as application/x-www-form-urlencoded or application/json into single-valued
// parameters. A parameter sent without a value counts as absent (RFC 6749 §3.2). On error the status is 413 for an
// oversized body; otherwise the error is an invalid_request.
func readParams(w http.ResponseWriter, r *http.Request) (map[string]string, int, error) {
	if q := r.URL.Query(); q.Has("client_secret") || q.Has("client_assertion") {
		return nil, 0, badRequest("client credentials must not be sent in the URL; send them in the body or the Authorization header")
	}
	if r.ContentLength > maxTokenBody {
		return nil, http.StatusRequestEntityTooLarge, errors.New("request body is larger than 64 KiB")
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || (mt != "application/x-www-form-urlencoded" && mt != "application/json") {
		return nil, 0, badRequest("Content-Type must be application/x-www-form-urlencoded or application/json")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxTokenBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, http.StatusRequestEntityTooLarge, errors.New("request body is larger than 64 KiB")
		}
		return nil, 0, badRequest("could not read the request body")
	}
	if mt == "application/json" {
		p, err := jsonParams(body)
		return p, 0, err
	}
	return formParams(body)
}

func formParams(body []byte) (map[string]string, int, error) {
	vals, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, 0, badRequest("malformed form body")
	}
	p := make(map[string]string, len(vals))
	for k, vs := range vals {
		if len(vs) > 1 {
			if k == "resource" {
				return nil, 0, &issuer.Error{Code: issuer.CodeInvalidTarget, Description: "one resource per token request"}
			}
			return nil, 0, badRequest("parameter " + quote(k) + " is repeated")
		}
		if vs[0] != "" {
			p[k] = vs[0]
		}
	}
	return p, 0, nil
}

// knownParams must be strings in a JSON body; other members are ignored, whatever their type.
var knownParams = map[string]bool{
	"grant_type": true, "client_id": true, "client_secret": true, "audience": true, "resource": true, "scope": true,
}

// jsonParams reads an Auth0-style JSON token request: one object whose known members are strings. Repeated
// members and trailing data are refused rather than guessed at.
func jsonParams(body []byte) (map[string]string, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, badRequest("the JSON body must be an object")
	}
	p := make(map[string]string)
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, badRequest("malformed JSON body")
		}
		key := tok.(string) // object keys are always strings
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, badRequest("malformed JSON body")
		}
		if seen[key] {
			return nil, badRequest("member " + quote(key) + " is repeated")
		}
		seen[key] = true
		if !knownParams[key] {
			continue
		}
		var v string
		if string(raw) == "null" {
			continue
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, badRequest(quote(key) + " must be a string")
		}
		if v != "" {
			p[key] = v
		}
	}
	if _, err := dec.Token(); err != nil {
		return nil, badRequest("malformed JSON body")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, badRequest("unexpected data after the JSON object")
	}
	return p, nil
}

func badRequest(desc string) *issuer.Error {
	return &issuer.Error{Code: issuer.CodeInvalidRequest, Description: desc}
}

// quote quotes a caller-supplied value for an error message, bounded in length.
func quote(s string) string {
	b, _ := json.Marshal(truncate(strings.ToValidUTF8(s, "�"), 64))
	return string(b)
}
