package sandbox

import (
	"bytes"
	"fmt"
	"testing"
)

// TestBoundedBufferTail: however it is written (one byte at a time, in lines, in one write
// larger than the bound), a tail buffer holds exactly the last max bytes, after a line saying
// how many were dropped; the head buffer the first max bytes.
func TestBoundedBufferTail(t *testing.T) {
	var all bytes.Buffer
	for i := range 5000 {
		fmt.Fprintf(&all, "line %d\n", i)
	}
	want := all.Bytes()[all.Len()-1000:]
	for _, chunk := range []int{1, 7, 999, 1000, 1001, 4096, all.Len()} {
		b := &boundedBuffer{max: 1000, tail: true}
		for p := all.Bytes(); len(p) > 0; p = p[min(chunk, len(p)):] {
			b.Write(p[:min(chunk, len(p))])
		}
		got := b.Bytes()
		head := fmt.Sprintf("[the first %d bytes dropped; the last 1000 follow]\n", all.Len()-1000)
		if !bytes.Equal(got, append([]byte(head), want...)) {
			t.Errorf("chunks of %d: %d bytes, starting %q", chunk, len(got), got[:min(80, len(got))])
		}
	}
	small := &boundedBuffer{max: 1000, tail: true}
	small.Write([]byte("short"))
	if string(small.Bytes()) != "short" {
		t.Errorf("within the bound: %q", small.Bytes())
	}
	h := &boundedBuffer{max: 10}
	h.Write(all.Bytes())
	if string(h.Bytes()) != "line 0\nlin" {
		t.Errorf("head: %q", h.Bytes())
	}
}
