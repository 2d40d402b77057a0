package server

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gatehouse/gatehouse/internal/auth"
)

// The OpenAPI document is hand-written. These tests hold it to the code: the same operations as manageRoutes,
// the same scope per operation, and schemas with the members, types and required lists of the Go types the
// handlers read and write.

// oaDoc is the parsed document, as plain JSON values.
type oaDoc map[string]any

func loadOpenAPI(t *testing.T) oaDoc {
	t.Helper()
	if !json.Valid(openAPIDoc) {
		t.Fatal("openapi.json is not valid JSON")
	}
	dec := json.NewDecoder(bytes.NewReader(openAPIDoc))
	var doc oaDoc
	if err := dec.Decode(&doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if v, _ := doc["openapi"].(string); !strings.HasPrefix(v, "3.1.") {
		t.Fatalf("openapi = %q, want 3.1.x", doc["openapi"])
	}
	return doc
}

// obj returns the member of m at the given keys, as an object (nil if missing).
func obj(m any, keys ...string) map[string]any {
	for _, k := range keys {
		o, _ := m.(map[string]any)
		m = o[k]
	}
	o, _ := m.(map[string]any)
	return o
}

// resolve follows a local $ref ("#/components/…") to the object it names; anything else is returned as it is.
func (d oaDoc) resolve(t *testing.T, v map[string]any) map[string]any {
	t.Helper()
	for i := 0; i < 10; i++ {
		ref, ok := v["$ref"].(string)
		if !ok {
			return v
		}
		target := obj(map[string]any(d), strings.Split(strings.TrimPrefix(ref, "#/"), "/")...)
		if !strings.HasPrefix(ref, "#/") || target == nil {
			t.Fatalf("$ref %q resolves to nothing", ref)
		}
		v = target
	}
	t.Fatal("$ref chain too long")
	return nil
}

var httpMethods = []string{"get", "put", "post", "delete", "options", "head", "patch", "trace"}

// oaOperation is one operation of the document.
type oaOperation struct {
	key  string // "GET /api/v1/apis"
	path string
	op   map[string]any
	item map[string]any // its path item, for path-level parameters
}

func (d oaDoc) operations(t *testing.T) []oaOperation {
	t.Helper()
	var ops []oaOperation
	for path, item := range obj(map[string]any(d), "paths") {
		item := item.(map[string]any)
		for _, m := range httpMethods {
			if op := obj(item, m); op != nil {
				ops = append(ops, oaOperation{key: strings.ToUpper(m) + " " + path, path: path, op: op, item: item})
			}
		}
	}
	sort.Slice(ops, func(i, j int) bool { return ops[i].key < ops[j].key })
	return ops
}

// TestOpenAPIRoutes: the document describes exactly the routes of manageRoutes, each with the route's scope.
func TestOpenAPIRoutes(t *testing.T) {
	doc := loadOpenAPI(t)
	routes := map[string]string{} // "METHOD path" → scope
	for _, rt := range (&Server{}).manageRoutes() {
		routes[rt.method+" "+rt.path] = rt.scope
	}
	described := map[string]bool{}
	for _, o := range doc.operations(t) {
		described[o.key] = true
		scope, ok := routes[o.key]
		if !ok {
			t.Errorf("the document describes %s, which manageRoutes does not serve", o.key)
			continue
		}
		sec, _ := o.op["security"].([]any)
		want := []any{map[string]any{"gatehouse": []any{scope}}}
		if !reflect.DeepEqual(sec, want) {
			t.Errorf("%s: security = %v, want %v", o.key, sec, want)
		}
	}
	for key := range routes {
		if !described[key] {
			t.Errorf("manageRoutes serves %s, which the document does not describe", key)
		}
	}
}

// TestOpenAPISecurityScheme: the bearer scheme is OAuth 2.0 client credentials at /oauth/token with exactly the
// management scopes.
func TestOpenAPISecurityScheme(t *testing.T) {
	doc := loadOpenAPI(t)
	scheme := obj(map[string]any(doc), "components", "securitySchemes", "gatehouse")
	if scheme["type"] != "oauth2" {
		t.Fatalf("security scheme type = %v, want oauth2", scheme["type"])
	}
	flow := obj(scheme, "flows", "clientCredentials")
	if flow["tokenUrl"] != "/oauth/token" {
		t.Errorf("tokenUrl = %v, want /oauth/token", flow["tokenUrl"])
	}
	var got []string
	for s := range obj(flow, "scopes") {
		got = append(got, s)
	}
	want := slices.Clone(auth.ManagementScopes)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("scopes = %v, want the management scopes %v", got, want)
	}
}

