package forwardauth

import (
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
)

// Limits on what the original request may carry. A proxy in front has its own, smaller ones (nginx: 8 KiB per
// header line by default); these only keep a broken or hostile caller from costing more than a bounded amount.
const (
	maxURI    = 8 << 10
	maxHost   = 255
	maxMethod = 32
)

// original is the request the proxy asks about.
type original struct {
	method string // upper case
	host   string // lower case, without port or trailing dot
	path   string // decoded, with duplicate slashes collapsed; see cleanRequestPath
	query  string // raw, without "?" and any fragment
}

// proxy is a way a proxy tells the original request: which headers, or the check request itself.
type proxy int

const (
	// nginx: auth_request with X-Original-Method and X-Original-URI set from $request_method and $request_uri,
	// and Host from $host.
	nginx proxy = iota
	// forwarded: Traefik ForwardAuth and Caddy forward_auth, which set X-Forwarded-Method, X-Forwarded-Host and
	// X-Forwarded-Uri (and X-Forwarded-Proto), replacing any the client sent.
	forwarded
	// envoy: the ext_authz HTTP service, whose check request has the original method and path (behind the
	// path_prefix, which the handler removes) and the original Host.
	envoy
)

var errNoOriginal = errors.New("the proxy did not say which request it asks about")

// originalRequest reads the request the proxy asks about from r, the way p sends it. envoyPrefix is the path
// prefix Envoy puts before the original path.
func originalRequest(r *http.Request, p proxy, envoyPrefix string) (original, error) {
	var method, host, uri string
	switch p {
	case nginx:
		method, uri, host = r.Header.Get("X-Original-Method"), r.Header.Get("X-Original-URI"), r.Host
	case forwarded:
		method, uri, host = r.Header.Get("X-Forwarded-Method"), r.Header.Get("X-Forwarded-Uri"), r.Header.Get("X-Forwarded-Host")
	case envoy:
		method, host = r.Method, r.Host
		uri = strings.TrimPrefix(r.URL.RequestURI(), envoyPrefix)
		if len(uri) == len(r.URL.RequestURI()) {
			return original{}, errNoOriginal
		}
		if uri == "" || uri[0] == '?' {
			uri = "/" + uri
		}
	}
	if method == "" || uri == "" || host == "" {
		return original{}, errNoOriginal
	}
	if len(method) > maxMethod || !validMethod(method) {
		return original{}, errors.New("bad method")
	}
	h, err := cleanHost(host)
	if err != nil {
		return original{}, err
	}
	path, err := cleanRequestPath(uri)
	if err != nil {
		return original{}, err
	}
	return original{method: method, host: h, path: path, query: rawQuery(uri)}, nil
}

// rawQuery returns the query of a request target: what follows "?", up to any "#".
func rawQuery(uri string) string {
	_, q, ok := strings.Cut(uri, "?")
	if !ok {
		return ""
	}
	q, _, _ = strings.Cut(q, "#")
	return q
}

// cleanHost lower-cases host and drops its port and trailing dot.
func cleanHost(host string) (string, error) {
	if len(host) > maxHost {
		return "", errors.New("host too long")
	}
	if h, _, err := net.SplitHostPort(host); err == nil {
		if strings.Contains(h, ":") {
			h = "[" + h + "]"
		}
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	if !validHost(host) {
		return "", errors.New("bad host")
	}
	return host, nil
}

// cleanRequestPath returns the path of a request target (origin-form, or absolute-form) for matching against
// rules: percent-decoded, duplicate slashes collapsed. A path that servers resolve differently is refused rather
// than guessed at: dot segments, encoded slashes, backslashes or dots, and control characters. (A rule for /admin
// must not be passed by /public/../admin, nor /admin by /admin%2F..%2Fpublic, which some upstreams would serve as
// /public.)
func cleanRequestPath(uri string) (string, error) {
	if len(uri) > maxURI {
		return "", errors.New("request URI too long")
	}
	if i := strings.IndexAny(uri, "?#"); i >= 0 {
		uri = uri[:i]
	}
	if !strings.HasPrefix(uri, "/") { // absolute-form: http://host/path
		u, err := url.Parse(uri)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return "", errors.New("bad request URI")
		}
		uri = u.EscapedPath()
		if uri == "" {
			uri = "/"
		}
	}
	lower := strings.ToLower(uri)
	if strings.Contains(lower, "%2f") || strings.Contains(lower, "%5c") || strings.Contains(lower, "%2e") {
		return "", errors.New("encoded slash, backslash or dot in the path")
	}
	p, err := url.PathUnescape(uri)
	if err != nil {
		return "", errors.New("bad escape in the path")
	}
	if !printable(p) || strings.Contains(p, "\\") {
		return "", errors.New("control character or backslash in the path")
	}
	clean, ok := cleanPath(p)
	if !ok {
		return "", errors.New("dot segment in the path")
	}
	return clean, nil
}

// cleanPath collapses duplicate slashes in p, which starts with /. It reports false when p has a . or ..
// segment.
func cleanPath(p string) (string, bool) {
	if strings.Contains(p, "//") {
		var b strings.Builder
		b.Grow(len(p))
		for i := 0; i < len(p); i++ {
			if p[i] == '/' && i > 0 && p[i-1] == '/' {
				continue
			}
			b.WriteByte(p[i])
		}
		p = b.String()
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "." || seg == ".." {
			return "", false
		}
	}
	return p, true
}
