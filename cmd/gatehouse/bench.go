package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/gatehouse/gatehouse/internal/auth"
	"github.com/gatehouse/gatehouse/internal/bench"
)

// benchMaxConc is the highest --concurrency level; benchMaxInstances the highest --instances.
const (
	benchMaxConc      = 4096
	benchMaxInstances = 64
)

// benchFlags are the flags of gatehouse bench.
type benchFlags struct {
	modes       []string
	algs        []string
	concurrency []int
	duration    time.Duration
	warmup      time.Duration
	markdown    bool
	postgres    string // the PostgreSQL server to create the bench's database on; "" for SQLite
	redis       string
	instances   int
}

func newBenchCmd(stdout, stderr io.Writer) *cobra.Command {
	var f benchFlags
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Load-test token issuance (or introspection) and compare it with ceilings measured in the same run",
		Long: `Load-test token issuance on this machine. The bench starts 'gatehouse serve' as a separate process on a free
127.0.0.1 port, with a fresh SQLite database in a temporary directory, one API per signing algorithm and one
client, and requests tokens from it with c concurrent keep-alive connections for each concurrency level.

--modes chooses what the server is loaded with: token (client_credentials, the default), exchange (one API key
exchanged for a token, RFC 8693), verify (POST /api/v1/apikeys/verify, a gateway checking one API key with a
management token) and introspect (POST /oauth/introspect of a valid token of the algorithm, RFC 7662, as a client
holding introspect:tokens). token, exchange and introspect run once per algorithm; verify once. verify and
introspect sign nothing: they are measured against the trivial handler only.

Next to every result it measures two ceilings in the same run, so that results on a shared or noisy machine are
read as ratios: the raw JWS signing rate of the algorithm (the bare signature primitive in this process, one goroutine per CPU, servers
idle), and the request rate of a trivial net/http handler in a separate process under the same load generator,
request and concurrency. Within each cell the server, the trivial handler and the signing take turns in slices of
at most a second, so that all three see the same noise. It also reports the CPU time each process spends per
request, and samples the server's resident memory every 100 ms.

--instances N starts N 'gatehouse serve' processes together on the same database and spreads the load
generator's connections round robin over them, each connection sticking to one; the report gives their total
throughput, their CPU time per request summed, and each one's peak memory. The trivial handler stays one process:
it is the ceiling of the machine, whose CPUs the instances share. --postgres URL runs the instances on PostgreSQL
instead of SQLite: the bench connects to URL (a role that may create databases), creates a database named
gatehouse_bench_<random> there, and drops it at the end. --redis URL passes --redis to every instance, so that
they share rate limits through that Redis. The report names the kind of database, never its URL.

A full run with the defaults takes about two minutes.

The report goes to stdout (a table, or markdown for BENCHMARKS.md with --markdown), progress to stderr. The
bench exits 0 when it ran, whether or not the targets were met.

Every flag also reads the environment variable GATEHOUSE_<FLAG> (e.g. GATEHOUSE_DURATION).
Examples:
  gatehouse bench
  gatehouse bench --algs ES256 --concurrency 1,8,32 --duration 10s --markdown
  gatehouse bench --modes exchange,verify --concurrency 16,64
  gatehouse bench --modes introspect --algs ES256,EdDSA
  gatehouse bench --algs ES256 --postgres postgres://postgres@127.0.0.1:5432/postgres --instances 3 --redis redis://127.0.0.1:6379`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := bindEnv(cmd, os.LookupEnv); err != nil {
				return err
			}
			o, err := f.options(cmd)
			if err != nil {
				return err
			}
			if o.Binary, err = os.Executable(); err != nil {
				return fmt.Errorf("find the gatehouse binary to run the server: %w", err)
			}
			o.Progress = stderr
			if f.postgres == "" {
				return bench.Run(cmd.Context(), o, stdout)
			}
			db, err := createBenchDB(cmd.Context(), f.postgres)
			if err != nil {
				return err
			}
			fmt.Fprintf(stderr, "bench: created database %s; it is dropped at the end\n", db.name)
			defer func() {
				if err := db.drop(); err != nil {
					fmt.Fprintf(stderr, "bench: could not drop database %s, drop it yourself: %v\n", db.name, err)
				}
			}()
			o.DB = db.dsn
			return bench.Run(cmd.Context(), o, stdout)
		},
	}
	fl := cmd.Flags()
	fl.StringSliceVar(&f.modes, "modes", []string{"token"}, "what to load the server with: token, exchange, verify, introspect")
	fl.StringSliceVar(&f.algs, "algs", []string{"RS256", "ES256", "EdDSA"}, "signing algorithms to bench: RS256, ES256, EdDSA")
	fl.IntSliceVar(&f.concurrency, "concurrency", []int{1, 16, 64}, "concurrent connections, one cell per level")
	fl.DurationVar(&f.duration, "duration", 5*time.Second, "measured time per target in each cell")
	fl.DurationVar(&f.warmup, "warmup", time.Second, "unmeasured load before each cell")
	fl.BoolVar(&f.markdown, "markdown", false, "print the report as markdown (for BENCHMARKS.md)")
	fl.StringVar(&f.postgres, "postgres", "", "PostgreSQL server (postgres://USER@HOST:PORT/DB) to create the bench's database on; SQLite without it")
	fl.StringVar(&f.redis, "redis", "", "Redis URL (redis://HOST:PORT) the instances share rate limits through")
	fl.IntVar(&f.instances, "instances", 1, "gatehouse serve processes sharing the database")
	cmd.AddCommand(newBenchTrivialCmd())
	return cmd
}

