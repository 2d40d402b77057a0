package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehouse/gatehouse/internal/auth"
)

// apiKeyJSON is an API key as the management API shows it; Key and PreviousKeyExpiresAt only in the answer that
// creates or rotates it.
type apiKeyJSON struct {
	ID                   string          `json:"id"`
	Name                 string          `json:"name"`
	OrgID                string          `json:"org_id"`
	Owner                string          `json:"owner"`
	Hint                 string          `json:"hint"`
	Grants               []orgGrantJSON  `json:"grants"`
	ExpiresAt            *time.Time      `json:"expires_at"`
	Metadata             json.RawMessage `json:"metadata"`
	Disabled             bool            `json:"disabled"`
	CreatedAt            *time.Time      `json:"created_at"`
	UpdatedAt            *time.Time      `json:"updated_at"`
	LastUsedAt           *time.Time      `json:"last_used_at"`
	Key                  string          `json:"key"`
	PreviousKeyExpiresAt *time.Time      `json:"previous_key_expires_at"`
}

// status is disabled, expired (by this machine's clock) or enabled.
func (k apiKeyJSON) status() string {
	switch {
	case k.Disabled:
		return "disabled"
	case k.ExpiresAt != nil && !time.Now().Before(*k.ExpiresAt):
		return "expired"
	}
	return "enabled"
}

// verifyKeyJSON is the management API's verdict on a key.
type verifyKeyJSON struct {
	Valid     bool            `json:"valid"`
	Code      string          `json:"code"`
	KeyID     string          `json:"key_id"`
	OrgID     string          `json:"org_id"`
	Owner     string          `json:"owner"`
	Audience  string          `json:"audience"`
	Scopes    []string        `json:"scopes"`
	Grants    []orgGrantJSON  `json:"grants"`
	ExpiresAt *time.Time      `json:"expires_at"`
	Metadata  json.RawMessage `json:"metadata"`
}

// expiresCell formats an expiry: "never" for none.
func expiresCell(t *time.Time) string {
	if t == nil {
		return "never"
	}
	return timeCell(t)
}

// grantsCell is a key's grants in the --grant form, AUDIENCE=SCOPE,SCOPE, separated by spaces.
func grantsCell(grants []orgGrantJSON) string {
	s := make([]string, len(grants))
	for i, g := range grants {
		s[i] = g.String()
	}
	return strings.Join(s, " ")
}

// grantFields adds grants to a detail table, one a line.
func grantFields(f []field, label string, grants []orgGrantJSON) []field {
	if len(grants) == 0 {
		return append(f, field{label, ""})
	}
	for i, g := range grants {
		if i > 0 {
			label = ""
		}
		f = append(f, field{label, g.String()})
	}
	return f
}

// apiKeyListing shows API keys by name.
var apiKeyListing = listing[apiKeyJSON]{
	header: []string{"ID", "NAME", "ORG", "OWNER", "HINT", "STATUS", "EXPIRES", "LAST USED", "SCOPES"},
	row: func(k apiKeyJSON) []string {
		return []string{k.ID, k.Name, k.OrgID, k.Owner, k.Hint, k.status(), expiresCell(k.ExpiresAt), timeCell(k.LastUsedAt),
			grantsCell(k.Grants)}
	},
	key: func(k apiKeyJSON) string { return k.Name + "\x00" + k.ID },
}

func apiKeyDetail(k apiKeyJSON) []field {
	f := []field{{"id", k.ID}, {"name", k.Name}, {"org_id", k.OrgID}, {"owner", k.Owner}, {"hint", k.Hint}}
	f = grantFields(f, "grants", k.Grants)
	f = append(f, field{"expires_at", expiresCell(k.ExpiresAt)}, field{"metadata", string(k.Metadata)}, field{"status", k.status()},
		field{"created_at", timeCell(k.CreatedAt)}, field{"updated_at", timeCell(k.UpdatedAt)}, field{"last_used_at", timeCell(k.LastUsedAt)})
	if k.PreviousKeyExpiresAt != nil {
		f = append(f, field{"previous_key_expires_at", timeCell(k.PreviousKeyExpiresAt)})
	}
	if k.Key != "" {
		f = append(f, field{"key", k.Key})
	}
	return f
}

