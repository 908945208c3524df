package main

import (
	"context"
	"database/sql"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	_ "github.com/duckdb/duckdb-go/v2" // the "duckdb" driver: the linked library is asked its version
	_ "github.com/mattn/go-sqlite3"    // the "sqlite3" driver: the store's library
	"github.com/opencontainers/runc/libcontainer/seccomp"
	"github.com/spf13/cobra"
)

// Stamped by the Makefile's build: -ldflags "-X main.version=... -X main.commit=...". A
// plain go build or go install leaves them empty, and the build info's VCS stamp is used.
var (
	version string
	commit  string
)

// Modules whose versions say what a Veil build does; shown by veil version.
var versionModules = []struct{ name, path string }{
	{"runc", "github.com/opencontainers/runc"},
	{"lattigo", "github.com/tuneinsight/lattigo/v5"},
	{"dp", "github.com/google/differential-privacy/go/v3"},
	{"duckdb-go", "github.com/duckdb/duckdb-go/v2"},
	{"duckdb-bindings", "github.com/duckdb/duckdb-go-bindings"},
	{"arrow", "github.com/apache/arrow-go/v18"},
	{"sqlite3-go", "github.com/mattn/go-sqlite3"},
}

// versionInfo is what veil version reports.
type versionInfo struct {
	Version    string            `json:"version"`
	Commit     string            `json:"commit,omitempty"`
	CommitTime string            `json:"commit_time,omitempty"`
	Modified   bool              `json:"modified,omitempty"` // built from a work tree with changes
	Go         string            `json:"go"`
	Platform   string            `json:"platform"`
	DuckDB     string            `json:"duckdb"`
	SQLite     string            `json:"sqlite"`
	Libseccomp string            `json:"libseccomp"`
	Modules    map[string]string `json:"modules"`
	Daemon     daemonVersion     `json:"daemon"` // the daemon the CLI talks to (--host, the profile)
}

// daemonVersion is what the daemon says of its build, or why it could not be asked.
type daemonVersion struct {
	Version string `json:"version,omitempty"`
	Commit  string `json:"commit,omitempty"`
	Error   string `json:"error,omitempty"`
}

// daemonVersionTimeout bounds the question: veil version must answer without a daemon.
const daemonVersionTimeout = 3 * time.Second

// askDaemonVersion asks the daemon the CLI is configured for its version.
func askDaemonVersion(ctx context.Context) daemonVersion {
	c, err := connect()
	if err != nil {
		return daemonVersion{Error: err.Error()}
	}
	ctx, cancel := context.WithTimeout(ctx, daemonVersionTimeout)
	defer cancel()
	v, err := c.Version(ctx)
	if err != nil {
		return daemonVersion{Error: err.Error()}
	}
	return daemonVersion{Version: v.Version, Commit: v.Commit}
}

// buildVersion is Veil's own version: the stamped one, else the module version (go
// install ...@vX), else "devel"; the commit is the stamped one, else the VCS stamp.
func buildVersion(stamped, stampedCommit string, bi *debug.BuildInfo) versionInfo {
	v := versionInfo{Version: stamped, Commit: stampedCommit, Modules: map[string]string{}}
	if bi != nil {
		if v.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			v.Version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if v.Commit == "" {
					v.Commit = s.Value
				}
			case "vcs.time":
				v.CommitTime = s.Value
			case "vcs.modified":
				v.Modified = s.Value == "true"
			}
		}
		deps := map[string]string{}
		for _, d := range bi.Deps {
			deps[d.Path] = d.Version
			if r := d.Replace; r != nil { // what is linked is the replacement
				deps[d.Path] = strings.TrimSpace(r.Path + " " + r.Version)
				if r.Path == d.Path {
					deps[d.Path] = r.Version
				}
			}
		}
		for _, m := range versionModules {
			if ver, ok := deps[m.path]; ok {
				v.Modules[m.name] = ver
			}
		}
	}
	if v.Version == "" {
		v.Version = "devel"
	}
	return v
}

// libraryVersion asks a linked SQL library its version, on an in-memory database.
func libraryVersion(ctx context.Context, driver, dsn, query string) string {
	db, err := sql.Open(driver, dsn)
	if err != nil {
		return "unknown: " + err.Error()
	}
	defer db.Close()
	var out string
	if err := db.QueryRowContext(ctx, query).Scan(&out); err != nil {
		return "unknown: " + err.Error()
	}
	return out
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Show Veil's version and commit, the versions of Go, DuckDB, SQLite, runc, libseccomp, lattigo and the DP library in this binary, and the daemon's version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			bi, _ := debug.ReadBuildInfo()
			v := buildVersion(version, commit, bi)
			v.Go, v.Platform = runtime.Version(), runtime.GOOS+"/"+runtime.GOARCH
			v.DuckDB = libraryVersion(cmd.Context(), "duckdb", "", "SELECT library_version || ' (' || source_id || ')' FROM pragma_version()")
			v.SQLite = libraryVersion(cmd.Context(), "sqlite3", ":memory:", "SELECT sqlite_version()")
			major, minor, micro := seccomp.Version()
			v.Libseccomp = "none (built without seccomp)"
			if seccomp.Enabled {
				v.Libseccomp = fmt.Sprintf("%d.%d.%d", major, minor, micro)
			}
			c := v.Commit
			if c == "" {
				c = "unknown"
			}
			if v.CommitTime != "" {
				c += " " + stampText(v.CommitTime)
			}
			if v.Modified {
				c += " (modified)"
			}
			v.Daemon = askDaemonVersion(cmd.Context())
			d := v.Daemon.Version
			switch {
			case v.Daemon.Error != "":
				d = "unknown: " + v.Daemon.Error
			case v.Daemon.Commit != "":
				d += " (commit " + v.Daemon.Commit + ")"
			}
			pairs := []string{"veil", v.Version, "commit", c, "go", v.Go + " " + v.Platform, "duckdb", v.DuckDB, "sqlite", v.SQLite, "libseccomp", v.Libseccomp, "daemon", d}
			for _, m := range versionModules {
				if ver, ok := v.Modules[m.name]; ok {
					pairs = append(pairs, m.name, strings.TrimSpace(m.path+" "+ver))
				}
			}
			return kv(v, pairs...)
		},
	}
}
