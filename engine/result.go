package engine

import (
	"fmt"
	"io"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
)

// ReadResult reads one Arrow IPC stream of at most max bytes into a single record.
func ReadResult(r io.Reader, max int64) (arrow.RecordBatch, error) {
	lr := &io.LimitedReader{R: r, N: max + 1}
	rd, err := ipc.NewReader(lr)
	if err != nil {
		return nil, fmt.Errorf("read result: %w", err)
	}
	defer rd.Release()
	var batches []arrow.RecordBatch
	defer func() {
		for _, b := range batches {
			b.Release()
		}
	}()
	for rd.Next() {
		b := rd.RecordBatch()
		b.Retain()
		batches = append(batches, b)
	}
	if err := rd.Err(); err != nil {
		return nil, fmt.Errorf("read result: %w", err)
	}
	if lr.N <= 0 {
		return nil, ErrResultTooLarge
	}
	schema := rd.Schema()
	cols := make([]arrow.Array, schema.NumFields())
	var rows int64
	for _, b := range batches {
		rows += b.NumRows()
	}
	for i := range cols {
		parts := make([]arrow.Array, 0, len(batches))
		for _, b := range batches {
			parts = append(parts, b.Column(i))
		}
		if len(parts) == 0 {
			cols[i] = array.MakeArrayOfNull(memory.DefaultAllocator, schema.Field(i).Type, 0)
			continue
		}
		c, err := array.Concatenate(parts, memory.DefaultAllocator)
		if err != nil {
			return nil, fmt.Errorf("read result: %w", err)
		}
		cols[i] = c
	}
	rec := array.NewRecordBatch(schema, cols, rows)
	for _, c := range cols {
		c.Release()
	}
	return rec, nil
}
