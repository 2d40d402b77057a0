// Package oauthreq reads an OAuth 2.0 token request (RFC 6749 §3.2, §2.3.1) the one way Gatehouse's token endpoint
// and its caching proxy both do: POST, a form or JSON (Auth0 style) body of at most 64 KiB, single-valued
// parameters, no credentials in the URL, and client authentication by HTTP Basic or in the body, never both.
//
// What to accept beyond that (which grants and parameters) and how to answer an Error is the caller's policy. It
// imports only the standard library.
package oauthreq

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
)

// maxBody bounds a token request body.
const maxBody = 64 << 10

// Error is an RFC 6749 §5.2 error found while reading a token request: the HTTP status to answer with (400; 401
// for invalid_client; 405 or 413), the error code and a description safe to show the caller.
type Error struct {
	Status      int
	Code        string
	Description string
}

func (e *Error) Error() string { return e.Code + ": " + e.Description }

func invalidRequest(desc string) *Error {
	return &Error{Status: http.StatusBadRequest, Code: "invalid_request", Description: desc}
}

func tooLarge() *Error {
	return &Error{Status: http.StatusRequestEntityTooLarge, Code: "invalid_request", Description: "request body is larger than 64 KiB"}
}

func invalidClient(desc string) *Error {
	return &Error{Status: http.StatusUnauthorized, Code: "invalid_client", Description: desc}
}

// Params are a token request's parameters. Each was sent once; one sent empty (or null in JSON) is absent.
type Params map[string]string

// Read reads r, a token request: a POST (else a 405 Error, with w's Allow header set) with no client_secret or
// client_assertion in the URL, and an application/x-www-form-urlencoded or application/json body of at most
// 64 KiB (else 413). isJSON reports which of the two it was. A repeated parameter is invalid_request, or
// invalid_target for resource (one API per token). A JSON body is one object; trailing data is refused.
//
// known, if not nil, names the parameters the caller reads: others are left out of p, and in JSON may have any
// type. With a nil known every parameter is kept, and every JSON member must be a string or null.
func Read(w http.ResponseWriter, r *http.Request, known map[string]bool) (p Params, isJSON bool, err *Error) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		return nil, false, &Error{Status: http.StatusMethodNotAllowed, Code: "invalid_request", Description: "the token endpoint accepts only POST"}
	}
	if q := r.URL.Query(); q.Has("client_secret") || q.Has("client_assertion") {
		return nil, false, invalidRequest("client credentials must not be sent in the URL; send them in the body or the Authorization header")
	}
	if r.ContentLength > maxBody {
		return nil, false, tooLarge()
	}
	mt, _, merr := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if merr != nil || (mt != "application/x-www-form-urlencoded" && mt != "application/json") {
		return nil, false, invalidRequest("Content-Type must be application/x-www-form-urlencoded or application/json")
	}
	body, rerr := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if rerr != nil {
		var tooBig *http.MaxBytesError
		if errors.As(rerr, &tooBig) {
			return nil, false, tooLarge()
		}
		return nil, false, invalidRequest("could not read the request body")
	}
	if mt == "application/json" {
		p, err = jsonParams(body, known)
		return p, true, err
	}
	p, err = formParams(body, known)
	return p, false, err
}

func formParams(body []byte, known map[string]bool) (Params, *Error) {
	vals, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, invalidRequest("malformed form body")
	}
	p := make(Params, len(vals))
	for k, vs := range vals {
		if len(vs) > 1 {
			if k == "resource" {
				return nil, &Error{Status: http.StatusBadRequest, Code: "invalid_target", Description: "one resource per token request"}
			}
			return nil, invalidRequest("parameter " + Quote(k) + " is repeated")
		}
		if vs[0] != "" && (known == nil || known[k]) {
			p[k] = vs[0]
		}
	}
	return p, nil
}

func jsonParams(body []byte, known map[string]bool) (Params, *Error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, invalidRequest("the JSON body must be an object")
	}
	p := make(Params)
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
			return nil, invalidRequest("member " + Quote(key) + " is repeated")
		}
		seen[key] = true
		if (known != nil && !known[key]) || string(raw) == "null" {
			continue
		}
		var v string
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, invalidRequest(Quote(key) + " must be a string")
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

// ClientCredentials returns the client's credentials from r's HTTP Basic header (RFC 6749 §2.3.1: each part
// form-encoded) or from p, the body; basic reports whether r has an Authorization header.
//
// The errors are invalid_client (401) when the client sent no credentials (no Authorization header and no
// client_secret; id is then the body's client_id, if any, for the log) or an Authorization header that is not
// readable Basic, and invalid_request (400) for more than one Authorization header, both Basic and a body
// client_secret, or a body client_id that is not the Basic one. Either part may otherwise be empty, as sent: an
// empty Basic user-id, or a body client_secret without client_id. Refusing those is the caller's to do.
func (p Params) ClientCredentials(r *http.Request) (id, secret string, basic bool, err *Error) {
	bodyID, bodySecret := p["client_id"], p["client_secret"]
	authz := r.Header.Values("Authorization")
	if len(authz) == 0 {
		if bodySecret == "" {
			return bodyID, "", false, invalidClient("client authentication is required: HTTP Basic, or client_id and client_secret in the body")
		}
		return bodyID, bodySecret, false, nil
	}
	if len(authz) > 1 {
		return "", "", true, invalidRequest("more than one Authorization header")
	}
	rawID, rawSecret, ok := r.BasicAuth()
	if !ok {
		return "", "", true, invalidClient("the Authorization header must use the Basic scheme with base64(client_id:client_secret)")
	}
	if bodySecret != "" {
		return "", "", true, invalidRequest("use one client authentication method: HTTP Basic or client_secret in the body, not both")
	}
	id, err1 := url.QueryUnescape(rawID)
	secret, err2 := url.QueryUnescape(rawSecret)
	if err1 != nil || err2 != nil {
		return "", "", true, invalidClient("malformed HTTP Basic credentials")
	}
	if bodyID != "" && bodyID != id {
		return "", "", true, invalidRequest("client_id in the body differs from the one in the Authorization header")
	}
	return id, secret, true, nil
}

// Target returns the API the request names with audience (Auth0) or resource (RFC 8707); "" when neither is
// given. Both, naming different APIs, is invalid_request.
func (p Params) Target() (string, *Error) {
	aud, res := p["audience"], p["resource"]
	switch {
	case aud != "" && res != "" && aud != res:
		return "", invalidRequest("audience and resource name different APIs; send one")
	case aud != "":
		return aud, nil
	}
	return res, nil
}

// Quote quotes a caller-supplied value for an error description: a JSON string of valid UTF-8, the value cut
// after 64 bytes.
func Quote(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	b, _ := json.Marshal(s)
	return string(b)
}
