package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/keyset"
)

// keyCmdFlags are the flags of the signing-key commands: the database and root key as serve takes them, and the
// key schedule, which should be the servers' (the same GATEHOUSE_<FLAG> variables set both).
type keyCmdFlags struct {
	db, rootKeyFile     string
	logFormat, logLevel string
	jwksMaxAge          time.Duration
	keys                keyScheduleFlags
	output              string
}

func (f *keyCmdFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.db, "db", "sqlite:gatehouse.db", "database: sqlite:PATH")
	fl.StringVar(&f.rootKeyFile, "root-key-file", "", "file holding the base64 root key (else GATEHOUSE_ROOT_KEY)")
	fl.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	fl.StringVar(&f.logLevel, "log-level", "warn", "log level: debug, info, warn or error")
	fl.DurationVar(&f.jwksMaxAge, "jwks-max-age", 5*time.Minute, "the servers' Cache-Control max-age of the JWKS")
	f.keys.register(fl)
	fl.StringVarP(&f.output, "output", "o", "table", "output: table or json")
}

// open opens the database that --db names, which must exist, with the root key, and loads its signing keys.
func (f *keyCmdFlags) open(cmd *cobra.Command, stderr io.Writer) (*Main, error) {
	if err := bindEnv(cmd, os.LookupEnv); err != nil {
		return nil, err
	}
	log, err := newLogger(stderr, f.logFormat, f.logLevel)
	if err != nil {
		return nil, err
	}
	if f.output != "table" && f.output != "json" {
		return nil, usageError{fmt.Errorf("--output %q: use table or json", f.output)}
	}
	if f.jwksMaxAge < 0 {
		return nil, usageError{errors.New("durations must not be negative")}
	}
	if err := f.keys.check(f.jwksMaxAge); err != nil {
		return nil, err
	}
	path, ok := strings.CutPrefix(f.db, "sqlite:")
	if !ok {
		return nil, usageError{fmt.Errorf("--db %q: use sqlite:PATH", f.db)}
	}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no database at %s: point --db at the server's", path)
	}
	m := &Main{DB: f.db, JWKSMaxAge: f.jwksMaxAge, Logger: log, Stderr: stderr,
		RotateEvery: f.keys.rotateEvery, PublishAhead: f.keys.publishAhead, KeyRetention: f.keys.retention}
	if m.RootKey, err = readRootKey(f.rootKeyFile); err != nil {
		return nil, err
	}
	if m.RootKey == nil {
		return nil, errors.New("no root key: set GATEHOUSE_ROOT_KEY or pass --root-key-file, as for the server")
	}
	ctx := cmd.Context()
	if err := m.openStore(ctx); err != nil {
		m.Close()
		return nil, err
	}
	if err := m.openKeys(ctx); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

func newSigningKeyCmd(stdout, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "signing-key",
		Short: "List, rotate or revoke the token signing keys, in the database directly",
		Long: `List, rotate or revoke the token signing keys. These commands act on the database directly (--db, with the
server's root key), so they work with or without servers running; running servers see a change at their next
reload of the keys (every 30 seconds).

Keys rotate by themselves (see --key-rotation-period): a new key is published in the JWKS ahead of signing, so that
verifiers have it cached in time, then signs, then stays published until every token it signed has expired.

Every flag also reads the environment variable GATEHOUSE_<FLAG>, as serve's do.`,
		Args: noArgs,
	}
	cmd.AddCommand(newSigningKeyListCmd(stdout, stderr), newSigningKeyRotateCmd(stdout, stderr), newSigningKeyRevokeCmd(stdout, stderr))
	return cmd
}

func newSigningKeyListCmd(stdout, stderr io.Writer) *cobra.Command {
	var f keyCmdFlags
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the signing keys with their states and schedules",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, err := f.open(cmd, stderr)
			if err != nil {
				return err
			}
			defer m.Close()
			return printKeys(cmd.Context(), stdout, m.Keys, f.output)
		},
	}
	f.register(cmd)
	return cmd
}

