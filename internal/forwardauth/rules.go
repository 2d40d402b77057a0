package forwardauth

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
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
	Line     int      // where the rule starts in its file
}

// The fields a mapping of the file may hold, in the order error messages list them.
var (
	fileFields = []string{"realm", "rules"}
	ruleFields = []string{"name", "host", "path", "methods", "audience", "scopes", "api_keys"}
)

// maxErrors is how many problems Parse reports before it stops.
const maxErrors = 10

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
//	    api_keys: false             # optional; true is refused until Gatehouse API keys exist
func Parse(name string, data []byte) (*Rules, error) {
	p := &parser{name: name}
	rs := p.parse(data)
	if err := p.err(); err != nil {
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
	name string
	errs []fileError
}

// fileError is a problem at a line and field of the file.
type fileError struct {
	line  int // 0: unknown
	field string
	msg   string
}

func (p *parser) errorf(n *yaml.Node, field, format string, args ...any) {
	e := fileError{field: field, msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.line = n.Line
	}
	p.errs = append(p.errs, e)
}

// err returns the problems found, in the order of their lines.
func (p *parser) err() error {
	if len(p.errs) == 0 {
		return nil
	}
	slices.SortStableFunc(p.errs, func(a, b fileError) int { return cmp.Compare(a.line, b.line) })
	var errs []error
	for i, e := range p.errs {
		if i == maxErrors {
			errs = append(errs, fmt.Errorf("%s: too many errors", p.name))
			break
		}
		var b strings.Builder
		b.WriteString(p.name)
		if e.line > 0 {
			b.WriteString(":" + strconv.Itoa(e.line))
		}
		b.WriteString(": ")
		if e.field != "" {
			b.WriteString(e.field + ": ")
		}
		b.WriteString(e.msg)
		errs = append(errs, errors.New(b.String()))
	}
	return errors.Join(errs...)
}

func (p *parser) parse(data []byte) *Rules {
	rs := &Rules{Realm: DefaultRealm}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			p.errorf(nil, "", "the file is empty: it needs a list of rules (a request no rule matches is denied)")
		} else {
			p.syntaxError(err)
		}
		return rs
	}
	var next yaml.Node
	if err := dec.Decode(&next); err == nil && !isNull(root(&next)) {
		p.errorf(&next, "", "the file must hold one YAML document, not several")
		return rs
	} else if err != nil && !errors.Is(err, io.EOF) {
		p.syntaxError(err)
		return rs
	}
	top := root(&doc)
	if top.Kind != yaml.MappingNode {
		p.errorf(top, "", "the file must be a map with realm and rules, not %s", kindOf(top))
		return rs
	}
	v := p.fields(top, "", fileFields)
	if n := v["realm"]; !isNull(n) {
		rs.Realm = p.str(n, "realm")
		if rs.Realm == "" || strings.ContainsAny(rs.Realm, "\"\\") || !printable(rs.Realm) {
			p.errorf(n, "realm", "must be printable text without quotes or backslashes")
		}
	}
	items := p.list(v["rules"], "rules")
	if len(items) == 0 && len(p.errs) == 0 {
		p.errorf(top, "rules", "the file has no rules: every request would be denied")
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
			p.errorf(&yaml.Node{Line: r.Line}, fmt.Sprintf("rules[%d].name", i),
				"%q is also the name of the rule at line %d: each rule needs its own name (it is the metrics label)", r.Name, first.Line)
		} else {
			names[r.Name] = r
		}
		for _, q := range rules[:i] {
			if q.Host != r.Host || q.Path != r.Path || (q.Methods == nil) != (r.Methods == nil) {
				continue
			}
			if r.Methods == nil {
				p.errorf(&yaml.Node{Line: r.Line}, fmt.Sprintf("rules[%d]", i),
					"matches the same requests as the rule at line %d (same host and path, any method)", q.Line)
				break
			}
			if m := firstCommon(q.Methods, r.Methods); m != "" {
				p.errorf(&yaml.Node{Line: r.Line}, fmt.Sprintf("rules[%d]", i),
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
		p.errorf(n, path, "must be a map with audience (and host, path, methods, scopes), not %s", kindOf(n))
		return nil, false
	}
	errs := len(p.errs)
	r := &Rule{Line: n.Line}
	v := p.fields(n, path, ruleFields)

	if hn := v["host"]; !isNull(hn) {
		h := strings.ToLower(strings.TrimSuffix(p.str(hn, path+".host"), "."))
		name := strings.TrimPrefix(h, "*.")
		if !validHost(name) || strings.Contains(name, "*") {
			p.errorf(hn, path+".host", "%q is not a host name: use api.example.com, or *.example.com for every subdomain, without a port (leave host out for any host)", h)
		}
		r.Host = h
	}

	r.Path = "/"
	if pn := v["path"]; !isNull(pn) {
		s := p.str(pn, path+".path")
		clean, ok := cleanPath(s)
		switch {
		case !strings.HasPrefix(s, "/"):
			p.errorf(pn, path+".path", "%q must start with /", s)
		case strings.ContainsAny(s, "?#%*\\") || !printable(s) || strings.Contains(s, " "):
			p.errorf(pn, path+".path", "%q must be a plain path prefix: no query, fragment, escapes, wildcards or spaces", s)
		case !ok || clean != s:
			p.errorf(pn, path+".path", "%q is not a clean path (no //, . or .. segments)", s)
		default:
			r.Path = s
			if len(s) > 1 {
				r.Path = strings.TrimSuffix(s, "/") // "/v1/" and "/v1" are the same prefix
			}
		}
	}

	if mn := v["methods"]; !isNull(mn) {
		items := p.list(mn, path+".methods")
		if len(items) == 0 && mn.Kind == yaml.SequenceNode {
			p.errorf(mn, path+".methods", "is empty: leave methods out for any method")
		}
		for i, m := range items {
			field := fmt.Sprintf("%s.methods[%d]", path, i)
			s := strings.ToUpper(p.str(m, field))
			switch {
			case !validMethod(s):
				p.errorf(m, field, "%q is not an HTTP method", s)
			case slices.Contains(r.Methods, s):
				p.errorf(m, field, "%s is listed twice", s)
			default:
				r.Methods = append(r.Methods, s)
			}
		}
	}

	an := v["audience"]
	r.Audience = p.str(an, path+".audience")
	if r.Audience == "" && isNull(an) {
		p.errorf(n, path+".audience", "is required: the API identifier tokens for these requests must be issued for")
	} else if r.Audience == "" || !printable(r.Audience) || strings.Contains(r.Audience, " ") {
		p.errorf(an, path+".audience", "%q is not an API identifier", r.Audience)
	}

	for i, sn := range p.list(v["scopes"], path+".scopes") {
		field := fmt.Sprintf("%s.scopes[%d]", path, i)
		s := p.str(sn, field)
		switch {
		case s == "" || !scopeToken(s):
			p.errorf(sn, field, "%q is not a scope (RFC 6749 §3.3: printable ASCII without spaces, quotes or backslashes)", s)
		case slices.Contains(r.Scopes, s):
			p.errorf(sn, field, "%q is listed twice", s)
		default:
			r.Scopes = append(r.Scopes, s)
		}
	}

	if kn := v["api_keys"]; !isNull(kn) {
		var b bool
		if kn.Kind != yaml.ScalarNode || kn.Decode(&b) != nil {
			p.errorf(kn, path+".api_keys", "must be true or false")
		} else if b {
			p.errorf(kn, path+".api_keys", "API keys are not supported yet: they arrive with Gatehouse API keys "+
				"(the API-key issue); until then this rule can only accept access tokens, so remove api_keys or set it to false")
		}
	}

	if nn := v["name"]; !isNull(nn) {
		r.Name = p.str(nn, path+".name")
		if r.Name == "" || !printable(r.Name) || len(r.Name) > 100 {
			p.errorf(nn, path+".name", "must be 1 to 100 printable characters")
		}
	} else {
		r.Name = r.Host + r.Path
		if r.Methods != nil {
			r.Name += " " + strings.Join(r.Methods, ",")
		}
	}
	return r, len(p.errs) == errs
}

// syntaxError turns yaml's "yaml: line 3: message" into "NAME:3: message".
func (p *parser) syntaxError(err error) {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	e := fileError{msg: msg}
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, m, ok := strings.Cut(rest, ": "); ok {
			if line, err := strconv.Atoi(num); err == nil {
				e.line, e.msg = line, m
			}
		}
	}
	p.errs = append(p.errs, e)
}

