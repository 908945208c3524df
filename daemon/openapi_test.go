package daemon

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/veil-dp/veil/audit"
	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/engine"
	"github.com/veil-dp/veil/launch"
	"github.com/veil-dp/veil/platform"
	"github.com/veil-dp/veil/policy"
	"github.com/veil-dp/veil/store"
)

var update = flag.Bool("update", false, "rewrite openapi.json from the route list and the Go types")

// binary marks an operation whose request body is raw bytes (an upload).
type binary struct{}

// binaryOrUpload is a binary body that may be left empty when ?upload=ID names the file.
type binaryOrUpload struct{}

// metricsText marks the Prometheus text answer of /metrics.
type metricsText struct{}

// anyJSON marks an answer that is a JSON document of its own (the API description).
type anyJSON struct{}

// param is a path or query parameter.
type param struct {
	name, desc string
	schema     map[string]any // default: a string
	required   bool
}

// operation describes one route: the list below is explicit, the bodies' schemas come from
// the Go types the handlers decode and answer, so that they cannot drift from the code.
type operation struct {
	pattern string // as registered: "METHOD /path/{param}"
	id      string
	summary string
	public  bool // no bearer token
	path    map[string]param
	query   []param
	body    any // a Go value of the request body's type, binary{}, or nil
	code    int
	answer  any // a Go value of the answer's type
	// errors are the statuses beyond those every authenticated route can answer.
	errors []int
}

var jobStatusEnum = map[string]any{"type": "string", "enum": jobStatuses}