// options validates the flags; its errors are usage errors.
func (f *benchFlags) options(cmd *cobra.Command) (bench.Options, error) {
	o := bench.Options{Duration: f.duration, Warmup: f.warmup, Markdown: f.markdown, CommandLine: benchCommandLine(cmd),
		Redis: f.redis, Instances: f.instances}
	for _, s := range f.modes {
		m := bench.Mode(strings.TrimSpace(s))
		if !slices.Contains(bench.Modes, m) {
			return o, usageError{fmt.Errorf("--modes: %q is not a mode: use token, exchange, verify or introspect", s)}
		}
		if slices.Contains(o.Modes, m) {
			return o, usageError{fmt.Errorf("--modes: %s is listed twice", m)}
		}
		o.Modes = append(o.Modes, m)
	}
	for _, s := range f.algs {
		alg := auth.Algorithm(strings.TrimSpace(s))
		if !alg.Valid() {
			return o, usageError{fmt.Errorf("--algs: %q is not supported: use RS256, ES256 or EdDSA", s)}
		}
		if slices.Contains(o.Algs, alg) {
			return o, usageError{fmt.Errorf("--algs: %s is listed twice", alg)}
		}
		o.Algs = append(o.Algs, alg)
	}
	for _, c := range f.concurrency {
		if c < 1 || c > benchMaxConc {
			return o, usageError{fmt.Errorf("--concurrency: %d is not between 1 and %d", c, benchMaxConc)}
		}
		if slices.Contains(o.Concurrency, c) {
			return o, usageError{fmt.Errorf("--concurrency: %d is listed twice", c)}
		}
		o.Concurrency = append(o.Concurrency, c)
	}
	switch {
	case len(o.Modes) == 0:
		return o, usageError{errors.New("--modes: name at least one mode")}
	case len(o.Algs) == 0:
		return o, usageError{errors.New("--algs: name at least one algorithm")}
	case len(o.Concurrency) == 0:
		return o, usageError{errors.New("--concurrency: give at least one level")}
	case f.duration <= 0:
		return o, usageError{errors.New("--duration must be positive")}
	case f.warmup < 0:
		return o, usageError{errors.New("--warmup must not be negative")}
	case f.instances < 1 || f.instances > benchMaxInstances:
		return o, usageError{fmt.Errorf("--instances: %d is not between 1 and %d", f.instances, benchMaxInstances)}
	case f.postgres != "" && !isPostgresURL(f.postgres):
		// Not repeated: it may hold a password.
		return o, usageError{errors.New("--postgres: not a PostgreSQL URL: use postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE, " +
			"a database to connect to as a role that may create databases")}
	}
	if err := checkRedis(f.redis); err != nil {
		return o, err
	}
	return o, nil
}

