package config

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/gatehouse/gatehouse/internal/auth"
)

// The fields each mapping of the file may hold, in the order error messages list them.
var (
	fileFields   = []string{"apis", "clients"}
	apiFields    = []string{"identifier", "name", "scopes", "token_lifetime", "signing_alg"}
	scopeFields  = []string{"name", "description"}
	clientFields = []string{"client_id", "name", "description", "client_secret", "grants"}
	grantFields  = []string{"audience", "scopes"}
)

// maxErrors is how many problems Parse reports before it stops, like the Go compiler.
const maxErrors = 10

// fileError is a problem at a line and field of the file. Content problems wrap auth.ErrInvalid; store failures
// during Apply wrap the store's error.
type fileError struct {
	file  string
	line  int    // 0: unknown
	field string // dotted path from the root; empty: the whole file
	msg   string
	err   error
}

func (e *fileError) Error() string {
	var b strings.Builder
	b.WriteString(e.file)
	if e.line > 0 {
		b.WriteString(":" + strconv.Itoa(e.line))
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	if e.field != "" {
		b.WriteString(e.field + ": ")
	}
	b.WriteString(e.msg)
	return b.String()
}

func (e *fileError) Unwrap() error { return e.err }

// newError returns a problem at node n (nil: line unknown) and path.
func newError(file string, n *yaml.Node, path string, cause error, format string, args ...any) *fileError {
	e := &fileError{file: file, field: path, msg: fmt.Sprintf(format, args...), err: cause}
	if n != nil {
		e.line = n.Line
	}
	return e
}

// invalidError re-reports an error of an auth validator, whose Field is relative to the entry at n and path, at the
// line of the node it names and with the full path.
func invalidError(file string, n *yaml.Node, path string, err error) error {
	var ve *auth.ValidationError
	if !errors.As(err, &ve) {
		return newError(file, n, path, err, "%v", err)
	}
	target, field := locate(n, ve.Field)
	return newError(file, target, join(path, field), auth.ErrInvalid, "%s", ve.Message)
}

// parser turns the YAML document into a File, collecting problems rather than stopping at the first.
type parser struct {
	name      string
	lookupEnv func(string) (string, bool)
	errs      []error // of *fileError
}

func (p *parser) errorf(n *yaml.Node, path, format string, args ...any) {
	p.errs = append(p.errs, newError(p.name, n, path, auth.ErrInvalid, format, args...))
}

func (p *parser) invalid(n *yaml.Node, path string, err error) {
	p.errs = append(p.errs, invalidError(p.name, n, path, err))
}

// err returns the problems found, in the order of their lines.
func (p *parser) err() error {
	slices.SortStableFunc(p.errs, func(a, b error) int {
		return cmp.Compare(a.(*fileError).line, b.(*fileError).line)
	})
	if len(p.errs) > maxErrors {
		p.errs = append(p.errs[:maxErrors], newError(p.name, nil, "", auth.ErrInvalid, "too many errors"))
	}
	return errors.Join(p.errs...)
}

func (p *parser) parse(data []byte) (*File, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) { // empty, or only comments
			return &File{name: p.name}, nil
		}
		return nil, p.syntaxError(err)
	}
	for {
		var next yaml.Node
		err := dec.Decode(&next)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, p.syntaxError(err)
		}
		if !isNull(root(&next)) { // a trailing "---" is harmless
			return nil, newError(p.name, &next, "", auth.ErrInvalid, "the file must hold one YAML document, not several")
		}
	}

	f := p.file(root(&doc))
	if err := p.err(); err != nil {
		return nil, err
	}
	return f, nil
}

// syntaxError turns yaml's "yaml: line 3: message" into "NAME:3: message".
func (p *parser) syntaxError(err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	e := &fileError{file: p.name, msg: msg, err: auth.ErrInvalid}
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if num, m, ok := strings.Cut(rest, ": "); ok {
			if line, err := strconv.Atoi(num); err == nil {
				e.line, e.msg = line, m
			}
		}
	}
	return e
}