func verifyKeyDetail(v verifyKeyJSON) []field {
	if !v.Valid {
		f := []field{{"valid", "false"}, {"code", v.Code}}
		if v.KeyID != "" {
			f = append(f, field{"key_id", v.KeyID})
		}
		return f
	}
	f := []field{{"valid", "true"}, {"key_id", v.KeyID}, {"org_id", v.OrgID}, {"owner", v.Owner}, {"audience", v.Audience},
		{"scopes", strings.Join(v.Scopes, " ")}}
	f = grantFields(f, "grants", v.Grants)
	return append(f, field{"expires_at", expiresCell(v.ExpiresAt)}, field{"metadata", string(v.Metadata)})
}

// warnKey says on w (stderr) that the key of the API key just printed on stdout (raw, as the server sent it) is
// shown only once, and returns the API key.
func warnKey(w io.Writer, raw json.RawMessage) apiKeyJSON {
	var k apiKeyJSON
	json.Unmarshal(raw, &k)
	fmt.Fprintf(w, "WARNING: API key %s is shown only this once (the server keeps only a hash); store it now\n", k.ID)
	return k
}

func newAPIKeyCmd(a *adminFlags) *cobra.Command {
	var org, owner string
	list := newListCmd("List API keys (never the keys, only their hints)", 0, func(cmd *cobra.Command, limit int) error {
		orgID, err := resolveOrg(cmd.Context(), a, org)
		if err != nil {
			return err
		}
		return listResources(cmd.Context(), a, "/api/v1/apikeys", map[string]string{"org_id": orgID, "owner": owner}, limit, apiKeyListing)
	})
	list.Flags().StringVar(&org, "org", "", "only the keys of this organization (id or name)")
	list.Flags().StringVar(&owner, "owner", "", "only the keys of this owner")
	return newNoun("apikey", "Manage API keys: list, show, create, update, rotate, delete, verify",
		`Manage API keys: long-lived keys for an organization's users or systems, each with its own grants, which
gateways check (verify) or exchange for tokens. A key is named by its id (key_…); the key itself is printed once,
by create and rotate: store it.`,
		list,
		&cobra.Command{
			Use:   "show ID",
			Short: "Show an API key (never the key, only its hint)",
			Args:  argsNamed("ID"),
			RunE: func(cmd *cobra.Command, args []string) error {
				return getResource(cmd.Context(), a, "/api/v1/apikeys/"+escape(args[0]), apiKeyDetail)
			},
		},
		newAPIKeyWriteCmd(a, "create"),
		newAPIKeyWriteCmd(a, "update"),
		newAPIKeyRotateCmd(a),
		&cobra.Command{
			Use:   "delete ID",
			Short: "Delete an API key: it stops working at once",
			Args:  argsNamed("ID"),
			RunE: func(cmd *cobra.Command, args []string) error {
				return deleteResource(cmd.Context(), a, "/api/v1/apikeys/"+escape(args[0]), "API key "+args[0])
			},
		},
		newAPIKeyVerifyCmd(a),
	)
}

