package main

import (
	"github.com/spf13/pflag"

	"github.com/veil-dp/veil/daemon"
)

// initKeyFlags are veil init's flags that place the signing key and the signer's state
// outside the data directory.
func initKeyFlags(f *pflag.FlagSet, cfg *daemon.Config) {
	f.StringVar(&cfg.AuditKey, "audit-key", "", "write the platform signing key to this file (default DATA-DIR/keys/platform.key); put it where the store's writer cannot reach, see README \"Protecting the audit log\"")
	f.StringVar(&cfg.AuditState, "audit-state", "", "the audit signer's state file (default audit.state beside the key)")
}

// auditFlags are veil serve's flags of the audit signer and the store's start-up checks.
func auditFlags(f *pflag.FlagSet, cfg *daemon.Config) {
	initKeyFlags(f, cfg)
	f.Lookup("audit-key").Usage = "the platform signing key's file (default DATA-DIR/keys/platform.key)"
	f.IntVar(&cfg.AuditKeyFD, "audit-key-fd", 0, "read the platform signing key from this inherited file descriptor (3 or above) instead of a file, e.g. --audit-key-fd 3 3<key; needs --audit-state")
	f.StringArrayVar(&cfg.AuditArchives, "audit-archive", nil, "append every signed checkpoint to this file or directory (repeatable): a place the store's writer cannot change, e.g. an append-only file or another machine's mount")
	f.BoolVar(&cfg.AuditAdopt, "audit-adopt", false, "once, when the signer has no state yet (first start after an upgrade): verify the whole audit log and vouch for it from now on")
	f.BoolVar(&cfg.StoreAdopt, "store-adopt", false, "once, after restoring the store on purpose: accept the store file though its shutdown marker says it is not the file Veil shut down (the integrity and audit checks still run)")
}
