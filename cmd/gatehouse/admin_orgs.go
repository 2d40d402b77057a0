package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// orgJSON is an organization as the management API shows it.
type orgJSON struct {
	ID            string         `json:"id"`
	Name          string         `json:"name"`
	Description   string         `json:"description"`
	APIKeyPrefix  string         `json:"api_key_prefix"`
	AllowedGrants []orgGrantJSON `json:"allowed_grants"`
	CreatedAt     *time.Time     `json:"created_at"`
	UpdatedAt     *time.Time     `json:"updated_at"`
}

// orgGrantJSON is an API, by audience, and the scopes an organization may grant of it.
type orgGrantJSON struct {
	APIID    string   `json:"api_id,omitempty"`
	Audience string   `json:"audience"`
	Scopes   []string `json:"scopes"`
}

// String is the --allow form: AUDIENCE=SCOPE,SCOPE.
func (g orgGrantJSON) String() string { return g.Audience + "=" + strings.Join(g.Scopes, ",") }

func (o orgJSON) allowed() string {
	s := make([]string, len(o.AllowedGrants))
	for i, g := range o.AllowedGrants {
		s[i] = g.String()
	}
	return strings.Join(s, " ")
}

// orgListing shows organizations by name.
var orgListing = listing[orgJSON]{
	header: []string{"ID", "NAME", "KEY PREFIX", "CREATED", "ALLOWED GRANTS"},
	row: func(o orgJSON) []string {
		return []string{o.ID, o.Name, o.APIKeyPrefix, timeCell(o.CreatedAt), o.allowed()}
	},
	key: func(o orgJSON) string { return o.Name },
}

func orgDetail(o orgJSON) []field {
	f := []field{{"id", o.ID}, {"name", o.Name}, {"description", o.Description}, {"api_key_prefix", o.APIKeyPrefix}}
	if len(o.AllowedGrants) == 0 {
		f = append(f, field{"allowed_grants", ""})
	}
	for i, g := range o.AllowedGrants {
		label := ""
		if i == 0 {
			label = "allowed_grants"
		}
		f = append(f, field{label, g.String()})
	}
	return append(f, field{"created_at", timeCell(o.CreatedAt)}, field{"updated_at", timeCell(o.UpdatedAt)})
}

func newOrgCmd(a *adminFlags) *cobra.Command {
	return newNoun("org", "Manage organizations: list, show, create, update, delete",
		`Manage organizations: tenants that own clients and API keys. An organization is named by its id (org_…) or
its name. Its allowed grants are the most its own administrators may grant: per API, the scopes.`,
		newListCmd("List organizations", 0, func(cmd *cobra.Command, limit int) error {
			return listResources(cmd.Context(), a, "/api/v1/orgs", nil, limit, orgListing)
		}),
		&cobra.Command{
			Use:   "show ORG",
			Short: "Show an organization",
			Args:  argsNamed("ORG"),
			RunE: func(cmd *cobra.Command, args []string) error {
				id, err := resolveOrg(cmd.Context(), a, args[0])
				if err != nil {
					return err
				}
				return getResource(cmd.Context(), a, "/api/v1/orgs/"+escape(id), orgDetail)
			},
		},
		newOrgWriteCmd(a, "create"),
		newOrgWriteCmd(a, "update"),
		&cobra.Command{
			Use:   "delete ORG",
			Short: "Delete an organization that owns no clients or API keys",
			Args:  argsNamed("ORG"),
			RunE: func(cmd *cobra.Command, args []string) error {
				id, err := resolveOrg(cmd.Context(), a, args[0])
				if err != nil {
					return err
				}
				what := "org " + id
				if id != args[0] {
					what += " (" + args[0] + ")"
				}
				return deleteResource(cmd.Context(), a, "/api/v1/orgs/"+escape(id), what)
			},
		},
	)
}

