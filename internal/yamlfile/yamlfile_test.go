package yamlfile_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"github.com/gatehouse/gatehouse/internal/yamlfile"
)

// pet is what the tests' files describe.
type pet struct {
	Name  string
	Tags  []string
	Owner string
}

var (
	petFields   = []string{"name", "tags", "owner"}
	ownerFields = []string{"name"}
)

// parsePet reads a pet the way a package using yamlfile does, and returns it with p.Err().
func parsePet(p *yamlfile.Parser, src string) (pet, error) {
	var pt pet
	top := p.Document([]byte(src))
	if yamlfile.IsNull(top) { // no document, a null one, or one Document reported
		return pt, p.Err()
	}
	if top.Kind != yaml.MappingNode {
		p.Errorf(top, "", "must be a map, not %s", yamlfile.KindOf(top))
		return pt, p.Err()
	}
	v := p.Fields(top, "", petFields)
	pt.Name = p.Str(v["name"], "name")
	for i, n := range p.List(v["tags"], "tags") {
		pt.Tags = append(pt.Tags, p.Str(n, fmt.Sprintf("tags[%d]", i)))
	}
	if n := v["owner"]; !yamlfile.IsNull(n) {
		if n.Kind != yaml.MappingNode {
			p.Errorf(n, "owner", "must be a map, not %s", yamlfile.KindOf(n))
		} else {
			pt.Owner = p.Str(p.Fields(n, "owner", ownerFields)["name"], "owner.name")
		}
	}
	return pt, p.Err()
}