// TestOpenAPIOperations checks each operation's shape: path parameters match the path's wildcards; every
// operation answers 401, 403 and 503, and its errors as problem JSON; one with a body answers 400, 413 and 415;
// If-Match and 412 go together; every $ref resolves.
func TestOpenAPIOperations(t *testing.T) {
	doc := loadOpenAPI(t)
	wildcard := regexp.MustCompile(`\{([^}]+)\}`)
	ids := map[string]string{}
	for _, o := range doc.operations(t) {
		id, _ := o.op["operationId"].(string)
		if id == "" {
			t.Errorf("%s: no operationId", o.key)
		} else if other, dup := ids[id]; dup {
			t.Errorf("%s and %s share the operationId %s", o.key, other, id)
		}
		ids[id] = o.key

		pathParams, ifMatch := map[string]bool{}, false
		for _, list := range [][]any{asList(o.item["parameters"]), asList(o.op["parameters"])} {
			for _, p := range list {
				p := doc.resolve(t, p.(map[string]any))
				switch p["in"] {
				case "path":
					if p["required"] != true {
						t.Errorf("%s: path parameter %v is not required", o.key, p["name"])
					}
					pathParams[p["name"].(string)] = true
				case "header":
					ifMatch = ifMatch || p["name"] == "If-Match"
				}
			}
		}
		var wild []string
		for _, m := range wildcard.FindAllStringSubmatch(o.path, -1) {
			wild = append(wild, m[1])
			if !pathParams[m[1]] {
				t.Errorf("%s: no path parameter %s", o.key, m[1])
			}
		}
		if len(pathParams) != len(wild) {
			t.Errorf("%s: path parameters %v, want %v", o.key, pathParams, wild)
		}

		responses := obj(o.op, "responses")
		success := false
		for code, r := range responses {
			r := doc.resolve(t, r.(map[string]any))
			if code[0] == '2' {
				success = true
				continue
			}
			if obj(r, "content", "application/problem+json") == nil {
				t.Errorf("%s: the %s response is not application/problem+json", o.key, code)
			}
		}
		if !success {
			t.Errorf("%s: no 2xx response", o.key)
		}
		want := []string{"401", "403", "503"}
		if o.op["requestBody"] != nil {
			want = append(want, "400", "413", "415")
		}
		if ifMatch {
			want = append(want, "412")
		}
		for _, code := range want {
			if responses[code] == nil {
				t.Errorf("%s: no %s response", o.key, code)
			}
		}
		if responses["412"] != nil && !ifMatch {
			t.Errorf("%s: a 412 response without an If-Match parameter", o.key)
		}
	}
	walkRefs(t, doc, map[string]any(doc))
}

func asList(v any) []any { l, _ := v.([]any); return l }

// walkRefs resolves every $ref under v.
func walkRefs(t *testing.T, doc oaDoc, v any) {
	t.Helper()
	switch v := v.(type) {
	case map[string]any:
		if _, ok := v["$ref"].(string); ok {
			doc.resolve(t, v)
		}
		for _, x := range v {
			walkRefs(t, doc, x)
		}
	case []any:
		for _, x := range v {
			walkRefs(t, doc, x)
		}
	}
}

