package main

import (
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// grantJSON is a grant as the management API shows it.
type grantJSON struct {
	ID        string     `json:"id"`
	ClientID  string     `json:"client_id"`
	APIID     string     `json:"api_id"`
	Audience  string     `json:"audience"`
	Scopes    []string   `json:"scopes"`
	CreatedAt *time.Time `json:"created_at"`
	UpdatedAt *time.Time `json:"updated_at"`
}

// grantListing shows grants by client_id, then audience.
var grantListing = listing[grantJSON]{
	header: []string{"ID", "CLIENT ID", "AUDIENCE", "CREATED", "SCOPES"},
	row: func(g grantJSON) []string {
		return []string{g.ID, g.ClientID, g.Audience, timeCell(g.CreatedAt), strings.Join(g.Scopes, ",")}
	},
	key: func(g grantJSON) string { return g.ClientID + "\x00" + g.Audience },
}

func grantDetail(g grantJSON) []field {
	return []field{
		{"id", g.ID}, {"client_id", g.ClientID}, {"audience", g.Audience}, {"api_id", g.APIID},
		{"scopes", strings.Join(g.Scopes, " ")}, {"created_at", timeCell(g.CreatedAt)}, {"updated_at", timeCell(g.UpdatedAt)},
	}
}

func newGrantCmd(a *adminFlags) *cobra.Command {
	var client, audience, org string
	list := newListCmd("List grants", 0, func(cmd *cobra.Command, limit int) error {
		orgID, err := resolveOrg(cmd.Context(), a, org)
		if err != nil {
			return err
		}
		q := map[string]string{"client_id": client, "audience": audience, "org_id": orgID}
		return listResources(cmd.Context(), a, "/api/v1/grants", q, limit, grantListing)
	})
	list.Flags().StringVar(&client, "client", "", "only the grants of this client_id")
	list.Flags().StringVar(&audience, "audience", "", "only the grants for this API identifier")
	list.Flags().StringVar(&org, "org", "", "only the grants of this organization's clients (id or name)")

	return newNoun("grant", "Manage grants (which client may get tokens for which API and scopes): list, show, create, update, delete",
		`Manage grants: a grant lets a client get tokens for an API with some of its scopes. A grant is named by its id
(grt_…), which list shows.`,
		list,
		&cobra.Command{
			Use:   "show GRANT",
			Short: "Show a grant",
			Args:  argsNamed("GRANT"),
			RunE: func(cmd *cobra.Command, args []string) error {
				return getResource(cmd.Context(), a, "/api/v1/grants/"+escape(args[0]), grantDetail)
			},
		},
		newGrantCreateCmd(a),
		newGrantUpdateCmd(a),
		&cobra.Command{
			Use:   "delete GRANT",
			Short: "Delete a grant",
			Args:  argsNamed("GRANT"),
			RunE: func(cmd *cobra.Command, args []string) error {
				return deleteResource(cmd.Context(), a, "/api/v1/grants/"+escape(args[0]), "grant "+args[0])
			},
		},
	)
}

func newGrantCreateCmd(a *adminFlags) *cobra.Command {
	var (
		client, audience string
		scopes           []string
	)
	cmd := &cobra.Command{
		Use:     "create --client CLIENT --audience API [--scope SCOPE]...",
		Short:   "Let a client get tokens for an API",
		Example: `  gatehouse grant create --client billing --audience https://api.example.com/v1 --scope read --scope write`,
		Args:    argsNamed(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if client == "" || audience == "" {
				return usageError{errors.New("--client and --audience are required")}
			}
			body := map[string]any{"client_id": client, "audience": audience, "scopes": splitScopes(scopes)}
			_, err := writeResource(cmd.Context(), a, http.MethodPost, "/api/v1/grants", body, false, grantDetail)
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&client, "client", "", "the client_id (required)")
	fl.StringVar(&audience, "audience", "", "the API's identifier (required)")
	fl.StringArrayVar(&scopes, "scope", nil, `a scope of the API (repeat it, or give several separated by spaces: "read write"); none: the audience only`)
	return cmd
}

func newGrantUpdateCmd(a *adminFlags) *cobra.Command {
	var (
		scopes  []string
		ifMatch bool
	)
	cmd := &cobra.Command{
		Use:     "update GRANT --scope SCOPE...",
		Short:   "Replace a grant's scopes",
		Example: `  gatehouse grant update grt_… --scope read        # --scope '' leaves none`,
		Args:    argsNamed("GRANT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !changed(cmd, "scope") {
				return usageError{errors.New("nothing to change: give --scope (the new list; --scope '' for none)")}
			}
			body := map[string]any{"scopes": splitScopes(scopes)}
			_, err := writeResource(cmd.Context(), a, http.MethodPatch, "/api/v1/grants/"+escape(args[0]), body, ifMatch, grantDetail)
			return err
		},
	}
	cmd.Flags().StringArrayVar(&scopes, "scope", nil, "the grant's scopes: they replace the current ones (repeat it)")
	cmd.Flags().BoolVar(&ifMatch, "if-match", false, "fail if the grant changes between reading and writing it (If-Match)")
	return cmd
}
