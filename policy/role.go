package policy

import (
	"fmt"
	"slices"
)

// Role is what a principal is on the platform.
type Role string

const (
	Provider  Role = "provider"  // agency that holds data (数源单位)
	Operator  Role = "operator"  // runs the platform (运营机构)
	Authority Role = "authority" // data bureau (数据主管部门)
	Vendor    Role = "vendor"    // tenant that uses data (数据商)
	Reviewer  Role = "reviewer"  // export reviewer
	Auditor   Role = "auditor"   // reads and verifies the audit log
)

// Roles lists every role.
var Roles = []Role{Provider, Operator, Authority, Vendor, Reviewer, Auditor}

// ParseRole checks that s names a role.
func ParseRole(s string) (Role, error) {
	r := Role(s)
	if !slices.Contains(Roles, r) {
		return "", fmt.Errorf("%w: unknown role %q (one of provider, operator, authority, vendor, reviewer, auditor)", ErrInvalid, s)
	}
	return r, nil
}

// NeedsTenant reports whether principals of this role belong to an organisation: vendors to
// their tenant, providers to the agency that owns their datasets.
func (r Role) NeedsTenant() bool { return r == Vendor || r == Provider }

// Principal is an authenticated caller.
type Principal struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Role   Role   `json:"role"`
	Tenant string `json:"tenant,omitempty"`
}

// Action is something a principal asks the platform to do.
type Action string

const (
	ActPrincipalManage Action = "principal.manage"
	ActDatasetRegister Action = "dataset.register"
	ActDatasetRead     Action = "dataset.read"
	ActGrantApply      Action = "grant.apply"
	ActGrantRead       Action = "grant.read"
	ActGrantReview     Action = "grant.review"
	ActGrantSuspend    Action = "grant.suspend" // suspend, reinstate, revoke
	ActJobSubmit       Action = "job.submit"
	ActJobRead         Action = "job.read"
	ActJobCancel       Action = "job.cancel"
	ActOutputReview    Action = "output.review"
	ActExportGet       Action = "export.get"
	ActAuditRead       Action = "audit.read"
	ActBudgetRead      Action = "budget.read"
	ActRuntimeManage   Action = "runtime.manage" // register runtime images for custom jobs
	ActRuntimeRead     Action = "runtime.read"
	ActFeedbackSubmit  Action = "feedback.submit" // file data-quality feedback on a granted dataset
	ActFeedbackRead    Action = "feedback.read"   // list feedback in scope; the dataset's provider also resolves
	ActMetricsRead     Action = "metrics.read"    // the daemon's Prometheus metrics (names of tenants and datasets, no data)
	ActFileUpload      Action = "file.upload"     // send a file in resumable parts (a provider's data, a vendor's fusion table or he blob)
)

var allowed = map[Action][]Role{
	ActPrincipalManage: {Operator},
	ActDatasetRegister: {Provider},
	ActDatasetRead:     {Provider, Operator, Authority, Vendor, Reviewer},
	ActGrantApply:      {Vendor},
	ActGrantRead:       {Provider, Operator, Authority, Vendor, Reviewer},
	ActGrantReview:     {Operator, Authority, Provider},
	ActGrantSuspend:    {Authority},
	ActJobSubmit:       {Vendor},
	ActJobRead:         {Vendor, Operator, Reviewer},
	ActJobCancel:       {Vendor, Operator},
	ActOutputReview:    {Reviewer},
	ActExportGet:       {Vendor},
	ActAuditRead:       {Auditor, Operator, Authority},
	ActBudgetRead:      {Vendor, Provider, Authority, Operator, Auditor, Reviewer},
	ActRuntimeManage:   {Operator},
	ActRuntimeRead:     {Vendor, Operator, Reviewer, Authority},
	ActFeedbackSubmit:  {Vendor},
	ActFeedbackRead:    {Provider, Operator, Authority, Vendor},
	ActMetricsRead:     {Operator},
	ActFileUpload:      {Provider, Vendor},
}

// Allow reports whether p's role may perform a. It says nothing about which objects: tenant
// checks are the caller's, through SameTenant and the Visible* functions.
func Allow(p Principal, a Action) error {
	if slices.Contains(allowed[a], p.Role) {
		return nil
	}
	return fmt.Errorf("%w: role %s may not %s", ErrForbidden, p.Role, a)
}

// CanSeeGrant reports whether p may see grant g: vendors only their tenant's, providers only
// grants touching their data, the platform roles all.
func CanSeeGrant(p Principal, g *Grant) bool {
	switch p.Role {
	case Vendor:
		return p.Tenant != "" && p.Tenant == g.Tenant
	case Provider:
		for _, s := range g.Stages {
			if s.Role == Provider && s.Org == p.Tenant {
				return true
			}
		}
		return false
	case Operator, Authority, Reviewer:
		return true
	}
	return false
}

// CanSeeTenantObject reports whether p may see an object (job, output, export) that belongs
// to tenant. A vendor sees only its own tenant's; reviewers and operators see all.
func CanSeeTenantObject(p Principal, tenant string) bool {
	switch p.Role {
	case Vendor:
		return p.Tenant != "" && p.Tenant == tenant
	case Operator, Reviewer:
		return true
	}
	return false
}