// TestOpenAPISchemas: each schema has exactly the JSON members of its Go type, with matching types; the required
// members of a response schema are those the Go type always writes, and a nullable one is a pointer written even
// when nil.
func TestOpenAPISchemas(t *testing.T) {
	doc := loadOpenAPI(t)
	schemas := []struct {
		name  string
		typ   reflect.Type
		input bool // a request body: members are optional, and may be null where Go reads null as absent
	}{
		{"Problem", reflect.TypeFor[manageProblem](), false},
		{"FieldError", reflect.TypeFor[fieldError](), false},
		{"Scope", reflect.TypeFor[scopeView](), false},
		{"API", reflect.TypeFor[apiView](), false},
		{"APIInput", reflect.TypeFor[apiInput](), true},
		{"APICreate", reflect.TypeFor[apiInput](), true},
		{"APIUpdate", reflect.TypeFor[apiInput](), true},
		{"APIList", reflect.TypeFor[list[apiView]](), false},
		{"RateLimit", reflect.TypeFor[rateLimitView](), false},
		{"Secret", reflect.TypeFor[secretView](), false},
		{"SecretCreated", reflect.TypeFor[createdSecret](), false},
		{"SecretInput", reflect.TypeFor[secretInput](), true},
		{"SecretList", reflect.TypeFor[list[secretView]](), false},
		{"Client", reflect.TypeFor[clientView](), false},
		{"ClientCreated", reflect.TypeFor[createdClient](), false},
		{"ClientInput", reflect.TypeFor[clientInput](), true},
		{"ClientCreate", reflect.TypeFor[clientInput](), true},
		{"ClientUpdate", reflect.TypeFor[clientInput](), true},
		{"ClientList", reflect.TypeFor[list[clientView]](), false},
		{"Grant", reflect.TypeFor[grantView](), false},
		{"GrantInput", reflect.TypeFor[grantInput](), true},
		{"GrantCreate", reflect.TypeFor[grantInput](), true},
		{"GrantUpdate", reflect.TypeFor[grantInput](), true},
		{"GrantList", reflect.TypeFor[list[grantView]](), false},
		{"Org", reflect.TypeFor[orgView](), false},
		{"OrgGrant", reflect.TypeFor[orgGrantView](), false},
		{"OrgGrantInput", reflect.TypeFor[orgGrantInput](), true},
		{"OrgInput", reflect.TypeFor[orgInput](), true},
		{"OrgCreate", reflect.TypeFor[orgInput](), true},
		{"OrgUpdate", reflect.TypeFor[orgInput](), true},
		{"OrgList", reflect.TypeFor[list[orgView]](), false},
		{"APIKey", reflect.TypeFor[apiKeyView](), false},
		{"APIKeyGrant", reflect.TypeFor[keyGrantView](), false},
		{"APIKeyCreated", reflect.TypeFor[createdAPIKey](), false},
		{"APIKeyInput", reflect.TypeFor[apiKeyInput](), true},
		{"APIKeyCreate", reflect.TypeFor[apiKeyInput](), true},
		{"APIKeyUpdate", reflect.TypeFor[apiKeyInput](), true},
		{"APIKeyList", reflect.TypeFor[list[apiKeyView]](), false},
		{"APIKeyRotateInput", reflect.TypeFor[rotateInput](), true},
		{"APIKeyVerifyInput", reflect.TypeFor[verifyKeyInput](), true},
		{"APIKeyVerifyResult", reflect.TypeFor[verifyKeyResult](), false},
		{"SigningKey", reflect.TypeFor[signingKeyView](), false},
		{"SigningKeyList", reflect.TypeFor[list[signingKeyView]](), false},
		{"SigningKeyRotateInput", reflect.TypeFor[rotateKeyInput](), true},
		{"SigningKeyRevoked", reflect.TypeFor[revokedKeyView](), false},
		{"AuditEvent", reflect.TypeFor[auditView](), false},
		{"AuditEventList", reflect.TypeFor[list[auditView]](), false},
	}
	// The schema each Go struct is described by, to check that members refer to the right one.
	byType := map[reflect.Type]string{}
	for _, s := range schemas {
		if _, ok := byType[s.typ]; !ok {
			byType[s.typ] = s.name
		}
	}
	covered := map[string]bool{"SigningAlg": true, "NextCursor": true} // schemas of a plain string
	for _, s := range schemas {
		t.Run(s.name, func(t *testing.T) {
			covered[s.name] = true
			schema := obj(map[string]any(doc), "components", "schemas", s.name)
			if schema == nil {
				t.Fatalf("no schema %s", s.name)
			}
			props, required := doc.members(t, schema)
			fields := jsonFields(s.typ)
			var gotNames, wantNames []string
			for name := range props {
				gotNames = append(gotNames, name)
			}
			for _, f := range fields {
				wantNames = append(wantNames, f.name)
			}
			slices.Sort(gotNames)
			slices.Sort(wantNames)
			if !slices.Equal(gotNames, wantNames) {
				t.Fatalf("members %v, want %v (the JSON names of %v)", gotNames, wantNames, s.typ)
			}
			if !s.input {
				var want []string
				for _, f := range fields {
					if !f.omitempty {
						want = append(want, f.name)
					}
				}
				slices.Sort(want)
				slices.Sort(required)
				if !slices.Equal(required, want) {
					t.Errorf("required %v, want %v (the members %v always writes)", required, want, s.typ)
				}
			}
			if s.input && !doc.closed(t, schema) {
				t.Errorf("an input schema must refuse unknown members (additionalProperties: false)")
			}
			for _, f := range fields {
				prop := props[f.name]
				got := doc.types(t, prop)
				want := jsonTypes(f.typ)
				nullable := f.typ.Kind() == reflect.Pointer && !f.omitempty && !s.input
				if nullable {
					want = append(want, "null")
				}
				if s.input {
					// A pointer member reads null as absent: the document need not say so.
					got = slices.DeleteFunc(got, func(x string) bool { return x == "null" && !slices.Contains(want, "null") })
				}
				slices.Sort(got)
				slices.Sort(want)
				if !slices.Equal(got, want) {
					t.Errorf("%s: types %v, want %v (Go %v)", f.name, got, want, f.typ)
				}
				if elem := structOf(f.typ); elem != nil {
					if ref := doc.refName(prop); ref != "" && byType[elem] != "" && ref != byType[elem] {
						t.Errorf("%s refers to %s, want %s (Go %v)", f.name, ref, byType[elem], elem)
					}
				}
			}
		})
	}
	for name := range obj(map[string]any(doc), "components", "schemas") {
		if !covered[name] {
			t.Errorf("schema %s is not checked against a Go type: add it to this test", name)
		}
	}
}

