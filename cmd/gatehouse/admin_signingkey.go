package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehouse/gatehouse/internal/auth"
)

// signingKeyJSON is a signing key's public facts and schedule as the management API shows them.
type signingKeyJSON struct {
	KID        string     `json:"kid"`
	Alg        string     `json:"alg"`
	State      string     `json:"state"`
	CreatedAt  *time.Time `json:"created_at"`
	UpdatedAt  *time.Time `json:"updated_at"`
	Since      *time.Time `json:"since"`
	NextStepAt *time.Time `json:"next_step_at"`
}

// nextStep says what the key's next step is, and when.
func (k signingKeyJSON) nextStep() string {
	at := timeCell(k.NextStepAt)
	if at == "" {
		return ""
	}
	switch k.State {
	case string(auth.KeyNext):
		return "signs from " + at
	case string(auth.KeyCurrent):
		return "rotation step at " + at
	case string(auth.KeyRetired):
		return "removed at " + at
	}
	return at
}

// signingKeyListing shows keys by algorithm, then as the server orders them: oldest first.
var signingKeyListing = listing[signingKeyJSON]{
	header: []string{"KID", "ALG", "STATE", "CREATED", "SINCE", "NEXT STEP"},
	row: func(k signingKeyJSON) []string {
		return []string{k.KID, k.Alg, k.State, timeCell(k.CreatedAt), timeCell(k.Since), k.nextStep()}
	},
	key: func(k signingKeyJSON) string { return k.Alg },
}

func signingKeyDetail(k signingKeyJSON) []field {
	return []field{{"kid", k.KID}, {"alg", k.Alg}, {"state", k.State}, {"created_at", timeCell(k.CreatedAt)},
		{"since", timeCell(k.Since)}, {"next_step", k.nextStep()}}
}

// revokedKeyJSON is the answer to a revocation.
type revokedKeyJSON struct {
	KID       string     `json:"kid"`
	Alg       string     `json:"alg"`
	RevokedAt *time.Time `json:"revoked_at"`
}

func revokedKeyDetail(k revokedKeyJSON) []field {
	return []field{{"kid", k.KID}, {"alg", k.Alg}, {"revoked_at", timeCell(k.RevokedAt)}}
}

// newSigningKeyCmd returns the signing-key noun. Each verb is one constructor in signingKeyVerbs; every verb works
// through the management API, or, with --db, on the database directly (signingkey.go).
func newSigningKeyCmd(a *adminFlags) *cobra.Command {
	var verbs []*cobra.Command
	for _, v := range signingKeyVerbs {
		verbs = append(verbs, v(a))
	}
	return newNoun("signing-key", "Manage the token signing keys: list, rotate, revoke",
		`List, rotate or revoke the keys that sign access tokens. Every key is published in the JWKS: next keys before
they sign, the current key of each algorithm, retired keys until the tokens they signed have expired. Keys rotate
by themselves (serve's --key-rotation-period); rotate starts a rotation now, and revoke is for a compromised key.

The verbs work in one of two modes:

  through a server (the default), like every admin command: its management API (--server, GATEHOUSE_SERVER),
  as a client holding read:keys (list) or write:keys (rotate, revoke). The server that answers acts at once,
  with its own key schedule; its other instances follow at their next reload of the keys (within 30 seconds).

  on the database (--db sqlite:PATH): directly, with the server's root key (GATEHOUSE_ROOT_KEY or
  --root-key-file) and key schedule (--key-rotation-period, --key-publish-ahead, --key-retention), for when no
  server runs or its API cannot be reached. Running servers see the change at their next reload of the keys
  (within 30 seconds). These flags also read GATEHOUSE_<FLAG>, as serve's do.`, verbs...)
}

// signingKeyVerbs are the verbs of gatehouse signing-key.
var signingKeyVerbs = []func(*adminFlags) *cobra.Command{newSigningKeyListCmd, newSigningKeyRotateCmd, newSigningKeyRevokeCmd}

func newSigningKeyListCmd(a *adminFlags) *cobra.Command {
	var f keyDBFlags
	cmd := newListCmd("List signing keys with their states and schedules (never their private halves)", 0, func(cmd *cobra.Command, limit int) error {
		direct, err := f.direct(cmd)
		if err != nil {
			return err
		}
		if !direct {
			return listResources(cmd.Context(), a, "/api/v1/signing-keys", nil, limit, signingKeyListing)
		}
		m, err := f.open(cmd, a.stderr)
		if err != nil {
			return err
		}
		defer m.Close()
		return listDirect(cmd.Context(), a, m.Keys, limit)
	})
	cmd.Example = `  gatehouse signing-key list
  gatehouse signing-key list --db sqlite:/var/lib/gatehouse/gatehouse.db -o json`
	f.register(cmd)
	return cmd
}

