package client

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"

	"github.com/veil-dp/veil/daemon/api"
)

// UploadChunk is the part of a file one request sends.
const UploadChunk = 8 << 20

// StartUpload opens an upload of a data file.
func (c *Client) StartUpload(ctx context.Context, req api.StartUpload) (api.Upload, error) {
	var u api.Upload
	return u, c.do(ctx, "POST", "/v1/uploads", req, &u)
}

// UploadStatus says how many bytes of an upload the daemon holds.
func (c *Client) UploadStatus(ctx context.Context, id string) (api.Upload, error) {
	var u api.Upload
	return u, c.do(ctx, "GET", "/v1/uploads/"+url.PathEscape(id), nil, &u)
}

// AppendUpload sends one part of an upload at offset.
func (c *Client) AppendUpload(ctx context.Context, id string, offset int64, part []byte) (api.Upload, error) {
	var u api.Upload
	return u, c.do(ctx, "PATCH", fmt.Sprintf("/v1/uploads/%s?offset=%d", url.PathEscape(id), offset), part, &u)
}

// UploadOptions tune UploadFile; the zero value sends parts of UploadChunk bytes and
// reports nothing.
type UploadOptions struct {
	// Chunk is the bytes one request sends (at most the daemon's 64 MiB); 0: UploadChunk.
	Chunk int
	// Progress, if not nil, is told the bytes the daemon holds and the file's size after
	// each part (and once when a resumed upload starts).
	Progress func(done, total int64)
	// Resume is the ID of an upload of the same file started earlier (by a run that was
	// interrupted) and SHA256 its digest: the upload goes on from the offset the daemon holds.
	// An upload the daemon no longer has (registered, expired, another file's) is started
	// over, and the file hashed again.
	Resume, SHA256 string
	// Started, if not nil, is told the upload (its ID, and its offset when resumed) and the
	// file's digest before the first part goes: what a caller keeps to resume it later.
	Started func(u api.Upload, sha256 string)
}

// UploadFile sends a local file to the daemon in parts, resuming from the offset the daemon
// holds after a failed part (up to 5 times in a row), and returns the completed upload.
func (c *Client) UploadFile(ctx context.Context, path string, o UploadOptions) (api.Upload, error) {
	f, err := os.Open(path)
	if err != nil {
		return api.Upload{}, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return api.Upload{}, err
	}
	name := filepath.Base(path)
	var u api.Upload
	if o.Resume != "" && o.SHA256 != "" {
		old, err := c.UploadStatus(ctx, o.Resume)
		var ae *Error
		switch {
		case err == nil && old.Name == name && old.Size == st.Size():
			u = old
		case err == nil || errors.As(err, &ae) && ae.Kind == "not_found":
			o.SHA256 = "" // gone or another file's: start over
		default:
			return api.Upload{}, err
		}
	}
	if u.ID == "" {
		if o.SHA256 == "" {
			h := sha256.New()
			if _, err := io.Copy(h, f); err != nil {
				return api.Upload{}, err
			}
			o.SHA256 = hex.EncodeToString(h.Sum(nil))
		}
		if u, err = c.StartUpload(ctx, api.StartUpload{Name: name, Size: st.Size(), SHA256: o.SHA256}); err != nil {
			return api.Upload{}, err
		}
	}
	if o.Started != nil {
		o.Started(u, o.SHA256)
	}
	if o.Progress != nil && u.Offset > 0 {
		o.Progress(u.Offset, u.Size)
	}
	chunk := o.Chunk
	if chunk <= 0 {
		chunk = UploadChunk
	}
	buf := make([]byte, chunk)
	failures := 0
	for !u.Complete {
		n, err := f.ReadAt(buf, u.Offset)
		if err != nil && !errors.Is(err, io.EOF) {
			return u, err
		}
		if n == 0 {
			return u, fmt.Errorf("%s changed while it was uploaded (it is shorter now)", name)
		}
		next, err := c.AppendUpload(ctx, u.ID, u.Offset, buf[:n])
		if err != nil {
			var ae *Error
			if errors.As(err, &ae) && ae.Status != 0 && ae.Kind != "conflict" || ctx.Err() != nil {
				return u, err
			}
			if failures++; failures > 5 {
				return u, err
			}
			if st, serr := c.UploadStatus(ctx, u.ID); serr == nil {
				u = st // resume where the daemon is
			}
			continue
		}
		failures = 0
		u = next
		if o.Progress != nil {
			o.Progress(u.Offset, u.Size)
		}
	}
	return u, nil
}

// DatasetVersions lists a dataset's versions and the active grants that read it.
func (c *Client) DatasetVersions(ctx context.Context, name string) (api.DatasetVersions, error) {
	var v api.DatasetVersions
	return v, c.do(ctx, "GET", "/v1/datasets/"+url.PathEscape(name)+"/versions", nil, &v)
}

// UpdateDataset registers a new version of a dataset.
func (c *Client) UpdateDataset(ctx context.Context, name string, req api.RegisterDataset) (api.DatasetVersions, error) {
	var v api.DatasetVersions
	return v, c.do(ctx, "POST", "/v1/datasets/"+url.PathEscape(name)+"/versions", req, &v)
}