// newOrgWriteCmd returns org create or org update: the same flags; update sends only those given.
func newOrgWriteCmd(a *adminFlags, verb string) *cobra.Command {
	var (
		name, description, prefix string
		allow                     []string
		ifMatch                   bool
	)
	cmd := &cobra.Command{
		Use:   "create --name NAME [--allow AUDIENCE=SCOPE,SCOPE]... [flags]",
		Short: "Create an organization",
		Example: `  gatehouse org create --name acme --description "Acme Corp" --api-key-prefix acme \
      --allow https://api.example.com/v1=read,write`,
		Args: argsNamed(),
	}
	if verb == "update" {
		cmd.Use, cmd.Short, cmd.Args = "update ORG [flags]", "Change an organization: only the flags given", argsNamed("ORG")
		cmd.Example = `  gatehouse org update acme --allow https://api.example.com/v1=read     # --allow '' allows nothing`
		cmd.Flags().BoolVar(&ifMatch, "if-match", false, "fail if the organization changes between reading and writing it (If-Match)")
	}
	fl := cmd.Flags()
	fl.StringVar(&name, "name", "", "the organization's name (unique)")
	fl.StringVar(&description, "description", "", "what the organization is")
	fl.StringVar(&prefix, "api-key-prefix", "", "the prefix of its API keys: 2–12 lowercase letters and digits")
	fl.StringArrayVar(&allow, "allow", nil, "an API and the scopes its administrators may grant, as AUDIENCE=SCOPE,SCOPE (repeat it; on update the list replaces the current one)")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		body := map[string]any{}
		if changed(cmd, "name") {
			body["name"] = name
		}
		if changed(cmd, "description") {
			body["description"] = description
		}
		if changed(cmd, "api-key-prefix") {
			body["api_key_prefix"] = prefix
		}
		if changed(cmd, "allow") {
			grants, err := parseAllow(allow)
			if err != nil {
				return err
			}
			body["allowed_grants"] = grants
		}
		ctx := cmd.Context()
		if verb == "create" {
			if name == "" {
				return usageError{errors.New("--name is required")}
			}
			_, err := writeResource(ctx, a, http.MethodPost, "/api/v1/orgs", body, false, orgDetail)
			return err
		}
		if len(body) == 0 {
			return usageError{errors.New("nothing to change: give --name, --description, --api-key-prefix or --allow")}
		}
		id, err := resolveOrg(ctx, a, args[0])
		if err != nil {
			return err
		}
		_, err = writeResource(ctx, a, http.MethodPatch, "/api/v1/orgs/"+escape(id), body, ifMatch, orgDetail)
		return err
	}
	return cmd
}

// parseAllow reads --allow values, AUDIENCE=SCOPE,SCOPE (or AUDIENCE alone); an empty value adds nothing, so that
// --allow ” sends an empty list.
func parseAllow(values []string) ([]orgGrantJSON, error) {
	out := []orgGrantJSON{}
	for _, v := range values {
		if strings.TrimSpace(v) == "" {
			continue
		}
		aud, scopes := v, ""
		if i := strings.LastIndexByte(v, '='); i >= 0 {
			aud, scopes = v[:i], v[i+1:]
		}
		if aud == "" {
			return nil, usageError{fmt.Errorf("--allow %q: write AUDIENCE=SCOPE,SCOPE", v)}
		}
		g := orgGrantJSON{Audience: aud, Scopes: strings.FieldsFunc(scopes, func(r rune) bool { return r == ',' || r == ' ' })}
		if g.Scopes == nil {
			g.Scopes = []string{}
		}
		out = append(out, g)
	}
	return out, nil
}

// isOrgID reports whether s has the form of an organization id rather than a name.
func isOrgID(s string) bool { return strings.HasPrefix(s, "org_") }

// listOrgs returns every organization the caller sees.
func listOrgs(ctx context.Context, c *adminClient) ([]orgJSON, error) {
	items, _, err := c.list(ctx, "/api/v1/orgs", nil, 0)
	if err != nil {
		return nil, err
	}
	orgs := make([]orgJSON, 0, len(items))
	for _, raw := range items {
		var o orgJSON
		if err := json.Unmarshal(raw, &o); err != nil {
			return nil, fmt.Errorf("the server's answer is not what this command expects: %w", err)
		}
		orgs = append(orgs, o)
	}
	return orgs, nil
}
