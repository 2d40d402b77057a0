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

// apiJSON is an API as the management API shows it.
type apiJSON struct {
	ID               string      `json:"id"`
	Identifier       string      `json:"identifier"`
	Name             string      `json:"name"`
	Scopes           []scopeJSON `json:"scopes"`
	TokenLifetime    int64       `json:"token_lifetime"`
	KeyTokenLifetime int64       `json:"key_token_lifetime"`
	SigningAlg       string      `json:"signing_alg"`
	CreatedAt        *time.Time  `json:"created_at"`
	UpdatedAt        *time.Time  `json:"updated_at"`
}

type scopeJSON struct {
	Name        string `json:"name"`
	Description string `json:"description,omitempty"`
}

func (a apiJSON) scopeNames() string {
	names := make([]string, len(a.Scopes))
	for i, s := range a.Scopes {
		names[i] = s.Name
	}
	return strings.Join(names, ",")
}

// apiListing shows APIs by identifier.
var apiListing = listing[apiJSON]{
	header: []string{"ID", "IDENTIFIER", "NAME", "ALG", "LIFETIME", "SCOPES"},
	row: func(a apiJSON) []string {
		return []string{a.ID, a.Identifier, a.Name, a.SigningAlg, secondsCell(a.TokenLifetime), a.scopeNames()}
	},
	key: func(a apiJSON) string { return a.Identifier },
}

func apiDetail(a apiJSON) []field {
	f := []field{
		{"id", a.ID}, {"identifier", a.Identifier}, {"name", a.Name}, {"signing_alg", a.SigningAlg},
		{"token_lifetime", secondsCell(a.TokenLifetime)}, {"key_token_lifetime", secondsCell(a.KeyTokenLifetime)},
	}
	if len(a.Scopes) == 0 {
		f = append(f, field{"scopes", ""})
	}
	for i, s := range a.Scopes {
		label := ""
		if i == 0 {
			label = "scopes"
		}
		v := s.Name
		if s.Description != "" {
			v += "  " + s.Description
		}
		f = append(f, field{label, v})
	}
	return append(f, field{"created_at", timeCell(a.CreatedAt)}, field{"updated_at", timeCell(a.UpdatedAt)})
}

func newAPICmd(a *adminFlags) *cobra.Command {
	return newNoun("api", "Manage APIs (resource servers): list, show, create, update, delete",
		`Manage APIs, the resource servers tokens are issued for. An API is named by its id (api_…) or its identifier.`,
		newListCmd("List APIs", 0, func(cmd *cobra.Command, limit int) error {
			return listResources(cmd.Context(), a, "/api/v1/apis", nil, limit, apiListing)
		}),
		&cobra.Command{
			Use:   "show API",
			Short: "Show an API",
			Args:  argsNamed("API"),
			RunE: func(cmd *cobra.Command, args []string) error {
				id, _, err := resolveAPI(cmd.Context(), a, args[0])
				if err != nil {
					return err
				}
				return getResource(cmd.Context(), a, "/api/v1/apis/"+escape(id), apiDetail)
			},
		},
		newAPIWriteCmd(a, "create"),
		newAPIWriteCmd(a, "update"),
		&cobra.Command{
			Use:   "delete API",
			Short: "Delete an API and every grant for it",
			Args:  argsNamed("API"),
			RunE: func(cmd *cobra.Command, args []string) error {
				id, label, err := resolveAPI(cmd.Context(), a, args[0])
				if err != nil {
					return err
				}
				return deleteResource(cmd.Context(), a, "/api/v1/apis/"+escape(id), "api "+label)
			},
		},
	)
}

