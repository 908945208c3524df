package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/csv"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/veil-dp/veil/he"
)

// runVeil runs the CLI in process and returns what it printed on standard output (what
// goes to standard error, such as the progress of a wait, is left out: it holds timings).
func runVeil(t *testing.T, args ...string) (string, error) {
	t.Helper()
	out, _, err := runVeilIO(t, "", args...)
	return out, err
}

// runVeilIO runs the CLI in process with stdin and returns its standard output and error.
// The error, if any, is the *cliError that carries the exit code.
func runVeilIO(t *testing.T, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	err = execute(context.Background(), args, strings.NewReader(stdin), &out, &errOut)
	return out.String(), errOut.String(), err
}

const heTestModel = `{
  "kind": "linear",
  "features": [
    {"name": "income", "lower": 0, "upper": 100000, "mean": 40000, "scale": 20000},
    {"name": "age", "lower": 18, "upper": 90, "mean": 45, "scale": 15}
  ],
  "weights": [0.7, -0.3],
  "bias": 1.5
}`

// heVendor is a vendor set-up: keys, model.json and model.enc in a test directory.
type heVendor struct {
	secret, public, model, enc string
}

// vendor runs keygen and encrypt-model through the CLI.
func vendor(t *testing.T) heVendor {
	t.Helper()
	dir := t.TempDir()
	v := heVendor{secret: filepath.Join(dir, "keys", "secret.key"), public: filepath.Join(dir, "keys", "public.bundle"),
		model: filepath.Join(dir, "model.json"), enc: filepath.Join(dir, "model.enc")}
	out, err := runVeil(t, "he", "keygen", "--groups", "4", "--dir", filepath.Join(dir, "keys"))
	if err != nil {
		t.Fatalf("keygen: %v\n%s", err, out)
	}
	t.Logf("keygen:\n%s", out)
	for _, w := range []string{"key ID", "lanes", "must never leave this machine", "uploaded with jobs"} {
		if !strings.Contains(out, w) {
			t.Errorf("keygen output lacks %q", w)
		}
	}
	if err := os.WriteFile(v.model, []byte(heTestModel), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = runVeil(t, "he", "encrypt-model", "--public", v.public, "--model", v.model, "--out", v.enc)
	if err != nil {
		t.Fatalf("encrypt-model: %v\n%s", err, out)
	}
	t.Logf("encrypt-model:\n%s", out)
	for _, w := range []string{"income", "age", "linear", "100000"} {
		if !strings.Contains(out, w) {
			t.Errorf("encrypt-model output lacks %q", w)
		}
	}
	for _, secret := range []string{"0.7", "40000", "20000", "1.5"} {
		if strings.Contains(out, secret) {
			t.Errorf("encrypt-model output shows a secret model value %q", secret)
		}
	}
	return v
}

// heRows is the scored data: group slot and z per feature.
var heRows = []struct {
	group int32
	z     [2]float64
}{
	{0, [2]float64{0.5, -0.2}}, {0, [2]float64{-1, 1}}, {0, [2]float64{0.1, 0.3}},
	{1, [2]float64{1, -1}}, {1, [2]float64{-0.4, 0.9}},
	{2, [2]float64{0, 0}}, {2, [2]float64{0.8, 0.25}}, {2, [2]float64{-0.6, -0.75}}, {2, [2]float64{0.33, 0.66}},
}

// heExpected is the plaintext score sum per group slot.
func heExpected(t *testing.T) (sums []float64, counts []int64) {
	m, err := he.ParseModel([]byte(heTestModel))
	if err != nil {
		t.Fatal(err)
	}
	sums, counts = make([]float64, 3), make([]int64, 3)
	for _, r := range heRows {
		s := m.Bias
		for j, f := range m.Features {
			center, half := (f.Lower+f.Upper)/2, (f.Upper-f.Lower)/2
			x := center + half*r.z[j]
			s += m.Weights[j] * (x - f.Mean) / f.Scale
		}
		sums[r.group] += s
		counts[r.group]++
	}
	return sums, counts
}

// heSumsBlob scores heRows the way the daemon does and returns the flooded sums.
func heSumsBlob(t *testing.T, v heVendor) ([]byte, string) {
	pubBlob, err := os.ReadFile(v.public)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := he.UnmarshalPublicBundle(pubBlob)
	if err != nil {
		t.Fatal(err)
	}
	emBlob, err := os.ReadFile(v.enc)
	if err != nil {
		t.Fatal(err)
	}
	em, err := he.UnmarshalEncryptedModel(emBlob)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := he.NewScorer(pub, em, 3)
	if err != nil {
		t.Fatal(err)
	}
	group := make([]int32, len(heRows))
	z := [][]float64{make([]float64, len(heRows)), make([]float64, len(heRows))}
	for i, r := range heRows {
		group[i], z[0][i], z[1][i] = r.group, r.z[0], r.z[1]
	}
	if err := sc.Add(group, z); err != nil {
		t.Fatal(err)
	}
	sums, err := sc.Finish()
	if err != nil {
		t.Fatal(err)
	}
	if err := sums.Flood(); err != nil {
		t.Fatal(err)
	}
	blob, err := sums.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return blob, pub.KeyID()
}

// heExportRecord builds the export table: the district key, rows, slot, and (if blob is not
// nil) the sums metadata. Districts are listed out of slot order to exercise the slot join.
func heExportRecord(counts []int64, blob []byte, keyID string) arrow.RecordBatch {
	var md arrow.Metadata
	if blob != nil {
		md = arrow.NewMetadata([]string{"veil.he.sums", "veil.he.key_id"}, []string{base64.StdEncoding.EncodeToString(blob), keyID})
	}
	schema := arrow.NewSchema([]arrow.Field{
		{Name: "district", Type: arrow.BinaryTypes.String},
		{Name: "rows", Type: arrow.PrimitiveTypes.Int64},
		{Name: "slot", Type: arrow.PrimitiveTypes.Int64},
	}, &md)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	for _, slot := range []int{2, 0, 1} {
		b.Field(0).(*array.StringBuilder).Append(heDistricts[slot])
		b.Field(1).(*array.Int64Builder).Append(counts[slot])
		b.Field(2).(*array.Int64Builder).Append(int64(slot))
	}
	return b.NewRecordBatch()
}

var heDistricts = []string{"east", "north", "south"}

func writeArrowStream(t *testing.T, path string, rec arrow.RecordBatch) {
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(rec.Schema()))
	if err := w.Write(rec); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeArrowFile writes the Arrow IPC file format ("ARROW1"), which decrypt also accepts.
func writeArrowFile(t *testing.T, path string, rec arrow.RecordBatch) {
	var buf bytes.Buffer
	w, err := ipc.NewFileWriter(&buf, ipc.WithSchema(rec.Schema()))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Write(rec); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func writeParquet(t *testing.T, path string, rec arrow.RecordBatch) {
	writeParquetProps(t, path, rec, pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema()))
}

// writeParquetPlain writes Parquet without the stored Arrow schema: the schema metadata then
// travels only as the file's key-value metadata, which decrypt also reads.
func writeParquetPlain(t *testing.T, path string, rec arrow.RecordBatch) {
	writeParquetProps(t, path, rec, pqarrow.DefaultWriterProps())
}

func writeParquetProps(t *testing.T, path string, rec arrow.RecordBatch, props pqarrow.ArrowWriterProperties) {
	var buf bytes.Buffer
	tbl := array.NewTableFromRecords(rec.Schema(), []arrow.RecordBatch{rec})
	defer tbl.Release()
	if err := pqarrow.WriteTable(tbl, &buf, 1024, parquet.NewWriterProperties(), props); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestHERoundTrip(t *testing.T) {
	v := vendor(t)
	if st, err := os.Stat(v.secret); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("secret.key: %v, mode %v; want mode 0600", err, st.Mode().Perm())
	}
	if st, err := os.Stat(v.public); err != nil || st.Mode().Perm() != 0o644 {
		t.Fatalf("public.bundle: %v, mode %v; want mode 0644", err, st.Mode().Perm())
	}
	want, counts := heExpected(t)
	blob, keyID := heSumsBlob(t, v)
	rec := heExportRecord(counts, blob, keyID)
	defer rec.Release()
	for _, tc := range []struct {
		name, ext string
		write     func(*testing.T, string, arrow.RecordBatch)
	}{{"arrow", ".arrow", writeArrowStream}, {"arrow-file", ".arrow", writeArrowFile}, {"parquet", ".parquet", writeParquet}, {"parquet-no-stored-schema", ".parquet", writeParquetPlain}} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			export, result := filepath.Join(dir, "export"+tc.ext), filepath.Join(dir, "result.csv")
			tc.write(t, export, rec)
			out, err := runVeil(t, "he", "decrypt", "--secret", v.secret, "--in", export, "--out", result)
			if err != nil {
				t.Fatalf("decrypt: %v\n%s", err, out)
			}
			t.Logf("decrypt:\n%s", out)
			f, err := os.Open(result)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			lines, err := csv.NewReader(f).ReadAll()
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(lines[0], ","); got != "district,rows,score_sum,score_mean" {
				t.Fatalf("CSV header %q", got)
			}
			if len(lines) != 4 {
				t.Fatalf("CSV has %d lines, want header + 3 groups", len(lines))
			}
			for _, l := range lines[1:] {
				slot := -1
				for s, d := range heDistricts {
					if d == l[0] {
						slot = s
					}
				}
				if slot < 0 {
					t.Fatalf("unknown district %q", l[0])
				}
				rows, _ := strconv.ParseInt(l[1], 10, 64)
				sum, err1 := strconv.ParseFloat(l[2], 64)
				mean, err2 := strconv.ParseFloat(l[3], 64)
				if err1 != nil || err2 != nil || rows != counts[slot] {
					t.Fatalf("row %v: rows want %d (%v, %v)", l, counts[slot], err1, err2)
				}
				if d := math.Abs(sum - want[slot]); d > 1e-3 && d > 1e-3*math.Abs(want[slot]) {
					t.Errorf("%s: score_sum %g, want %g", l[0], sum, want[slot])
				}
				if math.Abs(mean-sum/float64(rows)) > 1e-9*math.Max(1, math.Abs(mean)) {
					t.Errorf("%s: score_mean %g != score_sum/rows %g", l[0], mean, sum/float64(rows))
				}
			}
		})
	}
}

