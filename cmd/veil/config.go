package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"

	"github.com/spf13/cobra"
	"gopkg.in/yaml.v3"
)

// config is the CLI's config file: named profiles, each a daemon address and a token, like
// kubectl's contexts. It holds tokens, so it is written owner-only and atomically.
type config struct {
	Current  string             `yaml:"current"`
	Profiles map[string]profile `yaml:"profiles"`
}

type profile struct {
	Host   string `yaml:"host"`
	Token  string `yaml:"token"`
	CAFile string `yaml:"ca_file,omitempty"` // the CA of an https:// host
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

// maxConfig bounds the config file read: profiles are a few lines each.
const maxConfig = 1 << 20

func loadConfig() (*config, error) {
	c := &config{Profiles: map[string]profile{}}
	path := configPath()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return c, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o077 != 0 {
		fmt.Fprintf(g.errOut, "veil: warning: %s has mode %04o: others can read its tokens; run chmod 600 %s\n", path, fi.Mode().Perm(), path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxConfig+1))
	if err != nil {
		return nil, fmt.Errorf("read config file %s: %w", path, err)
	}
	if len(b) > maxConfig {
		return nil, fmt.Errorf("config file %s is larger than %d bytes: it is not Veil's config", path, maxConfig)
	}
	if err := yaml.Unmarshal(b, c); err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	if c.Profiles == nil {
		c.Profiles = map[string]profile{}
	}
	return c, nil
}

// writeConfig replaces the config file atomically, owner-only: a temporary file in the same
// directory, written, fsynced and renamed over the old one, then the directory fsynced, so
// that a crash leaves the old file or the new one, never half of one, and the tokens are
// never readable by others, not even for a moment. A symlinked config file (dotfiles) is
// written through to its target.
func writeConfig(c *config) error {
	path := followLinks(configPath())
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create config directory: %w", err)
	}
	b, err := yaml.Marshal(c)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".config-*.yaml") // created 0600
	if err != nil {
		return fmt.Errorf("write config file: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the rename there is nothing left to remove
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("write config file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write config file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write config file: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write config file: %w", err)
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// followLinks follows path while it is a symbolic link, even to a file that does not exist
// yet (a dotfiles link made before the first set-profile).
func followLinks(path string) string {
	for range 40 { // as the kernel's limit on nested links
		fi, err := os.Lstat(path)
		if err != nil || fi.Mode()&os.ModeSymlink == 0 {
			return path
		}
		target, err := os.Readlink(path)
		if err != nil {
			return path
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(path), target)
		}
		path = target
	}
	return path
}

// profileView is a profile as the CLI shows it: never the token itself.
type profileView struct {
	Name     string `json:"name"`
	Host     string `json:"host"`
	CAFile   string `json:"ca_file,omitempty"`
	TokenSet bool   `json:"token_set"`
	Current  bool   `json:"current"`
	Config   string `json:"config"`
}

func viewOf(c *config, name string) profileView {
	p := c.Profiles[name]
	return profileView{Name: name, Host: p.Host, CAFile: p.CAFile, TokenSet: p.Token != "", Current: c.Current == name, Config: configPath()}
}

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "config", Short: "Manage CLI profiles (daemon address and token) in $VEIL_CONFIG or ~/.config/veil/config.yaml"}
	var host string
	set := &cobra.Command{
		Use:   "set-profile NAME [--host ADDR] [--ca-file PEM] [--token T | --token - | --token-stdin | --token-file F]",
		Short: "Save a profile and make it current (what is not given is kept from the profile's earlier version)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			token, err := flagToken()
			if err != nil {
				return err
			}
			c, err := loadConfig()
			if err != nil {
				return err
			}
			p, existed := c.Profiles[args[0]]
			if cmd.Flags().Changed("host") || !existed {
				p.Host = host
			}
			if token != "" {
				p.Token = token
			}
			if cmd.Flags().Changed("ca-file") {
				// Absolute: the profile is used from other directories.
				if p.CAFile, err = filepath.Abs(g.caFile); err != nil || g.caFile == "" {
					p.CAFile = g.caFile
				}
			}
			c.Profiles[args[0]] = p
			c.Current = args[0]
			if err := writeConfig(c); err != nil {
				return err
			}
			return say(viewOf(c, args[0]), "profile %s saved in %s and made current\n", args[0], configPath())
		},
	}
	set.Flags().StringVar(&host, "host", defaultHost, "daemon address")
	use := &cobra.Command{
		Use:   "use NAME",
		Short: "Make a profile current",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := loadConfig()
			if err != nil {
				return err
			}
			if _, ok := c.Profiles[args[0]]; !ok {
				return notFoundErr("no profile %q in %s (veil config list shows them)", args[0], configPath())
			}
			c.Current = args[0]
			if err := writeConfig(c); err != nil {
				return err
			}
			return say(viewOf(c, args[0]), "profile %s is current\n", args[0])
		},
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List the profiles (tokens are never shown)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := loadConfig()
			if err != nil {
				return err
			}
			names := make([]string, 0, len(c.Profiles))
			for n := range c.Profiles {
				names = append(names, n)
			}
			sort.Strings(names)
			views := []profileView{}
			var rows [][]string
			for _, n := range names {
				v := viewOf(c, n)
				views = append(views, v)
				cur, tok := "", "-"
				if v.Current {
					cur = "*"
				}
				if v.TokenSet {
					tok = "set"
				}
				rows = append(rows, []string{cur, n, v.Host, tok})
			}
			return print(views, []string{"CURRENT", "NAME", "HOST", "TOKEN"}, rows)
		},
	}
	current := &cobra.Command{
		Use:   "current",
		Short: "Show the current profile",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := loadConfig()
			if err != nil {
				return err
			}
			if c.Current == "" {
				return notFoundErr("no current profile in %s: veil config use NAME", configPath())
			}
			if _, ok := c.Profiles[c.Current]; !ok {
				return notFoundErr("the current profile %q is not in %s: veil config use NAME", c.Current, configPath())
			}
			return say(viewOf(c, c.Current), "%s\n", c.Current)
		},
	}
	del := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a profile and its token",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := loadConfig()
			if err != nil {
				return err
			}
			v := viewOf(c, args[0])
			if _, ok := c.Profiles[args[0]]; !ok {
				return notFoundErr("no profile %q in %s (veil config list shows them)", args[0], configPath())
			}
			delete(c.Profiles, args[0])
			if c.Current == args[0] {
				c.Current = ""
			}
			if err := writeConfig(c); err != nil {
				return err
			}
			if v.Current {
				return say(v, "profile %s deleted; no profile is current now (veil config use NAME)\n", args[0])
			}
			return say(v, "profile %s deleted\n", args[0])
		},
	}
	cmd.AddCommand(set, use, list, current, del)
	return cmd
}
