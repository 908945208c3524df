package sandbox

// Image is a runtime image imported by ImportImage: a root directory that
// jobs run on with Spec.Image.
type Image struct {
	// Digest identifies the content: "sha256:" and the hex SHA-256 of the
	// image's canonical listing (see ImportImage). The same tree has the
	// same digest whether it was imported from a directory or a tarball.
	Digest string
	Path   string // absolute host path of the image's root directory
	Files  int    // number of regular files
	Bytes  int64  // total size of the regular files
}

// Limits of ImportImage.
const (
	MaxImageBytes   int64 = 2 << 30 // total size of an image's regular files
	MaxImageEntries       = 200_000 // files, directories and symlinks
	maxImageDepth         = 256     // directory nesting
)

// The limits in force; tests lower them.
var (
	imageMaxBytes   = MaxImageBytes
	imageMaxEntries = MaxImageEntries
)
