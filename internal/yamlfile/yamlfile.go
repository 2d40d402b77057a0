// Package yamlfile reads a YAML file that people write, through go.yaml.in/yaml/v3 nodes, and reports every problem
// it finds with the file, line and dotted field path, e.g.
//
//	gatehouse.yaml:12: apis[0].token_lifetime: "45d" is not a Go duration (e.g. 24h, 15m)
//
// A Parser collects problems rather than stopping at the first. Its caller reads the document with Document, walks it
// with Fields, List and Str, which report wrong kinds, repeated and unknown keys themselves, checks the values with
// Errorf, and ends with Err. Its own messages never quote a value (unless Parser.Kind does), so a file may hold
// secrets.
package yamlfile

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// maxErrors is how many problems Err reports before it stops, like the Go compiler.
const maxErrors = 10

// Error is a problem at a line and field of a file. Its text is "FILE:LINE: FIELD: MSG", leaving out the parts that
// are empty or zero.
type Error struct {
	File  string // the file's name, usually its path
	Line  int    // 0: unknown
	Field string // dotted path from the top of the document (e.g. "apis[0].name"); empty: the whole file
	Msg   string
	Err   error // what Unwrap returns, for errors.Is; may be nil
}

// Error returns "FILE:LINE: FIELD: MSG".
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteString(":" + strconv.Itoa(e.Line))
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap returns e.Err.
func (e *Error) Unwrap() error { return e.Err }

// Parser collects the problems found in one file. Set File, and the optional fields, before the first call; a Parser
// is for one file and one goroutine.
type Parser struct {
	// File names the file in errors, usually its path.
	File string
	// Cause, if not nil, is what every Error the Parser makes wraps (a package's ErrInvalid), for errors.Is.
	Cause error
	// Expand, if not nil, rewrites every string Str returns (e.g. to replace ${VAR}s). Str reports its error at the
	// string's node and returns "". Its errors should not quote the string, which may be a secret.
	Expand func(string) (string, error)
	// Unknown, if not nil, says in the parentheses of "unknown field (…)" what key, a field not in known, may have
	// been meant to be (e.g. "did you mean name?"). If nil: "known: " and the known fields.
	Unknown func(key string, known []string) string
	// Kind, if not nil, describes a node of the wrong kind in messages such as "must be a list, not …". If nil: KindOf.
	Kind func(*yaml.Node) string

	errs []*Error
}

// Errorf reports a problem at node n (nil: line unknown) and path, the field path from the top of the document (""
// for the whole file). The message is fmt.Sprintf(format, args...); the Error wraps p.Cause.
func (p *Parser) Errorf(n *yaml.Node, path, format string, args ...any) {
	e := &Error{File: p.File, Field: path, Msg: fmt.Sprintf(format, args...), Err: p.Cause}
	if n != nil {
		e.Line = n.Line
	}
	p.errs = append(p.errs, e)
}

// Add reports e as it is: for a problem Errorf cannot make, e.g. one wrapping another error than p.Cause.
func (p *Parser) Add(e *Error) { p.errs = append(p.errs, e) }

// Len returns how many problems have been reported so far. Comparing it before and after a step tells whether the
// step found any.
func (p *Parser) Len() int { return len(p.errs) }

// Err returns the problems reported, or nil if there are none: each an *Error, in the order of their lines (those on
// one line in the order reported), joined with errors.Join. After ten comes "FILE: too many errors" and no more.
func (p *Parser) Err() error {
	if len(p.errs) == 0 {
		return nil
	}
	sorted := slices.Clone(p.errs)
	slices.SortStableFunc(sorted, func(a, b *Error) int { return cmp.Compare(a.Line, b.Line) })
	errs := make([]error, 0, min(len(sorted), maxErrors+1))
	for _, e := range sorted {
		if len(errs) == maxErrors {
			errs = append(errs, &Error{File: p.File, Msg: "too many errors", Err: p.Cause})
			break
		}
		errs = append(errs, e)
	}
	return errors.Join(errs...)
}

// Document decodes data, which must hold one YAML document, and returns its top node with aliases resolved. It
// returns nil when data holds no document (it is empty or only comments), and when it reports a syntax error or a
// second document; Len tells the two apart. Empty documents after the first (a trailing "---") are allowed.
func (p *Parser) Document(data []byte) *yaml.Node {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if !errors.Is(err, io.EOF) {
			p.syntaxError(err)
		}
		return nil
	}
	for {
		var next yaml.Node
		err := dec.Decode(&next)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			p.syntaxError(err)
			return nil
		}
		if !IsNull(top(&next)) {
			p.Errorf(&next, "", "the file must hold one YAML document, not several")
			return nil
		}
	}
	return top(&doc)
}

