package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/mod/sumdb/note"

	"github.com/veil-dp/veil/audit"
	"github.com/veil-dp/veil/client"
	"github.com/veil-dp/veil/durable"
)

// maxNoteFile bounds a checkpoint or key file read from disk.
const maxNoteFile = 64 << 10

func newAuditCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Read and verify the audit log (auditor); keep and witness its checkpoints"}
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
	cmd.AddCommand(tail, newAuditVerifyCmd(), newAuditProveCmd(), newAuditCheckpointCmd(), newAuditWitnessCmd())
	return cmd
}

const defaultPlatformKey = "/var/lib/veil/platform.pub"

// readSmall reads a file of at most maxNoteFile bytes.
func readSmall(path, what string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxNoteFile+1))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	if len(b) > maxNoteFile {
		return nil, fmt.Errorf("%s %s is more than %d bytes: not what was expected", what, path, maxNoteFile)
	}
	return b, nil
}

func readPlatformKey(path string) (string, error) {
	b, err := readSmall(path, "platform key (--key)")
	if err != nil {
		return "", err
	}
	vkey := strings.TrimSpace(string(b))
	if _, _, err := audit.ParseVerifierKey(vkey); err != nil {
		return "", fmt.Errorf("platform key %s: %w", path, err)
	}
	return vkey, nil
}

func newAuditVerifyCmd() *cobra.Command {
	var keyFile string
	var since, witnesses []string
	verify := &cobra.Command{
		Use:   "verify [--since FILE]...",
		Short: "Verify the whole log: recompute the Merkle tree, check every signed checkpoint, and prove that the log extends the checkpoints you kept",
		Long: `Verify the whole log: recompute the Merkle tree from the records, check every signed
checkpoint, and ask the daemon to verify its stored hashes too.

With --since FILE (repeatable), each FILE is a checkpoint kept earlier (veil audit checkpoint
-o FILE, or a witness's cosigned copy): verify proves, with the daemon's consistency proof
and again from the records, that the current log extends it. It fails on a log smaller
than the kept checkpoint (truncated, or an older copy restored), on a different tree of the
same size (a fork), and on a proof that does not verify (history rewritten). With
--witness VKEY-FILE, every kept checkpoint must also carry that witness's cosignature.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			kb, err := readSmall(keyFile, "platform key or keyring (--key)")
			if err != nil {
				return err
			}
			ring, err := client.ParseKeyring(kb)
			if err != nil {
				return fmt.Errorf("%s: %w", keyFile, err)
			}
			var kept []client.Kept
			for _, f := range since {
				b, err := readSmall(f, "kept checkpoint")
				if err != nil {
					return err
				}
				kept = append(kept, client.Kept{Name: f, Note: b})
			}
			if err := checkCosigned(ring, witnesses, kept); err != nil {
				return err
			}
			c, err := connect()
			if err != nil {
				return err
			}
			var rep *audit.Report
			if len(kept) > 0 {
				rep, err = c.VerifyAuditSinceKeyring(cmd.Context(), ring, kept)
			} else {
				rep, err = c.VerifyAuditKeyring(cmd.Context(), ring)
			}
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
			fmt.Fprintf(g.out, "OK: %d entries, %d signed checkpoints, root %s\n", rep.Size, rep.Checkpoints, rep.Root)
			for _, k := range kept {
				_, size, _, _ := audit.OpenCheckpoint(ring, k.Note)
				fmt.Fprintf(g.out, "OK: the log extends the kept checkpoint %s (%d entries)\n", k.Name, size)
			}
			return nil
		},
	}
	verify.Flags().StringVar(&keyFile, "key", defaultPlatformKey, "the platform's public key file, or its keyring (platform.keyring, veil platform key --keyring) after a key rotation")
	verify.Flags().StringArrayVar(&since, "since", nil, "a kept checkpoint file the log must extend (repeatable)")
	verify.Flags().StringArrayVar(&witnesses, "witness", nil, "a witness's verifier key file; kept checkpoints must carry its cosignature (repeatable)")
	return verify
}

func mustVerifier(vkey string) note.Verifier {
	v, _, _ := audit.ParseVerifierKey(vkey)
	return v
}

// checkCosigned checks that every kept checkpoint carries each witness's cosignature.
func checkCosigned(pv note.Verifier, witnessFiles []string, kept []client.Kept) error {
	if len(witnessFiles) == 0 {
		return nil
	}
	if len(kept) == 0 {
		return fmt.Errorf("--witness checks kept checkpoints: name them with --since FILE")
	}
	for _, wf := range witnessFiles {
		b, err := readSmall(wf, "witness key (--witness)")
		if err != nil {
			return err
		}
		wv, err := audit.NewCosignatureVerifier(string(b))
		if err != nil {
			return fmt.Errorf("witness key %s: %w", wf, err)
		}
		for _, k := range kept {
			at, err := audit.CosignedAt(pv, wv, k.Note)
			if err != nil {
				return fmt.Errorf("kept checkpoint %s: %w", k.Name, err)
			}
			fmt.Fprintf(g.out, "OK: %s is cosigned by %s at %s\n", k.Name, wv.Name(), at.Format("2006-01-02 15:04:05Z"))
		}
	}
	return nil
}

func newAuditProveCmd() *cobra.Command {
	var keyFile, file string
	prove := &cobra.Command{
		Use:   "prove ENTRY  |  prove --file PROOF",
		Short: "Print an inclusion proof of an entry against the latest signed checkpoint, checked locally",
		Long: `Fetch the inclusion proof of entry ENTRY against the latest signed checkpoint and check it
with the platform key. With --file, check a proof saved earlier (the console's "Download the
proof") offline instead: the daemon is not asked.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if file != "" {
				return cobra.NoArgs(cmd, args)
			}
			return cobra.ExactArgs(1)(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			vkey, err := readPlatformKey(keyFile)
			if err != nil {
				return err
			}
			var p *audit.Proof
			if file != "" {
				b, err := readAtMost(file, maxProofFile+1)
				if err != nil {
					return fmt.Errorf("read proof: %w", err)
				}
				if len(b) > maxProofFile {
					return fmt.Errorf("proof file %s is more than %d bytes: not a proof", file, maxProofFile)
				}
				p = new(audit.Proof)
				if err := json.Unmarshal(b, p); err != nil {
					return fmt.Errorf("proof file %s is not a proof (give the file the console or veil audit prove -o json saved): %v", file, err)
				}
			} else {
				idx, err := strconv.ParseInt(args[0], 10, 64)
				if err != nil {
					return fmt.Errorf("ENTRY must be an entry number")
				}
				c, err := connect()
				if err != nil {
					return err
				}
				if p, err = c.AuditProof(cmd.Context(), idx); err != nil {
					return err
				}
			}
			if err := audit.CheckProof(mustVerifier(vkey), p); err != nil {
				return fmt.Errorf("proof does NOT verify: %w", err)
			}
			b, _ := json.MarshalIndent(p, "", "  ")
			fmt.Fprintf(g.out, "%s\nOK: entry %d is included in the signed checkpoint\n", b, p.Index)
			return nil
		},
	}
	prove.Flags().StringVar(&keyFile, "key", defaultPlatformKey, "the platform's public key file")
	prove.Flags().StringVar(&file, "file", "", "check this saved proof offline instead of asking the daemon")
	return prove
}