// members returns a schema's properties and required list, merging allOf.
func (d oaDoc) members(t *testing.T, schema map[string]any) (map[string]map[string]any, []string) {
	t.Helper()
	schema = d.resolve(t, schema)
	props := map[string]map[string]any{}
	var required []string
	for _, sub := range asList(schema["allOf"]) {
		p, r := d.members(t, sub.(map[string]any))
		for k, v := range p {
			props[k] = v
		}
		required = append(required, r...)
	}
	for k, v := range obj(schema, "properties") {
		props[k] = v.(map[string]any)
	}
	for _, r := range asList(schema["required"]) {
		required = append(required, r.(string))
	}
	return props, required
}

// types returns the JSON types a schema allows, following $ref, oneOf and anyOf.
func (d oaDoc) types(t *testing.T, schema map[string]any) []string {
	t.Helper()
	schema = d.resolve(t, schema)
	var out []string
	switch ty := schema["type"].(type) {
	case string:
		out = append(out, ty)
	case []any:
		for _, x := range ty {
			out = append(out, x.(string))
		}
	}
	for _, key := range []string{"oneOf", "anyOf"} {
		for _, sub := range asList(schema[key]) {
			out = append(out, d.types(t, sub.(map[string]any))...)
		}
	}
	if i := slices.Index(out, "string"); i >= 0 && schema["format"] == "date-time" {
		out[i] = "date-time"
	}
	return out
}

