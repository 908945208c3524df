// Package catalog is the catalog of datasets as stored: registration (the provider's files,
// named on the daemon's host or uploaded over the API in resumable parts, checked against a
// schema that classifies every column, read by their headers with the schema's types, copied
// under a content version; a new version only explicitly, with the grants that read it),
// listing and showing what a principal may see, and the schemas and versions of named
// datasets for everyone who builds on them. Its subpackages keep what is made from the
// catalog: dev twins (twin), vendors' fused uploads (fusion) and data-quality feedback
// (feedback).
//
// Invariants: a registered version never changes under the grants that name it; every data
// column is classified before anyone can ask for it; the rows-per-unit maximum the gates rely
// on is measured, not trusted; a vendor's fused upload is seen only by its tenant and the
// platform's roles, and never shows its size to the vendor.
//
// Package catalog never reads a dataset's values beyond what registration measures (and the
// distinct values of a provider's own level-1 column it is told to make a domain), never puts
// a value of a file in an error, and never writes outside the data directory.
package catalog
