package gate

import (
	"encoding/base64"
	"fmt"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/memory"

	"github.com/veil-dp/veil/output"
	"github.com/veil-dp/veil/runner"
)

// HE is the reviewable output of an he-score job: one row per scored group with its
// keys, its row count and its slot in the ciphertext, which travels as schema metadata.
func HE(spec *runner.Score, res *runner.ScoreResult) (arrow.RecordBatch, error) {
	fields := []arrow.Field{}
	for _, k := range spec.GroupBy {
		fields = append(fields, arrow.Field{Name: k, Type: arrow.BinaryTypes.String, Nullable: true})
	}
	fields = append(fields, arrow.Field{Name: "rows", Type: arrow.PrimitiveTypes.Int64}, arrow.Field{Name: "slot", Type: arrow.PrimitiveTypes.Int64})
	md := arrow.NewMetadata([]string{output.HESums, output.HEKeyID}, []string{base64.StdEncoding.EncodeToString(res.Sums), spec.KeyID})
	schema := arrow.NewSchema(fields, &md)
	b := array.NewRecordBuilder(memory.DefaultAllocator, schema)
	defer b.Release()
	for slot, gr := range res.Groups {
		if len(gr.Keys) != len(spec.GroupBy) {
			return nil, fmt.Errorf("group %d has %d keys, want %d", slot, len(gr.Keys), len(spec.GroupBy))
		}
		for i, k := range gr.Keys {
			sb := b.Field(i).(*array.StringBuilder)
			if k == nil {
				sb.AppendNull()
			} else {
				sb.Append(*k)
			}
		}
		b.Field(len(spec.GroupBy)).(*array.Int64Builder).Append(gr.Rows)
		b.Field(len(spec.GroupBy) + 1).(*array.Int64Builder).Append(int64(slot))
	}
	return b.NewRecordBatch(), nil
}
