package daemon_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/veil-dp/veil/daemon/api"
)

// TestStalledUploadBlocksNoOther: a client that sends a part of its upload and then stalls,
// its request open (the daemon sets no timeout on a request's body: parts are large and
// links slow), holds up no other tenant's uploads: another vendor starts, sends and
// completes its own meanwhile. One lock for every upload was held while a part was read
// from the network, so one stalled request stopped every tenant's uploads, and the sweep.
func TestStalledUploadBlocksNoOther(t *testing.T) {
	e := start(t, nil)
	ctx := context.Background()
	tok, acme := e.vendorToken("acme analyst", "acme")
	_, globex := e.vendorToken("globex analyst", "globex")
	data := make([]byte, 1000)
	sum := sha256.Sum256(data)
	digest := hex.EncodeToString(sum[:])
	u, err := acme.StartUpload(ctx, api.StartUpload{Name: "model.bin", Size: int64(len(data)), SHA256: digest})
	if err != nil {
		t.Fatal(err)
	}
	// acme's part: 10 bytes, then nothing, the request left open.
	body, stall := io.Pipe()
	defer stall.CloseWithError(errors.New("the test ends"))
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", e.cfg.Socket)
	}}}
	req, _ := http.NewRequest("PATCH", fmt.Sprintf("http://veil/v1/uploads/%s?offset=0", u.ID), body)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.ContentLength = int64(len(data))
	go func() {
		if resp, err := hc.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	if _, err := stall.Write(data[:10]); err != nil {
		t.Fatal(err)
	}
	for st, err := acme.UploadStatus(ctx, u.ID); st.Offset < 10; st, err = acme.UploadStatus(ctx, u.ID) {
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	// globex's upload, while acme's part is being received. (The bound only keeps a
	// failing test from hanging.)
	gctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	g, err := globex.StartUpload(gctx, api.StartUpload{Name: "model.bin", Size: int64(len(data)), SHA256: digest})
	if err != nil {
		t.Fatalf("another tenant's upload, while one part of acme's stalls: %v", err)
	}
	if g, err = globex.AppendUpload(gctx, g.ID, 0, data); err != nil || !g.Complete {
		t.Fatalf("another tenant's part, while one part of acme's stalls: %+v %v", g, err)
	}
}

// TestUploadNameNotTheDaemons: an upload's file lies beside the daemon's own record of it
// (meta.json, written through meta.json.tmp): a vendor's upload (any base name) named like
// one of those is refused at its start; one named meta.json.tmp was taken, its bytes then
// written over by the record and renamed into it.
func TestUploadNameNotTheDaemons(t *testing.T) {
	e := start(t, nil)
	ctx := context.Background()
	_, acme := e.vendorToken("acme analyst", "acme")
	data := []byte("0123456789")
	sum := sha256.Sum256(data)
	for _, name := range []string{"meta.json", "meta.json.tmp"} {
		u, err := acme.StartUpload(ctx, api.StartUpload{Name: name, Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])})
		if err == nil {
			_, err = acme.AppendUpload(ctx, u.ID, 0, data)
			t.Errorf("an upload named %s is taken (its part: %v), want it refused at its start", name, err)
			continue
		}
		if kindOf(err) != "invalid" {
			t.Errorf("an upload named %s: %v, want invalid", name, err)
		}
	}
}
