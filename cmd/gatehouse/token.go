package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// tokenFlags are the flags of gatehouse token.
type tokenFlags struct {
	url, clientID, clientSecret, audience, resource, scope, auth string
	json, quiet                                                  bool
	timeout                                                      time.Duration
}

func newTokenCmd(stdout, stderr io.Writer) *cobra.Command {
	var f tokenFlags
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Get an access token from any OAuth 2.0 token endpoint (client credentials)",
		Long: `Get an access token with the client credentials grant from any token endpoint: Gatehouse, Auth0,
Cognito, Okta. Prints the JSON response, or only the access token with -q.

The secret may come from GATEHOUSE_CLIENT_SECRET instead of the command line (which other users can see).
Examples:
  gatehouse token --url http://127.0.0.1:8080/oauth/token --client-id demo-client \
      --client-secret "$SECRET" --audience https://api.example.com/v1 --scope read
  curl -H "Authorization: Bearer $(gatehouse token -q …)" https://api.example.com/v1/items`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := bindEnv(cmd, os.LookupEnv); err != nil {
				return err
			}
			return f.run(cmd, stdout, stderr)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.url, "url", "", "token endpoint URL (required), e.g. http://127.0.0.1:8080/oauth/token")
	fl.StringVar(&f.clientID, "client-id", "", "client_id (required)")
	fl.StringVar(&f.clientSecret, "client-secret", "", "client_secret (or GATEHOUSE_CLIENT_SECRET)")
	fl.StringVar(&f.audience, "audience", "", "audience: the API identifier (Auth0 style)")
	fl.StringVar(&f.resource, "resource", "", "resource: the API identifier (RFC 8707 style)")
	fl.StringVar(&f.scope, "scope", "", "space-separated scopes (default: all granted)")
	fl.StringVar(&f.auth, "auth", "basic", "client authentication: basic (client_secret_basic) or post (client_secret_post)")
	fl.BoolVar(&f.json, "json", false, "send a JSON body (Auth0 style) instead of a form")
	fl.BoolVarP(&f.quiet, "quiet", "q", false, "print only the access token")
	fl.DurationVar(&f.timeout, "timeout", 30*time.Second, "request timeout")
	return cmd
}

func (f *tokenFlags) run(cmd *cobra.Command, stdout, stderr io.Writer) error {
	switch {
	case f.url == "":
		return usageError{errors.New("--url is required")}
	case f.clientID == "":
		return usageError{errors.New("--client-id is required")}
	case f.clientSecret == "":
		return usageError{errors.New("--client-secret (or GATEHOUSE_CLIENT_SECRET) is required")}
	case f.auth != "basic" && f.auth != "post":
		return usageError{fmt.Errorf("--auth %q: use basic or post", f.auth)}
	}
	if u, err := url.Parse(f.url); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usageError{fmt.Errorf("--url %q is not an http(s) URL", f.url)}
	}
	params := map[string]string{"grant_type": "client_credentials"}
	for k, v := range map[string]string{"audience": f.audience, "resource": f.resource, "scope": f.scope} {
		if v != "" {
			params[k] = v
		}
	}
	if f.auth == "post" {
		params["client_id"], params["client_secret"] = f.clientID, f.clientSecret
	}
	var body []byte
	var contentType string
	if f.json {
		body, _ = json.Marshal(params)
		contentType = "application/json"
	} else {
		form := url.Values{}
		for k, v := range params {
			form.Set(k, v)
		}
		body, contentType = []byte(form.Encode()), "application/x-www-form-urlencoded"
	}
	req, err := http.NewRequestWithContext(cmd.Context(), http.MethodPost, f.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("Accept", "application/json")
	if f.auth == "basic" {
		req.SetBasicAuth(url.QueryEscape(f.clientID), url.QueryEscape(f.clientSecret)) // RFC 6749 §2.3.1
	}
	resp, err := (&http.Client{Timeout: f.timeout}).Do(req)
	if err != nil {
		return fmt.Errorf("token request: %w", err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("read token response: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "token endpoint answered %s\n", resp.Status)
		stderr.Write(bytes.TrimSpace(raw))
		fmt.Fprintln(stderr)
		return errors.New("no token")
	}
	if !f.quiet {
		stdout.Write(bytes.TrimSpace(raw))
		fmt.Fprintln(stdout)
		return nil
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(raw, &tok); err != nil || strings.TrimSpace(tok.AccessToken) == "" {
		return errors.New("the response has no access_token")
	}
	fmt.Fprintln(stdout, tok.AccessToken)
	return nil
}
