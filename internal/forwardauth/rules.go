package forwardauth

import (
	"cmp"
	"fmt"
	"os"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/gatehouse/gatehouse/internal/yamlfile"
)

// DefaultRealm is the realm of WWW-Authenticate when the rules file names none.
const DefaultRealm = "gatehouse"

// Rules is a parsed rules file: which requests need which token. Match picks the rule for a request.
type Rules struct {
	Realm string // the realm of WWW-Authenticate challenges
	// rules, most specific first (see Match); no two have the same host, path and a method in common.
	rules []*Rule
}

// Rule says what a token needs for the requests it matches.
type Rule struct {
	Name     string   // the metrics label; default host+path (+ methods)
	Host     string   // "" for any host, "api.example.com", or "*.example.com" for its subdomains; lower case
	Path     string   // path prefix, on segment boundaries: /v1 matches /v1 and /v1/x, not /v1x; "/" matches all
	Methods  []string // upper case; nil for any method
	Audience string   // the aud the token must have
	Scopes   []string // the scopes the token must all have
	APIKeys  bool     // Gatehouse API keys are accepted too, with a grant for Audience holding Scopes
	Line     int      // where the rule starts in its file
}

// The fields a mapping of the file may hold, in the order error messages list them.
var (
	fileFields = []string{"realm", "rules"}
	ruleFields = []string{"name", "host", "path", "methods", "audience", "scopes", "api_keys"}
)