// fields returns the values of mapping n by key, with aliases resolved. It reports keys that are not strings,
// given twice, or not in known.
func (p *parser) fields(n *yaml.Node, path string, known []string) map[string]*yaml.Node {
	values := make(map[string]*yaml.Node, len(n.Content)/2)
	lines := make(map[string]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if k.Kind != yaml.ScalarNode {
			p.errorf(k, path, "field names must be strings, not %s", kindOf(k))
			continue
		}
		field := join(path, k.Value)
		if line, ok := lines[k.Value]; ok {
			p.errorf(k, field, "is set twice (first at line %d)", line)
			continue
		}
		lines[k.Value] = k.Line
		if !slices.Contains(known, k.Value) {
			p.errorf(k, field, "unknown field (known: %s)", strings.Join(known, ", "))
			continue
		}
		values[k.Value] = resolve(n.Content[i+1])
	}
	return values
}

// list returns the items of sequence n with aliases resolved. Absent or null is an empty list.
func (p *parser) list(n *yaml.Node, path string) []*yaml.Node {
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		p.errorf(n, path, "must be a list, not %s", kindOf(n))
		return nil
	}
	items := make([]*yaml.Node, len(n.Content))
	for i, c := range n.Content {
		items[i] = resolve(c)
	}
	return items
}

// str returns the string value of scalar n. Absent or null is "".
func (p *parser) str(n *yaml.Node, path string) string {
	if isNull(n) {
		return ""
	}
	if n.Kind != yaml.ScalarNode {
		p.errorf(n, path, "must be a string, not %s", kindOf(n))
		return ""
	}
	return n.Value
}

func join(path, field string) string {
	if path == "" {
		return field
	}
	return path + "." + field
}

// root returns the top node of a document.
func root(doc *yaml.Node) *yaml.Node {
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		return resolve(doc.Content[0])
	}
	return doc
}

func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	n = resolve(n)
	return n == nil || (n.Kind == yaml.ScalarNode && n.Tag == "!!null") || (n.Kind == yaml.DocumentNode && len(n.Content) == 0)
}

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
