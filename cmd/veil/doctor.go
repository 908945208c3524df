package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/veil-dp/veil/daemon"
	"github.com/veil-dp/veil/doctor"
)

func newDoctorCmd() *cobra.Command {
	dir := defaultDataDir
	minFreeMB := uint64(doctor.DefaultMinFree >> 20)
	var keyCfg daemon.Config
	cmd := &cobra.Command{
		Use:   "doctor [--data-dir DIR]",
		Short: "Check this host and a data directory before (or while) the daemon runs; exits non-zero if a check fails",
		Long: `Check this host and a data directory, read-only, and say what to do about each problem:

  privileges, kernel, cgroups (controllers delegated where job cgroups are made),
  namespaces (a process is started in them as the sandbox would), seccomp,
  data-dir (ownership and modes: keys and store owner-only, datasets readable by the sandbox),
  disk (free space above --min-free-mb), store (PRAGMA quick_check, read-only),
  audit-log (offline verification against the signed checkpoints and platform.pub),
  shutdown-marker (the store file is the one Veil shut down; its write-ahead log is there
  after an unclean stop), audit-signer (the log extends the signer's last checkpoint),
  platform-key (platform.pub is the public half of the signing key), daemon (who answers
  on the socket). These are the checks veil serve refuses to start on.

Run it as root, as the daemon runs. The exit code is 11 when a check fails (warnings do not
fail it).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			o, err := doctorPaths(dir, keyCfg)
			if err != nil {
				return err
			}
			o.MinFreeBytes = minFreeMB << 20
			rep := doctor.Run(cmd.Context(), o)
			if err := printDoctor(rep); err != nil {
				return err
			}
			if failed := rep.Failed(); len(failed) > 0 {
				var names []string
				for _, c := range failed {
					names = append(names, c.Name)
				}
				return checkErr("%d check(s) failed: %s", len(failed), strings.Join(names, ", "))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dir, "data-dir", dir, "data directory")
	cmd.Flags().Uint64Var(&minFreeMB, "min-free-mb", minFreeMB, "free disk floor of the data directory's file system, in MiB")
	initKeyFlags(cmd.Flags(), &keyCfg)
	cmd.Flags().Lookup("audit-key").Usage = "the platform signing key's file, as given to veil serve"
	cmd.Flags().Lookup("audit-state").Usage = "the audit signer's state file, as given to veil serve"
	return cmd
}

func printDoctor(rep doctor.Report) error {
	if !isTable() {
		return print(rep, nil, nil)
	}
	var rows [][]string
	for _, c := range rep.Checks {
		st := string(c.Status)
		if c.Status == doctor.Fail {
			st = "FAIL"
		}
		rows = append(rows, []string{st, c.Name, c.Detail})
	}
	if err := print(rep, []string{"STATUS", "CHECK", "DETAIL"}, rows); err != nil {
		return err
	}
	first := true
	for _, c := range rep.Checks {
		if c.Fix == "" || (c.Status != doctor.Fail && c.Status != doctor.Warn) {
			continue
		}
		if first {
			fmt.Fprintln(g.out, "\nWhat to do:")
			first = false
		}
		fmt.Fprintf(g.out, "  %s (%s): %s\n", c.Name, c.Status, c.Fix)
	}
	return nil
}
