package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// The admin commands, `gatehouse <noun> <verb>`, administer a running server through its management API. They
// print data on stdout (tables for people, -o json for programs) and messages on stderr; they exit 1 when the
// server refuses or cannot be reached and 2 when they are called wrongly.

// defaultServer is the server the admin commands talk to without --server or GATEHOUSE_SERVER.
const defaultServer = "http://127.0.0.1:8080"

// adminFlags are the flags every admin command has, and where it writes.
type adminFlags struct {
	server   string
	insecure bool
	output   string
	timeout  time.Duration

	stdout, stderr io.Writer
}

// register adds the connection flags (and -o when output is true) to fs, the persistent flags of a noun.
func (a *adminFlags) register(fs *pflag.FlagSet, output bool) {
	fs.StringVar(&a.server, "server", "", "the server's URL (default $GATEHOUSE_SERVER, else "+defaultServer+")")
	fs.BoolVar(&a.insecure, "insecure", false, "allow plain http:// to a host other than loopback (the secret and tokens travel in the clear)")
	fs.DurationVar(&a.timeout, "timeout", 30*time.Second, "timeout of each request")
	if output {
		fs.StringVarP(&a.output, "output", "o", "table", "output format: table or json")
	}
}

// client returns the management API client the flags and GATEHOUSE_SERVER, GATEHOUSE_CLIENT_ID and
// GATEHOUSE_CLIENT_SECRET describe.
func (a *adminFlags) client() (*adminClient, error) {
	server := a.server
	if server == "" {
		server = os.Getenv("GATEHOUSE_SERVER")
	}
	if server == "" {
		server = defaultServer
	}
	if a.timeout <= 0 {
		return nil, usageError{errors.New("--timeout must be more than zero")}
	}
	return newAdminClient(server, os.Getenv("GATEHOUSE_CLIENT_ID"), os.Getenv("GATEHOUSE_CLIENT_SECRET"), a.insecure, a.timeout)
}

// wantJSON reports whether -o asks for JSON.
func (a *adminFlags) wantJSON() (bool, error) {
	switch a.output {
	case "table", "":
		return false, nil
	case "json":
		return true, nil
	}
	return false, usageError{fmt.Errorf("-o %q: use table or json", a.output)}
}

// newAdminCmds returns the nouns of the admin commands.
func newAdminCmds(stdout, stderr io.Writer) []*cobra.Command {
	a := &adminFlags{stdout: stdout, stderr: stderr}
	nouns := []*cobra.Command{newAPICmd(a), newClientCmd(a), newGrantCmd(a), newOrgCmd(a), newSigningKeyCmd(a), newAuditCmd(a)}
	for _, n := range nouns {
		a.register(n.PersistentFlags(), true)
	}
	return nouns
}

// newNoun returns a noun command: with no verb it prints its help, with an unknown one it is a usage error.
func newNoun(use, short, long string, verbs ...*cobra.Command) *cobra.Command {
	cmd := &cobra.Command{
		Use:   use + " <verb>",
		Short: short,
		Long:  long,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageError{fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath())}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(verbs...)
	return cmd
}

// argsNamed requires exactly the positional arguments named (e.g. "CLIENT", "SECRET_ID").
func argsNamed(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) < len(names):
			return usageError{fmt.Errorf("missing %s: %s", names[len(args)], cmd.UseLine())}
		case len(args) > len(names):
			return usageError{fmt.Errorf("unexpected argument %q: %s", args[len(names)], cmd.UseLine())}
		}
		for i, arg := range args {
			if strings.TrimSpace(arg) == "" {
				return usageError{fmt.Errorf("%s is empty", names[i])}
			}
		}
		return nil
	}
}

