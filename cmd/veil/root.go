package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/veil-dp/veil/client"
)

// globals are the flags every command shares, and where the running command reads and
// writes. execute resets them for each run.
type globals struct {
	host       string
	token      string
	tokenFile  string
	tokenStdin bool
	profile    string
	caFile     string
	daemon     string // the daemon's address connect resolved (keys upload state files)
	output     string
	in         io.Reader
	out        io.Writer
	errOut     io.Writer
	ran        bool // a command's RunE was reached: later errors are not cobra's usage errors
}

var g = &globals{in: os.Stdin, out: os.Stdout, errOut: os.Stderr}

// execute runs the CLI once with args. The error it returns, if any, is a *cliError that
// carries its exit code.
func execute(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	*g = globals{in: stdin, out: stdout, errOut: stderr}
	root := newRoot()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return nil
	}
	return &cliError{err: err, code: exitCode(err, g.ran)}
}

// run is main without os.Exit: it reports an error on stderr and returns the exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	err := execute(ctx, args, stdin, stdout, stderr)
	if err == nil {
		return exitOK
	}
	code := err.(*cliError).code
	output := g.output
	if !g.ran {
		// cobra may have failed before parsing the flags (an unknown command).
		output = outputInArgs(args, output)
	}
	reportError(stderr, output, err, code)
	return code
}

// outputInArgs finds -o FORMAT in args the way pflag would; def when there is none.
func outputInArgs(args []string, def string) string {
	out := def
	for i, a := range args {
		if a == "--" {
			break
		}
		switch {
		case (a == "-o" || a == "--output") && i+1 < len(args):
			out = args[i+1]
		case strings.HasPrefix(a, "--output="):
			out = strings.TrimPrefix(a, "--output=")
		case strings.HasPrefix(a, "-o") && len(a) > 2:
			out = strings.TrimPrefix(strings.TrimPrefix(a, "-o"), "=")
		}
	}
	return out
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "veil",
		Short:         "Veil: compute on public data without handing it over",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			// export get's -o names a file (or a format); every other command's is the format.
			if f := cmd.Flags().Lookup("output"); f != nil && f == cmd.Root().PersistentFlags().Lookup("output") {
				if _, ok := outputFormats[g.output]; !ok {
					return usageErr("-o %q: use table, json or yaml", g.output)
				}
			}
			return nil
		},
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.host, "host", "", "daemon address: unix:///path/veil.sock or https://host:port (env VEIL_HOST)")
	pf.StringVar(&g.caFile, "ca-file", "", "verify an https:// daemon against the CA certificates in this PEM file instead of the system's (env VEIL_CA_FILE)")
	pf.StringVar(&g.token, "token", "", "bearer token, or - to read it from standard input (env VEIL_TOKEN)")
	pf.StringVar(&g.tokenFile, "token-file", "", "read the bearer token from this file (mode 0600 or stricter)")
	pf.BoolVar(&g.tokenStdin, "token-stdin", false, "read the bearer token from standard input")
	pf.StringVar(&g.profile, "profile", "", "profile in the config file (env VEIL_PROFILE)")
	pf.StringVarP(&g.output, "output", "o", "table", "output format: table, json or yaml")
	root.AddCommand(newInitCmd(), newServeCmd(), newRunnerCmd(), newConfigCmd(), newWhoamiCmd(), newZoneCmd(), newPrincipalCmd(),
		newDatasetCmd(), newGrantCmd(), newJobCmd(), newReviewCmd(), newExportCmd(), newAuditCmd(), newBudgetCmd(), newBenchCmd())
	root.AddCommand(newHECmd(), newRuntimeCmd(), newDevCmd(), newFusionCmd())
	root.AddCommand(newVersionCmd(), newDoctorCmd(), newPlatformCmd())
	root.AddCommand(newBackupCmd(), newRestoreCmd(), newKeyCmd())
	root.SetFlagErrorFunc(flagError)
	instrument(root)
	addExamples(root)
	completions(root)
	return root
}

// groupAnnotation marks a command that only groups subcommands.
const groupAnnotation = "veil-group"

// instrument marks, for every command, when its RunE is reached (errors before that are
// cobra's usage errors), and gives command groups a RunE that refuses an unknown
// subcommand with a usage error instead of printing help and succeeding.
func instrument(cmd *cobra.Command) {
	for _, c := range cmd.Commands() {
		instrument(c)
	}
	if cmd.RunE == nil && cmd.Run == nil && cmd.HasSubCommands() && cmd.HasParent() {
		if cmd.Annotations == nil {
			cmd.Annotations = map[string]string{}
		}
		cmd.Annotations[groupAnnotation] = "true"
		cmd.RunE = func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageErr("unknown command %q for %q (see %s --help)", args[0], cmd.CommandPath(), cmd.CommandPath())
			}
			return cmd.Help()
		}
	}
	if run := cmd.RunE; run != nil {
		cmd.RunE = func(cmd *cobra.Command, args []string) error {
			g.ran = true
			return run(cmd, args)
		}
	}
}

// defaultHost is where a daemon started with the default data directory listens.
const defaultHost = "unix:///var/lib/veil/veil.sock"

