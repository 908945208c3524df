package output

import (
	"archive/tar"
	"bytes"
	"time"
	"unicode/utf8"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/veil-dp/veil/daemon/api"
)

// previewBytes is how much of a text file a reviewer sees at once.
const previewBytes = 4 << 10

// File is one file of a custom job's output.
type File struct {
	Name string
	Data []byte
}

// FilesRecord holds a custom job's files as the stored output: name, kind, content.
func FilesRecord(files []File, kinds map[string]string) arrow.RecordBatch {
	schema := arrow.NewSchema([]arrow.Field{{Name: "file", Type: arrow.BinaryTypes.String}, {Name: "kind", Type: arrow.BinaryTypes.String},
		{Name: "content", Type: arrow.BinaryTypes.Binary}}, nil)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	for _, f := range files {
		b.Field(0).(*array.StringBuilder).Append(f.Name)
		b.Field(1).(*array.StringBuilder).Append(kinds[f.Name])
		b.Field(2).(*array.BinaryBuilder).Append(f.Data)
	}
	return b.NewRecordBatch()
}

// Files is what a reviewer sees of a custom output: names, sizes, kinds, and the start
// of each text file.
func Files(rec arrow.RecordBatch) []api.OutputFile {
	var out []api.OutputFile
	names, kinds, data := rec.Column(0).(*array.String), rec.Column(1).(*array.String), rec.Column(2).(*array.Binary)
	for r := 0; r < int(rec.NumRows()); r++ {
		b := data.Value(r)
		f := api.OutputFile{Name: names.Value(r), Kind: kinds.Value(r), Bytes: int64(len(b))}
		if p := b[:min(len(b), previewBytes)]; utf8.Valid(p) {
			f.Preview = string(p)
		}
		out = append(out, f)
	}
	return out
}

// Tar is a custom output's export: its files in one tar.
func Tar(rec arrow.RecordBatch, released time.Time) ([]byte, error) {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	names, data := rec.Column(0).(*array.String), rec.Column(2).(*array.Binary)
	for r := 0; r < int(rec.NumRows()); r++ {
		b := data.Value(r)
		if err := tw.WriteHeader(&tar.Header{Name: names.Value(r), Mode: 0o644, Size: int64(len(b)), ModTime: released, Typeflag: tar.TypeReg}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(b); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