// newListCmd returns a list verb with --limit (default defLimit; 0 for all).
func newListCmd(short string, defLimit int, run func(cmd *cobra.Command, limit int) error) *cobra.Command {
	var limit int
	cmd := &cobra.Command{
		Use:   "list",
		Short: short,
		Args:  argsNamed(),
		RunE:  func(cmd *cobra.Command, _ []string) error { return run(cmd, limit) },
	}
	cmd.Flags().IntVar(&limit, "limit", defLimit, "show at most this many (0: all of them)")
	return cmd
}

// changed reports whether any of the named flags was given.
func changed(cmd *cobra.Command, names ...string) bool {
	for _, n := range names {
		if cmd.Flags().Changed(n) {
			return true
		}
	}
	return false
}

// Verbs shared by every noun.

// getResource GETs path and prints it.
func getResource[T any](ctx context.Context, a *adminFlags, path string, detail func(T) []field) error {
	asJSON, err := a.wantJSON()
	if err != nil {
		return err
	}
	c, err := a.client()
	if err != nil {
		return err
	}
	resp, err := c.do(ctx, http.MethodGet, path, nil, "")
	if err != nil {
		return err
	}
	return printItem(a, asJSON, resp.Body, detail)
}

// writeResource sends body to path with method (POST, PATCH) and prints the answer. For a PATCH with ifMatch, it
// first GETs path and sends its ETag as If-Match, so the change fails (412) if someone else changed the resource
// between the two.
func writeResource[T any](ctx context.Context, a *adminFlags, method, path string, body any, ifMatch bool, detail func(T) []field) (json.RawMessage, error) {
	asJSON, err := a.wantJSON()
	if err != nil {
		return nil, err
	}
	c, err := a.client()
	if err != nil {
		return nil, err
	}
	etag := ""
	if ifMatch {
		resp, err := c.do(ctx, http.MethodGet, path, nil, "")
		if err != nil {
			return nil, err
		}
		if etag = resp.ETag; etag == "" {
			return nil, errors.New("the server sent no ETag for " + path + "; leave out --if-match")
		}
	}
	resp, err := c.do(ctx, method, path, body, etag)
	if err != nil {
		return nil, err
	}
	return resp.Body, printItem(a, asJSON, resp.Body, detail)
}

// deleteResource DELETEs path and says on stderr what it deleted.
func deleteResource(ctx context.Context, a *adminFlags, path, what string) error {
	c, err := a.client()
	if err != nil {
		return err
	}
	if _, err := c.do(ctx, http.MethodDelete, path, nil, ""); err != nil {
		return err
	}
	fmt.Fprintf(a.stderr, "deleted %s\n", what)
	return nil
}

// listing says how a list verb shows its items.
type listing[T any] struct {
	header []string
	row    func(T) []string
	key    func(T) string // sorts the items, in tables and JSON; nil keeps the server's order
}

// listResources gets every item of a list endpoint (or limit of them) and prints them.
func listResources[T any](ctx context.Context, a *adminFlags, path string, q map[string]string, limit int, l listing[T]) error {
	asJSON, err := a.wantJSON()
	if err != nil {
		return err
	}
	if limit < 0 {
		return usageError{errors.New("--limit must not be negative")}
	}
	c, err := a.client()
	if err != nil {
		return err
	}
	query := map[string][]string{}
	for k, v := range q {
		if v != "" {
			query[k] = []string{v}
		}
	}
	items, more, err := c.list(ctx, path, query, limit)
	if err != nil {
		return err
	}
	if err := printList(a, asJSON, items, l); err != nil {
		return err
	}
	if more {
		fmt.Fprintf(a.stderr, "showing the first %d; there are more (raise --limit, or 0 for all)\n", limit)
	}
	return nil
}

// Output.

// field is one line of a resource shown as a table: a label and its value; "" continues the field above.
type field struct{ label, value string }