// syntaxError reports yaml's "yaml: line 3: message" as "FILE:3: message".
func (p *Parser) syntaxError(err error) {
	e := &Error{File: p.File, Msg: strings.TrimPrefix(err.Error(), "yaml: "), Err: p.Cause}
	if rest, ok := strings.CutPrefix(e.Msg, "line "); ok {
		if num, msg, ok := strings.Cut(rest, ": "); ok {
			if line, err := strconv.Atoi(num); err == nil {
				e.Line, e.Msg = line, msg
			}
		}
	}
	p.errs = append(p.errs, e)
}

// top returns the content of a document node, with aliases resolved; nil if it has none.
func top(doc *yaml.Node) *yaml.Node {
	if len(doc.Content) == 0 {
		return nil
	}
	return Resolve(doc.Content[0])
}

// Fields returns the values of mapping n, at path, by key, with aliases resolved. It reports keys that are not
// strings, given twice, or not in known, and leaves them out. The caller checks that n is a mapping.
func (p *Parser) Fields(n *yaml.Node, path string, known []string) map[string]*yaml.Node {
	values := make(map[string]*yaml.Node, len(n.Content)/2)
	lines := make(map[string]int, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := n.Content[i]
		if k.Kind != yaml.ScalarNode {
			p.Errorf(k, path, "field names must be strings, not %s", p.kind(k))
			continue
		}
		field := Join(path, k.Value)
		if line, ok := lines[k.Value]; ok {
			p.Errorf(k, field, "is set twice (first at line %d)", line)
			continue
		}
		lines[k.Value] = k.Line
		if !slices.Contains(known, k.Value) {
			p.Errorf(k, field, "unknown field (%s)", p.unknown(k.Value, known))
			continue
		}
		values[k.Value] = Resolve(n.Content[i+1])
	}
	return values
}

// List returns the items of sequence n, at path, with aliases resolved. Absent (nil) or null is an empty list;
// anything else that is not a sequence is reported.
func (p *Parser) List(n *yaml.Node, path string) []*yaml.Node {
	if IsNull(n) {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		p.Errorf(n, path, "must be a list, not %s", p.kind(n))
		return nil
	}
	items := make([]*yaml.Node, len(n.Content))
	for i, c := range n.Content {
		items[i] = Resolve(c)
	}
	return items
}

// Str returns the string value of scalar n, at path, rewritten by p.Expand if set. Absent (nil) or null is "". Any
// scalar is taken as the text it is written as (name: 2024 is "2024"); a map or list is reported.
func (p *Parser) Str(n *yaml.Node, path string) string {
	if IsNull(n) {
		return ""
	}
	if n.Kind != yaml.ScalarNode {
		p.Errorf(n, path, "must be a string, not %s", p.kind(n))
		return ""
	}
	if p.Expand == nil {
		return n.Value
	}
	s, err := p.Expand(n.Value)
	if err != nil {
		p.Errorf(n, path, "%v", err)
		return ""
	}
	return s
}

func (p *Parser) kind(n *yaml.Node) string {
	if p.Kind != nil {
		return p.Kind(n)
	}
	return KindOf(n)
}

func (p *Parser) unknown(key string, known []string) string {
	if p.Unknown != nil {
		return p.Unknown(key, known)
	}
	return "known: " + strings.Join(known, ", ")
}

// Resolve follows an alias (*name) to the node it stands for. Document, Fields and List return resolved nodes.
func Resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// IsNull reports whether n, with aliases resolved, is absent (nil) or null (~, null, or nothing after the colon).
func IsNull(n *yaml.Node) bool {
	n = Resolve(n)
	return n == nil || n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

// KindOf describes n, with aliases resolved, for a message such as "must be a list, not a map": "a map", "a list",
// "empty", "a number", "a boolean" or "a string". It never quotes a value, which may be a secret.
func KindOf(n *yaml.Node) string {
	n = Resolve(n)
	switch {
	case IsNull(n):
		return "empty"
	case n.Kind == yaml.MappingNode:
		return "a map"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case n.Tag == "!!int" || n.Tag == "!!float":
		return "a number"
	case n.Tag == "!!bool":
		return "a boolean"
	}
	return "a string"
}

// Join appends field to path with a dot ("apis[0]", "name": "apis[0].name"), or without one when field is an index
// ("apis", "[0]": "apis[0]") or either is empty.
func Join(path, field string) string {
	if path == "" || field == "" || field[0] == '[' {
		return path + field
	}
	return path + "." + field
}
