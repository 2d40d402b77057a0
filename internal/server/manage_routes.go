package server

import (
	_ "embed"
	"net/http"
	"strings"

	"github.com/gatehouse/gatehouse/internal/auth"
)

// manageRoute is one management endpoint: the method and path pattern it answers, and the scope it needs.
type manageRoute struct {
	method, path, scope string
	handle              manageHandler
}

// manageRoutes lists every management endpoint. The OpenAPI document (openapi.json) describes exactly these: a test
// fails when one is missing from it, or it describes one that is not here.
func (s *Server) manageRoutes() []manageRoute {
	return []manageRoute{
		{"GET", "/api/v1/apis", auth.ScopeReadAPIs, s.listAPIs},
		{"POST", "/api/v1/apis", auth.ScopeWriteAPIs, s.createAPI},
		{"GET", "/api/v1/apis/{id}", auth.ScopeReadAPIs, s.showAPI},
		{"PATCH", "/api/v1/apis/{id}", auth.ScopeWriteAPIs, s.updateAPI},
		{"DELETE", "/api/v1/apis/{id}", auth.ScopeWriteAPIs, s.deleteAPI},

		{"GET", "/api/v1/clients", auth.ScopeReadClients, s.listClients},
		{"POST", "/api/v1/clients", auth.ScopeWriteClients, s.createClient},
		{"GET", "/api/v1/clients/{id}", auth.ScopeReadClients, s.showClient},
		{"PATCH", "/api/v1/clients/{id}", auth.ScopeWriteClients, s.updateClient},
		{"DELETE", "/api/v1/clients/{id}", auth.ScopeWriteClients, s.deleteClient},
		{"GET", "/api/v1/clients/{id}/secrets", auth.ScopeReadClients, s.listSecrets},
		{"POST", "/api/v1/clients/{id}/secrets", auth.ScopeWriteClients, s.addSecret},
		{"DELETE", "/api/v1/clients/{id}/secrets/{secret_id}", auth.ScopeWriteClients, s.deleteSecret},

		{"GET", "/api/v1/grants", auth.ScopeReadGrants, s.listGrants},
		{"POST", "/api/v1/grants", auth.ScopeWriteGrants, s.createGrant},
		{"GET", "/api/v1/grants/{id}", auth.ScopeReadGrants, s.showGrant},
		{"PATCH", "/api/v1/grants/{id}", auth.ScopeWriteGrants, s.updateGrant},
		{"DELETE", "/api/v1/grants/{id}", auth.ScopeWriteGrants, s.deleteGrant},

		{"GET", "/api/v1/orgs", auth.ScopeReadOrgs, s.listOrgs},
		{"POST", "/api/v1/orgs", auth.ScopeWriteOrgs, s.createOrg},
		{"GET", "/api/v1/orgs/{id}", auth.ScopeReadOrgs, s.showOrg},
		{"PATCH", "/api/v1/orgs/{id}", auth.ScopeWriteOrgs, s.updateOrg},
		{"DELETE", "/api/v1/orgs/{id}", auth.ScopeWriteOrgs, s.deleteOrg},

		{"GET", "/api/v1/apikeys", auth.ScopeReadAPIKeys, s.listAPIKeys},
		{"POST", "/api/v1/apikeys", auth.ScopeWriteAPIKeys, s.createAPIKey},
		{"GET", "/api/v1/apikeys/{id}", auth.ScopeReadAPIKeys, s.showAPIKey},
		{"PATCH", "/api/v1/apikeys/{id}", auth.ScopeWriteAPIKeys, s.updateAPIKey},
		{"DELETE", "/api/v1/apikeys/{id}", auth.ScopeWriteAPIKeys, s.deleteAPIKey},
		{"POST", "/api/v1/apikeys/{id}/rotate", auth.ScopeWriteAPIKeys, s.rotateAPIKey},
		{"POST", "/api/v1/apikeys/verify", auth.ScopeVerifyAPIKeys, s.verifyAPIKey},

		{"GET", "/api/v1/signing-keys", auth.ScopeReadKeys, s.listSigningKeys},
		{"POST", "/api/v1/signing-keys/rotate", auth.ScopeWriteKeys, s.rotateSigningKey},
		{"POST", "/api/v1/signing-keys/{kid}/revoke", auth.ScopeWriteKeys, s.revokeSigningKey},
		{"GET", "/api/v1/audit-events", auth.ScopeReadAudit, s.listAuditEvents},
	}
}

//go:embed openapi.json
var openAPIDoc []byte

func (s *Server) handleOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.Write(openAPIDoc)
}

// registerManage adds the management API to mux. A path it knows with a method it does not is 405 with Allow.
func (s *Server) registerManage(mux *http.ServeMux) {
	paths := http.NewServeMux() // the known paths, whatever the method, to tell 405 from 404
	allow := map[string][]string{}
	for _, rt := range s.manageRoutes() {
		mux.HandleFunc(rt.method+" "+rt.path, s.manage(rt.scope, rt.handle))
		if allow[rt.path] == nil {
			paths.HandleFunc(rt.path, http.NotFound)
		}
		allow[rt.path] = append(allow[rt.path], rt.method)
		if rt.method == http.MethodGet { // net/http answers HEAD with the GET handler
			allow[rt.path] = append(allow[rt.path], http.MethodHead)
		}
	}
	const docPath = "/api/v1/openapi.json"
	mux.HandleFunc("GET "+docPath, s.handleOpenAPI)
	paths.HandleFunc(docPath, http.NotFound)
	allow[docPath] = []string{http.MethodGet, http.MethodHead}
	mux.HandleFunc("/api/v1/", func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := paths.Handler(r); pattern != "" {
			w.Header().Set("Allow", strings.Join(allow[pattern], ", "))
			s.writeManageError(w, r, &problemError{status: http.StatusMethodNotAllowed,
				detail: r.Method + " is not allowed here; use " + strings.Join(allow[pattern], ", ")})
			return
		}
		s.writeManageError(w, r, notFound("endpoint "+truncate(r.URL.Path, 100)))
	})
}
