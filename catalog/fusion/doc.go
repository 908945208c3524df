// Package fusion is vendor data fusion (社会数据融合): a vendor's own table, uploaded for one
// of its grants, joined in a sandbox with the public data on a pseudonymized key, so that it
// joins the grant's datasets like any dataset about persons.
//
// Invariants: both sides of the key are pseudonymized with a secret of the grant that never
// leaves the platform, and the vendor's identifier is dropped; a fused table is usable only
// after the authority approves it, only by its tenant's jobs under its grant, and it is
// deleted, files checked absent and recorded, when its grant ends. How many of the vendor's
// rows matched persons of the public data is never told to the vendor.
//
// Package fusion never keeps the vendor's upload after the join, and never joins outside a
// sandbox.
package fusion
