// `veil he`: the vendor's side of encrypted model scoring (package he). These commands run on
// the vendor's own machine and never talk to the daemon: keygen makes the key set, encrypt-model
// encrypts the vendor's model under it, decrypt opens the per-group sums of an he-score export.

package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/spf13/cobra"

	"github.com/veil-dp/veil/durable"
	"github.com/veil-dp/veil/he"
)

// Names in an he-score export: the schema metadata keys and the two reserved columns.
const (
	heSumsKey  = "veil.he.sums"
	heKeyIDKey = "veil.he.key_id"
	heRowsCol  = "rows"
	heSlotCol  = "slot"
)

func newHECmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "he",
		Short: "Encrypted model scoring, vendor side: keygen, encrypt-model, decrypt (runs locally, never contacts the daemon)",
		Long: `Score the platform's data with your own linear or logistic model without showing the model
to the platform, while the platform never shows you a row. Three steps, all on your machine:

  1. veil he keygen --groups N --dir DIR
     makes DIR/secret.key (stays on this machine, never upload it) and DIR/public.bundle
     (uploaded with your jobs).
  2. veil he encrypt-model --public DIR/public.bundle --model model.json --out model.enc
     encrypts the model's weights, bias, means and scales; model.enc is uploaded with your
     jobs and reveals only its public header (kind, feature names and bounds).
  3. veil he decrypt --secret DIR/secret.key --in EXPORT [--out result.csv]
     decrypts the per-group score sums of an he-score job's export (veil export get).

The secret key and the plaintext model.json never leave this machine.`,
	}
	cmd.AddCommand(newHEKeygenCmd(), newHEEncryptModelCmd(), newHEDecryptCmd())
	return cmd
}

