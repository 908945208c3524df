// Command vendorprog is a vendor's program for the custom-job tests and the demo, built statically and
// run on a runtime image without anything else: it reads /in/residents.parquet and writes
// to /out what its mode (set at build time) says.
//
//	copy       every row to /out/rows.csv (must be flagged as row-level data)
//	aggregate  persons per district, rounded to 5, groups under 10 left out, with a manifest
//	fail       a message on stderr and exit status 3 (the vendor sees neither, except in a dev run)
//	sparse     a 1 GiB sparse file in /out (tmpfs takes it whatever its size)
//	many       101 small files in /out
//	bigtotal   three files of 400 KiB of real bytes each
//	fill       fills /scratch and /out until they are full, and reports the bytes each took
//	wait       waits (at most a minute) until /out/release exists, then exits
package main

import (
	"context"
	"encoding/csv"
	"fmt"
	"os"
	"time"

	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
)

var mode = "aggregate"

func main() {
	switch mode {
	case "wait":
		for i := 0; i < 6000; i++ {
			if _, err := os.Stat("/out/release"); err == nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		os.Remove("/out/release")
		return
	case "fail":
		fmt.Fprintln(os.Stderr, "SECRET-STDERR-MARKER")
		os.Exit(3)
	case "sparse":
		f, err := os.Create("/out/big.bin")
		if err != nil {
			fail(err)
		}
		f.WriteString("header")
		if err := f.Truncate(1 << 30); err != nil {
			fail(err)
		}
		f.Close()
		return
	case "many":
		for i := range 101 {
			os.WriteFile(fmt.Sprintf("/out/f%03d.txt", i), []byte("x\n"), 0o644)
		}
		return
	case "bigtotal":
		for i := range 3 {
			b := make([]byte, 400<<10)
			for j := range b {
				b[j] = byte('a' + (i+j)%26)
			}
			if err := os.WriteFile(fmt.Sprintf("/out/part%d.txt", i), b, 0o644); err != nil {
				fail(err)
			}
		}
		return
	case "fill":
		s := fill("/scratch/fill")
		o := fill("/out/fill")
		os.Remove("/out/fill")
		os.WriteFile("/out/fill.txt", []byte(fmt.Sprintf("scratch %d\nout %d\n", s, o)), 0o644)
		return
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

// fill writes to path until the file system refuses more, and returns how much it took.
func fill(path string) int64 {
	f, err := os.Create(path)
	if err != nil {
		fail(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for i := range chunk {
		chunk[i] = 'x'
	}
	var n int64
	for n < 1<<30 {
		k, err := f.Write(chunk)
		n += int64(k)
		if err != nil {
			break
		}
	}
	return n
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}
