package main

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/config"
	"github.com/gatehouse/gatehouse/internal/rootkey"
)

// Files gatehouse dev keeps in the working directory.
const (
	devDB      = "gatehouse-dev.db"
	devKeyFile = "gatehouse-dev.key"
)

// The demo resources gatehouse dev creates.
const (
	demoAudience = "https://api.example.com/v1"
	demoClientID = "demo-client"
	devAdminID   = "dev-admin"
)

// devSecret derives the demo client's secret from the root key, so every run prints a secret that works without
// the database ever holding it in the clear.
func devSecret(k *rootkey.Key) string {
	return base64.RawURLEncoding.EncodeToString(k.Derive("dev demo client secret"))
}

// devAdminSecret derives the dev administrator's secret from the root key, as devSecret does.
func devAdminSecret(k *rootkey.Key) string {
	return base64.RawURLEncoding.EncodeToString(k.Derive("dev admin client secret"))
}

// devFile is the declarative file of the demo resources: a demo API, a client for it, and an administrator
// holding every management scope.
func devFile(secret, adminSecret string) (*config.File, error) {
	yaml := fmt.Sprintf(`
apis:
  - identifier: %s
    name: Demo API
    scopes:
      - name: read
        description: Read items
      - name: write
        description: Create and change items
clients:
  - client_id: %s
    name: Demo client
    client_secret: ${DEMO_SECRET}
    grants:
      - audience: %s
        scopes: [read, write]
  - client_id: %s
    name: Development administrator
    client_secret: ${ADMIN_SECRET}
    grants:
      - audience: %s
        scopes: [%s]
`, demoAudience, demoClientID, demoAudience, devAdminID, auth.ManagementAudience, strings.Join(auth.ManagementScopes, ", "))
	env := func(name string) (string, bool) {
		switch name {
		case "DEMO_SECRET":
			return secret, true
		case "ADMIN_SECRET":
			return adminSecret, true
		}
		return "", false
	}
	return config.Parse("(demo resources)", []byte(yaml), env)
}

// devRootKey reads the dev root key file, creating it (mode 0600) on the first run.
func devRootKey(path string) (*rootkey.Key, bool, error) {
	k, err := rootkey.ReadFile(path)
	if err == nil {
		return k, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	k = rootkey.Generate()
	if err := k.WriteFile(path); err != nil {
		return nil, false, err
	}
	return k, true, nil
}

func newDevCmd(stdout, stderr io.Writer) *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a local server with a demo API and client, no setup needed",
		Long: `Run a local authorization server for development: SQLite in ` + devDB + ` and a root key in
` + devKeyFile + ` (both in the working directory, made on the first run and reused after), a demo API and a demo
client. It prints a curl command that gets a token. Not for production: use 'gatehouse serve'.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			m, err := f.main(cmd, stderr)
			if err != nil {
				return err
			}
			if f.rootKeyFile == "" {
				var created bool
				if m.RootKey, created, err = devRootKey(devKeyFile); err != nil {
					return err
				}
				if created {
					m.Logger.Info("created root key file " + devKeyFile + " (mode 0600); keep it with " + devDB)
				}
			}
			secret, adminSecret := devSecret(m.RootKey), devAdminSecret(m.RootKey)
			if m.extra, err = devFile(secret, adminSecret); err != nil {
				return err
			}
			if err := m.Open(cmd.Context()); err != nil {
				return err
			}
			defer m.Close()
			printDevBanner(stdout, m, secret, adminSecret)
			return m.Serve(cmd.Context())
		},
	}
	f.register(cmd, "sqlite:"+devDB)
	return cmd
}

func printDevBanner(w io.Writer, m *Main, secret, adminSecret string) {
	fmt.Fprintf(w, `
Gatehouse dev server on %[1]s  (issuer %[2]s)
  database   %[3]s, root key in %[4]s (keep the two together)
  demo API   %[5]s  scopes: read write
  client     %[6]s  secret: %[7]s

Get a token:
  curl -s %[1]s/oauth/token -d grant_type=client_credentials \
    -d client_id=%[6]s -d client_secret=%[7]s -d audience=%[5]s

Administer it (management API %[1]s/api/v1, every management scope):
  export GATEHOUSE_SERVER=%[1]s GATEHOUSE_CLIENT_ID=%[8]s GATEHOUSE_CLIENT_SECRET=%[9]s
  gatehouse client list

Signing keys: %[1]s/.well-known/jwks.json   Discovery: %[1]s/.well-known/oauth-authorization-server
Press Ctrl-C to stop.

`, m.URL, m.IssuerURL, m.DB, devKeyFile, demoAudience, demoClientID, secret, devAdminID, adminSecret)
}