func newHEKeygenCmd() *cobra.Command {
	var groups int
	var dir string
	var force bool
	cmd := &cobra.Command{
		Use:   "keygen --groups N --dir DIR",
		Short: "Generate a key set: DIR/secret.key (keep) and DIR/public.bundle (upload)",
		RunE: func(cmd *cobra.Command, args []string) error {
			secretPath, publicPath := filepath.Join(dir, "secret.key"), filepath.Join(dir, "public.bundle")
			if _, err := os.Stat(secretPath); err == nil && !force {
				return &exitError{exitConflict, fmt.Errorf("%s already exists; refusing to overwrite a secret key (results encrypted under it could no longer be decrypted); pass --force to replace it", secretPath)}
			}
			sk, pub, err := he.GenerateKeys(groups)
			if err != nil {
				return err
			}
			skBlob, err := sk.MarshalBinary()
			if err != nil {
				return err
			}
			pubBlob, err := pub.MarshalBinary()
			if err != nil {
				return err
			}
			if err := os.MkdirAll(dir, 0o700); err != nil {
				return err
			}
			if err := writeSecret(secretPath, skBlob, force); err != nil {
				return err
			}
			if err := durable.WriteFile(publicPath, pubBlob, 0o644); err != nil {
				return err
			}
			out := struct {
				KeyID        string `json:"key_id"`
				Lanes        int    `json:"lanes"`
				SecretKey    string `json:"secret_key"`
				SecretBytes  int    `json:"secret_key_bytes"`
				PublicBundle string `json:"public_bundle"`
				PublicBytes  int    `json:"public_bundle_bytes"`
				Note         string `json:"note"`
			}{sk.KeyID(), pub.Lanes(), secretPath, len(skBlob), publicPath, len(pubBlob),
				"secret.key must never leave this machine; public.bundle is what gets uploaded with jobs"}
			if err := kv(out, "key ID", out.KeyID, "lanes", strconv.Itoa(out.Lanes),
				"secret key", fmt.Sprintf("%s (%d bytes)", secretPath, len(skBlob)),
				"public bundle", fmt.Sprintf("%s (%d bytes)", publicPath, len(pubBlob))); err != nil {
				return err
			}
			if isTable() {
				fmt.Fprintf(g.out, "The secret key %s must never leave this machine.\n", secretPath)
				fmt.Fprintf(g.out, "%s is what gets uploaded with jobs.\n", publicPath)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&groups, "groups", 128, fmt.Sprintf("largest number of groups a job will score (1 to %d)", he.MaxGroups))
	f.StringVar(&dir, "dir", ".", "directory for secret.key and public.bundle")
	f.BoolVar(&force, "force", false, "overwrite an existing secret.key")
	return cmd
}

// writeSecret writes the secret key durably (temporary file, fsync, rename, fsync of the
// directory) with mode 0600, refusing an existing file unless force.
func writeSecret(path string, blob []byte, force bool) error {
	if _, err := os.Lstat(path); err == nil && !force {
		return &exitError{exitConflict, fmt.Errorf("%s already exists; pass --force to replace it", path)}
	}
	return durable.WriteFile(path, blob, 0o600)
}

func newHEEncryptModelCmd() *cobra.Command {
	var publicPath, modelPath, outPath string
	cmd := &cobra.Command{
		Use:   "encrypt-model --public public.bundle --model model.json --out model.enc",
		Short: "Encrypt a linear or logistic model under the public bundle; prints only its public header",
		RunE: func(cmd *cobra.Command, args []string) error {
			pubBlob, err := os.ReadFile(publicPath)
			if err != nil {
				return fmt.Errorf("read public bundle: %w", err)
			}
			pub, err := he.UnmarshalPublicBundle(pubBlob)
			if err != nil {
				return fmt.Errorf("public bundle %s: %w", publicPath, err)
			}
			js, err := os.ReadFile(modelPath)
			if err != nil {
				return fmt.Errorf("read model: %w", err)
			}
			m, err := he.ParseModel(js)
			if err != nil {
				return fmt.Errorf("model %s: %w", modelPath, err)
			}
			em, err := he.EncryptModel(pub, m)
			if err != nil {
				return fmt.Errorf("encrypt model %s: %w", modelPath, err)
			}
			blob, err := em.MarshalBinary()
			if err != nil {
				return err
			}
			if err := durable.WriteFile(outPath, blob, 0o644); err != nil {
				return err
			}
			h := em.Header()
			rows := [][]string{
				{"encrypted model:", fmt.Sprintf("%s (%d bytes)", outPath, len(blob))},
				{"kind:", h.Kind},
				{"key ID:", h.KeyID},
			}
			if h.Kind == he.KindLogistic {
				rows = append(rows, []string{"input range:", fmt.Sprintf("[-%g, %g]", h.InputRange, h.InputRange)},
					[]string{"sigmoid degree:", strconv.Itoa(h.Degree)})
			}
			rows = append(rows, []string{}, []string{"FEATURE", "LOWER", "UPPER"})
			for _, f := range h.Features {
				rows = append(rows, []string{f.Name, fmt.Sprintf("%g", f.Lower), fmt.Sprintf("%g", f.Upper)})
			}
			return print(h, nil, rows)
		},
	}
	f := cmd.Flags()
	f.StringVar(&publicPath, "public", "", "the public bundle written by keygen")
	f.StringVar(&modelPath, "model", "", "the model as JSON (kind, features, weights, bias, input_range)")
	f.StringVar(&outPath, "out", "model.enc", "where the encrypted model is written")
	cmd.MarkFlagRequired("public")
	cmd.MarkFlagRequired("model")
	return cmd
}

func newHEDecryptCmd() *cobra.Command {
	var secretPath, inPath, outPath string
	cmd := &cobra.Command{
		Use:   "decrypt --secret secret.key --in EXPORT [--out result.csv]",
		Short: "Decrypt the per-group score sums of an he-score export (.arrow or .parquet)",
		RunE: func(cmd *cobra.Command, args []string) error {
			skBlob, err := os.ReadFile(secretPath)
			if err != nil {
				return fmt.Errorf("read secret key: %w", err)
			}
			sk, err := he.UnmarshalSecretKey(skBlob)
			if err != nil {
				return fmt.Errorf("secret key %s: %w", secretPath, err)
			}
			tbl, meta, err := readHEExport(cmd.Context(), inPath)
			if err != nil {
				return err
			}
			defer tbl.Release()
			enc, ok := meta[heSumsKey]
			if !ok {
				return fmt.Errorf("%s is not an he-score export (no %s metadata)", inPath, heSumsKey)
			}
			blob, err := base64.StdEncoding.DecodeString(enc)
			if err != nil {
				return fmt.Errorf("%s: %s metadata is not standard base64: %w", inPath, heSumsKey, err)
			}
			encSums, err := he.UnmarshalSums(blob)
			if err != nil {
				return fmt.Errorf("%s: %w", inPath, err)
			}
			sums, err := he.Decrypt(sk, encSums)
			if err != nil {
				return fmt.Errorf("%s: %w", inPath, err)
			}
			res, err := heResultTable(inPath, tbl, sums)
			if err != nil {
				return err
			}
			if outPath != "" {
				if err := durable.WriteFile(outPath, res.csv(), 0o644); err != nil {
					return err
				}
				fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s (%d groups)\n", outPath, len(res.rows))
			}
			return print(res.records(), res.headers(), res.tableRows())
		},
	}
	f := cmd.Flags()
	f.StringVar(&secretPath, "secret", "", "the secret key written by keygen")
	f.StringVar(&inPath, "in", "", "the export of an he-score job (veil export get), Arrow IPC or Parquet")
	f.StringVar(&outPath, "out", "", "also write the result as CSV to this file")
	cmd.MarkFlagRequired("secret")
	cmd.MarkFlagRequired("in")
	return cmd
}

// readHEExport reads an export as one table, detecting the format by its magic bytes: Parquet
// ("PAR1"), Arrow IPC file ("ARROW1"), otherwise Arrow IPC stream. It returns the table and its
// schema metadata (for Parquet, also the file's key-value metadata).
func readHEExport(ctx context.Context, path string) (arrow.Table, map[string]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, fmt.Errorf("read export: %w", err)
	}
	mem := memory.DefaultAllocator
	meta := map[string]string{}
	addMeta := func(md arrow.Metadata) {
		for i, k := range md.Keys() {
			meta[k] = md.Values()[i]
		}
	}
	var tbl arrow.Table
	switch {
	case bytes.HasPrefix(data, []byte("PAR1")):
		pf, err := file.NewParquetReader(bytes.NewReader(data))
		if err != nil {
			return nil, nil, fmt.Errorf("%s: not a readable Parquet file: %w", path, err)
		}
		defer pf.Close()
		for _, kvm := range pf.MetaData().KeyValueMetadata() {
			if kvm.Value != nil {
				meta[kvm.Key] = *kvm.Value
			}
		}
		fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{}, mem)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", path, err)
		}
		if tbl, err = fr.ReadTable(ctx); err != nil {
			return nil, nil, fmt.Errorf("%s: reading Parquet: %w", path, err)
		}
	case bytes.HasPrefix(data, []byte("ARROW1")):
		r, err := ipc.NewFileReader(bytes.NewReader(data), ipc.WithAllocator(mem))
		if err != nil {
			return nil, nil, fmt.Errorf("%s: not a readable Arrow IPC file: %w", path, err)
		}
		defer r.Close()
		recs := make([]arrow.RecordBatch, 0, r.NumRecords())
		for i := 0; i < r.NumRecords(); i++ {
			rec, err := r.RecordBatchAt(i)
			if err != nil {
				releaseAll(recs)
				return nil, nil, fmt.Errorf("%s: reading Arrow IPC: %w", path, err)
			}
			recs = append(recs, rec)
		}
		tbl = array.NewTableFromRecords(r.Schema(), recs)
		releaseAll(recs)
	default:
		r, err := ipc.NewReader(bytes.NewReader(data), ipc.WithAllocator(mem))
		if err != nil {
			return nil, nil, fmt.Errorf("%s: neither Parquet nor Arrow IPC: %w", path, err)
		}
		defer r.Release()
		var recs []arrow.RecordBatch
		for r.Next() {
			rec := r.RecordBatch()
			rec.Retain()
			recs = append(recs, rec)
		}
		if err := r.Err(); err != nil && !errors.Is(err, io.EOF) {
			releaseAll(recs)
			return nil, nil, fmt.Errorf("%s: reading Arrow IPC stream: %w", path, err)
		}
		tbl = array.NewTableFromRecords(r.Schema(), recs)
		releaseAll(recs)
	}
	addMeta(tbl.Schema().Metadata())
	return tbl, meta, nil
}