func newSigningKeyRotateCmd(a *adminFlags) *cobra.Command {
	var (
		f           keyDBFlags
		algName     string
		immediately bool
	)
	cmd := &cobra.Command{
		Use:   "rotate --alg ALG [--immediately]",
		Short: "Rotate an algorithm's signing key now",
		Long: `Rotate an algorithm's signing key now rather than at the end of its rotation period, through a server's
management API or, with --db, on the database directly (see 'gatehouse signing-key --help').

Without --immediately, nothing breaks: a new key is published in the JWKS (unless one is already), and it signs
once it has been published for the key schedule's publish-ahead time, when a running server promotes it (or run
this command again then). With --immediately, the new key signs at once: verifiers that cached the JWKS and do
not refetch it for an unknown kid refuse its tokens until their cache expires. In both cases the old key is
retired, not revoked: its tokens keep verifying until they expire. For a key whose tokens must stop working, use
'gatehouse signing-key revoke'.

It prints the key that signs next.`,
		Example: `  gatehouse signing-key rotate --alg ES256
  gatehouse signing-key rotate --alg ES256 --db sqlite:/var/lib/gatehouse/gatehouse.db`,
		Args: argsNamed(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			alg := auth.Algorithm(algName)
			if algName == "" {
				return usageError{errors.New("--alg is required: RS256, ES256 or EdDSA")}
			}
			if !alg.Valid() {
				return usageError{fmt.Errorf("--alg %q: use RS256, ES256 or EdDSA", algName)}
			}
			direct, err := f.direct(cmd)
			if err != nil {
				return err
			}
			if direct {
				m, err := f.open(cmd, a.stderr)
				if err != nil {
					return err
				}
				defer m.Close()
				return rotateDirect(cmd.Context(), a, m.Keys, alg, immediately)
			}
			raw, err := writeResource(cmd.Context(), a, http.MethodPost, "/api/v1/signing-keys/rotate",
				map[string]any{"alg": alg, "immediately": immediately}, false, signingKeyDetail)
			if err != nil {
				return err
			}
			var k signingKeyJSON
			if err := json.Unmarshal(raw, &k); err != nil {
				return fmt.Errorf("the server's answer is not what this command expects: %w", err)
			}
			fmt.Fprint(a.stderr, rotatedMessage(k, false))
			return nil
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&algName, "alg", "", "the algorithm whose key to rotate: RS256, ES256 or EdDSA (required)")
	cmd.Flags().BoolVar(&immediately, "immediately", false, "sign with the new key at once, without publishing it ahead (see above)")
	return cmd
}

func newSigningKeyRevokeCmd(a *adminFlags) *cobra.Command {
	var f keyDBFlags
	cmd := &cobra.Command{
		Use:   "revoke KID",
		Short: "Emergency: remove a signing key at once; the tokens it signed stop verifying",
		Long: `Remove a signing key at once, for a key that may be compromised, through a server's management API or, with
--db, on the database directly (see 'gatehouse signing-key --help'). This breaks things, on purpose:

  - the key leaves the JWKS, and every token it signed stops verifying: at once at the server that answers (or,
    with --db, at running servers' next reload of the keys), at its other instances at their next reload (within
    30 seconds), and at verifiers when their cached JWKS expires (the servers' --jwks-max-age); clients must get
    new tokens;
  - if it was its algorithm's current key, the next key (if one is published) or a new key signs from now on, and
    verifiers that do not refetch the JWKS for an unknown kid refuse those tokens until their cache expires.

Find the kid with 'gatehouse signing-key list' or in the JWKS. A kid may start with "-": give it after "--", as
in the examples, so that it is not taken for a flag.`,
		Example: `  gatehouse signing-key revoke -- 8Xc0kQ…
  gatehouse signing-key revoke --db sqlite:/var/lib/gatehouse/gatehouse.db -- -Dt7QU…`,
		Args: argsNamed("KID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			direct, err := f.direct(cmd)
			if err != nil {
				return err
			}
			if direct {
				m, err := f.open(cmd, a.stderr)
				if err != nil {
					return err
				}
				defer m.Close()
				return revokeDirect(cmd.Context(), a, m.Keys, args[0])
			}
			if _, err := writeResource(cmd.Context(), a, http.MethodPost, "/api/v1/signing-keys/"+escape(args[0])+"/revoke",
				nil, false, revokedKeyDetail); err != nil {
				return err
			}
			fmt.Fprint(a.stderr, revokedMessage(args[0], false))
			return nil
		},
	}
	f.register(cmd)
	return cmd
}

// rotatedMessage says on stderr what a rotation did and when servers follow; direct for the database mode.
func rotatedMessage(k signingKeyJSON, direct bool) string {
	if k.State == string(auth.KeyNext) {
		return fmt.Sprintf("%s: key %s is published as next: it signs from %s, when a running server promotes it.\n"+
			"Run this command again then to promote it yourself.\n", k.Alg, k.KID, timeCell(k.NextStepAt))
	}
	follow := "The server switched at once; its other instances follow at their next reload of the keys."
	if direct {
		follow = "Running servers switch at their next reload of the keys."
	}
	return fmt.Sprintf("%s: key %s signs now. The previous key is retired: it stays in the JWKS until its tokens expire.\n%s\n",
		k.Alg, k.KID, follow)
}

// revokedMessage warns on stderr of what a revocation does; direct for the database mode.
func revokedMessage(kid string, direct bool) string {
	follow := "The server dropped it at once, its other instances do at their next reload of the keys, verifiers when their cached JWKS expires."
	if direct {
		follow = "Running servers drop it at their next reload of the keys, verifiers when their cached JWKS expires."
	}
	return fmt.Sprintf("WARNING: signing key %s is revoked: it left the JWKS, and the tokens it signed no longer verify.\n%s\n", kid, follow)
}
