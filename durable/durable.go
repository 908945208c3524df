package durable

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// WriteFile replaces path with data, atomically and durably, with permissions perm (use
// 0o600 for anything secret: the temporary file is created 0o600 and never holds the data
// with wider permissions than perm). The directory must exist.
func WriteFile(path string, data []byte, perm os.FileMode) (err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	// Narrow before writing: CreateTemp gives 0o600, and a perm of 0o400 must hold too.
	if err := tmp.Chmod(perm & os.ModePerm); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("write %s: fsync: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: close: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := SyncDir(dir); err != nil {
		return fmt.Errorf("write %s: the new file is in place but its directory entry may not survive a crash: %w", path, err)
	}
	return nil
}

// AppendFile appends data to path in one write(2) with O_APPEND, creating the file with
// perm if needed, and fsyncs it (and, if it created the file, its directory). A failed or
// short write may leave part of data at the end of the file; readers of an append-only
// file must recognise a torn last record.
func AppendFile(path string, data []byte, perm os.FileMode) error {
	_, statErr := os.Lstat(path)
	created := errors.Is(statErr, os.ErrNotExist)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, perm)
	if err != nil {
		return fmt.Errorf("append to %s: %w", path, err)
	}
	n, err := f.Write(data)
	if err == nil && n < len(data) {
		err = fmt.Errorf("short write (%d of %d bytes)", n, len(data))
	}
	if err != nil {
		f.Close()
		return fmt.Errorf("append to %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("append to %s: fsync: %w", path, err)
	}
	// On NFS, close reports write-back errors that fsync did not.
	if err := f.Close(); err != nil {
		return fmt.Errorf("append to %s: close: %w", path, err)
	}
	if created {
		if err := SyncDir(filepath.Dir(path)); err != nil {
			return fmt.Errorf("append to %s: %w", path, err)
		}
	}
	return nil
}

// Remove removes path and fsyncs its directory, so that the removal survives a crash. A
// path that does not exist is not an error.
func Remove(path string) error {
	if err := os.Remove(path); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	return SyncDir(filepath.Dir(path))
}

// SyncDir fsyncs a directory, making the creation, renaming or removal of its entries
// durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