func releaseAll(recs []arrow.RecordBatch) {
	for _, r := range recs {
		r.Release()
	}
}

// heResult is the decrypted table: the group-by key columns, rows, score_sum, score_mean.
type heResult struct {
	keys []string
	rows []heRow
}

type heRow struct {
	keys  []*string // nil for a NULL key
	rows  int64
	sum   float64
	mean  float64
	empty bool // rows == 0: no mean
}

// heResultTable joins the export's rows to the decrypted sums through the slot column.
func heResultTable(path string, tbl arrow.Table, sums []float64) (*heResult, error) {
	sc := tbl.Schema()
	rowsIdx, slotIdx := -1, -1
	var keyIdx []int
	res := &heResult{}
	for i, f := range sc.Fields() {
		switch f.Name {
		case heRowsCol, heSlotCol:
			if f.Type.ID() != arrow.INT64 {
				return nil, fmt.Errorf("%s: column %q is %s, expected int64", path, f.Name, f.Type)
			}
			if f.Name == heRowsCol {
				rowsIdx = i
			} else {
				slotIdx = i
			}
		default:
			keyIdx = append(keyIdx, i)
			res.keys = append(res.keys, f.Name)
		}
	}
	if rowsIdx < 0 || slotIdx < 0 {
		return nil, fmt.Errorf("%s: an he-score export needs int64 columns %q and %q", path, heRowsCol, heSlotCol)
	}
	tr := array.NewTableReader(tbl, 1<<16)
	defer tr.Release()
	for tr.Next() {
		rec := tr.RecordBatch()
		rowsCol := rec.Column(rowsIdx).(*array.Int64)
		slotCol := rec.Column(slotIdx).(*array.Int64)
		for i := 0; i < int(rec.NumRows()); i++ {
			if rowsCol.IsNull(i) || slotCol.IsNull(i) {
				return nil, fmt.Errorf("%s: row %d has a NULL %s or %s", path, len(res.rows), heRowsCol, heSlotCol)
			}
			slot := slotCol.Value(i)
			if slot < 0 || slot >= int64(len(sums)) {
				return nil, fmt.Errorf("%s: row %d has slot %d but the sums hold %d groups", path, len(res.rows), slot, len(sums))
			}
			r := heRow{rows: rowsCol.Value(i), sum: sums[slot]}
			if r.rows > 0 {
				r.mean = r.sum / float64(r.rows)
			} else {
				r.empty = true
			}
			for _, k := range keyIdx {
				col := rec.Column(k)
				if col.IsNull(i) {
					r.keys = append(r.keys, nil)
					continue
				}
				v := col.ValueStr(i)
				if s, ok := col.(*array.String); ok {
					v = s.Value(i)
				}
				r.keys = append(r.keys, &v)
			}
			res.rows = append(res.rows, r)
		}
	}
	return res, nil
}

