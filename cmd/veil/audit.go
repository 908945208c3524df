package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/veil-dp/veil/audit"
)

func newAuditCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Read and verify the audit log (auditor)"}
	var n int64
	tail := &cobra.Command{
		Use:   "tail",
		Short: "Show the latest audit entries",
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect()
			if err != nil {
				return err
			}
			page, err := c.AuditRecords(cmd.Context(), 0, n, true)
			if err != nil {
				return err
			}
			var entries []audit.Entry
			var rows [][]string
			for i, rec := range page.Records {
				e, err := audit.DecodeEntry(rec)
				if err != nil {
					return fmt.Errorf("entry %d: %w", page.From+int64(i), err)
				}
				entries = append(entries, e)
				var det []string
				for k, v := range e.Details {
					det = append(det, k+"="+strconv.Quote(v))
				}
				rows = append(rows, []string{fmt.Sprint(page.From + int64(i)), e.Time.Format("2006-01-02 15:04:05"), e.Role + ":" + e.Actor, e.Action, e.Object, trunc(strings.Join(det, " "), 100)})
			}
			return print(entries, []string{"#", "TIME", "ACTOR", "ACTION", "OBJECT", "DETAILS"}, rows)
		},
	}
	tail.Flags().Int64VarP(&n, "lines", "n", 20, "how many entries")
	var keyFile string
	verify := &cobra.Command{
		Use:   "verify",
		Short: "Verify the whole log: recompute the Merkle tree and check every signed checkpoint",
		RunE: func(cmd *cobra.Command, args []string) error {
			key, err := os.ReadFile(keyFile)
			if err != nil {
				return fmt.Errorf("read platform key (--key): %w", err)
			}
			c, err := connect()
			if err != nil {
				return err
			}
			rep, err := c.VerifyAudit(cmd.Context(), strings.TrimSpace(string(key)))
			if err != nil {
				return fmt.Errorf("audit log does NOT verify: %w", err)
			}
			ok, msg, err := c.ServerVerify(cmd.Context())
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("audit log does NOT verify (stored hashes): %s", msg)
			}
			fmt.Fprintf(g.out, "OK: %d entries, %d signed checkpoints, root %s\n", rep.Records, rep.Checkpoints, rep.Root)
			return nil
		},
	}
	verify.Flags().StringVar(&keyFile, "key", "/var/lib/veil/platform.pub", "the platform's public key file")
	prove := &cobra.Command{
		Use:   "prove ENTRY",
		Short: "Print an inclusion proof of an entry against the latest signed checkpoint, checked locally",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			idx, err := strconv.ParseInt(args[0], 10, 64)
			if err != nil {
				return fmt.Errorf("ENTRY must be an entry number")
			}
			key, err := os.ReadFile(keyFile)
			if err != nil {
				return fmt.Errorf("read platform key (--key): %w", err)
			}
			c, err := connect()
			if err != nil {
				return err
			}
			p, err := c.AuditProof(cmd.Context(), idx)
			if err != nil {
				return err
			}
			v, _, err := audit.ParseVerifierKey(strings.TrimSpace(string(key)))
			if err != nil {
				return err
			}
			if err := audit.CheckProof(v, p); err != nil {
				return fmt.Errorf("proof does NOT verify: %w", err)
			}
			b, _ := json.MarshalIndent(p, "", "  ")
			fmt.Fprintf(g.out, "%s\nOK: entry %d is included in the signed checkpoint\n", b, idx)
			return nil
		},
	}
	prove.Flags().StringVar(&keyFile, "key", "/var/lib/veil/platform.pub", "the platform's public key file")
	cmd.AddCommand(tail, verify, prove)
	return cmd
}

func trunc(s string, n int) string {
	if len(s) > n {
		return s[:n-1] + "…"
	}
	return s
}
