package output

import (
	"bytes"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/ipc"

	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/engine"
)

// Export metadata keys of an he-score output (read by `veil he decrypt`).
const (
	HESums  = "veil.he.sums"
	HEKeyID = "veil.he.key_id"
)

// Meta is the stored description of a protected output.
type Meta struct {
	Mechanism api.Mechanism     `json:"mechanism"`
	Columns   []string          `json:"columns"`
	Rows      int64             `json:"rows"`
	Datasets  map[string]string `json:"datasets"` // name → version the job read
}

// EncodeIPC is how a protected output is stored: one Arrow IPC stream.
func EncodeIPC(rec arrow.RecordBatch) ([]byte, error) {
	var buf bytes.Buffer
	w := ipc.NewWriter(&buf, ipc.WithSchema(rec.Schema()))
	if err := w.Write(rec); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// DecodeIPC reads a stored output back.
func DecodeIPC(data []byte) (arrow.RecordBatch, error) {
	return engine.ReadResult(bytes.NewReader(data), int64(len(data))+1)
}