// isPostgresURL reports whether s is a postgres:// or postgresql:// URL that the driver can read.
func isPostgresURL(s string) bool {
	_, err := pgx.ParseConfig(s)
	return err == nil && isPostgres(s)
}

// benchDB is the PostgreSQL database of one bench run.
type benchDB struct {
	name   string
	dsn    string          // its URL: the server URL's, with the database's name as the path
	server *pgx.ConnConfig // the server, to create the database and to drop it
}

// createBenchDB creates an empty database named gatehouse_bench_<random> on the PostgreSQL server that server, a
// URL that isPostgresURL accepts, names. The command does it with the driver the binary has for serve --db, rather
// than internal/bench, which knows no database driver.
func createBenchDB(ctx context.Context, server string) (*benchDB, error) {
	cfg, err := pgx.ParseConfig(server)
	u, uerr := url.Parse(server)
	if err != nil || uerr != nil {
		return nil, usageError{errors.New("--postgres: not a PostgreSQL URL")} // not repeated: it may hold a password
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = 10 * time.Second
	}
	db := &benchDB{name: "gatehouse_bench_" + strings.ToLower(rand.Text()[:12]), server: cfg}
	u.Path, u.RawPath = "/"+db.name, ""
	db.dsn = u.String()
	if err := db.exec(ctx, "CREATE DATABASE "+db.name); err != nil {
		return nil, fmt.Errorf("create the bench's database: %w", err)
	}
	return db, nil
}

// drop drops the database, even if the instances left connections behind.
func (db *benchDB) drop() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	return db.exec(ctx, "DROP DATABASE IF EXISTS "+db.name+" WITH (FORCE)")
}

// exec runs one statement on the server's database, on a connection of its own.
func (db *benchDB) exec(ctx context.Context, stmt string) error {
	conn, err := pgx.ConnectConfig(ctx, db.server)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	_, err = conn.Exec(ctx, stmt)
	return err
}

// benchCommandLine returns the command line that gives cmd's settings: the GATEHOUSE_* variables that set a flag,
// then the flags given on the command line.
func benchCommandLine(cmd *cobra.Command) string {
	var env, args []string
	cmd.Flags().VisitAll(func(f *pflag.Flag) {
		val := f.Value.String()
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			val = strings.Join(sv.GetSlice(), ",")
		}
		if f.Name == "postgres" || f.Name == "redis" {
			val = redactURL(val)
		}
		switch {
		case f.Changed && f.Value.Type() == "bool" && val == "true":
			args = append(args, "--"+f.Name)
		case f.Changed:
			args = append(args, "--"+f.Name+"="+val)
		default:
			name := "GATEHOUSE_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
			if v, ok := os.LookupEnv(name); ok {
				if f.Name == "postgres" || f.Name == "redis" {
					v = redactURL(v)
				}
				env = append(env, name+"="+v)
			}
		}
	})
	return strings.Join(slices.Concat(env, []string{"gatehouse", "bench"}, args), " ")
}

// redactURL returns s with the password of its URL, if any, replaced by xxxxx, in the user information or in a
// password parameter (libpq's); "" for what is not a URL, which might hold a password where url.Parse cannot find it.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return ""
	}
	if q := u.Query(); q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

// newBenchTrivialCmd is the hidden `gatehouse bench serve-trivial ADDR`: the trivial-handler ceiling, run by the
// bench as a separate process like the server.
func newBenchTrivialCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "serve-trivial ADDR",
		Short:  "Serve the bench's trivial handler on ADDR (used by gatehouse bench)",
		Hidden: true,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError{errors.New("serve-trivial takes one argument, the address to listen on")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return bench.ServeTrivial(cmd.Context(), args[0])
		},
	}
}