// operations is the API, route by route.
var operations = []operation{
	{pattern: "GET /healthz", id: "healthz", summary: "Liveness: the daemon serves HTTP. No token; says nothing else.", public: true, code: 200, answer: api.Health{}},
	{pattern: "GET /readyz", id: "readyz", summary: "Readiness: the store takes writes, a sandbox starts, the disk has room (503 otherwise; the reason is in the daemon's log).", public: true, code: 200, answer: api.Health{}, errors: []int{503}},
	{pattern: "GET /metrics", id: "metrics", summary: "Prometheus metrics (operator); also without a token on --metrics-listen.", code: 200, answer: metricsText{}},
	{pattern: "GET /v1/openapi.json", id: "openapi", summary: "This description of the API.", public: true, code: 200, answer: anyJSON{}},
	{pattern: "GET /v1/version", id: "version", summary: "The daemon's build.", code: 200, answer: api.Version{}},
	{pattern: "GET /v1/platform/key", id: "platformKey", summary: "The platform's public key. Verify with a key obtained out of band.", public: true, code: 200, answer: api.PlatformKey{}},
	{pattern: "GET /v1/platform/keyring", id: "platformKeyring", summary: "The platform's keyring: its current key and the retired ones, each with its term, for certificates and checkpoints signed before a key rotation.", public: true, code: 200, answer: api.PlatformKeyring{}},
	{pattern: "GET /v1/whoami", id: "whoami", summary: "The caller.", code: 200, answer: api.Principal{}},
	{pattern: "PUT /v1/whoami/zone", id: "setZone", summary: "Set the IANA time zone the caller reads times in (any principal, for itself).", body: api.SetZone{}, code: 200, answer: api.Principal{}},
	{pattern: "POST /v1/principals", id: "createPrincipal", summary: "Create a principal; the answer carries its token, shown once (operator).", body: api.CreatePrincipal{}, code: 201, answer: api.Principal{}},
	{pattern: "GET /v1/principals", id: "listPrincipals", summary: "List principals (operator).", code: 200, answer: []api.Principal{}},
	{pattern: "DELETE /v1/principals/{id}", id: "revokePrincipal", summary: "Revoke a principal's token (operator).", code: 200, answer: api.Principal{}},
	{pattern: "POST /v1/principals/{id}/rotate", id: "rotatePrincipal", summary: "Give a principal a new token, shown once; the old one keeps working for the grace period (operator).", body: api.RotatePrincipal{}, code: 200, answer: api.Principal{}},
	{pattern: "POST /v1/datasets", id: "registerDataset", summary: "Register files on the daemon's host under a schema (provider).", body: api.RegisterDataset{}, code: 201, answer: api.Dataset{}},
	{pattern: "POST /v1/uploads", id: "startUpload", summary: "Open an upload of one file in parts, with its size and SHA-256: a data file (provider, .csv or .parquet, up to 64 GiB), or a fusion table or he blob (vendor, up to 256 MiB). Kept for the daemon's --upload-ttl after its last part unless used.", body: api.StartUpload{}, code: 201, answer: api.Upload{}},
	{pattern: "GET /v1/uploads/{id}", id: "uploadStatus", summary: "How many bytes of an upload the daemon holds: resume from there.", code: 200, answer: api.Upload{}},
	{pattern: "PATCH /v1/uploads/{id}", id: "appendUpload", summary: "Send a part of an upload at the offset the daemon holds; the digest is checked at the last byte.", body: binary{}, code: 200, answer: api.Upload{},
		query: []param{{name: "offset", desc: "the bytes the daemon holds", required: true}}},
	{pattern: "GET /v1/datasets/{name}/versions", id: "datasetVersions", summary: "A dataset's versions, newest first, and the active grants that read the current one (its provider, the platform's roles).", code: 200, answer: api.DatasetVersions{}},
	{pattern: "POST /v1/datasets/{name}/versions", id: "updateDataset", summary: "Register a new version of a dataset (its provider); active grants read it from now on.", body: api.RegisterDataset{}, code: 201, answer: api.DatasetVersions{}},
	{pattern: "GET /v1/datasets", id: "listDatasets", summary: "The catalog.", code: 200, answer: []api.Dataset{}},
	{pattern: "GET /v1/datasets/{name}", id: "showDataset", summary: "One dataset.", code: 200, answer: api.Dataset{}},
	{pattern: "POST /v1/datasets/{name}/feedback", id: "submitFeedback", summary: "File a data-quality note on a dataset (vendor).", body: api.SubmitFeedback{}, code: 201, answer: api.Feedback{}},
	{pattern: "GET /v1/feedback", id: "listFeedback", summary: "The data-quality feedback the caller may see.", code: 200, answer: []api.Feedback{},
		query: []param{{name: "dataset", desc: "only on this dataset"}, {name: "status", desc: "only open or only resolved", schema: map[string]any{"type": "string", "enum": []string{"open", "resolved"}}}}},
	{pattern: "POST /v1/feedback/{id}/resolve", id: "resolveFeedback", summary: "Resolve feedback with a note (the dataset's provider).", body: api.ResolveFeedback{}, code: 200, answer: api.Feedback{}},
	{pattern: "POST /v1/grants", id: "applyGrant", summary: "Apply for a grant (vendor).", body: api.ApplyGrant{}, code: 201, answer: &policy.Grant{}},
	{pattern: "GET /v1/grants", id: "listGrants", summary: "The grants the caller may see.", code: 200, answer: []*policy.Grant{}},
	{pattern: "GET /v1/grants/{id}", id: "showGrant", summary: "One grant.", code: 200, answer: &policy.Grant{}},
	{pattern: "POST /v1/grants/{id}/{action}", id: "actOnGrant", summary: "Approve or reject a review stage, or suspend, reinstate or revoke a grant.", body: api.Decide{}, code: 200, answer: &policy.Grant{},
		path: map[string]param{"action": {schema: map[string]any{"type": "string", "enum": []string{"approve", "reject", "suspend", "reinstate", "revoke"}}}}},
	{pattern: "PUT /v1/grants/{id}/fusion/{name}", id: "uploadFusion", summary: "Upload the vendor's own table (CSV or Parquet) for fusion with a grant's data: as the body, or as a completed upload (?upload=ID, empty body).", body: binaryOrUpload{}, code: 201, answer: api.Dataset{},
		query: []param{{name: "key", desc: "the upload's column that identifies a person", required: true}, {name: "match", desc: "the public DATASET.COLUMN it corresponds to", required: true}, {name: "upload", desc: "a completed upload (POST /v1/uploads) holding the table, instead of the body"}}},
	{pattern: "POST /v1/datasets/{name}/fusion/approve", id: "approveFusion", summary: "Add a fused upload to its grant (authority).", code: 200, answer: api.Dataset{}},
	{pattern: "POST /v1/datasets/{name}/twin", id: "buildTwin", summary: "Build a dataset's dev twin; it waits for review (provider).", body: api.BuildTwin{}, code: 202, answer: api.Job{}},
	{pattern: "PUT /v1/blobs", id: "uploadBlob", summary: "Upload a public key bundle or an encrypted model for he-score jobs, as the body or as a completed upload (?upload=ID, empty body); secret keys are refused.", body: binaryOrUpload{}, code: 201, answer: api.Blob{},
		query: []param{{name: "upload", desc: "a completed upload (POST /v1/uploads) holding the blob, instead of the body"}}},
	{pattern: "PUT /v1/programs", id: "uploadProgram", summary: "Upload a program for custom jobs.", body: binary{}, code: 201, answer: api.Program{}},
	{pattern: "POST /v1/jobs", id: "submitJob", summary: "Submit a job; its budget is reserved as it is queued.", body: api.SubmitJob{}, code: 202, answer: api.Job{}, errors: []int{429}},
	{pattern: "POST /v1/jobs/plan", id: "planJob", summary: "Plan a job without running it: the validated query, what it would spend and what would remain, and the noise of each released value. Reads no data and spends nothing.", body: api.SubmitJob{}, code: 200, answer: api.JobPlan{}},
	{pattern: "GET /v1/jobs", id: "listJobs", summary: "The jobs the caller may see.", code: 200, answer: []api.Job{},
		query: []param{{name: "grant", desc: "only under this grant"}, {name: "status", desc: "only in these statuses, comma-separated"}}},
	{pattern: "GET /v1/jobs/{id}", id: "showJob", summary: "One job; with wait, a long poll: the answer comes when its status is not seen (default: its status now) or is final, or when the wait is up.", code: 200, answer: api.Job{},
		query: []param{{name: "wait", desc: "how long to wait for a change, a Go duration up to 1m (20s)", schema: map[string]any{"type": "string", "pattern": `^[0-9.]+(ns|us|µs|ms|s|m|h)([0-9.]+(ns|us|µs|ms|s|m|h))*$`}},
			{name: "seen", desc: "the status the caller last saw", schema: jobStatusEnum}}},
	{pattern: "POST /v1/jobs/{id}/cancel", id: "cancelJob", summary: "Cancel a queued, running or unreviewed job.", code: 200, answer: api.Job{}},
	{pattern: "POST /v1/dev/jobs", id: "submitDev", summary: "Run a job on the dev twins at once; the output is shown, labelled.", body: api.SubmitJob{}, code: 200, answer: api.DevOutput{}, errors: []int{429}},
	{pattern: "GET /v1/dev/jobs/{id}", id: "showDev", summary: "A dev run and its output.", code: 200, answer: api.DevOutput{}},
	{pattern: "POST /v1/dev/jobs/{id}/promote", id: "promoteDev", summary: "Submit a dev run's job unchanged to production.", code: 202, answer: api.Job{}, errors: []int{429}},
	{pattern: "GET /v1/reviews", id: "listReviews", summary: "Outputs waiting for review (reviewer).", code: 200, answer: []api.Job{}},
	{pattern: "GET /v1/reviews/{id}", id: "showReview", summary: "What a reviewer needs to decide on an output (reviewer).", code: 200, answer: api.Review{}},
	{pattern: "POST /v1/reviews/{id}", id: "decideReview", summary: "Approve or reject an output, naming the digest of the output reviewed (reviewer).", body: api.DecideOutput{}, code: 200, answer: api.Job{}},
	{pattern: "GET /v1/exports/{id}", id: "getExport", summary: "A released output in a format, with its signed certificate (vendor).", code: 200, answer: api.Export{},
		query: []param{{name: "format", desc: "parquet (the default), csv, json, arrow; tar for a custom job's files", schema: map[string]any{"type": "string", "enum": []string{"", "parquet", "csv", "json", "arrow", "tar"}}}}},
	{pattern: "GET /v1/budget", id: "showBudget", summary: "The privacy budgets the caller may see.", code: 200, answer: api.Budgets{}},
	{pattern: "GET /v1/budget/spends", id: "budgetSpends", summary: "A page of a dataset's spend history, oldest first (for a burn-down).", code: 200, answer: api.BudgetSpends{},
		query: []param{{name: "dataset", desc: "the dataset", required: true}, {name: "grant", desc: "only the spends under this grant"},
			{name: "offset", desc: "the first spend of the page (0)"}, {name: "limit", desc: "at most this many spends, 1..1000 (200)"}}},
	{pattern: "POST /v1/runtimes", id: "registerRuntime", summary: "Register a runtime image for custom jobs (operator).", body: api.RegisterRuntime{}, code: 201, answer: api.Runtime{}},
	{pattern: "GET /v1/runtimes", id: "listRuntimes", summary: "The registered runtime images.", code: 200, answer: []api.Runtime{}},
	{pattern: "GET /v1/audit/records", id: "auditRecords", summary: "A page of the audit log (auditor, operator, authority).", code: 200, answer: api.AuditRecords{},
		query: []param{{name: "from", desc: "the first entry's index", schema: map[string]any{"type": "integer", "minimum": 0}},
			{name: "limit", desc: "entries at most (1000)", schema: map[string]any{"type": "integer", "minimum": 1, "maximum": 10000}},
			{name: "tail", desc: "any value: the last limit entries"}}},
	{pattern: "GET /v1/audit/checkpoints", id: "auditCheckpoints", summary: "A page of the audit log's signed checkpoints, in order of size; follow next for the rest.", code: 200, answer: api.AuditCheckpoints{},
		query: []param{{name: "from", desc: "the smallest tree size to list (a page's next)", schema: map[string]any{"type": "integer", "minimum": 0}},
			{name: "limit", desc: "checkpoints at most (1000)", schema: map[string]any{"type": "integer", "minimum": 1, "maximum": 10000}}}},
	{pattern: "GET /v1/audit/verify", id: "auditVerify", summary: "The daemon's own verification of the stored log, interior hashes included.", code: 200, answer: struct {
		OK     bool          `json:"ok"`
		Error  string        `json:"error,omitempty"` // why the log does not verify
		Report *audit.Report `json:"report,omitempty"`
	}{}},
	{pattern: "GET /v1/audit/proof/{index}", id: "auditProof", summary: "An inclusion proof of one entry against the latest checkpoint.", code: 200, answer: &audit.Proof{},
		path: map[string]param{"index": {schema: map[string]any{"type": "integer", "minimum": 0}}}},
	{pattern: "GET /v1/audit/checkpoint", id: "auditCheckpoint", summary: "The latest signed checkpoint (a C2SP tlog-checkpoint note), to keep and check later.", code: 200, answer: audit.Checkpoint{}},
	{pattern: "GET /v1/audit/consistency", id: "auditConsistency", summary: "An RFC 6962 consistency proof from a kept checkpoint's tree to a later signed checkpoint.", code: 200, answer: &audit.ConsistencyProof{},
		query: []param{{name: "from", desc: "the size of the older tree (a checkpoint you kept)", required: true, schema: map[string]any{"type": "integer", "minimum": 1}},
			{name: "to", desc: "the size of the newer signed checkpoint (default: the latest)", schema: map[string]any{"type": "integer", "minimum": 1}}}},
}