// maxProofFile bounds a saved proof: an entry, a checkpoint and at most 64 hashes.
const maxProofFile = 1 << 20

func newAuditCheckpointCmd() *cobra.Command {
	var keyFile, out string
	cp := &cobra.Command{
		Use:   "checkpoint [-o FILE]",
		Short: "Save the latest signed checkpoint, to check later that the log still extends it (audit verify --since FILE)",
		Long: `Fetch the latest signed checkpoint and check its signature with the platform key. With
-o FILE, save it there (replaced atomically); if FILE already holds a checkpoint of this log,
the new one is saved only if the daemon proves that it extends the old one, so running this
regularly also catches a log that was truncated, rolled back or forked in between. Keep the
files where the platform's operator cannot change them.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			vkey, err := readPlatformKey(keyFile)
			if err != nil {
				return err
			}
			v := mustVerifier(vkey)
			c, err := connect()
			if err != nil {
				return err
			}
			latest, err := c.AuditCheckpoint(cmd.Context())
			if err != nil {
				return err
			}
			_, size, root, err := audit.OpenCheckpoint(v, latest.Note)
			if err != nil {
				return fmt.Errorf("the daemon's latest checkpoint does NOT verify with the platform key: %w", err)
			}
			if out == "" {
				_, err := g.out.Write(latest.Note)
				return err
			}
			if old, err := readSmall(out, "kept checkpoint"); err == nil {
				if err := c.CheckKept(cmd.Context(), v, client.Kept{Name: out, Note: old}, latest); err != nil {
					return fmt.Errorf("not replacing %s: %w", out, err)
				}
			} else if !errors.Is(err, os.ErrNotExist) {
				return err
			}
			if err := durable.WriteFile(out, latest.Note, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(g.out, "saved the checkpoint of %d entries (root %s) to %s\n", size, root, out)
			return nil
		},
	}
	cp.Flags().StringVar(&keyFile, "key", defaultPlatformKey, "the platform's public key file")
	// -o names the file here; it shadows the global -o (a checkpoint has one format).
	cp.Flags().StringVarP(&out, "output", "o", "", "save the checkpoint to this file (default: print it)")
	return cp
}

func newAuditWitnessCmd() *cobra.Command {
	var keyFile, witnessKey, state, out string
	var first bool
	w := &cobra.Command{
		Use:   "witness --witness-key FILE --state FILE [--init] [-o FILE]",
		Short: "Cosign the latest checkpoint with your own key, after checking that it extends the last one you cosigned",
		Long: `An independent party (a regulator, a second agency) runs this regularly with its own key
(veil audit witness keygen). It fetches the latest checkpoint, checks the platform's
signature, asks the daemon for a consistency proof from the last checkpoint it cosigned (kept
in --state, which must stay out of the platform's reach) and cosigns only if the proof holds:
it refuses a smaller tree, a fork and rewritten history. The cosigned checkpoint (C2SP
tlog-cosignature) is written to -o FILE or printed. The first run needs --init.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			if witnessKey == "" || state == "" {
				return fmt.Errorf("name your key with --witness-key FILE and your state file with --state FILE")
			}
			vkey, err := readPlatformKey(keyFile)
			if err != nil {
				return err
			}
			cos, err := readCosigner(witnessKey)
			if err != nil {
				return err
			}
			wit, err := audit.OpenWitness(cos, mustVerifier(vkey), state, first)
			if err != nil {
				return err
			}
			c, err := connect()
			if err != nil {
				return err
			}
			latest, err := c.AuditCheckpoint(cmd.Context())
			if err != nil {
				return err
			}
			cosigned, err := wit.Cosign(cmd.Context(), latest.Note, c.AuditProver())
			if err != nil {
				return err
			}
			if out == "" {
				_, err := g.out.Write(cosigned)
				return err
			}
			if err := durable.WriteFile(out, cosigned, 0o644); err != nil {
				return err
			}
			last, _ := wit.Last()
			fmt.Fprintf(g.out, "cosigned the checkpoint of %d entries as %s; saved to %s\n", last.Size, cos.Name(), out)
			return nil
		},
	}
	w.Flags().StringVar(&keyFile, "key", defaultPlatformKey, "the platform's public key file")
	w.Flags().StringVar(&witnessKey, "witness-key", "", "your witness key file (from veil audit witness keygen)")
	w.Flags().StringVar(&state, "state", "", "your state file: the last checkpoint you cosigned")
	w.Flags().BoolVar(&first, "init", false, "first run: trust the current checkpoint and create the state file")
	w.Flags().StringVarP(&out, "output", "o", "", "save the cosigned checkpoint to this file (default: print it)")

	var name, keyOut string
	keygen := &cobra.Command{
		Use:   "keygen --name NAME --out FILE",
		Short: "Create a witness key: FILE (secret, mode 0600) and FILE.pub (its verifier key, for auditors)",
		RunE: func(cmd *cobra.Command, args []string) error {
			if name == "" || keyOut == "" {
				return fmt.Errorf("name the witness with --name (e.g. witness.example.org/veil) and the key file with --out")
			}
			if _, err := os.Stat(keyOut); err == nil {
				return fmt.Errorf("%s exists: not overwriting a key", keyOut)
			}
			cos, err := audit.GenerateCosigner(name)
			if err != nil {
				return err
			}
			if err := durable.WriteFile(keyOut, []byte(cos.SecretKey()+"\n"), 0o600); err != nil {
				return err
			}
			if err := durable.WriteFile(keyOut+".pub", []byte(cos.VerifierKey()+"\n"), 0o644); err != nil {
				return err
			}
			fmt.Fprintf(g.out, "witness key written to %s (keep it secret); its verifier key, in %s.pub, for auditors:\n%s\n", keyOut, keyOut, cos.VerifierKey())
			return nil
		},
	}
	keygen.Flags().StringVar(&name, "name", "", "the witness's name, a schema-less URL such as witness.example.org/veil")
	keygen.Flags().StringVar(&keyOut, "out", "", "the key file to create")
	w.AddCommand(keygen)
	return w
}

// readCosigner reads a witness key, refusing one that other users can read.
func readCosigner(path string) (*audit.Cosigner, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("witness key: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("witness key %s has mode %#o: other users can read or change it; run chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	b, err := readSmall(path, "witness key")
	if err != nil {
		return nil, err
	}
	cos, err := audit.ParseCosigner(string(b))
	if err != nil {
		return nil, fmt.Errorf("witness key %s: %w", path, err)
	}
	return cos, nil
}

func trunc(s string, n int) string {
	if len(s) > n {
		return s[:n-1] + "…"
	}
	return s
}
