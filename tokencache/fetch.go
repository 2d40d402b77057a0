package tokencache

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// maxResponse bounds what is read from the token endpoint.
const maxResponse = 1 << 20

// RetrieveError is a failed token request: the endpoint answered with a status other than 200, or with an RFC
// 6749 §5.2 error. Test for it with errors.As.
type RetrieveError struct {
	StatusCode  int    // the HTTP status
	ErrorCode   string // the RFC 6749 "error", such as "invalid_client"; empty if the body had none
	Description string // "error_description"
	URI         string // "error_uri"
	Body        []byte // the response body (at most 1 MB)
}

func (e *RetrieveError) Error() string {
	msg := fmt.Sprintf("tokencache: token endpoint answered %d", e.StatusCode)
	if e.ErrorCode != "" {
		msg += ": " + e.ErrorCode
		if e.Description != "" {
			msg += ": " + e.Description
		}
	}
	return msg
}

// requestTemplate is the token request, built once: it never changes.
type requestTemplate struct {
	url         string
	body        []byte
	contentType string
	basic       [2]string // client_id and client_secret for HTTP Basic, if used
}

func newRequestTemplate(cfg Config) requestTemplate {
	t := requestTemplate{url: cfg.TokenURL}
	var keys, vals []string
	add := func(k, v string) {
		if v != "" {
			keys, vals = append(keys, k), append(vals, v)
		}
	}
	add("grant_type", "client_credentials")
	if cfg.AuthStyle == AuthBody {
		add("client_id", cfg.ClientID)
		add("client_secret", cfg.ClientSecret)
	} else {
		// RFC 6749 §2.3.1: both are form-encoded before Basic encoding.
		t.basic = [2]string{url.QueryEscape(cfg.ClientID), url.QueryEscape(cfg.ClientSecret)}
	}
	add("audience", cfg.Audience)
	add("resource", cfg.Resource)
	add("scope", strings.Join(cfg.Scopes, " "))
	if cfg.JSONBody {
		m := make(map[string]string, len(keys))
		for i, k := range keys {
			m[k] = vals[i]
		}
		t.body, _ = json.Marshal(m) // a map of strings always marshals
		t.contentType = "application/json"
	} else {
		form := url.Values{}
		for i, k := range keys {
			form.Set(k, vals[i])
		}
		t.body = []byte(form.Encode())
		t.contentType = "application/x-www-form-urlencoded"
	}
	return t
}

// fetchUpstream asks the token endpoint for a new token.
func (s *Source) fetchUpstream(ctx context.Context) (*Token, error) {
	ctx, cancel := context.WithTimeout(ctx, s.fetchTimeout)
	defer cancel()
	s.stats.fetches.Add(1)
	start := s.now()
	tok, err := s.doRequest(ctx, start)
	if err != nil {
		s.stats.fetchErrors.Add(1)
	}
	if s.hooks.Fetch != nil {
		s.hooks.Fetch(s.now().Sub(start), err)
	}
	return tok, err
}

func (s *Source) doRequest(ctx context.Context, sent time.Time) (*Token, error) {
	t := &s.request
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(t.body))
	if err != nil {
		return nil, fmt.Errorf("tokencache: token request: %w", err)
	}
	req.Header.Set("Content-Type", t.contentType)
	req.Header.Set("Accept", "application/json")
	if t.basic[0] != "" {
		req.SetBasicAuth(t.basic[0], t.basic[1])
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("tokencache: token request: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return nil, fmt.Errorf("tokencache: read token response: %w", err)
	}
	if len(body) > maxResponse {
		return nil, fmt.Errorf("tokencache: token response larger than %d bytes", maxResponse)
	}
	return parseResponse(resp.StatusCode, resp.Header.Get("Content-Type"), body, sent)
}

// tokenResponse is RFC 6749 §5.1 and §5.2 in one.
type tokenResponse struct {
	AccessToken      string          `json:"access_token"`
	TokenType        string          `json:"token_type"`
	Scope            string          `json:"scope"`
	ExpiresIn        json.RawMessage `json:"expires_in"` // a number; some servers send a string
	Error            string          `json:"error"`
	ErrorDescription string          `json:"error_description"`
	ErrorURI         string          `json:"error_uri"`
}

// parseResponse turns a token endpoint's answer into a Token whose lifetime counts from sent.
func parseResponse(status int, contentType string, body []byte, sent time.Time) (*Token, error) {
	var r tokenResponse
	var decodeErr error
	mt, _, _ := mime.ParseMediaType(contentType)
	if isForm := mt == "application/x-www-form-urlencoded" || mt == "text/plain"; isForm && !looksLikeJSON(body) {
		vals, err := url.ParseQuery(string(body))
		decodeErr = err
		r = tokenResponse{
			AccessToken: vals.Get("access_token"), TokenType: vals.Get("token_type"), Scope: vals.Get("scope"),
			Error: vals.Get("error"), ErrorDescription: vals.Get("error_description"), ErrorURI: vals.Get("error_uri"),
		}
		if v := vals.Get("expires_in"); v != "" {
			r.ExpiresIn = json.RawMessage(v)
		}
	} else {
		decodeErr = json.Unmarshal(body, &r)
	}
	if status < 200 || status > 299 || r.Error != "" {
		return nil, &RetrieveError{StatusCode: status, ErrorCode: r.Error, Description: r.ErrorDescription, URI: r.ErrorURI, Body: body}
	}
	if decodeErr != nil {
		return nil, fmt.Errorf("tokencache: token response is not JSON: %w", decodeErr)
	}
	if r.AccessToken == "" {
		return nil, errors.New("tokencache: token response has no access_token")
	}
	life, err := lifetime(r.ExpiresIn)
	if err != nil {
		return nil, err
	}
	if r.TokenType == "" {
		r.TokenType = "Bearer"
	}
	return &Token{
		AccessToken: r.AccessToken,
		TokenType:   r.TokenType,
		Scope:       r.Scope,
		Expiry:      sent.Add(life),
		Raw:         body,
		issued:      sent,
	}, nil
}

// looksLikeJSON reports whether body is a JSON object: some servers send JSON as text/plain.
func looksLikeJSON(body []byte) bool {
	b := bytes.TrimLeft(body, " \t\r\n")
	return len(b) > 0 && b[0] == '{'
}

// lifetime interprets expires_in, a number or a string holding one: missing (or null) means 5 minutes (RFC 6749
// only recommends the member); zero or negative is an error (the token would be expired on arrival); more than a
// year is capped at a year.
func lifetime(raw json.RawMessage) (time.Duration, error) {
	v := strings.Trim(string(raw), `"`)
	if v == "" || v == "null" {
		return defaultLifetime, nil
	}
	secs, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(secs) || math.IsInf(secs, 0) {
		return 0, fmt.Errorf("tokencache: token response has a bad expires_in %.20q", v)
	}
	if secs <= 0 {
		return 0, fmt.Errorf("tokencache: token response has expires_in %v: the token is already expired", secs)
	}
	if secs > maxLifetime.Seconds() {
		return maxLifetime, nil
	}
	return time.Duration(secs * float64(time.Second)), nil
}

// rawExtra decodes a JSON response body into the map oauth2.Token.Extra reads, or nil.
func rawExtra(raw []byte) map[string]any {
	var m map[string]any
	if json.Unmarshal(raw, &m) != nil {
		return nil
	}
	return m
}
