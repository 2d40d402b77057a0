package proxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"sort"
	"strings"
)

// maxBody bounds a token request body.
const maxBody = 64 << 10

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

// parseRequest reads a token request the way a token endpoint does (RFC 6749 §3.2, §4.4): POST, a form or
// JSON (Auth0 style) body of at most 64 KiB, client authentication by HTTP Basic or in the body, never both.
// Only grant_type=client_credentials is accepted: that is what the proxy caches, and it does not relay other
// grants (which carry user credentials or one-time codes) at all.
func parseRequest(w http.ResponseWriter, r *http.Request) (*tokenRequest, *oauthError) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return nil, &oauthError{status: http.StatusMethodNotAllowed, code: "invalid_request", description: "the token endpoint accepts only POST"}
	}
	if q := r.URL.Query(); q.Has("client_secret") {
		return nil, invalidRequest("client credentials must not be sent in the URL; send them in the body or the Authorization header")
	}
	if r.ContentLength > maxBody {
		return nil, &oauthError{status: http.StatusRequestEntityTooLarge, code: "invalid_request", description: "request body is larger than 64 KiB"}
	}
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || (mt != "application/x-www-form-urlencoded" && mt != "application/json") {
		return nil, invalidRequest("Content-Type must be application/x-www-form-urlencoded or application/json")
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, &oauthError{status: http.StatusRequestEntityTooLarge, code: "invalid_request", description: "request body is larger than 64 KiB"}
		}
		return nil, invalidRequest("could not read the request body")
	}
	req := &tokenRequest{json: mt == "application/json"}
	var params map[string]string
	var perr *oauthError
	if req.json {
		params, perr = jsonParams(body)
	} else {
		params, perr = formParams(body)
	}
	if perr != nil {
		return nil, perr
	}
	var unknown []string
	for k := range params {
		if !forwarded[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return nil, invalidRequest("the proxy does not forward the parameter(s) " + quote(strings.Join(unknown, ", ")) +
			"; send such requests to the token endpoint directly")
	}
	switch gt := params["grant_type"]; gt {
	case "client_credentials":
	case "":
		return nil, invalidRequest("grant_type is required")
	default:
		return nil, &oauthError{status: http.StatusBadRequest, code: "unsupported_grant_type",
			description: "the proxy serves grant_type client_credentials only, not " + quote(gt) + "; send other grants to the token endpoint directly"}
	}
	if err := req.credentials(r, params); err != nil {
		return nil, err
	}
	req.audience, req.resource = params["audience"], params["resource"]
	req.scopes = strings.Fields(params["scope"])
	return req, nil
}

// credentials takes the client's credentials from HTTP Basic (RFC 6749 §2.3.1: each part form-encoded) or from
// the body.
func (req *tokenRequest) credentials(r *http.Request, params map[string]string) *oauthError {
	bodyID, bodySecret := params["client_id"], params["client_secret"]
	authz := r.Header.Values("Authorization")
	if len(authz) == 0 {
		if bodyID == "" || bodySecret == "" {
			return &oauthError{status: http.StatusUnauthorized, code: "invalid_client", challenge: true,
				description: "client authentication is required: HTTP Basic, or client_id and client_secret in the body"}
		}
		req.clientID, req.clientSecret = bodyID, bodySecret
		return nil
	}
	if len(authz) > 1 {
		return invalidRequest("more than one Authorization header")
	}
	rawID, rawSecret, ok := r.BasicAuth()
	if !ok {
		return &oauthError{status: http.StatusUnauthorized, code: "invalid_client", challenge: true,
			description: "the Authorization header must use the Basic scheme with base64(client_id:client_secret)"}
	}
	if bodySecret != "" {
		return invalidRequest("use one client authentication method: HTTP Basic or client_secret in the body, not both")
	}
	id, err1 := url.QueryUnescape(rawID)
	secret, err2 := url.QueryUnescape(rawSecret)
	if err1 != nil || err2 != nil || id == "" || secret == "" {
		return &oauthError{status: http.StatusUnauthorized, code: "invalid_client", challenge: true, description: "malformed HTTP Basic credentials"}
	}
	if bodyID != "" && bodyID != id {
		return invalidRequest("client_id in the body differs from the one in the Authorization header")
	}
	req.clientID, req.clientSecret, req.basic = id, secret, true
	return nil
}

// formParams reads a form body into single-valued parameters; an empty value counts as absent (RFC 6749 §3.2).
func formParams(body []byte) (map[string]string, *oauthError) {
	vals, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, invalidRequest("malformed form body")
	}
	p := make(map[string]string, len(vals))
	for k, vs := range vals {
		if len(vs) > 1 {
			if k == "resource" {
				return nil, &oauthError{status: http.StatusBadRequest, code: "invalid_target", description: "one resource per token request"}
			}
			return nil, invalidRequest("parameter " + quote(k) + " is repeated")
		}
		if vs[0] != "" {
			p[k] = vs[0]
		}
	}
	return p, nil
}

// jsonParams reads an Auth0-style JSON body: one object of string members; null or "" counts as absent.
func jsonParams(body []byte) (map[string]string, *oauthError) {
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, invalidRequest("the JSON body must be an object")
	}
	p := make(map[string]string)
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, invalidRequest("malformed JSON body")
		}
		key := tok.(string) // object keys are always strings
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, invalidRequest("malformed JSON body")
		}
		if seen[key] {
			return nil, invalidRequest("member " + quote(key) + " is repeated")
		}
		seen[key] = true
		if string(raw) == "null" {
			continue
		}
		var v string
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, invalidRequest(quote(key) + " must be a string")
		}
		if v != "" {
			p[key] = v
		}
	}
	if _, err := dec.Token(); err != nil {
		return nil, invalidRequest("malformed JSON body")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, invalidRequest("unexpected data after the JSON object")
	}
	return p, nil
}

// quote quotes a caller-supplied value for an error message, bounded in length.
func quote(s string) string {
	b, _ := json.Marshal(truncate(strings.ToValidUTF8(s, "\uFFFD"), 64))
	return string(b)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