// errorKinds are the error answers: the status and the kind errors.go gives it. A new kind
// in errors.go gets its line here.
var errorKinds = []struct {
	code       int
	kind, desc string
}{
	{400, "invalid", "The request is not valid: the message says what was wrong and what to do."},
	{401, "unauthenticated", "No token, or an unknown or revoked one."},
	{403, "forbidden", "The caller's role or tenant does not allow it."},
	{404, "not_found", "No such object, or not one the caller may see."},
	{409, "conflict", "It conflicts with the current state, including an exhausted privacy budget."},
	{413, "too_large", "The body or upload is larger than the route accepts."},
	{429, "rate_limited", "The caller's tenant submits too fast, or has too many jobs queued or running; try again after Retry-After seconds."},
	{500, "internal", "An internal error; the operator finds the details in the daemon's log."},
	{503, "unavailable", "The daemon cannot do it now (no sandbox here, the store stopped taking writes)."},
}

// authedErrors are what every authenticated route can answer.
var authedErrors = []int{400, 401, 403, 404, 409, 500, 503}

// schemas turns Go types into JSON Schema (2020-12, as OpenAPI 3.1 has it) the way
// encoding/json writes and reads them.
type schemas struct {
	components map[string]any
	dirs       map[string]string // component → "request" or "answer"
}