func (p *parser) file(top *yaml.Node) *File {
	f := &File{name: p.name}
	if isNull(top) { // "---" or "~" alone
		return f
	}
	if top.Kind != yaml.MappingNode {
		p.errorf(top, "", "the file must be a map with apis and clients, not %s", kindOf(top))
		return f
	}
	v := p.fields(top, "", fileFields)

	byIdentifier := make(map[string]API)
	for i, n := range p.list(v["apis"], "apis") {
		a, ok := p.api(n, fmt.Sprintf("apis[%d]", i))
		if !ok {
			continue
		}
		if first, ok := byIdentifier[a.Identifier]; ok {
			p.errorf(valueOf(n, "identifier"), a.path+".identifier", "%q is defined twice (first at %s, line %d)",
				a.Identifier, first.path, first.node.Line)
			continue
		}
		byIdentifier[a.Identifier] = a
		f.APIs = append(f.APIs, a)
	}

	byID := make(map[string]Client)
	for i, n := range p.list(v["clients"], "clients") {
		c, ok := p.client(n, fmt.Sprintf("clients[%d]", i))
		if !ok {
			continue
		}
		if first, ok := byID[c.ID]; ok {
			p.errorf(valueOf(n, "client_id"), c.path+".client_id", "%q is defined twice (first at %s, line %d)",
				c.ID, first.path, first.node.Line)
			continue
		}
		// Scopes granted on an API of this file can be checked now; those on other APIs when applying.
		for _, g := range c.Grants {
			if a, ok := byIdentifier[g.Audience]; ok {
				if _, err := a.domain().CheckScopes("scopes", g.Scopes); err != nil {
					p.invalid(g.node, g.path, err)
				}
			}
		}
		byID[c.ID] = c
		f.Clients = append(f.Clients, c)
	}
	return f
}

func (p *parser) api(n *yaml.Node, path string) (API, bool) {
	a := API{at: at{n, path}}
	if n.Kind != yaml.MappingNode {
		p.errorf(n, path, "must be a map with identifier and name, not %s", kindOf(n))
		return a, false
	}
	errs := len(p.errs)
	v := p.fields(n, path, apiFields)
	a.Identifier = p.str(v["identifier"], path+".identifier")
	a.Name = p.str(v["name"], path+".name")
	a.SigningAlg = auth.Algorithm(p.str(v["signing_alg"], path+".signing_alg"))
	if ln := v["token_lifetime"]; !isNull(ln) {
		field, before := path+".token_lifetime", len(p.errs)
		if s := p.str(ln, field); len(p.errs) == before {
			d, err := time.ParseDuration(s)
			switch {
			case err != nil:
				p.errorf(ln, field, "%q is not a Go duration (e.g. 24h, 15m)", s)
			case d == 0: // auth.API.Normalize would take zero for "unset" and fill in the default
				p.errorf(ln, field, "must be more than zero (leave it out for the default)")
			}
			a.TokenLifetime = d
		}
	}
	for i, sn := range p.list(v["scopes"], path+".scopes") {
		field := fmt.Sprintf("%s.scopes[%d]", path, i)
		switch sn.Kind {
		case yaml.ScalarNode: // the short form: the name alone
			a.Scopes = append(a.Scopes, auth.Scope{Name: p.str(sn, field)})
		case yaml.MappingNode:
			sv := p.fields(sn, field, scopeFields)
			a.Scopes = append(a.Scopes, auth.Scope{
				Name:        p.str(sv["name"], field+".name"),
				Description: p.str(sv["description"], field+".description"),
			})
		default:
			p.errorf(sn, field, "must be a scope name or a map with name and description, not %s", kindOf(sn))
		}
	}
	if len(p.errs) > errs {
		return a, false
	}

	d := a.domain()
	if err := d.Normalize(); err != nil {
		p.invalid(n, path, err)
		return a, false
	}
	a.TokenLifetime, a.SigningAlg = d.TokenLifetime, d.SigningAlg // the defaults
	return a, true
}

