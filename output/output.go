package output

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"

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
	// Digest is the sha256 of the stored stream (Digest), and GateEntry the index of the
	// audit entry (job.gate) that recorded it when the gate produced the output. The entry,
	// not this copy, is what stored bytes are checked against: the store can be written
	// behind the daemon's back, the signed log cannot be without it showing.
	Digest    string `json:"digest,omitempty"`
	GateEntry int64  `json:"gate_entry,omitempty"`
}

// Digest names a stored output: "sha256:" and the hex SHA-256 of its bytes.
func Digest(stored []byte) string {
	h := sha256.Sum256(stored)
	return "sha256:" + hex.EncodeToString(h[:])
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