var (
	timeType    = reflect.TypeFor[time.Time]()
	rawType     = reflect.TypeFor[json.RawMessage]()
	hashType    = reflect.TypeFor[tlog.Hash]()
	durType     = reflect.TypeFor[time.Duration]()
	marshaler   = reflect.TypeFor[json.Marshaler]()
	unmarshaler = reflect.TypeFor[json.Unmarshaler]()
)

func componentName(t reflect.Type) string {
	if t.PkgPath() == reflect.TypeFor[api.Job]().PkgPath() {
		return t.Name()
	}
	return t.PkgPath()[strings.LastIndex(t.PkgPath(), "/")+1:] + "." + t.Name()
}

// of is the schema of t, in a request or an answer. Fields without omitempty are required
// in answers (encoding/json always writes them); a request may leave any out (its zero value).
func (s *schemas) of(t reflect.Type, dir string) map[string]any {
	switch t {
	case timeType:
		return map[string]any{"type": "string", "format": "date-time"}
	case rawType:
		return anyValue()
	case hashType:
		return map[string]any{"type": "string", "contentEncoding": "base64"}
	case durType:
		return map[string]any{"type": "integer", "description": "nanoseconds"}
	}
	if t.Implements(marshaler) || reflect.PointerTo(t).Implements(unmarshaler) {
		panic(fmt.Sprintf("%s has its own JSON encoding: give its schema in schemas.of", t))
	}
	switch t.Kind() {
	case reflect.Bool:
		return map[string]any{"type": "boolean"}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return map[string]any{"type": "integer"}
	case reflect.Float32, reflect.Float64:
		return map[string]any{"type": "number"}
	case reflect.String:
		return map[string]any{"type": "string"}
	case reflect.Interface:
		return anyValue()
	case reflect.Pointer:
		return nullable(s.of(t.Elem(), dir))
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Uint8 {
			return nullable(map[string]any{"type": "string", "contentEncoding": "base64"})
		}
		return nullable(map[string]any{"type": "array", "items": s.of(t.Elem(), dir)})
	case reflect.Array:
		return map[string]any{"type": "array", "items": s.of(t.Elem(), dir), "minItems": t.Len(), "maxItems": t.Len()}
	case reflect.Map:
		return nullable(map[string]any{"type": "object", "additionalProperties": s.of(t.Elem(), dir)})
	case reflect.Struct:
		if t.Name() == "" {
			return s.object(t, dir)
		}
		name := componentName(t)
		if d, ok := s.dirs[name]; ok && d != dir {
			panic(fmt.Sprintf("%s is both a request and an answer: its required fields differ; give each its own type", t))
		}
		if _, ok := s.components[name]; !ok {
			s.dirs[name] = dir
			s.components[name] = nil // taken, for recursive types
			s.components[name] = s.object(t, dir)
		}
		return map[string]any{"$ref": "#/components/schemas/" + name}
	}
	panic(fmt.Sprintf("no schema for %s", t))
}

