// Command vendorprog is a vendor's program for the custom-job tests and the demo, built statically and
// run on a runtime image without anything else: it reads /in/residents.parquet and writes
// to /out what its mode (set at build time) says.
//
//	copy       every row to /out/rows.csv (must be flagged as row-level data)
//	aggregate  persons per district, rounded to 5, groups under 10 left out, with a manifest
//	fail       a message on stderr and exit status 3 (the vendor must see neither)
package main

import (
	"context"
	"encoding/csv"
	"fmt"
	"os"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

var mode = "aggregate"

func main() {
	if mode == "fail" {
		fmt.Fprintln(os.Stderr, "SECRET-STDERR-MARKER")
		os.Exit(3)
	}
	rdr, err := file.OpenParquetFile("/in/residents.parquet", false)
	if err != nil {
		fail(err)
	}
	fr, err := pqarrow.NewFileReader(rdr, pqarrow.ArrowReadProperties{}, memory.DefaultAllocator)
	if err != nil {
		fail(err)
	}
	tbl, err := fr.ReadTable(context.Background())
	if err != nil {
		fail(err)
	}
	names := tbl.Schema().Fields()
	col := func(i int) []string {
		var out []string
		for _, ch := range tbl.Column(i).Data().Chunks() {
			for r := 0; r < ch.Len(); r++ {
				out = append(out, ch.ValueStr(r))
			}
		}
		return out
	}
	var cols [][]string
	var header []string
	district := -1
	for i, f := range names {
		cols = append(cols, col(i))
		header = append(header, f.Name)
		if f.Name == "district" {
			district = i
		}
	}
	if district < 0 {
		fail(fmt.Errorf("no district column"))
	}
	districts := cols[district]
	switch mode {
	case "copy":
		write("rows.csv", func(w *csv.Writer) {
			w.Write(header)
			for r := range districts {
				row := make([]string, len(cols))
				for i := range cols {
					row[i] = cols[i][r]
				}
				w.Write(row)
			}
		})
	case "aggregate":
		n := map[string]int{}
		var order []string
		for _, d := range districts {
			if n[d] == 0 {
				order = append(order, d)
			}
			n[d]++
		}
		write("by_district.csv", func(w *csv.Writer) {
			w.Write([]string{"district", "persons"})
			for _, d := range order {
				if n[d] >= 10 {
					w.Write([]string{d, fmt.Sprint(n[d] / 5 * 5)})
				}
			}
		})
		os.WriteFile("/out/manifest.json", []byte(`{"outputs": [{"file": "by_district.csv", "kind": "frequency", "count_column": "persons"}]}`), 0o644)
	}
}

func write(name string, f func(w *csv.Writer)) {
	out, err := os.Create("/out/" + name)
	if err != nil {
		fail(err)
	}
	w := csv.NewWriter(out)
	f(w)
	w.Flush()
	if err := out.Close(); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
