package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// TestEveryCommandHasExample: every command's --help shows an example.
func TestEveryCommandHasExample(t *testing.T) {
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Runnable() && !c.Hidden && c.Example == "" {
			t.Errorf("%s has no example: add it to examples in examples.go", c.CommandPath())
		}
		for _, s := range c.Commands() {
			walk(s)
		}
	}
	walk(newRoot())
	out, err := runVeil(t, "job", "plan", "--help")
	if err != nil || !strings.Contains(out, "Examples:\n  veil job plan --grant") {
		t.Errorf("job plan --help: %v\n%s", err, out)
	}
}

// TestFlagSuggestions: an unknown flag close to one the command has is named; one far from
// every flag is not.
func TestFlagSuggestions(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"job", "submit", "--grant", "g", "--epsilion", "1"}, "unknown flag: --epsilion (did you mean --epsilon?)"},
		{[]string{"job", "plan", "--grnat", "g"}, "(did you mean --grant?)"},
		{[]string{"job", "submit", "--zzzzzzzz"}, "unknown flag: --zzzzzzzz"},
	} {
		_, err := runVeil(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) || codeOf(err) != exitUsage {
			t.Errorf("%v: %v, want a usage error with %q", tc.args, err, tc.want)
		}
		if strings.HasSuffix(tc.want, "--zzzzzzzz") && strings.Contains(err.Error(), "did you mean") {
			t.Errorf("%v: a suggestion for a name far from every flag: %v", tc.args, err)
		}
	}
}

// TestStaticCompletions: profiles come from the config file, modes and formats from fixed
// lists.
func TestStaticCompletions(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.yaml")
	if err := os.WriteFile(cfg, []byte("current: acme\nprofiles:\n  acme: {host: unix:///nowhere.sock}\n  staging: {host: unix:///nowhere.sock}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("VEIL_CONFIG", cfg)
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"__complete", "config", "use", ""}, []string{"acme", "staging"}},
		{[]string{"__complete", "--profile", "st"}, []string{"staging"}},
		{[]string{"__complete", "job", "submit", "--noise", ""}, []string{"laplace", "gaussian"}},
		{[]string{"__complete", "job", "plan", "--mode", "d"}, []string{"dp"}},
		{[]string{"__complete", "budget", "show", "-o", ""}, []string{"table", "json", "yaml"}},
	} {
		out, err := runVeil(t, tc.args...)
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		got := lines[:len(lines)-1] // the last line is cobra's directive
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("%v: completes %v, want %v", tc.args, got, tc.want)
		}
	}
}