func newSigningKeyRotateCmd(stdout, stderr io.Writer) *cobra.Command {
	var (
		f           keyCmdFlags
		alg         string
		immediately bool
	)
	cmd := &cobra.Command{
		Use:   "rotate --alg ALG",
		Short: "Rotate an algorithm's signing key now",
		Long: `Rotate an algorithm's signing key now rather than at the end of its rotation period.

Without --immediately, nothing breaks: a new key is published in the JWKS (unless one is already), and it signs
once it has been published for --key-publish-ahead; a running server promotes it then, or run this command again.
With --immediately, the new key signs at once: verifiers that cached the JWKS and do not refetch it for an unknown
kid refuse its tokens until their cache expires. In both cases the old key is retired, not revoked: its tokens keep
verifying until they expire. For a key whose tokens must stop working, use 'gatehouse signing-key revoke'.`,
		Example: `  gatehouse signing-key rotate --alg ES256 --db sqlite:/var/lib/gatehouse/gatehouse.db`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			a := auth.Algorithm(alg)
			if alg == "" {
				return usageError{errors.New("--alg is required: RS256, ES256 or EdDSA")}
			}
			if !a.Valid() {
				return usageError{fmt.Errorf("--alg %q: use RS256, ES256 or EdDSA", alg)}
			}
			m, err := f.open(cmd, stderr)
			if err != nil {
				return err
			}
			defer m.Close()
			var k keyset.KeyInfo
			if immediately {
				k, err = m.Keys.RotateImmediately(cmd.Context(), a)
			} else {
				k, err = m.Keys.RotateNow(cmd.Context(), a)
			}
			if err != nil {
				return err
			}
			if k.State == auth.KeyNext {
				fmt.Fprintf(stderr, "%s: key %s is published as next; it signs from %s (a running server promotes it then,\nor run this command again after that).\n",
					a, k.ID, k.Next.UTC().Format(time.RFC3339))
			} else {
				fmt.Fprintf(stderr, "%s: key %s signs now; the previous key is retired and stays in the JWKS until its tokens\nexpire. Running servers switch at their next reload of the keys.\n", a, k.ID)
			}
			return printKeys(cmd.Context(), stdout, m.Keys, f.output)
		},
	}
	f.register(cmd)
	cmd.Flags().StringVar(&alg, "alg", "", "the algorithm whose key to rotate: RS256, ES256 or EdDSA (required)")
	cmd.Flags().BoolVar(&immediately, "immediately", false, "sign with the new key at once, without publishing it ahead (see above)")
	return cmd
}

func newSigningKeyRevokeCmd(stdout, stderr io.Writer) *cobra.Command {
	var f keyCmdFlags
	cmd := &cobra.Command{
		Use:   "revoke KID",
		Short: "Emergency: remove a signing key at once; the tokens it signed stop verifying",
		Long: `Remove a signing key at once, for a key that may be compromised. This breaks things, on purpose:

  - the key leaves the JWKS, and every token it signed stops verifying: at this server's introspection at once, at
    other running servers at their next reload of the keys (within 30 seconds), and at verifiers when their cached
    JWKS expires (--jwks-max-age); clients must get new tokens;
  - if it was its algorithm's current key, the next key (if one is published) or a new key signs from now on, and
    verifiers that do not refetch the JWKS for an unknown kid refuse those tokens until their cache expires.

Find the kid with 'gatehouse signing-key list' or in the JWKS.`,
		Example: `  gatehouse signing-key revoke 8Xc0kQ… --db sqlite:/var/lib/gatehouse/gatehouse.db`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError{errors.New("revoke takes one argument, the kid of the key to revoke")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			m, err := f.open(cmd, stderr)
			if err != nil {
				return err
			}
			defer m.Close()
			if err := m.Keys.Revoke(cmd.Context(), args[0]); err != nil {
				if errors.Is(err, auth.ErrNotFound) {
					return fmt.Errorf("no signing key %q", args[0])
				}
				return err
			}
			fmt.Fprintf(stderr, "WARNING: signing key %s is revoked: it left the JWKS, and tokens it signed no longer verify.\n"+
				"Running servers drop it at their next reload of the keys; verifiers when their cached JWKS expires.\n", args[0])
			return printKeys(cmd.Context(), stdout, m.Keys, f.output)
		},
	}
	f.register(cmd)
	return cmd
}

// keyJSON is a key as -o json prints it.
type keyJSON struct {
	KID       string    `json:"kid"`
	Alg       string    `json:"alg"`
	State     string    `json:"state"`
	CreatedAt time.Time `json:"created_at"`
	Since     time.Time `json:"since"`
	NextStep  time.Time `json:"next_step_at"`
}

// printKeys prints every signing key as a table or as JSON.
func printKeys(ctx context.Context, w io.Writer, keys *keyset.Keyset, output string) error {
	infos, err := keys.List(ctx)
	if err != nil {
		return err
	}
	if output == "json" {
		out := make([]keyJSON, len(infos))
		for i, k := range infos {
			out[i] = keyJSON{KID: k.ID, Alg: string(k.Alg), State: string(k.State), CreatedAt: k.CreatedAt.UTC(),
				Since: k.Since.UTC(), NextStep: k.Next.UTC()}
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "KID\tALG\tSTATE\tSINCE\tNEXT STEP")
	for _, k := range infos {
		step := map[auth.KeyState]string{
			auth.KeyNext:    "signs from ",
			auth.KeyCurrent: "rotation step at ",
			auth.KeyRetired: "removed at ",
		}[k.State]
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", k.ID, k.Alg, k.State, k.Since.UTC().Format(time.RFC3339),
			step+k.Next.UTC().Format(time.RFC3339))
	}
	return tw.Flush()
}