// anyValue is the schema of any JSON value. Not {}: kin-openapi (v0.153.0) validates a 3.1
// schema that has $refs and no keyword only JSON Schema 2020-12 has with its OpenAPI 3.0
// validator, to which {} does not admit null.
func anyValue() map[string]any {
	return map[string]any{"type": []string{"null", "boolean", "number", "string", "array", "object"}}
}

// nullable allows null besides s: encoding/json writes a nil slice, map or pointer as null.
func nullable(s map[string]any) map[string]any {
	if typ, ok := s["type"].(string); ok {
		s["type"] = []string{typ, "null"}
		return s
	}
	return map[string]any{"anyOf": []any{s, map[string]any{"type": "null"}}}
}

func (s *schemas) object(t reflect.Type, dir string) map[string]any {
	props := map[string]any{}
	var required []string
	s.fields(t, dir, props, &required)
	out := map[string]any{"type": "object", "properties": props, "additionalProperties": false}
	if len(required) > 0 && dir == "answer" {
		sort.Strings(required)
		out["required"] = required
	}
	return out
}

func (s *schemas) fields(t reflect.Type, dir string, props map[string]any, required *[]string) {
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" || (!f.IsExported() && !f.Anonymous) {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct {
			s.fields(f.Type, dir, props, required)
			continue
		}
		if name == "" {
			name = f.Name
		}
		omit := slices.Contains(strings.Split(opts, ","), "omitempty") || slices.Contains(strings.Split(opts, ","), "omitzero")
		fs := s.of(f.Type, dir)
		if omit {
			// Left out when empty, so never null.
			fs = notNull(fs)
		} else {
			*required = append(*required, name)
		}
		props[name] = fs
	}
}

