package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"

	"github.com/veil-dp/veil/client"
)

// globals are the flags every command shares.
type globals struct {
	host    string
	token   string
	profile string
	output  string
	out     io.Writer
}

var g = &globals{out: os.Stdout}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "veil",
		Short:         "Veil: compute on public data without handing it over",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	pf := root.PersistentFlags()
	pf.StringVar(&g.host, "host", "", "daemon address: unix:///path/veil.sock or http://host:port (env VEIL_HOST)")
	pf.StringVar(&g.token, "token", "", "bearer token (env VEIL_TOKEN)")
	pf.StringVar(&g.profile, "profile", "", "profile in the config file (env VEIL_PROFILE)")
	pf.StringVarP(&g.output, "output", "o", "table", "output format: table, json or yaml")
	root.AddCommand(newInitCmd(), newServeCmd(), newRunnerCmd(), newConfigCmd(), newWhoamiCmd(), newPrincipalCmd(),
		newDatasetCmd(), newGrantCmd(), newJobCmd(), newReviewCmd(), newExportCmd(), newAuditCmd(), newBudgetCmd(), newBenchCmd())
	root.AddCommand(newHECmd(), newRuntimeCmd(), newDevCmd(), newFusionCmd())
	return root
}

// config is the CLI's config file: named profiles, each a daemon address and a token, like
// kubectl's contexts.
type config struct {
	Current  string             `yaml:"current"`
	Profiles map[string]profile `yaml:"profiles"`
}

type profile struct {
	Host  string `yaml:"host"`
	Token string `yaml:"token"`
}

func configPath() string {
	if p := os.Getenv("VEIL_CONFIG"); p != "" {
		return p
	}
	dir, err := os.UserConfigDir()
	if err != nil {
		dir = "."
	}
	return filepath.Join(dir, "veil", "config.yaml")
}

func loadConfig() (*config, error) {
	c := &config{Profiles: map[string]profile{}}
	b, err := os.ReadFile(configPath())
	if os.IsNotExist(err) {
		return c, nil
	}
	if err != nil {
		return nil, err
	}
	if err := yaml.Unmarshal(b, c); err != nil {
		return nil, fmt.Errorf("config file %s: %w", configPath(), err)
	}
	if c.Profiles == nil {
		c.Profiles = map[string]profile{}
	}
	return c, nil
}

// defaultHost is where a daemon started with the default data directory listens.
const defaultHost = "unix:///var/lib/veil/veil.sock"

// connect resolves the daemon address and token: flag, then environment, then the config
// file's profile, then the default socket.
func connect() (*client.Client, error) {
	host, token := g.host, g.token
	if host == "" {
		host = os.Getenv("VEIL_HOST")
	}
	if token == "" {
		token = os.Getenv("VEIL_TOKEN")
	}
	if host == "" || token == "" {
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
				return nil, fmt.Errorf("no profile %q in %s", name, configPath())
			}
			if host == "" {
				host = p.Host
			}
			if token == "" {
				token = p.Token
			}
		}
	}
	if host == "" {
		host = defaultHost
	}
	return client.New(host, token)
}

// print writes v as JSON or YAML, or as a table of headers and rows.
func print(v any, headers []string, rows [][]string) error {
	switch g.output {
	case "json":
		enc := json.NewEncoder(g.out)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case "yaml":
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
		_, err = g.out.Write(out)
		return err
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
	return fmt.Errorf("unknown output format %q: use table, json or yaml", g.output)
}

// kv prints key-value pairs as a two-column table.
func kv(v any, pairs ...string) error {
	var rows [][]string
	for i := 0; i+1 < len(pairs); i += 2 {
		rows = append(rows, []string{pairs[i] + ":", pairs[i+1]})
	}
	return print(v, nil, rows)
}
