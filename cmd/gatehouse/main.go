// Command gatehouse is machine-to-machine authorization in one binary: an OAuth 2.0 token server (serve, dev) and
// the tools around it (token, proxy, authorize, bench, signing-key).
//
// Exit codes: 0 success, 1 failure, 2 usage error.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// usageError marks an error in how the command was called (exit code 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// run executes the CLI with args and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root := newRootCmd(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	fmt.Fprintln(stderr, "gatehouse:", err)
	var ue usageError
	if errors.As(err, &ue) || strings.HasPrefix(err.Error(), "unknown command") || strings.HasPrefix(err.Error(), "unknown flag") {
		fmt.Fprintln(stderr, "Run 'gatehouse --help' for usage.")
		return 2
	}
	return 1
}

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "gatehouse",
		Short: "Machine-to-machine authorization: an OAuth 2.0 token server and the tools around it",
		Long: `Gatehouse issues OAuth 2.0 client-credentials access tokens (RFC 9068 JWTs) for your APIs.

Start a local server with a demo API and client:   gatehouse dev
Run it for real:                                   gatehouse serve --config gatehouse.yaml
Get a token from any token endpoint:               gatehouse token --url … --client-id … --client-secret …
Cache tokens of any token endpoint, for any language: gatehouse proxy --upstream https://TENANT.auth0.com/oauth/token
Check tokens for nginx, Traefik, Caddy or Envoy:   gatehouse authorize --rules rules.yaml --issuer URL
Rotate or revoke a signing key:                    gatehouse signing-key rotate --alg ES256
Administer a running server:                       gatehouse api|client|grant|org|apikey|signing-key|audit <verb>, gatehouse apply -f FILE`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(newServeCmd(stdout, stderr), newDevCmd(stdout, stderr), newTokenCmd(stdout, stderr), newBenchCmd(stdout, stderr),
		newProxyCmd(stdout, stderr), newAuthorizeCmd(stdout, stderr))
	root.AddCommand(append(newAdminCmds(stdout, stderr), newApplyCmd(stdout, stderr))...)
	return root
}

// noArgs refuses positional arguments with a usage error.
func noArgs(_ *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageError{fmt.Errorf("unexpected argument %q", args[0])}
	}
	return nil
}

// bindEnv gives every flag of cmd that was not set on the command line the value of GATEHOUSE_<FLAG> (dashes
// become underscores), when that variable is set.
func bindEnv(cmd *cobra.Command, lookup func(string) (string, bool)) error {
	var err error
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed {
			return
		}
		name := "GATEHOUSE_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := lookup(name); ok {
			if e := f.Value.Set(v); e != nil {
				err = usageError{fmt.Errorf("%s: %w", name, e)}
			}
		}
	})
	return err
}
