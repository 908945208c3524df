package main

import (
	"database/sql"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/veil-dp/veil/audit"
	"github.com/veil-dp/veil/client"
	"github.com/veil-dp/veil/daemon"
	"github.com/veil-dp/veil/doctor"
	vplatform "github.com/veil-dp/veil/platform"
)

func newKeyCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "key", Short: "The platform's signing key (operator, on the daemon's host)"}
	dir := defaultDataDir
	rotate := &cobra.Command{
		Use:   "rotate [--data-dir DIR]",
		Short: "Replace the platform's signing key; the old one is retired into the keyring (the daemon must be stopped)",
		Long: `Make a new platform signing key (keys/platform.key, platform.pub) and retire the old one into
the keyring (platform.keyring) with its term: from its start until now, for the audit
checkpoints up to the log's present size. The old private key is deleted. After the daemon
starts again, new certificates and checkpoints are signed with the new key; those signed
before still verify with the keyring (veil export verify --key platform.keyring, veil audit
verify --key platform.keyring; veil platform key --keyring fetches it), but not with the new
key alone, and a certificate signed after the rotation does not verify with the old key.

Stop the daemon first: it holds the key while it runs, and has signed every audit entry when
it stops. Publish the new platform.keyring to vendors and auditors.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg := daemon.Defaults(dir)
			if c, err := client.New("unix://"+cfg.Socket, ""); err == nil {
				if _, err := c.PlatformKey(cmd.Context()); err == nil {
					return &exitError{exitConflict, fmt.Errorf("a daemon answers on %s: stop it (systemctl stop veil), rotate, then start it", cfg.Socket)}
				}
			}
			key, err := audit.LoadKey("veil-platform", cfg.KeyPath())
			if err != nil {
				return err
			}
			ring, err := vplatform.LoadKeyring(cfg, key)
			if err != nil {
				return err
			}
			size, err := signedSize(cmd, cfg.StorePath(), ring)
			if err != nil {
				return err
			}
			retired, current, err := vplatform.RotateKey(cfg, size, time.Now())
			if err != nil {
				return err
			}
			out := struct {
				Retired audit.RingKey `json:"retired"`
				Current audit.RingKey `json:"current"`
				Keyring string        `json:"keyring"`
			}{retired, current, cfg.KeyringPath()}
			if !isTable() {
				return print(out, nil, nil)
			}
			fmt.Fprintf(g.out, "retired key %.16s (audit checkpoints up to %d entries, certificates until %s)\ncurrent key %.16s\npublish %s\n",
				retired.KeyID, retired.MaxSize, stamp(retired.Until), current.KeyID, cfg.KeyringPath())
			return nil
		},
	}
	rotate.Flags().StringVar(&dir, "data-dir", dir, "data directory")
	cmd.AddCommand(rotate)
	return cmd
}

// signedSize is the size of the audit log in the store at path, which must verify with ring
// and be signed to its end.
func signedSize(cmd *cobra.Command, path string, ring *audit.Keyring) (int64, error) {
	db, err := doctor.OpenStore(path)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	tx, err := db.BeginTx(cmd.Context(), &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	rep, err := audit.NewKeyringLog(ring).Verify(cmd.Context(), doctor.LogReader(tx))
	if err != nil {
		return 0, checkErr("the audit log does NOT verify; do not rotate the key of a log you cannot vouch for (veil doctor): %w", err)
	}
	if rep.Pending > 0 {
		return 0, &exitError{exitConflict, fmt.Errorf("%d audit entries are not signed yet: start the daemon once and stop it, so that it signs them with the key that made them", rep.Pending)}
	}
	return rep.Records, nil
}
