package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehouse/gatehouse/internal/config"
)

// clientJSON is a client as the management API shows it; ClientSecret only in the answer that creates it.
type clientJSON struct {
	ClientID     string         `json:"client_id"`
	Name         string         `json:"name"`
	Description  string         `json:"description"`
	Disabled     bool           `json:"disabled"`
	OrgID        string         `json:"org_id"`
	RateLimit    *rateLimitJSON `json:"rate_limit"`
	Secrets      []secretJSON   `json:"secrets"`
	CreatedAt    *time.Time     `json:"created_at"`
	UpdatedAt    *time.Time     `json:"updated_at"`
	ClientSecret string         `json:"client_secret"`
}

// rateLimitJSON is Count tokens per Per seconds.
type rateLimitJSON struct {
	Count int   `json:"count"`
	Per   int64 `json:"per"`
}

func (r *rateLimitJSON) String() string {
	if r == nil || r.Count == 0 {
		return ""
	}
	return strconv.Itoa(r.Count) + "/" + secondsCell(r.Per)
}

// secretJSON is a client secret's metadata; ClientSecret only in the answer that adds it.
type secretJSON struct {
	ID           string     `json:"id"`
	Hint         string     `json:"hint"`
	CreatedAt    *time.Time `json:"created_at"`
	ExpiresAt    *time.Time `json:"expires_at"`
	ClientSecret string     `json:"client_secret"`
}

func (s secretJSON) hint() string { return "…" + s.Hint }

func (s secretJSON) expires() string {
	if s.ExpiresAt == nil {
		return "never"
	}
	return timeCell(s.ExpiresAt)
}

// clientListing shows clients by client_id.
var clientListing = listing[clientJSON]{
	header: []string{"CLIENT ID", "NAME", "ORG", "STATUS", "RATE LIMIT", "SECRETS", "CREATED"},
	row: func(c clientJSON) []string {
		return []string{c.ClientID, c.Name, c.OrgID, boolCell(c.Disabled, "disabled", "enabled"), c.RateLimit.String(),
			strconv.Itoa(len(c.Secrets)), timeCell(c.CreatedAt)}
	},
	key: func(c clientJSON) string { return c.ClientID },
}

func clientDetail(c clientJSON) []field {
	f := []field{
		{"client_id", c.ClientID}, {"name", c.Name}, {"description", c.Description}, {"org_id", c.OrgID},
		{"status", boolCell(c.Disabled, "disabled", "enabled")}, {"rate_limit", c.RateLimit.String()},
	}
	for i, s := range c.Secrets {
		label := ""
		if i == 0 {
			label = "secrets"
		}
		f = append(f, field{label, fmt.Sprintf("%s  %s  created %s  expires %s", s.ID, s.hint(), timeCell(s.CreatedAt), s.expires())})
	}
	f = append(f, field{"created_at", timeCell(c.CreatedAt)}, field{"updated_at", timeCell(c.UpdatedAt)})
	if c.ClientSecret != "" {
		f = append(f, field{"client_secret", c.ClientSecret})
	}
	return f
}

// secretListing shows a client's secrets as the server orders them: oldest first.
var secretListing = listing[secretJSON]{
	header: []string{"ID", "HINT", "CREATED", "EXPIRES"},
	row:    func(s secretJSON) []string { return []string{s.ID, s.hint(), timeCell(s.CreatedAt), s.expires()} },
}

func secretDetail(s secretJSON) []field {
	f := []field{{"id", s.ID}, {"hint", s.hint()}, {"created_at", timeCell(s.CreatedAt)}, {"expires_at", s.expires()}}
	if s.ClientSecret != "" {
		f = append(f, field{"client_secret", s.ClientSecret})
	}
	return f
}

// warnSecret says on w (stderr) that the secret of clientID just printed on stdout is shown only once.
func warnSecret(w io.Writer, clientID string) {
	fmt.Fprintf(w, "WARNING: the secret of client %s is shown only this once (the server keeps only a hash); store it now\n", clientID)
}

