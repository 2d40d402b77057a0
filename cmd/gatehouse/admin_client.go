package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gatehouse/gatehouse/tokencache"
)

// The management API client of the admin commands. It talks JSON to /api/v1 of one server, with a token for
// urn:gatehouse:management that it gets with the client credentials in GATEHOUSE_CLIENT_ID and
// GATEHOUSE_CLIENT_SECRET through package tokencache, and turns RFC 9457 problem answers into one-line errors.
// It does not import internal/server: the JSON is the contract.

// managementAudience is the audience of management tokens (auth.ManagementAudience).
const managementAudience = "urn:gatehouse:management"

// listPageSize is the page size lists ask for: the largest the management API serves. Tests lower it.
var listPageSize = 500

// adminClient calls the management API of one server.
type adminClient struct {
	base string       // the server's URL, without a trailing slash
	http *http.Client // adds the bearer token
}

// adminSources holds one token source per server and client, so every request a process makes — the pages of a
// list, the steps of an apply, several commands run in one process — shares one cached token, refreshed ahead of
// its expiry by tokencache.
var adminSources = struct {
	sync.Mutex
	m map[string]*tokencache.Source
}{m: map[string]*tokencache.Source{}}

// newAdminClient returns a client for server, authenticating as clientID with secret. insecure allows plain
// http:// to a host other than loopback.
func newAdminClient(server, clientID, secret string, insecure bool, timeout time.Duration) (*adminClient, error) {
	base, err := checkServerURL(server, insecure)
	if err != nil {
		return nil, err
	}
	if clientID == "" || secret == "" {
		return nil, usageError{errors.New("set GATEHOUSE_CLIENT_ID and GATEHOUSE_CLIENT_SECRET to a client granted " +
			managementAudience + " (gatehouse dev prints one)")}
	}
	// Redirects are not followed: the bearer token (and, for the token request, the secret) goes only to server.
	hc := &http.Client{Timeout: timeout, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	fp := sha256.Sum256([]byte(secret))
	key := strings.Join([]string{base, clientID, hex.EncodeToString(fp[:]), strconv.FormatBool(insecure)}, "\x00")

	adminSources.Lock()
	defer adminSources.Unlock()
	src := adminSources.m[key]
	if src == nil {
		src, err = tokencache.New(tokencache.Config{
			TokenURL:          base + "/oauth/token",
			ClientID:          clientID,
			ClientSecret:      secret,
			Audience:          managementAudience,
			AllowInsecureHTTP: insecure,
			HTTPClient:        hc,
			FetchTimeout:      timeout,
		})
		if err != nil {
			return nil, usageError{err}
		}
		adminSources.m[key] = src
	}
	return &adminClient{base: base, http: &http.Client{Timeout: timeout, Transport: src.Transport(nil), CheckRedirect: hc.CheckRedirect}}, nil
}

// checkServerURL returns server without a trailing slash if it is an http(s) URL without query or fragment (a
// path is kept, for a server behind a path prefix), and plain http only on loopback unless insecure: the client
// secret and the tokens would otherwise cross the network in the clear.
func checkServerURL(server string, insecure bool) (string, error) {
	u, err := url.Parse(server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" ||
		u.User != nil {
		return "", usageError{fmt.Errorf("--server %q: use the server's URL, e.g. https://auth.example.com", server)}
	}
	if u.Scheme == "http" && !insecure && !isLoopback(u.Hostname()) {
		return "", usageError{fmt.Errorf("--server %q: plain http to a host other than this one would send the client secret "+
			"and tokens in the clear; use https, or --insecure if the network is private", server)}
	}
	return strings.TrimSuffix(server, "/"), nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// apiResponse is a successful answer: its body and ETag.
type apiResponse struct {
	Status int
	ETag   string
	Body   json.RawMessage // nil for 204
}

// apiError is a management API error answer: an RFC 9457 problem, or whatever else the server said.
type apiError struct {
	Method    string
	Path      string // the path asked for, without the query
	Status    int
	Title     string
	Detail    string
	Fields    []apiFieldError
	RequestID string
}

type apiFieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Error is one line: "404 Not Found: client not found", with the fields at fault when they add something.
func (e *apiError) Error() string {
	title := e.Title
	if title == "" {
		title = http.StatusText(e.Status)
	}
	msg := fmt.Sprintf("%d %s", e.Status, title)
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	var fields []string
	for _, f := range e.Fields {
		fields = append(fields, f.Field+": "+f.Message)
	}
	if fs := strings.Join(fields, "; "); fs != "" && fs != e.Detail {
		msg += " (" + fs + ")"
	}
	if e.Status == http.StatusNotFound && e.Path != "" {
		msg += " (" + e.Method + " " + e.Path + ")"
	}
	if e.Status >= 500 && e.RequestID != "" {
		msg += " [request " + e.RequestID + "]"
	}
	return msg
}

// do sends a request to path (below the server's URL) with body as JSON (nil for none) and returns the answer, or
// an *apiError for a status of 400 or more. ifMatch, if not empty, is sent as If-Match.
func (c *adminClient) do(ctx context.Context, method, path string, body any, ifMatch string) (*apiResponse, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if ifMatch != "" {
		req.Header.Set("If-Match", ifMatch)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.transportError(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read the answer: %w", method, path, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode >= 300 {
		err := problem(resp, raw)
		err.Method, err.Path = method, req.URL.Path
		return nil, err
	}
	out := &apiResponse{Status: resp.StatusCode, ETag: resp.Header.Get("ETag")}
	if len(bytes.TrimSpace(raw)) > 0 {
		if !json.Valid(raw) {
			return nil, fmt.Errorf("%s %s: the server answered %s with a body that is not JSON", method, path, resp.Status)
		}
		out.Body = raw
	}
	return out, nil
}

// problem decodes an error answer.
func problem(resp *http.Response, raw []byte) *apiError {
	e := &apiError{Status: resp.StatusCode}
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		e.Detail = "the server redirects to " + strconv.Quote(resp.Header.Get("Location")) + "; give its final URL with --server"
		return e
	}
	var p struct {
		Title     string          `json:"title"`
		Detail    string          `json:"detail"`
		Errors    []apiFieldError `json:"errors"`
		RequestID string          `json:"request_id"`
	}
	if json.Unmarshal(raw, &p) == nil && (p.Title != "" || p.Detail != "") {
		e.Title, e.Detail, e.Fields, e.RequestID = p.Title, p.Detail, p.Errors, p.RequestID
		return e
	}
	// Not a problem document: a proxy in the way, or not a Gatehouse server.
	line, _, _ := strings.Cut(strings.TrimSpace(string(raw)), "\n")
	if len(line) > 200 {
		line = line[:200] + "…"
	}
	e.Detail = line
	if resp.StatusCode == http.StatusNotFound && line == "" || strings.HasPrefix(strings.ToLower(line), "<") {
		e.Detail = "the server did not answer as Gatehouse does; is --server right?"
	}
	return e
}

// transportError explains a request that got no answer, or no token.
func (c *adminClient) transportError(err error) error {
	var re *tokencache.RetrieveError
	if errors.As(err, &re) {
		what := fmt.Sprintf("the token endpoint answered %d", re.StatusCode)
		if re.ErrorCode != "" {
			what += " " + re.ErrorCode
			if re.Description != "" {
				what += ": " + re.Description
			}
		}
		hint := ""
		switch re.ErrorCode {
		case "invalid_client":
			hint = " (check GATEHOUSE_CLIENT_ID and GATEHOUSE_CLIENT_SECRET)"
		case "invalid_target", "unauthorized_client", "invalid_scope":
			hint = " (the client needs a grant for " + managementAudience + ")"
		}
		return fmt.Errorf("get a management token from %s/oauth/token: %s%s", c.base, what, hint)
	}
	var (
		oe *net.OpError
		ne net.Error
	)
	switch {
	case errors.Is(err, context.Canceled):
		return errors.New("interrupted")
	case errors.As(err, &oe):
		return fmt.Errorf("cannot reach %s: %w", c.base, oe)
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s did not answer in time (--timeout)", c.base)
	}
	return fmt.Errorf("cannot reach %s: %w", c.base, err)
}

// list gets the items of a list endpoint, following next_cursor until it has all of them, or limit (>0) of them.
// more reports whether the server had more than limit.
func (c *adminClient) list(ctx context.Context, path string, q url.Values, limit int) (items []json.RawMessage, more bool, err error) {
	if q == nil {
		q = url.Values{}
	}
	q.Del("cursor")
	for {
		size := listPageSize
		if limit > 0 {
			size = min(limit-len(items), listPageSize)
		}
		q.Set("limit", strconv.Itoa(size))
		resp, err := c.do(ctx, http.MethodGet, path+"?"+q.Encode(), nil, "")
		if err != nil {
			return nil, false, err
		}
		var page struct {
			Items      []json.RawMessage `json:"items"`
			NextCursor string            `json:"next_cursor"`
		}
		if err := json.Unmarshal(resp.Body, &page); err != nil {
			return nil, false, fmt.Errorf("GET %s: the answer is not a list: %w", path, err)
		}
		items = append(items, page.Items...)
		if page.NextCursor == "" {
			return items, false, nil
		}
		if limit > 0 && len(items) >= limit {
			return items, true, nil
		}
		q.Set("cursor", page.NextCursor)
	}
}

// isNotFound reports whether err is a 404 answer.
func isNotFound(err error) bool {
	var ae *apiError
	return errors.As(err, &ae) && ae.Status == http.StatusNotFound
}

// escape escapes one path segment.
func escape(s string) string { return url.PathEscape(s) }