func notNull(s map[string]any) map[string]any {
	if typ, ok := s["type"].([]string); ok && len(typ) == 2 && typ[1] == "null" {
		c := map[string]any{}
		for k, v := range s {
			c[k] = v
		}
		c["type"] = typ[0]
		return c
	}
	if alts, ok := s["anyOf"].([]any); ok && len(alts) == 2 {
		return alts[0].(map[string]any)
	}
	return s
}

var pathParam = regexp.MustCompile(`\{([a-z]+)\}`)

// document builds the OpenAPI 3.1 description of the API from operations.
func document() map[string]any {
	s := &schemas{components: map[string]any{}, dirs: map[string]string{}}
	errSchema := s.of(reflect.TypeFor[api.Error](), "answer")
	kindEnum := []string{}
	responses := map[string]any{}
	for _, k := range errorKinds {
		kindEnum = append(kindEnum, k.kind)
		responses[k.kind] = map[string]any{
			"description": k.desc,
			"content": map[string]any{"application/json": map[string]any{"schema": map[string]any{
				"allOf": []any{errSchema, map[string]any{"properties": map[string]any{"kind": map[string]any{"const": k.kind}}}},
			}}},
		}
		if k.code == http.StatusTooManyRequests {
			responses[k.kind].(map[string]any)["headers"] = map[string]any{"Retry-After": map[string]any{
				"description": "seconds to wait before trying again", "required": true, "schema": map[string]any{"type": "integer", "minimum": 1}}}
		}
	}
	s.components["Error"].(map[string]any)["properties"].(map[string]any)["kind"] = map[string]any{"type": "string", "enum": kindEnum}
	paths := map[string]any{}
	for _, op := range operations {
		method, path, _ := strings.Cut(op.pattern, " ")
		o := map[string]any{"operationId": op.id, "summary": op.summary}
		var params []any
		for _, m := range pathParam.FindAllStringSubmatch(path, -1) {
			p := op.path[m[1]]
			sch := p.schema
			if sch == nil {
				sch = map[string]any{"type": "string"}
			}
			params = append(params, map[string]any{"name": m[1], "in": "path", "required": true, "schema": sch})
		}
		for _, q := range op.query {
			sch := q.schema
			if sch == nil {
				sch = map[string]any{"type": "string"}
			}
			params = append(params, map[string]any{"name": q.name, "in": "query", "required": q.required, "description": q.desc, "schema": sch})
		}
		if params != nil {
			o["parameters"] = params
		}
		codes := slices.Clone(op.errors)
		if !op.public {
			codes = append(codes, authedErrors...)
		} else {
			o["security"] = []any{}
		}
		switch op.body.(type) {
		case nil:
		case binary:
			o["requestBody"] = map[string]any{"required": true, "content": map[string]any{
				"application/octet-stream": map[string]any{"schema": map[string]any{"type": "string", "contentMediaType": "application/octet-stream"}}}}
		case binaryOrUpload:
			o["requestBody"] = map[string]any{"required": false, "content": map[string]any{
				"application/octet-stream": map[string]any{"schema": map[string]any{"type": "string", "contentMediaType": "application/octet-stream"}}}}
		default:
			o["requestBody"] = map[string]any{"required": true, "content": map[string]any{
				"application/json": map[string]any{"schema": s.of(reflect.TypeOf(op.body), "request")}}}
		}
		var content map[string]any
		switch op.answer.(type) {
		case metricsText:
			content = map[string]any{"text/plain": map[string]any{"schema": map[string]any{"type": "string"}}}
		case anyJSON:
			content = map[string]any{"application/json": map[string]any{"schema": map[string]any{"type": "object"}}}
		default:
			content = map[string]any{"application/json": map[string]any{"schema": s.of(reflect.TypeOf(op.answer), "answer")}}
		}
		resp := map[string]any{fmt.Sprint(op.code): map[string]any{"description": http.StatusText(op.code), "content": content}}
		slices.Sort(codes)
		for _, c := range slices.Compact(codes) {
			if op.pattern == "GET /readyz" && c == 503 {
				resp["503"] = map[string]any{"description": "Not ready; the daemon's log says why.", "content": content}
				continue
			}
			for _, k := range errorKinds {
				if k.code == c {
					resp[fmt.Sprint(c)] = map[string]any{"$ref": "#/components/responses/" + k.kind}
				}
			}
		}
		o["responses"] = resp
		item, _ := paths[path].(map[string]any)
		if item == nil {
			item = map[string]any{}
			paths[path] = item
		}
		item[strings.ToLower(method)] = o
	}
	return map[string]any{
		"openapi": "3.1.0",
		"info": map[string]any{"title": "Veil API", "version": "v1",
			"description": "Veil's HTTP API: bearer tokens, JSON bodies decoded strictly, errors as {error, kind}. Generated from the daemon's route list and Go types (daemon/openapi_test.go)."},
		"jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
		"servers":           []any{map[string]any{"url": "/"}},
		"security":          []any{map[string]any{"bearer": []any{}}},
		"paths":             paths,
		"components": map[string]any{
			"schemas":         s.components,
			"responses":       responses,
			"securitySchemes": map[string]any{"bearer": map[string]any{"type": "http", "scheme": "bearer", "description": "a principal's token (veil principal create)"}},
		},
	}
}