// newAPIKeyWriteCmd returns apikey create or apikey update: the same flags; update sends only those given.
func newAPIKeyWriteCmd(a *adminFlags, verb string) *cobra.Command {
	var (
		name, org, owner, expiresAt, metadata string
		grants                                []string
		expiresIn                             time.Duration
		noExpiry, disable, enable, ifMatch    bool
	)
	cmd := &cobra.Command{
		Use:   "create --name NAME [--grant AUDIENCE=SCOPE,SCOPE]... [flags]",
		Short: "Create an API key; the key is printed once",
		Example: `  gatehouse apikey create --name "Acme CI" --org acme --owner user-42 \
      --grant https://api.example.com/v1=read,write --expires-in 2160h --metadata '{"team":"platform"}'`,
		Args: argsNamed(),
	}
	fl := cmd.Flags()
	if verb == "create" {
		fl.StringVar(&name, "name", "", "the key's name (required)")
		fl.StringVar(&org, "org", "", "the organization that owns the key (id or name)")
		fl.StringVar(&owner, "owner", "", "who the key belongs to: a subject of your own user system")
	} else {
		cmd.Use, cmd.Short, cmd.Args = "update ID [flags]", "Change an API key: only the flags given", argsNamed("ID")
		fl.StringVar(&name, "name", "", "the key's name")
		cmd.Example = `  gatehouse apikey update key_… --grant https://api.example.com/v1=read --no-expiry     # --grant '' holds nothing
  gatehouse apikey update key_… --disable`
	}
	fl.StringArrayVar(&grants, "grant", nil, "an API and the scopes the key holds of it, as AUDIENCE=SCOPE,SCOPE (repeat it; on update the list replaces the current one)")
	fl.StringVar(&expiresAt, "expires-at", "", "when the key stops working, in RFC 3339 (2027-01-01T00:00:00Z)")
	fl.DurationVar(&expiresIn, "expires-in", 0, "when the key stops working, from now (2160h)")
	fl.StringVar(&metadata, "metadata", "", `a JSON object kept with the key and returned by verify, e.g. '{"team":"platform"}' (null: none)`)
	if verb == "update" {
		fl.BoolVar(&noExpiry, "no-expiry", false, "make the key never expire")
		fl.BoolVar(&disable, "disable", false, "refuse the key until --enable")
		fl.BoolVar(&enable, "enable", false, "accept a disabled key again")
		fl.BoolVar(&ifMatch, "if-match", false, "fail if the key changes between reading and writing it (If-Match)")
	}
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		body := map[string]any{}
		if changed(cmd, "name") {
			body["name"] = name
		}
		if changed(cmd, "grant") {
			g, err := parseGrantFlags(grants)
			if err != nil {
				return err
			}
			body["grants"] = g
		}
		switch {
		case changed(cmd, "expires-at") && changed(cmd, "expires-in"), noExpiry && changed(cmd, "expires-at", "expires-in"):
			if verb == "create" {
				return usageError{errors.New("give --expires-at or --expires-in, not both")}
			}
			return usageError{errors.New("give one of --expires-at, --expires-in and --no-expiry")}
		case changed(cmd, "expires-at"):
			t, err := time.Parse(time.RFC3339, expiresAt)
			if err != nil {
				return usageError{fmt.Errorf("--expires-at %q: give an RFC 3339 time, e.g. 2027-01-01T00:00:00Z", expiresAt)}
			}
			body["expires_at"] = t.UTC()
		case changed(cmd, "expires-in"):
			if expiresIn <= 0 {
				return usageError{fmt.Errorf("--expires-in %s: give a duration more than zero, e.g. 2160h", expiresIn)}
			}
			body["expires_at"] = time.Now().Add(expiresIn).UTC()
		case noExpiry:
			body["expires_at"] = nil
		}
		if changed(cmd, "metadata") {
			raw := json.RawMessage(strings.TrimSpace(metadata))
			if !json.Valid(raw) || raw[0] != '{' && string(raw) != "null" {
				return usageError{fmt.Errorf(`--metadata %q: give a JSON object, e.g. '{"team":"platform"}', or null for none`, metadata)}
			}
			body["metadata"] = raw
		}
		ctx := cmd.Context()
		if verb == "create" {
			if name == "" {
				return usageError{errors.New("--name is required")}
			}
			if changed(cmd, "owner") {
				body["owner"] = owner
			}
			if org != "" {
				id, err := resolveOrg(ctx, a, org)
				if err != nil {
					return err
				}
				body["org_id"] = id
			}
			raw, err := writeResource(ctx, a, http.MethodPost, "/api/v1/apikeys", body, false, apiKeyDetail)
			if err != nil {
				return err
			}
			warnKey(a.stderr, raw)
			return nil
		}
		switch {
		case disable && enable:
			return usageError{errors.New("give --disable or --enable, not both")}
		case disable || enable:
			body["disabled"] = disable
		}
		if len(body) == 0 {
			return usageError{errors.New("nothing to change: give --name, --grant, --expires-at, --expires-in, --no-expiry, --metadata, --disable or --enable")}
		}
		_, err := writeResource(ctx, a, http.MethodPatch, "/api/v1/apikeys/"+escape(args[0]), body, ifMatch, apiKeyDetail)
		return err
	}
	return cmd
}

// parseGrantFlags reads --grant values as parseAllow reads --allow: AUDIENCE=SCOPE,SCOPE; an empty value adds
// nothing, so that an empty --grant sends an empty list.
func parseGrantFlags(values []string) ([]orgGrantJSON, error) {
	for _, v := range values {
		if strings.HasPrefix(v, "=") {
			return nil, usageError{fmt.Errorf("--grant %q: write AUDIENCE=SCOPE,SCOPE", v)}
		}
	}
	return parseAllow(values)
}

