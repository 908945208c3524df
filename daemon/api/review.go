package api

// DecideOutput is a reviewer's decision on an output (POST /v1/reviews/{job}). Digest names
// the output the reviewer saw, as Review.Digest showed it: an approval must name it, and is
// refused when the stored output is no longer that one.
type DecideOutput struct {
	Decision string `json:"decision"` // approve | reject
	Reason   string `json:"reason,omitempty"`
	// Override approves an output despite its disclosure findings (custom jobs); it needs
	// a reason and is recorded in the audit log.
	Override bool   `json:"override,omitempty"`
	Digest   string `json:"digest,omitempty"` // sha256:<hex> of the output as stored
}