// closed reports whether a schema, or one it extends with allOf, refuses unknown members.
func (d oaDoc) closed(t *testing.T, schema map[string]any) bool {
	t.Helper()
	schema = d.resolve(t, schema)
	if schema["additionalProperties"] == false {
		return true
	}
	return slices.ContainsFunc(asList(schema["allOf"]), func(sub any) bool { return d.closed(t, sub.(map[string]any)) })
}

// refName returns the component a member refers to, directly, through items, or through oneOf.
func (d oaDoc) refName(schema map[string]any) string {
	if ref, ok := schema["$ref"].(string); ok {
		return strings.TrimPrefix(ref, "#/components/schemas/")
	}
	if items := obj(schema, "items"); items != nil {
		return d.refName(items)
	}
	for _, sub := range asList(schema["oneOf"]) {
		if name := d.refName(sub.(map[string]any)); name != "" {
			return name
		}
	}
	return ""
}

type jsonField struct {
	name      string
	omitempty bool
	typ       reflect.Type
}

// jsonFields lists the JSON members of a struct type as encoding/json sees them, embedded structs flattened.
func jsonFields(typ reflect.Type) []jsonField {
	var out []jsonField
	for i := 0; i < typ.NumField(); i++ {
		f := typ.Field(i)
		tag := f.Tag.Get("json")
		if f.Anonymous && tag == "" {
			out = append(out, jsonFields(f.Type)...)
			continue
		}
		if !f.IsExported() || tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if name == "" {
			name = f.Name
		}
		out = append(out, jsonField{name: name, omitempty: strings.Contains(opts, "omitempty"), typ: f.Type})
	}
	return out
}

// jsonTypes is the JSON type a Go type encodes to ("date-time" for a time), as the document should state it.
func jsonTypes(typ reflect.Type) []string {
	switch typ {
	case reflect.TypeFor[time.Time]():
		return []string{"date-time"}
	case reflect.TypeFor[json.RawMessage]():
		return []string{"object"}
	case reflect.TypeFor[rateLimitInput]():
		return []string{"object", "null"} // its UnmarshalJSON: an object, or null for none
	case reflect.TypeFor[optionalTime]():
		return []string{"date-time", "null"} // its UnmarshalJSON: a time, or null for none
	}
	switch typ.Kind() {
	case reflect.Pointer:
		return jsonTypes(typ.Elem())
	case reflect.String:
		return []string{"string"}
	case reflect.Bool:
		return []string{"boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return []string{"integer"}
	case reflect.Slice:
		return []string{"array"}
	case reflect.Struct, reflect.Map:
		return []string{"object"}
	}
	return []string{typ.String()}
}

// structOf returns the struct type a member holds, through pointers and slices; nil for none or a time.
func structOf(typ reflect.Type) reflect.Type {
	for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice {
		typ = typ.Elem()
	}
	if typ.Kind() != reflect.Struct || typ == reflect.TypeFor[time.Time]() {
		return nil
	}
	return typ
}

// TestOpenAPIServed: GET /api/v1/openapi.json answers the document, without a token.
func TestOpenAPIServed(t *testing.T) {
	h := New(Config{Logger: slog.New(slog.DiscardHandler)}).Handler()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest("GET", "/api/v1/openapi.json", nil))
	body, _ := io.ReadAll(w.Result().Body)
	if w.Code != http.StatusOK || w.Header().Get("Content-Type") != "application/json" || !bytes.Equal(body, openAPIDoc) {
		t.Errorf("GET /api/v1/openapi.json: %d %s, %d bytes; want 200 application/json and the document",
			w.Code, w.Header().Get("Content-Type"), len(body))
	}
}