// domain returns the API as package auth has it, without ID or timestamps.
func (a *API) domain() *auth.API {
	return &auth.API{
		Identifier:    a.Identifier,
		Name:          a.Name,
		Scopes:        slices.Clone(a.Scopes),
		TokenLifetime: a.TokenLifetime,
		SigningAlg:    a.SigningAlg,
	}
}

func (p *parser) client(n *yaml.Node, path string) (Client, bool) {
	c := Client{at: at{n, path}}
	if n.Kind != yaml.MappingNode {
		p.errorf(n, path, "must be a map with client_id and name, not %s", kindOf(n))
		return c, false
	}
	errs := len(p.errs)
	v := p.fields(n, path, clientFields)
	c.ID = p.str(v["client_id"], path+".client_id")
	c.Name = p.str(v["name"], path+".name")
	c.Description = p.str(v["description"], path+".description")
	if sn := v["client_secret"]; !isNull(sn) {
		field, before := path+".client_secret", len(p.errs)
		if s := p.str(sn, field); len(p.errs) == before {
			// ValidateSecret never quotes the secret in its message.
			if err := auth.ValidateSecret("client_secret", s); err != nil {
				p.invalid(n, path, err)
			}
			c.Secret = Secret(s)
		}
	}
	byAudience := make(map[string]Grant)
	for i, gn := range p.list(v["grants"], path+".grants") {
		g, ok := p.grant(gn, fmt.Sprintf("%s.grants[%d]", path, i))
		if !ok {
			continue
		}
		if first, ok := byAudience[g.Audience]; ok {
			p.errorf(valueOf(gn, "audience"), g.path+".audience", "%q is granted twice (first at %s, line %d)",
				g.Audience, strings.TrimPrefix(first.path, path+"."), first.node.Line)
			continue
		}
		byAudience[g.Audience] = g
		c.Grants = append(c.Grants, g)
	}
	if len(p.errs) > errs {
		return c, false
	}

	d := auth.Client{ID: c.ID, Name: c.Name, Description: c.Description}
	if err := d.Normalize(); err != nil {
		p.invalid(n, path, err)
		return c, false
	}
	return c, true
}

func (p *parser) grant(n *yaml.Node, path string) (Grant, bool) {
	g := Grant{at: at{n, path}}
	if n.Kind != yaml.MappingNode {
		p.errorf(n, path, "must be a map with audience and scopes, not %s", kindOf(n))
		return g, false
	}
	errs := len(p.errs)
	v := p.fields(n, path, grantFields)
	g.Audience = p.str(v["audience"], path+".audience")
	for i, sn := range p.list(v["scopes"], path+".scopes") {
		g.Scopes = append(g.Scopes, p.str(sn, fmt.Sprintf("%s.scopes[%d]", path, i)))
	}
	if len(p.errs) > errs {
		return g, false
	}
	if err := auth.ValidateIdentifier("audience", g.Audience); err != nil {
		p.invalid(n, path, err)
		return g, false
	}
	return g, true
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
			p.errorf(k, field, "unknown field (%s)", suggest(k.Value, known))
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

// str returns the string value of scalar n with ${VAR}s expanded. Absent or null is "". Any scalar is taken as
// the text it is written as (name: 2024 is "2024").
func (p *parser) str(n *yaml.Node, path string) string {
	if isNull(n) {
		return ""
	}
	if n.Kind != yaml.ScalarNode {
		p.errorf(n, path, "must be a string, not %s", kindOf(n))
		return ""
	}
	s, err := expand(n.Value, p.lookupEnv)
	if err != nil {
		p.errorf(n, path, "%v", err)
		return ""
	}
	return s
}

// expand replaces ${NAME} with the value of the environment variable NAME and $$ with $. Any other $ stays as it
// is. Its errors never quote s, which may be a secret.
func expand(s string, lookupEnv func(string) (string, bool)) (string, error) {
	if !strings.Contains(s, "$") {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '{':
			end := strings.IndexByte(s[i+2:], '}')
			if end < 0 {
				return "", errors.New(`"${" has no closing "}" (write $$ for a literal $)`)
			}
			name := s[i+2 : i+2+end]
			if !isVarName(name) {
				return "", errors.New(`"${" must be followed by an environment variable name (letters, digits, _) and "}" (write $$ for a literal $)`)
			}
			v, ok := lookupEnv(name)
			if !ok {
				return "", fmt.Errorf("environment variable %s is not set", name)
			}
			b.WriteString(v)
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String(), nil
}

func isVarName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || i > 0 && '0' <= c && c <= '9') {
			return false
		}
	}
	return s != ""
}

