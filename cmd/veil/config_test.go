package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestConfigProfiles drives veil config: tokens go in from standard input or a file, the
// file is owner-only and replaced atomically (nothing else is left in its directory), and no
// command ever prints a token.
func TestConfigProfiles(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("VEIL_CONFIG", filepath.Join(dir, "veil", "config.yaml"))
	const tokA, tokB = "veil_tokenAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "veil_tokenBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"
	tokFile := filepath.Join(dir, "b.token")
	if err := os.WriteFile(tokFile, []byte(tokB+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var printed []string
	run := func(stdin string, args ...string) (string, error) {
		t.Helper()
		out, errOut, err := runVeilIO(t, stdin, args...)
		printed = append(printed, out, errOut)
		return out, err
	}
	if _, err := run(tokA+"\n", "config", "set-profile", "a", "--host", "unix:///a.sock", "--token-stdin"); err != nil {
		t.Fatal(err)
	}
	if _, err := run(tokB, "config", "set-profile", "b", "--host", "http://127.0.0.1:1", "--token", "-"); err != nil {
		t.Fatal(err)
	}
	// A new host only: the token is kept.
	if _, err := run("", "config", "set-profile", "b", "--host", "http://127.0.0.1:2"); err != nil {
		t.Fatal(err)
	}
	c, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	if c.Profiles["a"].Token != tokA || c.Profiles["b"] != (profile{Host: "http://127.0.0.1:2", Token: tokB}) || c.Current != "b" {
		t.Fatalf("config after set-profile: %+v", c)
	}
	if _, err := run("", "config", "set-profile", "c", "--token-file", tokFile); err != nil {
		t.Fatal(err)
	}
	if c, _ := loadConfig(); c.Profiles["c"].Token != tokB || c.Profiles["c"].Host != defaultHost {
		t.Fatalf("profile c: %+v", c.Profiles["c"])
	}
	fi, err := os.Stat(configPath())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("config file mode %04o, want 0600", fi.Mode().Perm())
	}
	if di, _ := os.Stat(filepath.Dir(configPath())); di.Mode().Perm() != 0o700 {
		t.Errorf("config directory mode %04o, want 0700", di.Mode().Perm())
	}
	if ents, _ := os.ReadDir(filepath.Dir(configPath())); len(ents) != 1 {
		t.Errorf("config directory holds %d entries, want only config.yaml (no temporary file left)", len(ents))
	}

	out, err := run("", "-o", "json", "config", "list")
	if err != nil {
		t.Fatal(err)
	}
	var views []profileView
	if err := json.Unmarshal([]byte(out), &views); err != nil || len(views) != 3 || !views[2].Current || !views[0].TokenSet {
		t.Fatalf("config list -o json: %v\n%s", err, out)
	}
	if out, _ := run("", "config", "list"); !strings.Contains(out, "*  ") || !strings.Contains(out, "set") {
		t.Errorf("config list:\n%s", out)
	}
	if out, err := run("", "config", "current"); err != nil || out != "c\n" {
		t.Errorf("config current: %q, %v", out, err)
	}
	if _, err := run("", "config", "use", "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := run("", "config", "delete", "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := run("", "config", "current"); codeOf(err) != exitNotFound {
		t.Errorf("config current after deleting the current profile: %v, want exit %d", err, exitNotFound)
	}
	if _, err := run("", "config", "delete", "a"); codeOf(err) != exitNotFound {
		t.Errorf("config delete of a missing profile: %v, want exit %d", err, exitNotFound)
	}
	if _, err := run("", "config", "use", "nobody"); codeOf(err) != exitNotFound {
		t.Errorf("config use of a missing profile: %v, want exit %d", err, exitNotFound)
	}
	if c, _ := loadConfig(); len(c.Profiles) != 2 || c.Current != "" {
		t.Errorf("after delete: %+v", c)
	}
	for _, p := range printed {
		if strings.Contains(p, tokA) || strings.Contains(p, tokB) {
			t.Errorf("a token was printed:\n%s", p)
		}
	}

	// A symlinked config file (dotfiles) stays a symlink; its target is written.
	target := filepath.Join(dir, "dotfiles", "veil.yaml")
	os.MkdirAll(filepath.Dir(target), 0o700)
	link := filepath.Join(dir, "link.yaml")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	t.Setenv("VEIL_CONFIG", link)
	if _, err := run(tokA, "config", "set-profile", "x", "--token-stdin"); err != nil {
		t.Fatal(err)
	}
	if li, err := os.Lstat(link); err != nil || li.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the config symlink was replaced: %v", err)
	}
	if b, err := os.ReadFile(target); err != nil || !strings.Contains(string(b), tokA) {
		t.Errorf("the symlink's target was not written: %v", err)
	}
}

// TestTokenSources checks how a token reaches the CLI besides --token: a file others cannot
// read, standard input, never two ways at once, never an empty or oversized one.
func TestTokenSources(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("VEIL_CONFIG", filepath.Join(dir, "config.yaml"))
	t.Setenv("VEIL_TOKEN", "")
	tok := "veil_" + strings.Repeat("t", 43)
	ownerOnly, open := filepath.Join(dir, "owner.token"), filepath.Join(dir, "open.token")
	os.WriteFile(ownerOnly, []byte(tok+"\n"), 0o600)
	os.WriteFile(open, []byte(tok+"\n"), 0o644)
	os.Chmod(open, 0o644)
	for _, c := range []struct {
		name, stdin string
		args        []string
		want        string // the token, or "" for an error
		code        int
	}{
		{"file", "", []string{"--token-file", ownerOnly}, tok, 0},
		{"stdin", tok + "\n", []string{"--token-stdin"}, tok, 0},
		{"dash", "  " + tok + "  \nsecond line\n", []string{"--token", "-"}, tok, 0},
		{"flag", "", []string{"--token", tok}, tok, 0},
		{"file others can read", "", []string{"--token-file", open}, "", exitForbidden},
		{"missing file", "", []string{"--token-file", filepath.Join(dir, "none")}, "", exitNotFound},
		{"two ways", tok, []string{"--token", tok, "--token-stdin"}, "", exitUsage},
		{"empty stdin", "\n", []string{"--token-stdin"}, "", exitUsage},
		{"oversized stdin", strings.Repeat("x", maxToken+1), []string{"--token-stdin"}, "", exitUsage},
	} {
		t.Run(c.name, func(t *testing.T) {
			*g = globals{in: strings.NewReader(c.stdin), out: os.Stdout, errOut: os.Stderr}
			root := newRoot()
			if err := root.ParseFlags(c.args); err != nil {
				t.Fatal(err)
			}
			got, err := flagToken()
			if c.want != "" {
				if err != nil || got != c.want {
					t.Errorf("token %q, %v; want %q", got, err, c.want)
				}
				return
			}
			if code := exitCode(err, true); err == nil || code != c.code {
				t.Errorf("got %q, %v (exit %d); want an error with exit code %d", got, err, code, c.code)
			}
			if strings.Contains(err.Error(), tok) {
				t.Errorf("the error quotes the token: %v", err)
			}
		})
	}
}
