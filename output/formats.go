package output

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/csv"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	"github.com/veil-dp/veil/policy"
)

// Encode writes a protected output in one of the export formats.
func Encode(rec arrow.RecordBatch, format string) ([]byte, error) {
	var buf bytes.Buffer
	if md := rec.Schema().Metadata(); md.FindKey(HESums) >= 0 && (format == "csv" || format == "json") {
		return nil, fmt.Errorf("%w: an he-score export carries its encrypted sums as Arrow metadata, which %s cannot hold; fetch it as arrow or parquet and run veil he decrypt", policy.ErrInvalid, format)
	}
	switch format {
	case "csv":
		w := csv.NewWriter(&buf, rec.Schema(), csv.WithHeader(true))
		if err := w.Write(rec); err != nil {
			return nil, err
		}
		if err := w.Flush(); err != nil {
			return nil, err
		}
	case "json":
		cols := rec.Schema().Fields()
		buf.WriteString("[")
		for i, row := range Rows(rec) {
			if i > 0 {
				buf.WriteString(",")
			}
			buf.WriteString("\n  {")
			for c, v := range row {
				if c > 0 {
					buf.WriteString(", ")
				}
				k, _ := json.Marshal(cols[c].Name)
				val, err := json.Marshal(v)
				if err != nil {
					return nil, err
				}
				buf.Write(k)
				buf.WriteString(": ")
				buf.Write(val)
			}
			buf.WriteString("}")
		}
		buf.WriteString("\n]\n")
	case "arrow":
		w, err := ipc.NewFileWriter(&buf, ipc.WithSchema(rec.Schema()))
		if err := writeAll(w, err, rec); err != nil {
			return nil, err
		}
	case "parquet":
		w, err := pqarrow.NewFileWriter(rec.Schema(), &buf, parquet.NewWriterProperties(), pqarrow.NewArrowWriterProperties(pqarrow.WithStoreSchema()))
		if err := writeAll(w, err, rec); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("%w: unknown export format %q (parquet, csv, json, arrow)", policy.ErrInvalid, format)
	}
	return buf.Bytes(), nil
}

// Rows renders a protected output as rows of JSON values.
func Rows(rec arrow.RecordBatch) [][]any {
	rows := make([][]any, rec.NumRows())
	for i := range rows {
		row := make([]any, rec.NumCols())
		for c := range row {
			col := rec.Column(c)
			if col.IsNull(i) {
				continue
			}
			row[c] = col.GetOneForMarshal(i)
		}
		rows[i] = row
	}
	return rows
}

// writeAll writes rec with a file writer that was opened with err, and closes it.
func writeAll(w interface {
	Write(arrow.RecordBatch) error
	Close() error
}, err error, rec arrow.RecordBatch) error {
	if err != nil {
		return err
	}
	if err := w.Write(rec); err != nil {
		return err
	}
	return w.Close()
}
