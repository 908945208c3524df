package api

import "time"

// StartUpload opens an upload of one data file to the daemon (provider): its base name (.csv
// or .parquet), its size in bytes and its sha256 in hex, which the daemon checks when the
// last byte arrives.
type StartUpload struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// Upload is an upload's state: Offset is how many bytes the daemon holds (a client resumes
// from it); Complete once all arrived and the digest matched. Register it by ID
// (RegisterDataset.Uploads).
type Upload struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Size     int64  `json:"size"`
	Offset   int64  `json:"offset"`
	Complete bool   `json:"complete"`
}

// DatasetVersion is one registered version of a dataset.
type DatasetVersion struct {
	Version    string    `json:"version"`
	Rows       int64     `json:"rows"`
	Registered time.Time `json:"registered"`
	Current    bool      `json:"current"`
}

// DatasetVersions is a dataset's versions, newest first, and the active grants that read its
// current version (every job under them reads it from now on).
type DatasetVersions struct {
	Dataset  Dataset          `json:"dataset"`
	Versions []DatasetVersion `json:"versions"`
	Grants   []string         `json:"grants"`
}
