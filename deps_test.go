package gatehouse_test

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/gatehouse/gatehouse"

// allowed lists, for each package, the packages of this module it may import (tests included). The domain is in
// the middle and imports nothing of ours; services import the domain; adapters import the domain and never each
// other; only cmd/gatehouse knows everything. A new package must be added here, with its rule.
var allowed = map[string][]string{
	"internal/auth":          {},
	"internal/auth/authtest": {"internal/auth"},
	"internal/rootkey":       {"internal/auth"},
	"internal/keyset":        {"internal/auth", "internal/sqlstore"}, // sqlstore only in tests
	"internal/config":        {"internal/auth", "internal/yamlfile"},
	"internal/yamlfile":      {},
	"internal/issuer":        {"internal/auth", "internal/apikey", "internal/limit", "internal/audit", "internal/sqlstore"}, // sqlstore only in tests
	"internal/apikey":        {"internal/auth", "internal/rootkey", "internal/sqlstore"},                                    // rootkey and sqlstore only in tests
	"internal/limit":         {},
	"internal/redislimit":    {"internal/limit"},
	"internal/clustertest":   {},
	"internal/changes":       {"internal/auth", "internal/sqlstore"}, // sqlstore only in tests
	"internal/pgnotify":      {"internal/changes"},
	"internal/audit":         {"internal/auth", "internal/sqlstore"}, // sqlstore only in tests
	"internal/sqlstore":      {"internal/auth", "internal/auth/authtest"},
	"internal/revocation":    {"internal/auth", "internal/sqlstore"}, // sqlstore only in tests
	"internal/server":        {"internal/auth", "internal/issuer", "internal/keyset", "internal/apikey", "internal/oauthreq", "internal/accesslog", "internal/revocation"},
	"internal/bench":         {"internal/auth", "internal/rootkey", "internal/config"}, // config only in tests
	"internal/forwardauth":   {"verify", "internal/yamlfile"},                          // an adapter of the public verify package; of internal/, only yamlfile
	"internal/oauthreq":      {},
	"internal/accesslog":     {},
	"internal/proxy":         {"tokencache", "tokencache/rediscache", "internal/oauthreq", "internal/accesslog"}, // rediscache only in tests; cmd passes the Cache
	"cmd/gatehouse":          {"*"},
}

// forbiddenForPublic: verify and tokencache are the stable public surface: they import nothing from internal/ and no database driver.
var forbiddenForPublic = []string{module + "/internal/", "modernc.org/sqlite", "github.com/jackc/pgx", "github.com/redis/go-redis"}

// driverHome names the one public package a driver may live in: the adapter for it.
var driverHome = map[string]string{"github.com/redis/go-redis": "tokencache/rediscache"}

type pkg struct {
	ImportPath   string
	Imports      []string
	TestImports  []string
	XTestImports []string
}

func listPackages(t *testing.T) []pkg {
	t.Helper()
	out, err := exec.Command("go", "list", "-json", "./...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p pkg
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatalf("decode go list output: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	return pkgs
}

func TestDependencyRules(t *testing.T) {
	pkgs := listPackages(t)
	if len(pkgs) < 5 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	for _, p := range pkgs {
		rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
		if rel == "" {
			continue // this test's own package
		}
		imports := append(append(append([]string{}, p.Imports...), p.TestImports...), p.XTestImports...)
		if strings.HasPrefix(rel, "verify") || strings.HasPrefix(rel, "tokencache") {
			for _, imp := range imports {
				for _, bad := range forbiddenForPublic {
					if strings.HasPrefix(imp, bad) && driverHome[bad] != rel {
						t.Errorf("public package %s imports %s", rel, imp)
					}
				}
			}
			continue
		}
		rules, ok := allowed[rel]
		if !ok {
			t.Errorf("package %s has no dependency rule in deps_test.go", rel)
			continue
		}
		if len(rules) == 1 && rules[0] == "*" {
			continue
		}
		for _, imp := range imports {
			if !strings.HasPrefix(imp, module+"/") || imp == p.ImportPath {
				continue
			}
			dep := strings.TrimPrefix(imp, module+"/")
			if !contains(rules, dep) {
				t.Errorf("%s imports %s, which its rule does not allow", rel, dep)
			}
		}
	}
}

// TestDomainImportsOnlyStdlib: internal/auth is the middle and depends on nothing outside the standard library.
func TestDomainImportsOnlyStdlib(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", "./internal/auth").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		if dep != module+"/internal/auth" {
			t.Errorf("internal/auth depends on non-standard package %s", dep)
		}
	}
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