func newAPIKeyRotateCmd(a *adminFlags) *cobra.Command {
	var grace time.Duration
	cmd := &cobra.Command{
		Use:   "rotate ID [--grace-period DURATION]",
		Short: "Replace an API key with a new one; the new key is printed once",
		Long: `Replace an API key with a new one, printed once; its id, grants and everything else stay. The previous key
stops working at once, or with --grace-period keeps working that long (at most 168h, 7 days): time to deploy the
new one.`,
		Example: `  gatehouse apikey rotate key_… --grace-period 24h`,
		Args:    argsNamed("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var body any
			if changed(cmd, "grace-period") {
				if grace < 0 || grace > auth.MaxKeyGracePeriod || grace%time.Second != 0 {
					return usageError{fmt.Errorf("--grace-period %s: give a whole number of seconds from 0s to %s (7 days)", grace,
						secondsCell(int64(auth.MaxKeyGracePeriod/time.Second)))}
				}
				body = map[string]any{"grace_period": int64(grace / time.Second)}
			}
			raw, err := writeResource(cmd.Context(), a, http.MethodPost, "/api/v1/apikeys/"+escape(args[0])+"/rotate", body, false, apiKeyDetail)
			if err != nil {
				return err
			}
			if k := warnKey(a.stderr, raw); k.PreviousKeyExpiresAt != nil {
				fmt.Fprintf(a.stderr, "the previous key works until %s\n", timeCell(k.PreviousKeyExpiresAt))
			} else {
				fmt.Fprintln(a.stderr, "the previous key no longer works")
			}
			return nil
		},
	}
	cmd.Flags().DurationVar(&grace, "grace-period", 0, "how long the previous key keeps working (at most 168h; 0s: it stops at once)")
	return cmd
}

// maxKeyInput bounds what verify reads from stdin: far more than any key.
const maxKeyInput = 4 << 10

func newAPIKeyVerifyCmd(a *adminFlags) *cobra.Command {
	var (
		audience string
		scopes   []string
	)
	cmd := &cobra.Command{
		Use:   "verify KEY|- [--audience API] [--scope SCOPE]...",
		Short: "Check an API key as a gateway does: exit 0 if it is valid, 1 if not",
		Long: `Check an API key as a gateway does: is it valid, for --audience, with every --scope? Prints the verdict — the
key's facts, or why it is refused: malformed, not_found, expired, disabled, wrong_audience or insufficient_scope —
and exits 0 if the key is valid, 1 if not. Give - to read the key from stdin, so that it is neither in the shell's
history nor in the process list.`,
		Example: `  gatehouse apikey verify - --audience https://api.example.com/v1 --scope read < key.txt`,
		Args:    argsNamed("KEY"),
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON, err := a.wantJSON()
			if err != nil {
				return err
			}
			key := args[0]
			if key == "-" {
				b, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), maxKeyInput))
				if err != nil {
					return fmt.Errorf("read the key from stdin: %w", err)
				}
				if key = strings.TrimSpace(string(b)); key == "" {
					return usageError{errors.New("no key on stdin")}
				}
			}
			c, err := a.client()
			if err != nil {
				return err
			}
			body := map[string]any{"key": key}
			if audience != "" {
				body["audience"] = audience
			}
			if s := splitScopes(scopes); len(s) > 0 {
				body["scopes"] = s
			}
			resp, err := c.do(cmd.Context(), http.MethodPost, "/api/v1/apikeys/verify", body, "")
			if err != nil {
				return err
			}
			if err := printItem(a, asJSON, resp.Body, verifyKeyDetail); err != nil {
				return err
			}
			var v verifyKeyJSON
			if err := json.Unmarshal(resp.Body, &v); err != nil {
				return fmt.Errorf("the server's answer is not what this command expects: %w", err)
			}
			if !v.Valid {
				return fmt.Errorf("API key refused: %s", v.Code)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&audience, "audience", "", "the API the key is presented to, by identifier (default: the key's only API)")
	cmd.Flags().StringArrayVar(&scopes, "scope", nil, "a scope the key must hold for that API (repeat it)")
	return cmd
}