// newAPIWriteCmd returns api create or api update: the same flags; update sends only those given.
func newAPIWriteCmd(a *adminFlags, verb string) *cobra.Command {
	var (
		identifier, name, alg string
		scopes                []string
		lifetime, keyLifetime time.Duration
		ifMatch               bool
	)
	cmd := &cobra.Command{
		Use:   "create --identifier URI --name NAME [--scope NAME[: DESCRIPTION]]...",
		Short: "Create an API",
		Example: `  gatehouse api create --identifier https://api.example.com/v1 --name "Example API" \
      --scope read --scope "write: Create and change items" --token-lifetime 1h --signing-alg ES256`,
		Args: argsNamed(),
	}
	if verb == "update" {
		cmd.Use, cmd.Short, cmd.Args = "update API [flags]", "Change an API: only the flags given", argsNamed("API")
		cmd.Example = `  gatehouse api update https://api.example.com/v1 --token-lifetime 15m`
		cmd.Flags().BoolVar(&ifMatch, "if-match", false, "fail if the API changes between reading and writing it (If-Match)")
	}
	fl := cmd.Flags()
	fl.StringVar(&identifier, "identifier", "", "the API's identifier: the audience of its tokens (an absolute URI or a URN)")
	fl.StringVar(&name, "name", "", "the API's name")
	fl.StringArrayVar(&scopes, "scope", nil, `a scope: NAME, or "NAME: DESCRIPTION" (repeat it; on update the list replaces the API's scopes)`)
	fl.DurationVar(&lifetime, "token-lifetime", 0, "how long its tokens live (default 24h)")
	fl.DurationVar(&keyLifetime, "key-token-lifetime", 0, "how long tokens exchanged for API keys live (default 15m, at most the token lifetime)")
	fl.StringVar(&alg, "signing-alg", "", "RS256 (default), ES256 or EdDSA")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		body := map[string]any{}
		if changed(cmd, "identifier") {
			body["identifier"] = identifier
		}
		if changed(cmd, "name") {
			body["name"] = name
		}
		if changed(cmd, "scope") {
			list := []scopeJSON{}
			for _, s := range scopes {
				sc, err := parseScope(s)
				if err != nil {
					return err
				}
				list = append(list, sc)
			}
			body["scopes"] = list
		}
		for _, d := range []struct {
			flag, member string
			v            time.Duration
		}{{"token-lifetime", "token_lifetime", lifetime}, {"key-token-lifetime", "key_token_lifetime", keyLifetime}} {
			if changed(cmd, d.flag) {
				s, err := parseSeconds(d.flag, d.v)
				if err != nil {
					return err
				}
				body[d.member] = s
			}
		}
		if changed(cmd, "signing-alg") {
			body["signing_alg"] = alg
		}
		ctx := cmd.Context()
		if verb == "create" {
			if identifier == "" || name == "" {
				return usageError{errors.New("--identifier and --name are required")}
			}
			_, err := writeResource(ctx, a, http.MethodPost, "/api/v1/apis", body, false, apiDetail)
			return err
		}
		if len(body) == 0 {
			return usageError{errors.New("nothing to change: give --identifier, --name, --scope, --token-lifetime, --key-token-lifetime or --signing-alg")}
		}
		id, _, err := resolveAPI(ctx, a, args[0])
		if err != nil {
			return err
		}
		_, err = writeResource(ctx, a, http.MethodPatch, "/api/v1/apis/"+escape(id), body, ifMatch, apiDetail)
		return err
	}
	return cmd
}

// parseScope reads "NAME" or "NAME: DESCRIPTION". The separator is a colon and a space because scope names may
// hold colons themselves (read:apis) but never spaces.
func parseScope(s string) (scopeJSON, error) {
	name, desc, _ := strings.Cut(s, ": ")
	name, desc = strings.TrimSpace(name), strings.TrimSpace(desc)
	if name == "" || strings.ContainsAny(name, " \t") {
		return scopeJSON{}, usageError{fmt.Errorf(`--scope %q: write NAME or "NAME: DESCRIPTION" (a colon and a space after the name)`, s)}
	}
	return scopeJSON{Name: name, Description: desc}, nil
}

// resolveAPI returns the id of the API that arg names, by id (api_…) or identifier, and a label for messages.
func resolveAPI(ctx context.Context, a *adminFlags, arg string) (id, label string, err error) {
	if strings.HasPrefix(arg, "api_") { // "_" cannot appear in a URI scheme, so no identifier starts so
		return arg, arg, nil
	}
	c, err := a.client()
	if err != nil {
		return "", "", err
	}
	items, _, err := c.list(ctx, "/api/v1/apis", nil, 0)
	if err != nil {
		return "", "", err
	}
	for _, raw := range items {
		var v apiJSON
		if json.Unmarshal(raw, &v) == nil && v.Identifier == arg {
			return v.ID, v.ID + " (" + v.Identifier + ")", nil
		}
	}
	return "", "", fmt.Errorf("no API with the id or identifier %q", arg)
}