// printItem prints one resource: the API's JSON, indented, or a table of its fields.
func printItem[T any](a *adminFlags, asJSON bool, raw json.RawMessage, detail func(T) []field) error {
	if asJSON {
		return printJSON(a.stdout, raw)
	}
	var v T
	if err := json.Unmarshal(raw, &v); err != nil {
		return fmt.Errorf("the server's answer is not what this command expects: %w", err)
	}
	tw := newTable(a.stdout)
	for _, f := range detail(v) {
		label := f.label
		if label != "" {
			label += ":"
		}
		fmt.Fprintf(tw, "%s\t%s\n", label, cell(f.value))
	}
	return tw.Flush()
}

// printList prints items: {"items": […]} indented, or a table.
func printList[T any](a *adminFlags, asJSON bool, items []json.RawMessage, l listing[T]) error {
	values := make([]T, len(items))
	for i, raw := range items {
		if err := json.Unmarshal(raw, &values[i]); err != nil {
			return fmt.Errorf("the server's answer is not what this command expects: %w", err)
		}
	}
	order := make([]int, len(items))
	for i := range order {
		order[i] = i
	}
	if l.key != nil {
		slices.SortStableFunc(order, func(i, j int) int { return strings.Compare(l.key(values[i]), l.key(values[j])) })
	}
	if asJSON {
		sorted := make([]json.RawMessage, 0, len(items))
		for _, i := range order {
			sorted = append(sorted, items[i])
		}
		b, err := json.Marshal(struct {
			Items []json.RawMessage `json:"items"`
		}{sorted})
		if err != nil {
			return err
		}
		return printJSON(a.stdout, b)
	}
	rows := make([][]string, 0, len(items))
	for _, i := range order {
		rows = append(rows, l.row(values[i]))
	}
	return writeTable(a.stdout, l.header, rows)
}

// writeTable writes a header and rows, aligned; an empty cell shows as "-".
func writeTable(w io.Writer, header []string, rows [][]string) error {
	tw := newTable(w)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		cells := make([]string, len(r))
		for i, c := range r {
			cells[i] = cell(c)
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	return tw.Flush()
}

func newTable(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 0, 2, ' ', 0) }

// cell makes s fit a table cell: "-" for nothing, tabs and line breaks as spaces.
func cell(s string) string {
	if s == "" {
		return "-"
	}
	return strings.NewReplacer("\t", " ", "\n", " ", "\r", " ").Replace(s)
}

// printJSON writes raw indented, with a final newline.
func printJSON(w io.Writer, raw []byte) error {
	var buf bytes.Buffer
	if err := json.Indent(&buf, bytes.TrimSpace(raw), "", "  "); err != nil {
		return fmt.Errorf("the server's answer is not JSON: %w", err)
	}
	buf.WriteByte('\n')
	_, err := w.Write(buf.Bytes())
	return err
}

// Formatting of values.

// timeCell formats t in RFC 3339, UTC; "-" for none.
func timeCell(t *time.Time) string {
	if t == nil || t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// secondsCell formats a count of seconds as a short duration: 86400 → "24h", 5400 → "1h30m".
func secondsCell(s int64) string {
	if s == 0 {
		return ""
	}
	d := (time.Duration(s) * time.Second).String() // "1h30m0s"
	if strings.HasSuffix(d, "m0s") {
		d = d[:len(d)-2]
	}
	if strings.HasSuffix(d, "h0m") {
		d = d[:len(d)-2]
	}
	return d
}

// parseSeconds reads a --FLAG duration as whole seconds.
func parseSeconds(flag string, d time.Duration) (int64, error) {
	if d <= 0 || d%time.Second != 0 {
		return 0, usageError{fmt.Errorf("--%s %s: give a whole number of seconds, more than zero (e.g. 90s, 15m, 24h)", flag, d)}
	}
	return int64(d / time.Second), nil
}

func boolCell(b bool, yes, no string) string {
	if b {
		return yes
	}
	return no
}

// splitScopes reads --scope values: each may hold several names separated by spaces (a scope name has none), as
// in OAuth's scope parameter.
func splitScopes(values []string) []string {
	out := []string{}
	for _, v := range values {
		out = append(out, strings.Fields(v)...)
	}
	return out
}
