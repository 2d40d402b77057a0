package config

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/yamlfile"
)

// The fields each mapping of the file may hold, in the order error messages list them.
var (
	fileFields   = []string{"apis", "organizations", "clients"}
	apiFields    = []string{"identifier", "name", "scopes", "token_lifetime", "signing_alg"}
	scopeFields  = []string{"name", "description"}
	orgFields    = []string{"name", "description", "api_key_prefix", "allowed_grants"}
	clientFields = []string{"client_id", "name", "description", "client_secret", "org", "rate_limit", "grants"}
	grantFields  = []string{"audience", "scopes"}
)

// newError returns a problem at node n (nil: line unknown) and path. Content problems wrap auth.ErrInvalid; store
// failures during Apply wrap the store's error.
func newError(file string, n *yaml.Node, path string, cause error, format string, args ...any) *yamlfile.Error {
	e := &yamlfile.Error{File: file, Field: path, Msg: fmt.Sprintf(format, args...), Err: cause}
	if n != nil {
		e.Line = n.Line
	}
	return e
}

// invalidError re-reports an error of an auth validator, whose Field is relative to the entry at n and path, at the
// line of the node it names and with the full path.
func invalidError(file string, n *yaml.Node, path string, err error) *yamlfile.Error {
	var ve *auth.ValidationError
	if !errors.As(err, &ve) {
		return newError(file, n, path, err, "%v", err)
	}
	target, field := locate(n, ve.Field)
	return newError(file, target, yamlfile.Join(path, field), auth.ErrInvalid, "%s", ve.Message)
}

// parser turns the YAML document into a File, collecting problems rather than stopping at the first.
type parser struct {
	name      string
	lookupEnv func(string) (string, bool)
	yamlfile.Parser
}

func (p *parser) invalid(n *yaml.Node, path string, err error) {
	p.Add(invalidError(p.name, n, path, err))
}

func (p *parser) parse(data []byte) (*File, error) {
	p.Parser = yamlfile.Parser{
		File:    p.name,
		Cause:   auth.ErrInvalid,
		Expand:  func(s string) (string, error) { return expand(s, p.lookupEnv) },
		Unknown: suggest,
	}
	f := p.file(p.Document(data)) // an empty File if there is no document, or it cannot be read
	if err := p.Err(); err != nil {
		return nil, err
	}
	return f, nil
}

func (p *parser) file(top *yaml.Node) *File {
	f := &File{name: p.name}
	if yamlfile.IsNull(top) { // no document, "---" or "~" alone, or one Document could not read
		return f
	}
	if top.Kind != yaml.MappingNode {
		p.Errorf(top, "", "the file must be a map with apis and clients, not %s", yamlfile.KindOf(top))
		return f
	}
	v := p.Fields(top, "", fileFields)

	byIdentifier := make(map[string]API)
	for i, n := range p.List(v["apis"], "apis") {
		a, ok := p.api(n, fmt.Sprintf("apis[%d]", i))
		if !ok {
			continue
		}
		if first, ok := byIdentifier[a.Identifier]; ok {
			p.Errorf(valueOf(n, "identifier"), a.path+".identifier", "%q is defined twice (first at %s, line %d)",
				a.Identifier, first.path, first.node.Line)
			continue
		}
		if a.Identifier == auth.ManagementAudience {
			// Its scopes are Gatehouse's, ensured at every start: the file would take them away.
			p.Errorf(valueOf(n, "identifier"), a.path+".identifier",
				"%q is the built-in management API: leave it out, and grant its scopes to clients", a.Identifier)
			continue
		}
		byIdentifier[a.Identifier] = a
		f.APIs = append(f.APIs, a)
	}

	byName := make(map[string]Org)
	for i, n := range p.List(v["organizations"], "organizations") {
		o, ok := p.org(n, fmt.Sprintf("organizations[%d]", i))
		if !ok {
			continue
		}
		if first, ok := byName[o.Name]; ok {
			p.Errorf(valueOf(n, "name"), o.path+".name", "%q is defined twice (first at %s, line %d)",
				o.Name, first.path, first.node.Line)
			continue
		}
		p.checkScopes(byIdentifier, o.AllowedGrants)
		byName[o.Name] = o
		f.Orgs = append(f.Orgs, o)
	}

	byID := make(map[string]Client)
	for i, n := range p.List(v["clients"], "clients") {
		c, ok := p.client(n, fmt.Sprintf("clients[%d]", i))
		if !ok {
			continue
		}
		if first, ok := byID[c.ID]; ok {
			p.Errorf(valueOf(n, "client_id"), c.path+".client_id", "%q is defined twice (first at %s, line %d)",
				c.ID, first.path, first.node.Line)
			continue
		}
		p.checkScopes(byIdentifier, c.Grants)
		byID[c.ID] = c
		f.Clients = append(f.Clients, c)
	}
	return f
}