// connect resolves the daemon address, token and CA file: flag, then environment, then the
// config file's profile (its CA file only for its own host), then the default socket. A token given with --token -, --token-stdin or
// --token-file counts as a flag.
func connect() (*client.Client, error) {
	host := g.host
	token, err := flagToken()
	if err != nil {
		return nil, err
	}
	if host == "" {
		host = os.Getenv("VEIL_HOST")
	}
	if token == "" {
		token = os.Getenv("VEIL_TOKEN")
	}
	caFile := g.caFile
	if caFile == "" {
		caFile = os.Getenv("VEIL_CA_FILE")
	}
	if host == "" || token == "" || caFile == "" {
		c, err := loadConfig()
		if err != nil {
			return nil, err
		}
		name := g.profile
		if name == "" {
			name = os.Getenv("VEIL_PROFILE")
		}
		if name == "" {
			name = c.Current
		}
		if name != "" {
			p, ok := c.Profiles[name]
			if !ok {
				return nil, notFoundErr("no profile %q in %s (veil config list shows them)", name, configPath())
			}
			if host == "" {
				host = p.Host
			}
			if token == "" {
				token = p.Token
			}
			if caFile == "" && host == p.Host {
				caFile = p.CAFile
			}
		}
	}
	if host == "" {
		host = defaultHost
	}
	var opts []client.Option
	if caFile != "" {
		opts = append(opts, client.WithCAFile(caFile))
	}
	c, err := client.New(host, token, opts...)
	if err != nil {
		return nil, &exitError{exitUsage, err}
	}
	g.daemon = host
	return c, nil
}

// maxToken bounds what is read as a token: a Veil token is 48 characters.
const maxToken = 4096

// flagToken returns the token given on the command line: --token VALUE, --token - or
// --token-stdin (standard input), or --token-file FILE; "" if none was given.
func flagToken() (string, error) {
	given := 0
	for _, set := range []bool{g.token != "", g.tokenFile != "", g.tokenStdin} {
		if set {
			given++
		}
	}
	if given > 1 {
		return "", usageErr("give the token one way: --token, --token-file or --token-stdin")
	}
	switch {
	case g.token == "-" || g.tokenStdin:
		return readToken(g.in, "standard input")
	case g.tokenFile != "":
		f, err := os.Open(g.tokenFile)
		if err != nil {
			return "", fmt.Errorf("--token-file: %w", err)
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			return "", err
		}
		// Like ssh with a private key: a token others can read is refused, not used.
		if fi.Mode().IsRegular() && fi.Mode().Perm()&0o077 != 0 {
			return "", &exitError{exitForbidden, fmt.Errorf("--token-file %s has mode %04o: others can read the token; run chmod 600 %s", g.tokenFile, fi.Mode().Perm(), g.tokenFile)}
		}
		return readToken(f, g.tokenFile)
	}
	return g.token, nil
}

// readToken reads a token: the first line of r, bounded, without surrounding space.
func readToken(r io.Reader, from string) (string, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxToken+1))
	if err != nil {
		return "", fmt.Errorf("read the token from %s: %w", from, err)
	}
	if len(b) > maxToken {
		return "", usageErr("%s holds more than %d bytes: it is not a token", from, maxToken)
	}
	line, _, _ := strings.Cut(string(b), "\n")
	tok := strings.TrimSpace(line)
	if tok == "" {
		return "", usageErr("%s holds no token", from)
	}
	return tok, nil
}

var outputFormats = map[string]bool{"table": true, "json": true, "yaml": true}

// encode writes v as indented JSON or as YAML.
func encode(w io.Writer, format string, v any) error {
	if format == "json" {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	var generic any
	if err := json.Unmarshal(b, &generic); err != nil {
		return err
	}
	out, err := yaml.Marshal(generic)
	if err != nil {
		return err
	}
	_, err = w.Write(out)
	return err
}

// print writes v as JSON or YAML, or as a table of headers and rows.
func print(v any, headers []string, rows [][]string) error {
	switch g.output {
	case "json", "yaml":
		return encode(g.out, g.output, v)
	case "table", "":
		tw := tabwriter.NewWriter(g.out, 0, 4, 2, ' ', 0)
		if len(headers) > 0 {
			fmt.Fprintln(tw, strings.Join(headers, "\t"))
		}
		for _, r := range rows {
			fmt.Fprintln(tw, strings.Join(r, "\t"))
		}
		return tw.Flush()
	}
	return usageErr("unknown output format %q: use table, json or yaml", g.output)
}

// kv prints key-value pairs as a two-column table.
func kv(v any, pairs ...string) error {
	var rows [][]string
	for i := 0; i+1 < len(pairs); i += 2 {
		rows = append(rows, []string{pairs[i] + ":", pairs[i+1]})
	}
	return print(v, nil, rows)
}

// say is for commands that report what they did: text for people, v as JSON or YAML.
func say(v any, format string, a ...any) error {
	if isTable() {
		_, err := fmt.Fprintf(g.out, format, a...)
		return err
	}
	return print(v, nil, nil)
}

func isTable() bool { return g.output == "table" || g.output == "" }

// stamp is the one format of times in the CLI's output: RFC 3339 in UTC, "-" for none.
func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// stampText reformats a time the API sent as text (grants are passed through as JSON
// maps); anything that is not a time is returned as it is.
func stampText(s string) string {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return s
	}
	return stamp(t)
}

// progress writes a line of a long wait on stderr, rewriting it in place on a terminal.
type progress struct {
	w    io.Writer
	live bool
}

func newProgress(w io.Writer) *progress {
	f, ok := w.(*os.File)
	if !ok {
		return &progress{w: w}
	}
	st, err := f.Stat()
	return &progress{w: w, live: err == nil && st.Mode()&os.ModeCharDevice != 0}
}

func (p *progress) line(s string) {
	if p.live {
		fmt.Fprintf(p.w, "\r\033[K%s", s)
	} else {
		fmt.Fprintln(p.w, s)
	}
}

func (p *progress) done() {
	if p.live {
		fmt.Fprintln(p.w)
	}
}