func TestHEDecryptWithoutMetadata(t *testing.T) {
	v := vendor(t)
	_, counts := heExpected(t)
	rec := heExportRecord(counts, nil, "")
	defer rec.Release()
	for _, tc := range []struct {
		ext   string
		write func(*testing.T, string, arrow.RecordBatch)
	}{{".arrow", writeArrowStream}, {".parquet", writeParquet}} {
		export := filepath.Join(t.TempDir(), "plain"+tc.ext)
		tc.write(t, export, rec)
		_, err := runVeil(t, "he", "decrypt", "--secret", v.secret, "--in", export)
		if err == nil || !strings.Contains(err.Error(), "is not an he-score export (no veil.he.sums metadata)") {
			t.Fatalf("%s: got %v, want the not-an-he-score-export error", tc.ext, err)
		}
	}
}

func TestHEKeygenRefusesOverwrite(t *testing.T) {
	v := vendor(t)
	before, err := os.ReadFile(v.secret)
	if err != nil {
		t.Fatal(err)
	}
	_, err = runVeil(t, "he", "keygen", "--groups", "4", "--dir", filepath.Dir(v.secret))
	if err == nil || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("keygen over an existing secret.key: got %v, want a refusal naming --force", err)
	}
	after, err := os.ReadFile(v.secret)
	if err != nil || !bytes.Equal(before, after) {
		t.Fatalf("secret.key changed after a refused keygen (%v)", err)
	}
	if err := os.Chmod(v.secret, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := runVeil(t, "he", "keygen", "--groups", "4", "--dir", filepath.Dir(v.secret), "--force"); err != nil {
		t.Fatalf("keygen --force: %v\n%s", err, out)
	}
	st, err := os.Stat(v.secret)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("secret.key after --force: %v, want mode 0600", err)
	}
	if after, _ := os.ReadFile(v.secret); bytes.Equal(before, after) {
		t.Fatal("keygen --force did not replace secret.key")
	}
}

func TestHEDecryptWrongKey(t *testing.T) {
	v, other := vendor(t), vendor(t)
	_, counts := heExpected(t)
	blob, keyID := heSumsBlob(t, v)
	rec := heExportRecord(counts, blob, keyID)
	defer rec.Release()
	export := filepath.Join(t.TempDir(), "export.arrow")
	writeArrowStream(t, export, rec)
	otherSK, err := os.ReadFile(other.secret)
	if err != nil {
		t.Fatal(err)
	}
	sk, err := he.UnmarshalSecretKey(otherSK)
	if err != nil {
		t.Fatal(err)
	}
	_, err = runVeil(t, "he", "decrypt", "--secret", other.secret, "--in", export)
	if err == nil || !strings.Contains(err.Error(), keyID) || !strings.Contains(err.Error(), sk.KeyID()) {
		t.Fatalf("decrypt with another key set: got %v, want an error naming key IDs %s and %s", err, keyID, sk.KeyID())
	}
}