// TestOpenAPIDocument fails when openapi.json is not what the route list and the Go types
// make; -update rewrites it.
func TestOpenAPIDocument(t *testing.T) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(document()); err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile("openapi.json", buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if !bytes.Equal(buf.Bytes(), openAPI) {
		t.Fatal("openapi.json is not what the route list and the Go types make: run go test ./daemon -run TestOpenAPIDocument -update, and check the diff")
	}
}

// TestOpenAPIRoutes walks the daemon's routes: each must be described, and each described
// operation must be a route.
func TestOpenAPIRoutes(t *testing.T) {
	routes := (&Server{}).Routes()
	described := map[string]bool{}
	for _, op := range operations {
		if described[op.pattern] {
			t.Errorf("%s is described twice", op.pattern)
		}
		described[op.pattern] = true
		if !slices.Contains(routes, op.pattern) {
			t.Errorf("%s is described in openapi.json but the daemon has no such route", op.pattern)
		}
	}
	for _, r := range routes {
		if !described[r] {
			t.Errorf("route %s is not described: add it to operations in daemon/openapi_test.go and run -update", r)
		}
	}
	if len(routes) < 40 {
		t.Errorf("only %d routes found: is Routes listing the mux?", len(routes))
	}
}

// TestErrorKindsDocumented checks the error answers described against errors.go, both ways:
// each error kind's status is described with the kind errors.go names, and each described
// status is one an error kind gets.
func TestErrorKindsDocumented(t *testing.T) {
	kinds := []error{policy.ErrInvalid, engine.ErrRefused, platform.ErrUnauthenticated, policy.ErrForbidden, policy.ErrNotFound,
		store.ErrNotFound, policy.ErrConflict, store.ErrConflict, launch.ErrUnavailable, ErrTooLarge, policy.ErrThrottled, errors.New("anything else")}
	got := map[int]string{}
	for _, e := range kinds {
		code, kind := status(e)
		got[code] = kind
		i := slices.IndexFunc(errorKinds, func(k struct {
			code       int
			kind, desc string
		}) bool {
			return k.code == code
		})
		if i < 0 || errorKinds[i].kind != kind {
			t.Errorf("errors.go answers %v with %d %q: describe it in errorKinds", e, code, kind)
		}
	}
	for _, k := range errorKinds {
		if _, ok := got[k.code]; !ok {
			t.Errorf("status %d (%s) is described but no error kind gets it", k.code, k.kind)
		}
	}
}