func TestParser(t *testing.T) {
	tests := []struct {
		name, src string
		want      pet
	}{
		{"empty", "", pet{}},
		{"only comments", "# nothing\n", pet{}},
		{"empty document", "---\n", pet{}},
		{"null document", "~\n", pet{}},
		{"trailing empty documents", "name: Rex\n---\n---\n", pet{Name: "Rex"}},
		{"everything", "name: Rex\ntags: [good, 7, true]\nowner:\n  name: Ann\n", pet{Name: "Rex", Tags: []string{"good", "7", "true"}, Owner: "Ann"}},
		{"nulls are absent", "name: ~\ntags:\nowner: null\n", pet{}},
		{"aliases", "name: &n Rex\ntags: &t [a, *n]\nowner: {name: *n}\n", pet{Name: "Rex", Tags: []string{"a", "Rex"}, Owner: "Rex"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parsePet(&yamlfile.Parser{File: "pet.yaml"}, tt.src)
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("pet (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParserErrors(t *testing.T) {
	tests := []struct {
		name, src, want string
	}{
		{"syntax error", "name: a\ntags: [b\n", "pet.yaml:1: did not find expected ',' or ']'"}, // yaml's line,
		{"tab indentation", "owner:\n\tname: a\n", "pet.yaml:2: found character that cannot start any token"},
		{"two documents", "name: a\n---\nname: b\n", "pet.yaml:2: the file must hold one YAML document, not several"},
		{"a document after an empty one", "name: a\n---\n---\nname: b\n", "pet.yaml:3: the file must hold one YAML document, not several"},
		{"syntax error in a later document", "name: a\n---\nname: [\n", "pet.yaml:3: did not find expected node content"},

		{"unknown field", "name: a\ncolor: red\n", "pet.yaml:2: color: unknown field (known: name, tags, owner)"},
		{"unknown nested field", "owner:\n  name: a\n  age: 3\n", "pet.yaml:3: owner.age: unknown field (known: name)"},
		{"key set twice", "name: a\ntags: []\nname: b\n", "pet.yaml:3: name: is set twice (first at line 1)"},
		{"key set twice, the second unknown-free", "owner:\n  name: a\n  name: a\n", "pet.yaml:3: owner.name: is set twice (first at line 2)"},
		{"key is a list", "? [a]\n: b\n", "pet.yaml:1: field names must be strings, not a list"},
		{"key is a map", "owner:\n  ? {a: 1}\n  : b\n", "pet.yaml:2: owner: field names must be strings, not a map"},

		{"string is a list", "name: [a]\n", "pet.yaml:1: name: must be a string, not a list"},
		{"string is a map", "owner:\n  name: {first: a}\n", "pet.yaml:2: owner.name: must be a string, not a map"},
		{"list is a string", "tags: a b\n", "pet.yaml:1: tags: must be a list, not a string"},
		{"list is a number", "tags: 3\n", "pet.yaml:1: tags: must be a list, not a number"},
		{"list is a map", "tags: {a: b}\n", "pet.yaml:1: tags: must be a list, not a map"},
		{"list item is a map", "tags:\n  - a\n  - {b: c}\n", "pet.yaml:3: tags[1]: must be a string, not a map"},
		{"alias to a wrong kind", "name: &l [a]\ntags: [b]\nowner: *l\n", "pet.yaml:1: name: must be a string, not a list\n" +
			"pet.yaml:1: owner: must be a map, not a list"}, // at the line of the node the alias stands for
		{"top is a list", "- a\n", "pet.yaml:1: must be a map, not a list"},

		{"in line order", "tags: x\nname: [a]\ncolor: red\nowner: 1\n",
			"pet.yaml:1: tags: must be a list, not a string\n" +
				"pet.yaml:2: name: must be a string, not a list\n" +
				"pet.yaml:3: color: unknown field (known: name, tags, owner)\n" +
				"pet.yaml:4: owner: must be a map, not a number"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parsePet(&yamlfile.Parser{File: "pet.yaml"}, tt.src)
			if err == nil {
				t.Fatalf("parse succeeded, want error %q", tt.want)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("error:\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestParserHooks(t *testing.T) {
	errInvalid := errors.New("invalid")
	p := &yamlfile.Parser{
		File:  "pet.yaml",
		Cause: errInvalid,
		Expand: func(s string) (string, error) {
			if strings.Contains(s, "!") {
				return "", errors.New("no ! please")
			}
			return strings.ToUpper(s), nil
		},
		Unknown: func(key string, known []string) string { return "not " + key + ", try " + known[0] },
		Kind:    func(n *yaml.Node) string { return fmt.Sprintf("kind %d", n.Kind) },
	}
	got, err := parsePet(p, "name: rex\ntags: [a!, b]\nowner: {name: ann, nick: x}\n")
	want := "pet.yaml:2: tags[0]: no ! please\n" +
		"pet.yaml:3: owner.nick: unknown field (not nick, try name)"
	if err == nil || err.Error() != want {
		t.Fatalf("error = %v, want %s", err, want)
	}
	if diff := cmp.Diff(pet{Name: "REX", Tags: []string{"", "B"}, Owner: "ANN"}, got); diff != "" {
		t.Errorf("pet (-want +got):\n%s", diff)
	}
	if !errors.Is(err, errInvalid) {
		t.Errorf("errors.Is(err, Cause) = false")
	}
	var e *yamlfile.Error
	if !errors.As(err, &e) || e.Line != 2 || e.Field != "tags[0]" {
		t.Errorf("errors.As(err, *Error) = %+v, want the first problem", e)
	}

	p = &yamlfile.Parser{File: "pet.yaml", Cause: errInvalid, Kind: p.Kind}
	if _, err := parsePet(p, "tags: {}\n"); err == nil || err.Error() != "pet.yaml:1: tags: must be a list, not kind 4" {
		t.Errorf("error = %v, want one using Kind", err)
	}
	p = &yamlfile.Parser{File: "pet.yaml", Cause: errInvalid}
	if _, err := parsePet(p, "a: [\n"); !errors.Is(err, errInvalid) {
		t.Errorf("syntax error %v does not wrap Cause", err)
	}
}

func TestErr(t *testing.T) {
	p := &yamlfile.Parser{File: "f.yaml"}
	if err := p.Err(); err != nil {
		t.Fatalf("Err with no problems = %v", err)
	}
	// Twelve problems, reported out of line order, two on line 3.
	for _, line := range []int{9, 3, 12, 1, 3, 7, 11, 2, 10, 5, 8, 4} {
		p.Errorf(&yaml.Node{Line: line}, "f", "at %d, #%d", line, p.Len())
	}
	p.Add(&yamlfile.Error{File: "f.yaml", Msg: "line unknown"}) // sorts first
	if got := p.Len(); got != 13 {
		t.Errorf("Len = %d, want 13", got)
	}
	want := strings.Join([]string{
		"f.yaml: line unknown",
		"f.yaml:1: f: at 1, #3",
		"f.yaml:2: f: at 2, #7",
		"f.yaml:3: f: at 3, #1",
		"f.yaml:3: f: at 3, #4",
		"f.yaml:4: f: at 4, #11",
		"f.yaml:5: f: at 5, #9",
		"f.yaml:7: f: at 7, #5",
		"f.yaml:8: f: at 8, #10",
		"f.yaml:9: f: at 9, #0",
		"f.yaml: too many errors",
	}, "\n")
	for range 2 { // Err does not change what it reports
		if got := p.Err().Error(); got != want {
			t.Errorf("Err:\n got %s\nwant %s", got, want)
		}
	}
}

func TestErrorString(t *testing.T) {
	tests := []struct {
		e    yamlfile.Error
		want string
	}{
		{yamlfile.Error{File: "f", Line: 3, Field: "a.b", Msg: "m"}, "f:3: a.b: m"},
		{yamlfile.Error{File: "f", Field: "a", Msg: "m"}, "f: a: m"},
		{yamlfile.Error{File: "f", Line: 3, Msg: "m"}, "f:3: m"},
		{yamlfile.Error{File: "f", Msg: "m"}, "f: m"},
		{yamlfile.Error{Msg: "m"}, "m"},
		{yamlfile.Error{Line: 3, Field: "a", Msg: "m"}, ":3: a: m"},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("%+v.Error() = %q, want %q", tt.e, got, tt.want)
		}
	}
}

func TestKindOf(t *testing.T) {
	var doc yaml.Node
	src := "map: {a: 1}\nlist: [1]\nnull: ~\nempty:\nint: 1\nfloat: 1.5\nbool: false\nstr: x\nquoted: '1'\nalias: &m {b: 2}\nref: *m\n"
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"map": "a map", "list": "a list", "null": "empty", "empty": "empty", "int": "a number",
		"float": "a number", "bool": "a boolean", "str": "a string", "quoted": "a string", "alias": "a map", "ref": "a map"}
	m := doc.Content[0]
	for i := 0; i < len(m.Content); i += 2 {
		k, v := m.Content[i].Value, m.Content[i+1]
		if got := yamlfile.KindOf(v); got != want[k] {
			t.Errorf("KindOf(%s) = %q, want %q", k, got, want[k])
		}
		if got, want := yamlfile.IsNull(v), want[k] == "empty"; got != want {
			t.Errorf("IsNull(%s) = %v, want %v", k, got, want)
		}
	}
	if got := yamlfile.KindOf(nil); got != "empty" {
		t.Errorf("KindOf(nil) = %q, want empty", got)
	}
}

func TestResolve(t *testing.T) {
	target := &yaml.Node{Kind: yaml.ScalarNode, Value: "x"}
	alias := &yaml.Node{Kind: yaml.AliasNode, Alias: &yaml.Node{Kind: yaml.AliasNode, Alias: target}}
	if got := yamlfile.Resolve(alias); got != target {
		t.Errorf("Resolve(alias of alias) = %v, want the scalar", got)
	}
	if got := yamlfile.Resolve(target); got != target {
		t.Errorf("Resolve(scalar) = %v, want itself", got)
	}
	if got := yamlfile.Resolve(nil); got != nil {
		t.Errorf("Resolve(nil) = %v", got)
	}
	if !yamlfile.IsNull(&yaml.Node{Kind: yaml.AliasNode, Alias: &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null"}}) {
		t.Errorf("IsNull(alias of null) = false")
	}
}

func TestJoin(t *testing.T) {
	tests := []struct{ path, field, want string }{
		{"", "apis", "apis"},
		{"apis", "[0]", "apis[0]"},
		{"apis[0]", "name", "apis[0].name"},
		{"apis[0]", "", "apis[0]"},
		{"", "", ""},
	}
	for _, tt := range tests {
		if got := yamlfile.Join(tt.path, tt.field); got != tt.want {
			t.Errorf("Join(%q, %q) = %q, want %q", tt.path, tt.field, got, tt.want)
		}
	}
}
