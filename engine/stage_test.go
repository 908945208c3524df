package engine

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeCSV(t *testing.T, name, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Headers as agencies write them (spaces, $, Chinese characters) are read and stored under
// simple names, with the schema's types: an id with leading zeros stays text.
func TestStageFileHeadersAndTypes(t *testing.T) {
	ctx := context.Background()
	src := writeCSV(t, "strikes.csv", "Record ID,Origin State,Cost Total $,起飞州\n00123,Texas,1500,德州\n00456,Ohio,0,俄州\n")
	cols, err := FileColumns(ctx, src)
	if err != nil {
		t.Fatal(err)
	}
	var heads []string
	for _, c := range cols {
		heads = append(heads, c.Name)
	}
	if got := strings.Join(heads, "|"); got != "Record ID|Origin State|Cost Total $|起飞州" {
		t.Fatalf("headers %q", got)
	}
	dst := filepath.Join(t.TempDir(), "out.parquet")
	n, err := StageFile(ctx, src, dst, []StageColumn{
		{Header: "Record ID", Name: "record_id", Type: "VARCHAR"},
		{Header: "Origin State", Name: "origin_state", Type: "VARCHAR"},
		{Header: "Cost Total $", Name: "cost_total", Type: "DOUBLE"},
		{Header: "起飞州", Name: "qifei", Type: "VARCHAR"},
	}, "veil_row_id", 11)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("%d rows", n)
	}
	info, err := Inspect(ctx, []string{dst})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range info.Columns {
		got = append(got, c.Name+" "+c.Type)
	}
	if s := strings.Join(got, ", "); s != "record_id VARCHAR, origin_state VARCHAR, cost_total DOUBLE, qifei VARCHAR, veil_row_id BIGINT" {
		t.Fatalf("stored columns: %s", s)
	}
	db, err := openLocal()
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var id string
	var first, last int64
	if err := db.QueryRow("SELECT min(record_id), min(veil_row_id), max(veil_row_id) FROM read_parquet("+quoteString(dst)+")").Scan(&id, &first, &last); err != nil {
		t.Fatal(err)
	}
	if id != "00123" || first != 11 || last != 12 {
		t.Fatalf("id %q, rows %d..%d", id, first, last)
	}
}

// A value that does not fit the schema's type is named by line and column in one line, with
// no value of the file in the message, and nothing is left behind.
func TestStageFileCSVErrorOneLine(t *testing.T) {
	ctx := context.Background()
	src := writeCSV(t, "visits.csv", "patient,Cost Total $\n1,10\n2,SECRET-VALUE\n3,oops\n4,5\n")
	dst := filepath.Join(t.TempDir(), "out.parquet")
	_, err := StageFile(ctx, src, dst, []StageColumn{{Header: "patient", Name: "patient", Type: "BIGINT"}, {Header: "Cost Total $", Name: "cost_total", Type: "DOUBLE"}}, "", 0)
	var ce *CSVError
	if !errors.As(err, &ce) {
		t.Fatalf("want a CSVError, got %v", err)
	}
	msg := err.Error()
	if ce.Line != 3 || ce.Column != "Cost Total $" || ce.More != 1 || strings.Contains(msg, "\n") || strings.Contains(msg, "SECRET") || strings.Contains(msg, "oops") || !strings.Contains(msg, "DOUBLE") {
		t.Fatalf("message %q (%+v)", msg, ce)
	}
	if _, err := os.Stat(dst); !os.IsNotExist(err) {
		t.Fatalf("the output was left behind: %v", err)
	}
	t.Log(msg)
	// A row with a column too many.
	src = writeCSV(t, "short.csv", "a,b\n1,2\n3,4,SECRET\n")
	_, err = StageFile(ctx, src, dst, []StageColumn{{Header: "a", Name: "a", Type: "BIGINT"}, {Header: "b", Name: "b", Type: "BIGINT"}}, "", 0)
	if !errors.As(err, &ce) || strings.Contains(err.Error(), "SECRET") || strings.Contains(err.Error(), "\n") || ce.Line != 3 {
		t.Fatalf("got %v", err)
	}
	t.Log(err)
}