func newClientCmd(a *adminFlags) *cobra.Command {
	var org string
	list := newListCmd("List clients", 0, func(cmd *cobra.Command, limit int) error {
		orgID, err := resolveOrg(cmd.Context(), a, org)
		if err != nil {
			return err
		}
		return listResources(cmd.Context(), a, "/api/v1/clients", map[string]string{"org_id": orgID}, limit, clientListing)
	})
	list.Flags().StringVar(&org, "org", "", "only the clients of this organization (id or name)")
	return newNoun("client", "Manage OAuth clients and their secrets: list, show, create, update, delete, secret",
		`Manage OAuth clients: the services that get tokens with the client credentials grant. A client is named by its
client_id. A new client's secret, and each secret added, is printed once: store it.`,
		list,
		&cobra.Command{
			Use:   "show CLIENT",
			Short: "Show a client (never its secrets, only their metadata)",
			Args:  argsNamed("CLIENT"),
			RunE: func(cmd *cobra.Command, args []string) error {
				return getResource(cmd.Context(), a, "/api/v1/clients/"+escape(args[0]), clientDetail)
			},
		},
		newClientCreateCmd(a),
		newClientUpdateCmd(a),
		&cobra.Command{
			Use:   "delete CLIENT",
			Short: "Delete a client, its secrets and its grants",
			Args:  argsNamed("CLIENT"),
			RunE: func(cmd *cobra.Command, args []string) error {
				return deleteResource(cmd.Context(), a, "/api/v1/clients/"+escape(args[0]), "client "+args[0])
			},
		},
		newSecretCmd(a),
	)
}

