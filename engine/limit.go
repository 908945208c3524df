package engine

import (
	"errors"
	"strings"

	"github.com/duckdb/duckdb-go/v2"
)

// ExitResourceLimit is the runner's exit code when DuckDB stopped the job at one of the
// job's own limits: its memory limit, or the spill area's size (max_temp_directory_size, or
// the area's file system full). The launcher reads it as a resource limit, as it reads the
// sandbox's memory, process and time limits; any other failure of the runner is a failure
// on the data.
const ExitResourceLimit = 64

// IsResourceLimit says whether err is DuckDB stopping at the job's memory or spill limit.
// Nothing of the message reaches a vendor: only the class does. A DuckDB error is read by
// its type (the prefix of its message, "Out of Memory Error" or "IO Error"), never by text
// anywhere in it: a conversion error quotes the data value it failed on, and a value reading
// "No space left on device" would otherwise make the class, which the vendor reads, tell
// what the data says.
func IsResourceLimit(err error) bool {
	if err == nil {
		return false
	}
	var de *duckdb.Error
	if errors.As(err, &de) {
		switch de.Type {
		case duckdb.ErrorTypeOutOfMemory:
			return true
		case duckdb.ErrorTypeIO:
			return strings.Contains(de.Msg, "No space left on device")
		}
		return false
	}
	msg := err.Error()
	return strings.Contains(msg, "Out of Memory Error") || strings.Contains(msg, "max_temp_directory_size") ||
		strings.Contains(msg, "No space left on device")
}