// checkScopes checks the scopes of grants on APIs of this file now; those on other APIs are checked when
// applying.
func (p *parser) checkScopes(apis map[string]API, grants []Grant) {
	for _, g := range grants {
		if a, ok := apis[g.Audience]; ok {
			if _, err := a.domain().CheckScopes("scopes", g.Scopes); err != nil {
				p.invalid(g.node, g.path, err)
			}
		}
	}
}

func (p *parser) api(n *yaml.Node, path string) (API, bool) {
	a := API{at: at{n, path}}
	if n.Kind != yaml.MappingNode {
		p.Errorf(n, path, "must be a map with identifier and name, not %s", yamlfile.KindOf(n))
		return a, false
	}
	errs := p.Len()
	v := p.Fields(n, path, apiFields)
	a.Identifier = p.Str(v["identifier"], path+".identifier")
	a.Name = p.Str(v["name"], path+".name")
	a.SigningAlg = auth.Algorithm(p.Str(v["signing_alg"], path+".signing_alg"))
	if ln := v["token_lifetime"]; !yamlfile.IsNull(ln) {
		field, before := path+".token_lifetime", p.Len()
		if s := p.Str(ln, field); p.Len() == before {
			d, err := time.ParseDuration(s)
			switch {
			case err != nil:
				p.Errorf(ln, field, "%q is not a Go duration (e.g. 24h, 15m)", s)
			case d == 0: // auth.API.Normalize would take zero for "unset" and fill in the default
				p.Errorf(ln, field, "must be more than zero (leave it out for the default)")
			}
			a.TokenLifetime = d
		}
	}
	for i, sn := range p.List(v["scopes"], path+".scopes") {
		field := fmt.Sprintf("%s.scopes[%d]", path, i)
		switch sn.Kind {
		case yaml.ScalarNode: // the short form: the name alone
			a.Scopes = append(a.Scopes, auth.Scope{Name: p.Str(sn, field)})
		case yaml.MappingNode:
			sv := p.Fields(sn, field, scopeFields)
			a.Scopes = append(a.Scopes, auth.Scope{
				Name:        p.Str(sv["name"], field+".name"),
				Description: p.Str(sv["description"], field+".description"),
			})
		default:
			p.Errorf(sn, field, "must be a scope name or a map with name and description, not %s", yamlfile.KindOf(sn))
		}
	}
	if p.Len() > errs {
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
		p.Errorf(n, path, "must be a map with client_id and name, not %s", yamlfile.KindOf(n))
		return c, false
	}
	errs := p.Len()
	v := p.Fields(n, path, clientFields)
	c.ID = p.Str(v["client_id"], path+".client_id")
	c.Name = p.Str(v["name"], path+".name")
	c.Description = p.Str(v["description"], path+".description")
	c.Org = p.Str(v["org"], path+".org")
	if rn := v["rate_limit"]; !yamlfile.IsNull(rn) {
		field, before := path+".rate_limit", p.Len()
		if s := p.Str(rn, field); p.Len() == before {
			if rl, err := ParseRateLimit(s); err != nil {
				p.Errorf(rn, field, "%v", err)
			} else {
				c.RateLimit = &rl
			}
		}
	}
	if sn := v["client_secret"]; !yamlfile.IsNull(sn) {
		field, before := path+".client_secret", p.Len()
		if s := p.Str(sn, field); p.Len() == before {
			// ValidateSecret never quotes the secret in its message.
			if err := auth.ValidateSecret("client_secret", s); err != nil {
				p.invalid(n, path, err)
			}
			c.Secret = Secret(s)
		}
	}
	c.Grants = p.grants(v["grants"], path, "grants", "is granted twice")
	if p.Len() > errs {
		return c, false
	}

	d := auth.Client{ID: c.ID, Name: c.Name, Description: c.Description}
	if err := d.Normalize(); err != nil {
		p.invalid(n, path, err)
		return c, false
	}
	return c, true
}