func newClientCreateCmd(a *adminFlags) *cobra.Command {
	var name, description, org, rateLimit, clientID string
	cmd := &cobra.Command{
		Use:   "create --name NAME [flags]",
		Short: "Create a client; its secret is printed once",
		Example: `  gatehouse client create --name "Billing service" --client-id billing --rate-limit 100/1m
  gatehouse client create --name "Acme importer" --org acme -o json | jq -r .client_secret`,
		Args: argsNamed(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if name == "" {
				return usageError{errors.New("--name is required")}
			}
			body := map[string]any{"name": name}
			if changed(cmd, "description") {
				body["description"] = description
			}
			if changed(cmd, "client-id") {
				body["client_id"] = clientID
			}
			if changed(cmd, "rate-limit") {
				rl, err := parseRateLimitFlag(rateLimit)
				if err != nil {
					return err
				}
				body["rate_limit"] = rl
			}
			if org != "" {
				id, err := resolveOrg(cmd.Context(), a, org)
				if err != nil {
					return err
				}
				body["org_id"] = id
			}
			raw, err := writeResource(cmd.Context(), a, http.MethodPost, "/api/v1/clients", body, false, clientDetail)
			if err != nil {
				return err
			}
			var c clientJSON
			json.Unmarshal(raw, &c)
			warnSecret(a.stderr, c.ClientID)
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&name, "name", "", "the client's name (required)")
	fl.StringVar(&description, "description", "", "what the client is")
	fl.StringVar(&org, "org", "", "the organization that owns the client (id or name)")
	fl.StringVar(&rateLimit, "rate-limit", "", "how many tokens it may get, as COUNT/DURATION: 100/1m, 10/1s")
	fl.StringVar(&clientID, "client-id", "", "the client_id (default: a random one)")
	return cmd
}

func newClientUpdateCmd(a *adminFlags) *cobra.Command {
	var (
		name, description, rateLimit          string
		disable, enable, noRateLimit, ifMatch bool
	)
	cmd := &cobra.Command{
		Use:     "update CLIENT [flags]",
		Short:   "Change a client: only the flags given",
		Example: `  gatehouse client update billing --disable`,
		Args:    argsNamed("CLIENT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			body := map[string]any{}
			if changed(cmd, "name") {
				body["name"] = name
			}
			if changed(cmd, "description") {
				body["description"] = description
			}
			switch {
			case disable && enable:
				return usageError{errors.New("give --disable or --enable, not both")}
			case disable || enable:
				body["disabled"] = disable
			}
			switch {
			case changed(cmd, "rate-limit") && noRateLimit:
				return usageError{errors.New("give --rate-limit or --no-rate-limit, not both")}
			case changed(cmd, "rate-limit"):
				rl, err := parseRateLimitFlag(rateLimit)
				if err != nil {
					return err
				}
				body["rate_limit"] = rl
			case noRateLimit:
				body["rate_limit"] = nil
			}
			if len(body) == 0 {
				return usageError{errors.New("nothing to change: give --name, --description, --disable, --enable, --rate-limit or --no-rate-limit")}
			}
			_, err := writeResource(cmd.Context(), a, http.MethodPatch, "/api/v1/clients/"+escape(args[0]), body, ifMatch, clientDetail)
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&name, "name", "", "the client's name")
	fl.StringVar(&description, "description", "", "what the client is")
	fl.BoolVar(&disable, "disable", false, "stop the client from getting tokens")
	fl.BoolVar(&enable, "enable", false, "let a disabled client get tokens again")
	fl.StringVar(&rateLimit, "rate-limit", "", "how many tokens it may get, as COUNT/DURATION: 100/1m")
	fl.BoolVar(&noRateLimit, "no-rate-limit", false, "remove the client's rate limit")
	fl.BoolVar(&ifMatch, "if-match", false, "fail if the client changes between reading and writing it (If-Match)")
	return cmd
}

// parseRateLimitFlag reads --rate-limit as the management API's rate_limit member.
func parseRateLimitFlag(s string) (rateLimitJSON, error) {
	rl, err := config.ParseRateLimit(s)
	if err != nil {
		return rateLimitJSON{}, usageError{fmt.Errorf("--rate-limit: %w", err)}
	}
	return rateLimitJSON{Count: rl.Count, Per: int64(rl.Per / time.Second)}, nil
}

func newSecretCmd(a *adminFlags) *cobra.Command {
	var expireOthers time.Duration
	add := &cobra.Command{
		Use:   "add CLIENT [--expire-others-in DURATION]",
		Short: "Add a secret to a client; it is printed once",
		Long: `Add a secret to a client; it is printed once. To rotate without downtime, add a secret with
--expire-others-in: the client's other secrets keep working for that long (0s: they stop at once), time to
deploy the new one.`,
		Example: `  gatehouse client secret add billing --expire-others-in 24h`,
		Args:    argsNamed("CLIENT"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var body any
			if changed(cmd, "expire-others-in") {
				if expireOthers < 0 || expireOthers%time.Second != 0 {
					return usageError{fmt.Errorf("--expire-others-in %s: give a whole number of seconds, 0s or more", expireOthers)}
				}
				body = map[string]any{"expire_others_in": int64(expireOthers / time.Second)}
			}
			_, err := writeResource(cmd.Context(), a, http.MethodPost, "/api/v1/clients/"+escape(args[0])+"/secrets", body, false, secretDetail)
			if err != nil {
				return err
			}
			warnSecret(a.stderr, args[0])
			return nil
		},
	}
	add.Flags().DurationVar(&expireOthers, "expire-others-in", 0, "make the client's other secrets stop working after this long (0s: at once)")
	return newNoun("secret", "Manage a client's secrets: add, list, delete", "",
		add,
		&cobra.Command{
			Use:   "list CLIENT",
			Short: "List a client's secrets (their metadata)",
			Args:  argsNamed("CLIENT"),
			RunE: func(cmd *cobra.Command, args []string) error {
				return listResources(cmd.Context(), a, "/api/v1/clients/"+escape(args[0])+"/secrets", nil, 0, secretListing)
			},
		},
		&cobra.Command{
			Use:   "delete CLIENT SECRET_ID",
			Short: "Delete one of a client's secrets (a client keeps at least one)",
			Args:  argsNamed("CLIENT", "SECRET_ID"),
			RunE: func(cmd *cobra.Command, args []string) error {
				return deleteResource(cmd.Context(), a, "/api/v1/clients/"+escape(args[0])+"/secrets/"+escape(args[1]),
					"secret "+args[1]+" of client "+args[0])
			},
		},
	)
}

// resolveOrg returns the id of the organization arg names, by id (org_…) or name; "" for "".
func resolveOrg(ctx context.Context, a *adminFlags, arg string) (string, error) {
	if arg == "" || isOrgID(arg) {
		return arg, nil
	}
	c, err := a.client()
	if err != nil {
		return "", err
	}
	orgs, err := listOrgs(ctx, c)
	if err != nil {
		return "", err
	}
	for _, o := range orgs {
		if o.Name == arg {
			return o.ID, nil
		}
	}
	return "", fmt.Errorf("no organization with the id or name %q", arg)
}
