package forwardauth

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const exampleRules = `# what gatehouse authorize checks
realm: api.example.com
rules:
  - name: read
    host: api.example.com
    path: /v1
    audience: https://api.example.com/v1
    scopes: [read]
  - name: write
    host: api.example.com
    path: /v1/
    methods: [post, PUT, DELETE]
    audience: https://api.example.com/v1
    scopes: [write]
  - name: admin
    host: api.example.com
    path: /v1/admin
    audience: https://api.example.com/v1
    scopes: [admin]
  - name: reports
    host: "*.example.com"
    path: /reports
    audience: urn:example:reports
    scopes: ["reports:read"]
    api_keys: true
  - name: edge
    path: /
    audience: https://edge.example.com
    api_keys: false
  - host: api.example.com
    path: /v1/public/health
    methods: [GET]
    audience: https://api.example.com/v1
`

func TestParse(t *testing.T) {
	rs, err := Parse("rules.yaml", []byte(exampleRules))
	if err != nil {
		t.Fatal(err)
	}
	if rs.Realm != "api.example.com" {
		t.Errorf("Realm = %q, want api.example.com", rs.Realm)
	}
	want := []*Rule{ // most specific first
		{Name: "api.example.com/v1/public/health GET", Host: "api.example.com", Path: "/v1/public/health", Methods: []string{"GET"},
			Audience: "https://api.example.com/v1", Line: 30},
		{Name: "admin", Host: "api.example.com", Path: "/v1/admin", Audience: "https://api.example.com/v1", Scopes: []string{"admin"}, Line: 15},
		{Name: "write", Host: "api.example.com", Path: "/v1", Methods: []string{"POST", "PUT", "DELETE"},
			Audience: "https://api.example.com/v1", Scopes: []string{"write"}, Line: 9},
		{Name: "read", Host: "api.example.com", Path: "/v1", Audience: "https://api.example.com/v1", Scopes: []string{"read"}, Line: 4},
		{Name: "reports", Host: "*.example.com", Path: "/reports", Audience: "urn:example:reports", Scopes: []string{"reports:read"}, APIKeys: true, Line: 20},
		{Name: "edge", Path: "/", Audience: "https://edge.example.com", Line: 26},
	}
	if diff := cmp.Diff(want, rs.All()); diff != "" {
		t.Errorf("rules (-want +got):\n%s", diff)
	}
}

