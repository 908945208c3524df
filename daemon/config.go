package daemon

import "github.com/veil-dp/veil/platform"

// Config is the daemon's configuration. cmd/veil fills it from flags, the environment and an
// optional file; Defaults gives every field a value.
type Config = platform.Config

// Defaults returns a Config with every default filled in for dataDir.
func Defaults(dataDir string) Config { return platform.Defaults(dataDir) }
