// Command citygen writes the generated demo city (or, with -bench, the benchmark table) as
// Parquet files with their schema files. The data is synthetic and deterministic.
//
//	citygen -out DIR [-residents N] [-customers C]
//	citygen -out DIR -bench [-rows R -units U -groups G]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/veil-dp/veil/testdata"
)

func main() {
	out := flag.String("out", "city", "directory to write into")
	residents := flag.Int("residents", 100_000, "residents of the city")
	bench := flag.Bool("bench", false, "write the benchmark table bench_events instead")
	rows := flag.Int("rows", 10_000_000, "bench: rows")
	units := flag.Int("units", 1_000_000, "bench: distinct persons")
	groups := flag.Int("groups", 100, "bench: groups")
	customers := flag.Int("customers", 0, "also write DIR/customers.csv: a vendor's own customer list (this many) for the fusion demo")
	flag.Parse()
	start := time.Now()
	var err error
	if *bench {
		err = testdata.GenerateBench(context.Background(), *out, *rows, *units, *groups)
	} else {
		err = testdata.Generate(context.Background(), *out, *residents)
		if err == nil && *customers > 0 {
			err = testdata.GenerateCustomers(context.Background(), filepath.Join(*out, "customers.csv"), *residents, *customers)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "citygen:", err)
		os.Exit(1)
	}
	files, _ := filepath.Glob(filepath.Join(*out, "*.parquet"))
	for _, f := range files {
		st, _ := os.Stat(f)
		fmt.Printf("%-40s %8.1f MB\n", f, float64(st.Size())/1e6)
	}
	fmt.Printf("generated in %v\n", time.Since(start).Round(time.Millisecond))
}