// grants reads the list of grants under key of the entry at path, each audience at most once.
func (p *parser) grants(n *yaml.Node, path, key, twice string) []Grant {
	var out []Grant
	byAudience := make(map[string]Grant)
	for i, gn := range p.List(n, path+"."+key) {
		g, ok := p.grant(gn, fmt.Sprintf("%s.%s[%d]", path, key, i))
		if !ok {
			continue
		}
		if first, ok := byAudience[g.Audience]; ok {
			p.Errorf(valueOf(gn, "audience"), g.path+".audience", "%q %s (first at %s, line %d)",
				g.Audience, twice, strings.TrimPrefix(first.path, path+"."), first.node.Line)
			continue
		}
		byAudience[g.Audience] = g
		out = append(out, g)
	}
	return out
}

func (p *parser) org(n *yaml.Node, path string) (Org, bool) {
	o := Org{at: at{n, path}}
	if n.Kind != yaml.MappingNode {
		p.Errorf(n, path, "must be a map with name and allowed_grants, not %s", yamlfile.KindOf(n))
		return o, false
	}
	errs := p.Len()
	v := p.Fields(n, path, orgFields)
	o.Name = p.Str(v["name"], path+".name")
	o.Description = p.Str(v["description"], path+".description")
	o.APIKeyPrefix = p.Str(v["api_key_prefix"], path+".api_key_prefix")
	o.AllowedGrants = p.grants(v["allowed_grants"], path, "allowed_grants", "is listed twice")
	if p.Len() > errs {
		return o, false
	}
	if len(o.AllowedGrants) > auth.MaxScopes {
		p.Errorf(valueOf(n, "allowed_grants"), path+".allowed_grants", "has more than %d entries", auth.MaxScopes)
		return o, false
	}
	d := auth.Org{Name: o.Name, Description: o.Description, APIKeyPrefix: o.APIKeyPrefix}
	if err := d.Normalize(); err != nil {
		p.invalid(n, path, err)
		return o, false
	}
	return o, true
}

func (p *parser) grant(n *yaml.Node, path string) (Grant, bool) {
	g := Grant{at: at{n, path}}
	if n.Kind != yaml.MappingNode {
		p.Errorf(n, path, "must be a map with audience and scopes, not %s", yamlfile.KindOf(n))
		return g, false
	}
	errs := p.Len()
	v := p.Fields(n, path, grantFields)
	g.Audience = p.Str(v["audience"], path+".audience")
	for i, sn := range p.List(v["scopes"], path+".scopes") {
		g.Scopes = append(g.Scopes, p.Str(sn, fmt.Sprintf("%s.scopes[%d]", path, i)))
	}
	if p.Len() > errs {
		return g, false
	}
	if err := auth.ValidateIdentifier("audience", g.Audience); err != nil {
		p.invalid(n, path, err)
		return g, false
	}
	return g, true
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
		if n.Kind == yaml.ScalarNode && !yamlfile.IsNull(n) {
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
				next = yamlfile.Resolve(n.Content[k])
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
			return yamlfile.Resolve(n.Content[i+1])
		}
	}
	return nil
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