// locate finds the node that a validator's field path (e.g. "scopes[2].name") names below n. It returns the
// deepest node it reaches, which is n itself or the entry holding a missing field, and the path to report: field,
// or field cut short where the file uses a shorthand (a scope written as a bare name has no ".name").
func locate(n *yaml.Node, field string) (*yaml.Node, string) {
	for i := 0; n != nil && i < len(field); {
		if n.Kind == yaml.ScalarNode && !isNull(n) {
			return n, field[:i]
		}
		var next *yaml.Node
		end := i
		switch field[i] {
		case '[':
			close := strings.IndexByte(field[i:], ']')
			if close < 0 {
				return n, field
			}
			end = i + close + 1
			if k, err := strconv.Atoi(field[i+1 : end-1]); err == nil && n.Kind == yaml.SequenceNode && k >= 0 && k < len(n.Content) {
				next = resolve(n.Content[k])
			}
		default:
			start := i
			if field[i] == '.' {
				start++
			}
			end = start + strings.IndexAny(field[start:], ".[")
			if end < start {
				end = len(field)
			}
			next = valueOf(n, field[start:end])
		}
		if next == nil {
			return n, field
		}
		n, i = next, end
	}
	return n, field
}

// valueOf returns the value of key in mapping n, or nil.
func valueOf(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Kind == yaml.ScalarNode && n.Content[i].Value == key {
			return resolve(n.Content[i+1])
		}
	}
	return nil
}

// root returns the content of a document node.
func root(doc *yaml.Node) *yaml.Node {
	if len(doc.Content) == 0 {
		return nil
	}
	return resolve(doc.Content[0])
}

// resolve follows an alias (*name) to the node it stands for.
func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func kindOf(n *yaml.Node) string {
	switch {
	case n.Kind == yaml.MappingNode:
		return "a map"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case isNull(n):
		return "empty"
	case n.Tag == "!!int" || n.Tag == "!!float":
		return "a number"
	case n.Tag == "!!bool":
		return "a boolean"
	}
	return "a string"
}

// join appends field to path with a dot, or an index without one.
func join(path, field string) string {
	if path == "" || field == "" {
		return path + field
	}
	if field[0] == '[' {
		return path + field
	}
	return path + "." + field
}

// suggest completes "unknown field (…)": the known field the key was probably meant to be, or the list of them.
func suggest(key string, known []string) string {
	best, bestDist := "", 3 // at most two edits away
	for _, k := range known {
		d := distance(strings.ToLower(key), k)
		if len(key) >= 2 && strings.Contains(k, strings.ToLower(key)) {
			d = 1 // "secret" for client_secret, "alg" for signing_alg
		}
		if d < bestDist && d < len(key) {
			best, bestDist = k, d
		}
	}
	if best != "" {
		return "did you mean " + best + "?"
	}
	list := strings.Join(known[:len(known)-1], ", ") + " or " + known[len(known)-1]
	return "expected " + list
}

// distance is the Levenshtein distance between a and b, in bytes.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