// Load reads and parses the rules file at path.
func Load(path string) (*Rules, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// Parse parses a rules file; name is used in error messages ("name:line: field: message"). Every problem found is
// reported, up to ten, joined in one error.
//
// The format:
//
//	realm: api.example.com          # optional: the realm of WWW-Authenticate (default "gatehouse")
//	rules:
//	  - name: reports-write         # optional: the rule's label in metrics (default host+path+methods)
//	    host: api.example.com       # optional: a host, or *.example.com for its subdomains (default any host)
//	    path: /v1/reports           # optional: a path prefix, on segment boundaries (default /)
//	    methods: [POST, PUT]        # optional (default any method)
//	    audience: https://api.example.com/v1   # required: the token's aud
//	    scopes: [reports:write]     # optional: scopes the token must all have
//	    api_keys: true              # optional: accept Gatehouse API keys too (default false: access tokens only)
func Parse(name string, data []byte) (*Rules, error) {
	p := &parser{yamlfile.Parser{File: name, Kind: kindOf}}
	rs := p.parse(data)
	if err := p.Err(); err != nil {
		return nil, err
	}
	return rs, nil
}

// Match returns the rule for a request to host (lower case, no port), the cleaned path and method, or nil when no
// rule matches. The most specific rule wins: first by host (exact, then the longest *.suffix, then any), then by the
// longest path prefix, then a rule listing the method over one for any method. Load refuses two rules that tie, so
// the order of the file does not matter.
func (rs *Rules) Match(host, path, method string) *Rule {
	for _, r := range rs.rules {
		if r.matches(host, path, method) {
			return r
		}
	}
	return nil
}

// Audiences returns the audiences of the rules, each once: the verifier's Config.Audiences.
func (rs *Rules) Audiences() []string {
	var auds []string
	for _, r := range rs.rules {
		if !slices.Contains(auds, r.Audience) {
			auds = append(auds, r.Audience)
		}
	}
	return auds
}

// All returns the rules, most specific first.
func (rs *Rules) All() []*Rule { return slices.Clone(rs.rules) }

func (r *Rule) matches(host, path, method string) bool {
	switch {
	case r.Host == "":
	case strings.HasPrefix(r.Host, "*."):
		if !strings.HasSuffix(host, r.Host[1:]) || len(host) == len(r.Host)-1 {
			return false
		}
	case host != r.Host:
		return false
	}
	if r.Path != "/" && path != r.Path && !(strings.HasPrefix(path, r.Path) && path[len(r.Path)] == '/') {
		return false
	}
	return r.Methods == nil || slices.Contains(r.Methods, method)
}

// moreSpecific orders rules for Match: negative when a goes before b.
func moreSpecific(a, b *Rule) int {
	if c := cmp.Compare(hostRank(b.Host), hostRank(a.Host)); c != 0 {
		return c
	}
	if c := cmp.Compare(len(b.Path), len(a.Path)); c != 0 {
		return c
	}
	if c := cmp.Compare(boolRank(b.Methods != nil), boolRank(a.Methods != nil)); c != 0 {
		return c
	}
	return cmp.Compare(a.Line, b.Line)
}

func boolRank(b bool) int {
	if b {
		return 1
	}
	return 0
}

// hostRank: any host < a wildcard (the longer suffix the higher) < an exact host.
func hostRank(h string) int {
	switch {
	case h == "":
		return 0
	case strings.HasPrefix(h, "*."):
		return len(h)
	}
	return 1 << 20
}

// parser turns the YAML document into Rules, collecting problems rather than stopping at the first.
type parser struct {
	yamlfile.Parser
}

func (p *parser) parse(data []byte) *Rules {
	rs := &Rules{Realm: DefaultRealm}
	top := p.Document(data)
	if top == nil {
		if p.Len() == 0 {
			p.Errorf(nil, "", "the file is empty: it needs a list of rules (a request no rule matches is denied)")
		}
		return rs
	}
	if top.Kind != yaml.MappingNode {
		p.Errorf(top, "", "the file must be a map with realm and rules, not %s", kindOf(top))
		return rs
	}
	v := p.Fields(top, "", fileFields)
	if n := v["realm"]; !yamlfile.IsNull(n) {
		rs.Realm = p.Str(n, "realm")
		if rs.Realm == "" || strings.ContainsAny(rs.Realm, "\"\\") || !printable(rs.Realm) {
			p.Errorf(n, "realm", "must be printable text without quotes or backslashes")
		}
	}
	items := p.List(v["rules"], "rules")
	if len(items) == 0 && p.Len() == 0 {
		p.Errorf(top, "rules", "the file has no rules: every request would be denied")
	}
	for i, n := range items {
		if r, ok := p.rule(n, fmt.Sprintf("rules[%d]", i)); ok {
			rs.rules = append(rs.rules, r)
		}
	}
	p.conflicts(rs.rules)
	slices.SortStableFunc(rs.rules, moreSpecific)
	return rs
}

// conflicts reports rules that tie for a request (same host and path, a method in common) or share a name.
func (p *parser) conflicts(rules []*Rule) {
	names := make(map[string]*Rule)
	for i, r := range rules {
		if first, ok := names[r.Name]; ok {
			p.Errorf(&yaml.Node{Line: r.Line}, fmt.Sprintf("rules[%d].name", i),
				"%q is also the name of the rule at line %d: each rule needs its own name (it is the metrics label)", r.Name, first.Line)
		} else {
			names[r.Name] = r
		}
		for _, q := range rules[:i] {
			if q.Host != r.Host || q.Path != r.Path || (q.Methods == nil) != (r.Methods == nil) {
				continue
			}
			if r.Methods == nil {
				p.Errorf(&yaml.Node{Line: r.Line}, fmt.Sprintf("rules[%d]", i),
					"matches the same requests as the rule at line %d (same host and path, any method)", q.Line)
				break
			}
			if m := firstCommon(q.Methods, r.Methods); m != "" {
				p.Errorf(&yaml.Node{Line: r.Line}, fmt.Sprintf("rules[%d]", i),
					"matches the same %s requests as the rule at line %d (same host and path)", m, q.Line)
				break
			}
		}
	}
}

func firstCommon(a, b []string) string {
	for _, m := range b {
		if slices.Contains(a, m) {
			return m
		}
	}
	return ""
}

func (p *parser) rule(n *yaml.Node, path string) (*Rule, bool) {
	if n.Kind != yaml.MappingNode {
		p.Errorf(n, path, "must be a map with audience (and host, path, methods, scopes), not %s", kindOf(n))
		return nil, false
	}
	errs := p.Len()
	r := &Rule{Line: n.Line}
	v := p.Fields(n, path, ruleFields)

	if hn := v["host"]; !yamlfile.IsNull(hn) {
		h := strings.ToLower(strings.TrimSuffix(p.Str(hn, path+".host"), "."))
		name := strings.TrimPrefix(h, "*.")
		if !validHost(name) || strings.Contains(name, "*") {
			p.Errorf(hn, path+".host", "%q is not a host name: use api.example.com, or *.example.com for every subdomain, without a port (leave host out for any host)", h)
		}
		r.Host = h
	}

	r.Path = "/"
	if pn := v["path"]; !yamlfile.IsNull(pn) {
		s := p.Str(pn, path+".path")
		clean, ok := cleanPath(s)
		switch {
		case !strings.HasPrefix(s, "/"):
			p.Errorf(pn, path+".path", "%q must start with /", s)
		case strings.ContainsAny(s, "?#%*\\") || !printable(s) || strings.Contains(s, " "):
			p.Errorf(pn, path+".path", "%q must be a plain path prefix: no query, fragment, escapes, wildcards or spaces", s)
		case !ok || clean != s:
			p.Errorf(pn, path+".path", "%q is not a clean path (no //, . or .. segments)", s)
		default:
			r.Path = s
			if len(s) > 1 {
				r.Path = strings.TrimSuffix(s, "/") // "/v1/" and "/v1" are the same prefix
			}
		}
	}

	if mn := v["methods"]; !yamlfile.IsNull(mn) {
		items := p.List(mn, path+".methods")
		if len(items) == 0 && mn.Kind == yaml.SequenceNode {
			p.Errorf(mn, path+".methods", "is empty: leave methods out for any method")
		}
		for i, m := range items {
			field := fmt.Sprintf("%s.methods[%d]", path, i)
			s := strings.ToUpper(p.Str(m, field))
			switch {
			case !validMethod(s):
				p.Errorf(m, field, "%q is not an HTTP method", s)
			case slices.Contains(r.Methods, s):
				p.Errorf(m, field, "%s is listed twice", s)
			default:
				r.Methods = append(r.Methods, s)
			}
		}
	}

	an := v["audience"]
	r.Audience = p.Str(an, path+".audience")
	if r.Audience == "" && yamlfile.IsNull(an) {
		p.Errorf(n, path+".audience", "is required: the API identifier tokens for these requests must be issued for")
	} else if r.Audience == "" || !printable(r.Audience) || strings.Contains(r.Audience, " ") {
		p.Errorf(an, path+".audience", "%q is not an API identifier", r.Audience)
	}

	for i, sn := range p.List(v["scopes"], path+".scopes") {
		field := fmt.Sprintf("%s.scopes[%d]", path, i)
		s := p.Str(sn, field)
		switch {
		case s == "" || !scopeToken(s):
			p.Errorf(sn, field, "%q is not a scope (RFC 6749 §3.3: printable ASCII without spaces, quotes or backslashes)", s)
		case slices.Contains(r.Scopes, s):
			p.Errorf(sn, field, "%q is listed twice", s)
		default:
			r.Scopes = append(r.Scopes, s)
		}
	}

	if kn := v["api_keys"]; !yamlfile.IsNull(kn) {
		var b bool
		if kn.Kind != yaml.ScalarNode || kn.Decode(&b) != nil {
			p.Errorf(kn, path+".api_keys", "must be true or false")
		}
		r.APIKeys = b
	}

	if nn := v["name"]; !yamlfile.IsNull(nn) {
		r.Name = p.Str(nn, path+".name")
		if r.Name == "" || !printable(r.Name) || len(r.Name) > 100 {
			p.Errorf(nn, path+".name", "must be 1 to 100 printable characters")
		}
	} else {
		r.Name = r.Host + r.Path
		if r.Methods != nil {
			r.Name += " " + strings.Join(r.Methods, ",")
		}
	}
	return r, p.Len() == errs
}

// kindOf describes n for a message such as "must be a list, not …": a map, a list, or a scalar's value quoted (the
// rules file holds no secrets).
func kindOf(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a map"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return fmt.Sprintf("%q", n.Value)
	}
	return "something else"
}

func printable(s string) bool {
	for _, c := range s {
		if c < 0x20 || c == 0x7f {
			return false
		}
	}
	return true
}

// scopeToken reports whether s is a scope-token of RFC 6749 §3.3.
func scopeToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// validMethod reports whether s is an HTTP method token (RFC 9110 §9.1), in upper case.
func validMethod(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'A' && c <= 'Z' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// validHost reports whether h is a lower-case DNS name or IP literal without a port.
func validHost(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	if strings.HasPrefix(h, "[") { // an IPv6 literal
		return strings.HasSuffix(h, "]") && len(h) > 2 && strings.Trim(h[1:len(h)-1], "0123456789abcdef:.") == ""
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for i := 0; i < len(label); i++ {
			if c := label[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}