func (r *heResult) headers() []string {
	return append(append([]string(nil), r.keys...), "rows", "score_sum", "score_mean")
}

// strings formats a row; prec is the float precision (-1: shortest exact).
func (row heRow) strings(prec int, null string) []string {
	var out []string
	for _, k := range row.keys {
		if k == nil {
			out = append(out, null)
		} else {
			out = append(out, *k)
		}
	}
	mean := ""
	if !row.empty {
		mean = strconv.FormatFloat(row.mean, 'g', prec, 64)
	}
	return append(out, strconv.FormatInt(row.rows, 10), strconv.FormatFloat(row.sum, 'g', prec, 64), mean)
}

func (r *heResult) tableRows() [][]string {
	var out [][]string
	for _, row := range r.rows {
		out = append(out, row.strings(6, "NULL"))
	}
	return out
}

func (r *heResult) records() []map[string]any {
	out := make([]map[string]any, 0, len(r.rows))
	for _, row := range r.rows {
		m := map[string]any{"rows": row.rows, "score_sum": row.sum, "score_mean": nil}
		if !row.empty {
			m["score_mean"] = row.mean
		}
		for i, k := range row.keys {
			m[r.keys[i]] = k
		}
		out = append(out, m)
	}
	return out
}

func (r *heResult) csv() []byte {
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	w.Write(r.headers())
	for _, row := range r.rows {
		w.Write(row.strings(-1, ""))
	}
	w.Flush()
	return buf.Bytes()
}
