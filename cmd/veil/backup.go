package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/veil-dp/veil/backup"
	"github.com/veil-dp/veil/store"
)

func newBackupCmd() *cobra.Command {
	dir := defaultDataDir
	var to string
	cmd := &cobra.Command{
		Use:   "backup --to DIR [--data-dir DIR]",
		Short: "Back the data directory up, consistently, while the daemon runs (run it as root on the daemon's host)",
		Long: `Back up everything the platform needs into DIR (new or empty, made owner-only): a
snapshot of the store taken with SQLite's online backup API, the datasets, runtimes, blobs,
programs, twins, tenant files, keys and platform.pub, and manifest.json (written last) with
the SHA-256 of every file. The daemon may be running: files are copied after the snapshot and
every file the snapshot names must be in the backup, or the snapshot is taken again.

It runs on the data directory, not through the API: the backup holds the platform's signing
key, which no API token may fetch. Keep the backup as secret as keys/platform.key. Restore it
with veil restore.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if to == "" {
				return usageErr("give the backup's directory with --to DIR")
			}
			m, err := backup.Create(cmd.Context(), dir, to)
			if err != nil {
				return err
			}
			var files, bytes int64
			for _, e := range m.Entries {
				if e.Type == "file" {
					files++
					bytes += e.Bytes
				}
			}
			out := struct {
				To      string              `json:"to"`
				DataDir string              `json:"data_dir"`
				Created string              `json:"created"`
				Files   int64               `json:"files"`
				Bytes   int64               `json:"bytes"`
				Audit   backup.AuditSummary `json:"audit"`
			}{to, m.DataDir, stamp(m.Created), files, bytes, m.Audit}
			if !isTable() {
				return print(out, nil, nil)
			}
			fmt.Fprintf(g.out, "backed up %s to %s: %d files, %d bytes; audit log of %d entries, signed root %s\n",
				m.DataDir, to, files, bytes, m.Audit.Entries, m.Audit.Root)
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "data-dir", dir, "the data directory to back up")
	cmd.Flags().StringVar(&to, "to", "", "the backup's directory (new or empty)")
	return cmd
}

func newRestoreCmd() *cobra.Command {
	var from, dir string
	var checkpoints []string
	var force bool
	cmd := &cobra.Command{
		Use:   "restore --from DIR --data-dir NEW [--checkpoint FILE]... [--force]",
		Short: "Check a backup and restore it into a new data directory",
		Long: `Check the backup in DIR and restore it into NEW (new or empty): every file against the
manifest's SHA-256, the store's integrity (PRAGMA quick_check) and its audit log (every
record, hash and signature, against the backup's platform.pub). With --checkpoint FILE
(repeatable; a checkpoint kept with veil audit checkpoint -o FILE), a backup whose log is
smaller than the checkpoint, or holds another tree at its size, is refused: restoring it
would roll the audit log back. --force restores it anyway (tell the auditors why); nothing
forces a backup that does not match its manifest or whose log does not verify.

Then the store's file paths are pointed at NEW and the store is marked as cleanly shut
down: start the daemon with veil serve --data-dir NEW. A refused restore leaves nothing in
NEW.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if from == "" || dir == "" {
				return usageErr("give the backup with --from DIR and the new data directory with --data-dir NEW")
			}
			var kept []backup.Kept
			for _, f := range checkpoints {
				b, err := readSmall(f, "kept checkpoint")
				if err != nil {
					return err
				}
				kept = append(kept, backup.Kept{Name: f, Note: b})
			}
			r, err := backup.Restore(cmd.Context(), from, dir, backup.RestoreOptions{Checkpoints: kept, Force: force})
			if errors.Is(err, store.ErrConflict) {
				return &exitError{exitConflict, err}
			}
			if err != nil {
				return err
			}
			if !isTable() {
				return print(r, nil, nil)
			}
			fmt.Fprintf(g.out, "restored %s into %s: %d files, %d bytes; audit log of %d entries verifies, signed root %s\n",
				r.From, r.DataDir, r.Files, r.Bytes, r.Audit.Entries, r.Audit.Root)
			for _, s := range r.Stale {
				fmt.Fprintf(g.out, "FORCED: %s\n", s)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&from, "from", "", "the backup's directory")
	cmd.Flags().StringVar(&dir, "data-dir", "", "the new data directory")
	cmd.Flags().StringArrayVar(&checkpoints, "checkpoint", nil, "a kept audit checkpoint the backup must not be older than (repeatable)")
	cmd.Flags().BoolVar(&force, "force", false, "restore a backup older than a kept checkpoint")
	return cmd
}
