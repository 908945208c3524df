package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/veil-dp/veil/client"
	"github.com/veil-dp/veil/daemon/api"
)

// uploadChunk is the part of a file one request sends (tests make it small to have many).
var uploadChunk = client.UploadChunk

// uploadState is what an upload under way leaves for the next run of the same command: the
// daemon's upload ID and the file's digest (not hashed again). The daemon says the offset.
type uploadState struct {
	ID     string `json:"id"`
	SHA256 string `json:"sha256"`
}

// uploadStatePath is the state file of an upload of the file at abs (as it is now: its
// size and modification time) to the daemon at host, under the user's cache directory;
// "" when there is none (no home directory).
func uploadStatePath(host, abs string, st os.FileInfo) string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	h := sha256.New()
	for _, part := range []string{host, abs, strconv.FormatInt(st.Size(), 10), strconv.FormatInt(st.ModTime().UnixNano(), 10)} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	return filepath.Join(dir, "veil", "uploads", hex.EncodeToString(h.Sum(nil))[:32]+".json")
}

// uploadFile sends the file at abs to the daemon, resuming an upload of it an earlier run
// left (the same daemon, path, size and modification time), and returns the completed
// upload and its state file (removed by forgetUploads once the upload is registered).
func uploadFile(cmd *cobra.Command, c *client.Client, abs string) (api.Upload, string, error) {
	name := filepath.Base(abs)
	st, err := os.Stat(abs)
	if err != nil {
		return api.Upload{}, "", err
	}
	statePath := uploadStatePath(g.daemon, abs, st)
	var prev uploadState
	if statePath != "" {
		if b, err := os.ReadFile(statePath); err == nil && len(b) < 4096 {
			json.Unmarshal(b, &prev)
		}
	}
	o := client.UploadOptions{Chunk: uploadChunk, Progress: progressBar(g.errOut, name), Resume: prev.ID, SHA256: prev.SHA256}
	o.Started = func(u api.Upload, sum string) {
		switch {
		case prev.ID != "" && u.ID == prev.ID:
			fmt.Fprintf(g.errOut, "%s: resuming upload %s at %s of %s\n", name, u.ID, mib(u.Offset), mib(u.Size))
		case prev.ID != "":
			fmt.Fprintf(g.errOut, "%s: the daemon no longer holds upload %s (registered or expired); starting over\n", name, prev.ID)
		}
		if statePath == "" || u.ID == prev.ID {
			return
		}
		b, _ := json.Marshal(uploadState{ID: u.ID, SHA256: sum})
		if os.MkdirAll(filepath.Dir(statePath), 0o700) == nil {
			os.WriteFile(statePath, b, 0o600) // without it, a later run starts over
		}
	}
	u, err := c.UploadFile(cmd.Context(), abs, o)
	if err != nil {
		if u.ID != "" && statePath != "" {
			err = fmt.Errorf("%w (run the same command again to resume from what the daemon holds)", err)
		}
		return u, statePath, fmt.Errorf("upload %s: %w", name, err)
	}
	return u, statePath, nil
}

// forgetUploads removes the state files of uploads that were registered.
func forgetUploads(paths []string) {
	for _, p := range paths {
		if p != "" {
			os.Remove(p)
		}
	}
}
