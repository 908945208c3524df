// Package output is the protected output of a job as it is stored and as it leaves: one
// Arrow IPC stream with its Meta (mechanism, columns, dataset versions, the digest the gate
// recorded and its audit entry), the export formats (Parquet, CSV, JSON, Arrow; a tar of a
// custom job's files), and the rows and file previews a reviewer or a dev run shows.
//
// Invariant: only protected outputs pass through here; an encoding never changes a value,
// and an he-score output, whose encrypted sums ride as Arrow metadata, is refused in a
// format that cannot carry them rather than exported without them.
//
// Package output does no I/O: it encodes and decodes bytes; storing them is the caller's.
package output