func TestParseDefaults(t *testing.T) {
	rs, err := Parse("r.yaml", []byte("rules:\n  - audience: urn:a\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := []*Rule{{Name: "/", Path: "/", Audience: "urn:a", Line: 2}}
	if diff := cmp.Diff(want, rs.All()); diff != "" || rs.Realm != DefaultRealm {
		t.Errorf("realm %q, rules (-want +got):\n%s", rs.Realm, diff)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, src string
		want      []string // each must appear in the error
	}{
		{"empty", "", []string{"r.yaml: the file is empty"}},
		{"no rules", "realm: x\n", []string{"r.yaml:1: rules: the file has no rules"}},
		{"syntax", "rules:\n  - audience: [\n", []string{"r.yaml:"}},
		{"not a map", "- a\n", []string{"r.yaml:1: the file must be a map"}},
		{"two documents", "rules: []\n---\nrules: []\n", []string{"one YAML document"}},
		{"unknown top field", "rule:\n  - audience: a\n", []string{"r.yaml:1: rule: unknown field (known: realm, rules)"}},
		{"unknown rule field", "rules:\n  - audience: a\n    scope: [read]\n", []string{"r.yaml:3: rules[0].scope: unknown field"}},
		{"no audience", "rules:\n  - path: /v1\n", []string{"r.yaml:2: rules[0].audience: is required"}},
		{"api keys not a bool", "rules:\n  - audience: a\n    api_keys: maybe\n", []string{"r.yaml:3: rules[0].api_keys: must be true or false"}},
		{"bad host", "rules:\n  - audience: a\n    host: api.example.com:8080\n", []string{"r.yaml:3: rules[0].host: \"api.example.com:8080\" is not a host name"}},
		{"inner wildcard", "rules:\n  - audience: a\n    host: a.*.com\n", []string{"rules[0].host:"}},
		{"relative path", "rules:\n  - audience: a\n    path: v1\n", []string{"r.yaml:3: rules[0].path: \"v1\" must start with /"}},
		{"path with query", "rules:\n  - audience: a\n    path: /v1?x\n", []string{"must be a plain path prefix"}},
		{"path with dots", "rules:\n  - audience: a\n    path: /v1/../admin\n", []string{"is not a clean path"}},
		{"path with //", "rules:\n  - audience: a\n    path: /v1//admin\n", []string{"is not a clean path"}},
		{"bad method", "rules:\n  - audience: a\n    methods: [G€T]\n", []string{"r.yaml:3: rules[0].methods[0]:"}},
		{"empty methods", "rules:\n  - audience: a\n    methods: []\n", []string{"leave methods out"}},
		{"method twice", "rules:\n  - audience: a\n    methods: [GET, get]\n", []string{"rules[0].methods[1]: GET is listed twice"}},
		{"bad scope", "rules:\n  - audience: a\n    scopes: ['a b']\n", []string{"r.yaml:3: rules[0].scopes[0]: \"a b\" is not a scope"}},
		{"scopes not a list", "rules:\n  - audience: a\n    scopes: read\n", []string{"rules[0].scopes: must be a list"}},
		{"same requests", "rules:\n  - audience: a\n    path: /v1/\n  - audience: b\n    path: /v1\n",
			[]string{"r.yaml:4: rules[1]: matches the same requests as the rule at line 2"}},
		{"same method", "rules:\n  - audience: a\n    methods: [GET, POST]\n  - audience: b\n    methods: [PUT, POST]\n",
			[]string{"r.yaml:4: rules[1]: matches the same POST requests as the rule at line 2"}},
		{"same name", "rules:\n  - audience: a\n    name: x\n  - audience: b\n    name: x\n    path: /y\n",
			[]string{"r.yaml:4: rules[1].name: \"x\" is also the name of the rule at line 2"}},
		{"several problems, in line order", "rules:\n  - audience: a\n    api_keys: 2\n  - path: x\n",
			[]string{"r.yaml:3: rules[0].api_keys", "r.yaml:4: rules[1].path", "r.yaml:4: rules[1].audience"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("r.yaml", []byte(tt.src))
			if err == nil {
				t.Fatalf("Parse succeeded; want an error with %q", tt.want)
			}
			msg := err.Error()
			last := -1
			for _, w := range tt.want {
				i := strings.Index(msg, w)
				if i < 0 {
					t.Errorf("error\n%s\ndoes not contain %q", msg, w)
				} else if i < last {
					t.Errorf("error\n%s\nhas %q out of line order", msg, w)
				}
				last = i
			}
		})
	}
}

func TestMatch(t *testing.T) {
	rs, err := Parse("rules.yaml", []byte(exampleRules))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		host, path, method string
		want               string // rule name; "" for no match
	}{
		{"api.example.com", "/v1", "GET", "read"},
		{"api.example.com", "/v1/", "GET", "read"},
		{"api.example.com", "/v1/items/7", "GET", "read"},
		{"api.example.com", "/v1/items/7", "HEAD", "read"},
		{"api.example.com", "/v1/items/7", "POST", "write"},
		{"api.example.com", "/v1/items", "DELETE", "write"},
		{"api.example.com", "/v1/admin", "GET", "admin"},
		{"api.example.com", "/v1/admin/users", "POST", "admin"},    // the longer path wins over the method
		{"api.example.com", "/v1/administrators", "GET", "read"},   // prefixes end at a segment
		{"api.example.com", "/v1x", "GET", "edge"},                 // not under /v1: the catch-all
		{"api.example.com", "/v1", "GET", "read"},                  // an exact host wins over *.example.com and any host
		{"api.example.com", "/reports", "GET", "reports"},          // no api.example.com rule for /reports: the wildcard
		{"reports.example.com", "/reports/2024", "GET", "reports"}, // a wildcard host
		{"a.b.example.com", "/reports", "GET", "reports"},          // any depth of subdomain
		{"example.com", "/reports", "GET", "edge"},                 // *.example.com is not example.com
		{"notexample.com", "/reports", "GET", "edge"},              // nor a longer name
		{"api.example.com", "/v1/public/health", "GET", "api.example.com/v1/public/health GET"},
		{"api.example.com", "/v1/public/health", "POST", "write"}, // method given: only that method
		{"other.test", "/v1/admin", "GET", "edge"},
	}
	for _, tt := range tests {
		got := ""
		if r := rs.Match(tt.host, tt.path, tt.method); r != nil {
			got = r.Name
		}
		if got != tt.want {
			t.Errorf("Match(%q, %q, %q) = %q, want %q", tt.host, tt.path, tt.method, got, tt.want)
		}
	}

	// Without a catch-all rule, a request no rule matches gets nil.
	rs, err = Parse("r.yaml", []byte("rules:\n  - host: api.example.com\n    path: /v1\n    audience: a\n"))
	if err != nil {
		t.Fatal(err)
	}
	if r := rs.Match("api.example.com", "/v2", "GET"); r != nil {
		t.Errorf("Match(/v2) = %q, want no rule", r.Name)
	}
}

func TestCleanRequestPath(t *testing.T) {
	tests := []struct {
		uri, want string // want "" for an error
	}{
		{"/", "/"},
		{"/v1/items?x=1&y=../..", "/v1/items"},
		{"/v1/items#frag", "/v1/items"},
		{"/v1//items///7", "/v1/items/7"},
		{"/v1/items/", "/v1/items/"},
		{"/v1/%61dmin", "/v1/admin"},
		{"/v1/caf%C3%A9", "/v1/café"},
		{"https://api.example.com/v1/x?y", "/v1/x"},
		{"http://api.example.com", "/"},
		{"/v1/../admin", ""},
		{"/v1/./admin", ""},
		{"/v1/..", ""},
		{"/admin%2F..%2Fpublic", ""},
		{"/admin%2f..", ""},
		{"/public/%2e%2e/admin", ""},
		{"/public\\..\\admin", ""},
		{"/public%5C..%5Cadmin", ""},
		{"/a%00b", ""},
		{"/a%0d%0ab", ""},
		{"/a%zz", ""},
		{"v1/items", ""},
		{"*", ""},
		{"ftp://x/y", ""},
		{"/" + strings.Repeat("a", maxURI), ""},
	}
	for _, tt := range tests {
		got, err := cleanRequestPath(tt.uri)
		if (err != nil) != (tt.want == "") || got != tt.want {
			t.Errorf("cleanRequestPath(%.40q) = %q, %v; want %q", tt.uri, got, err, tt.want)
		}
	}
}

func TestOriginalRequest(t *testing.T) {
	req := func(method, target string, h map[string]string) *http.Request {
		r := httptest.NewRequest(method, target, nil)
		for k, v := range h {
			if k == "Host" {
				r.Host = v
			} else {
				r.Header.Set(k, v)
			}
		}
		return r
	}
	nginxHeaders := map[string]string{"Host": "API.example.com:8443", "X-Original-Method": "POST", "X-Original-URI": "/v1/items?a=b",
		// a client's own X-Forwarded-* must not count behind nginx
		"X-Forwarded-Uri": "/public", "X-Forwarded-Method": "GET", "X-Forwarded-Host": "public.example.com"}
	forwardedHeaders := map[string]string{"Host": "authorize:9090", "X-Forwarded-Method": "DELETE", "X-Forwarded-Host": "api.example.com",
		"X-Forwarded-Uri": "/v1/items/7", "X-Forwarded-Proto": "https",
		// nor a client's X-Original-* behind Traefik or Caddy
		"X-Original-URI": "/public", "X-Original-Method": "GET"}
	tests := []struct {
		name  string
		r     *http.Request
		proxy proxy
		want  original // zero: an error
	}{
		{"nginx", req("GET", "/nginx", nginxHeaders), nginx, original{"POST", "api.example.com", "/v1/items", "a=b"}},
		{"nginx without X-Original-URI", req("GET", "/nginx", map[string]string{"X-Original-Method": "GET"}), nginx, original{}},
		{"nginx without X-Original-Method", req("GET", "/nginx", map[string]string{"X-Original-URI": "/"}), nginx, original{}},
		{"forwarded", req("GET", "/traefik", forwardedHeaders), forwarded, original{"DELETE", "api.example.com", "/v1/items/7", ""}},
		{"forwarded without host", req("GET", "/traefik", map[string]string{"X-Forwarded-Method": "GET", "X-Forwarded-Uri": "/"}), forwarded, original{}},
		{"envoy", req("PATCH", "/envoy/v1/items/7?x=1", map[string]string{"Host": "api.example.com"}), envoy, original{"PATCH", "api.example.com", "/v1/items/7", "x=1"}},
		{"envoy root", req("GET", "/envoy", map[string]string{"Host": "api.example.com"}), envoy, original{"GET", "api.example.com", "/", ""}},
		{"envoy root with query", req("GET", "/envoy?x", map[string]string{"Host": "api.example.com"}), envoy, original{"GET", "api.example.com", "/", "x"}},
		{"envoy without prefix", req("GET", "/v1", map[string]string{"Host": "api.example.com"}), envoy, original{}},
		{"bad method", req("GET", "/nginx", map[string]string{"Host": "a", "X-Original-Method": "G E T", "X-Original-URI": "/"}), nginx, original{}},
		{"bad host", req("GET", "/nginx", map[string]string{"Host": "a/b", "X-Original-Method": "GET", "X-Original-URI": "/"}), nginx, original{}},
		{"dot segment", req("GET", "/nginx", map[string]string{"Host": "a", "X-Original-Method": "GET", "X-Original-URI": "/x/../y"}), nginx, original{}},
		{"ipv6 host", req("GET", "/nginx", map[string]string{"Host": "[::1]:80", "X-Original-Method": "GET", "X-Original-URI": "/"}), nginx,
			original{"GET", "[::1]", "/", ""}},
	}
	for _, tt := range tests {
		got, err := originalRequest(tt.r, tt.proxy, "/envoy")
		if (err != nil) != (tt.want == original{}) || got != tt.want {
			t.Errorf("%s: originalRequest = %+v, %v; want %+v", tt.name, got, err, tt.want)
		}
	}
}
