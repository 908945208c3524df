package review

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"unicode"

	"github.com/veil-dp/veil/audit"
	"github.com/veil-dp/veil/catalog"
	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/grants"
	"github.com/veil-dp/veil/internal/distance"
	"github.com/veil-dp/veil/jobs"
	"github.com/veil-dp/veil/ledger"
	"github.com/veil-dp/veil/output"
	"github.com/veil-dp/veil/platform"
	"github.com/veil-dp/veil/policy"
	"github.com/veil-dp/veil/store"
)

// Service is the export review: the queue of outputs waiting for review, the decisions on
// them, and the release of approved outputs with their certificates.
type Service struct {
	platform.Env
	key  *audit.Key
	jobs *jobs.Service
}

// New returns the review of the jobs of js; key signs the certificates.
func New(env platform.Env, key *audit.Key, js *jobs.Service) *Service {
	return &Service{Env: env, key: key, jobs: js}
}

// List lists the outputs waiting for review that p may see.
func (s *Service) List(ctx context.Context, p policy.Principal) ([]api.Job, error) {
	return s.jobs.Where(ctx, p, store.JobFilter{Statuses: []string{jobs.Review}})
}

// Show presents what a reviewer needs: the query, the grant, the mechanism, warnings and
// the output exactly as it would be released.
func (s *Service) Show(ctx context.Context, p policy.Principal, id string) (api.Review, error) {
	var rv api.Review
	err := s.DB.View(ctx, func(tx store.Tx) error {
		j, err := jobs.Load(ctx, tx, p, id)
		if err != nil {
			return err
		}
		if j.Status != jobs.Review && j.Status != jobs.Released {
			return fmt.Errorf("%w: job %s is %s; only outputs waiting for review or released can be shown", policy.ErrConflict, j.ID, j.Status)
		}
		var sg store.Grant
		if j.GrantID != "" { // a twin build has no grant
			if sg, err = tx.Grant(ctx, j.GrantID); err != nil {
				return err
			}
		}
		meta, rec, err := s.jobs.LoadOutput(ctx, tx, j.ID)
		if err != nil {
			return err
		}
		defer rec.Release()
		rv = api.Review{Job: s.jobs.View(p, j), Digest: meta.Digest, Grant: sg.Body, Mechanism: meta.Mechanism, Columns: meta.Columns, Needed: s.Config.Approvals}
		if meta.Mechanism.Custom != nil {
			rv.Files, rv.Columns = output.Files(rec), nil
		} else {
			rv.Rows = output.Rows(rec)
		}
		rv.Warnings = s.warnings(ctx, tx, j, meta)
		if meta.Mechanism.DP != nil && j.GrantID != "" {
			g, err := grants.Decode(sg)
			if err != nil {
				return err
			}
			schemas, _, err := catalog.Load(ctx, tx, grants.Datasets(g))
			if err != nil {
				return err
			}
			if rv.Budget, err = ledger.GrantBudgets(ctx, tx, g, schemas); err != nil {
				return err
			}
		}
		revs, err := tx.Reviews(ctx, j.ID)
		for _, x := range revs {
			rv.Decisions = append(rv.Decisions, api.Decision{Reviewer: x.Reviewer, Decision: x.Decision, Reason: x.Reason, At: x.At})
		}
		return err
	})
	return rv, s.jobs.Note(ctx, p, "review.show", err)
}

// warnings lists what a reviewer should look at twice.
func (s *Service) warnings(ctx context.Context, tx store.Tx, j *jobs.Job, meta output.Meta) []string {
	var ws []string
	m := meta.Mechanism
	if m.NearK > 0 {
		ws = append(ws, fmt.Sprintf("%d released group(s) have fewer than %d persons (close to k=%d)", m.NearK, 2*m.K, m.K))
	}
	if m.Suppressed > 0 {
		ws = append(ws, fmt.Sprintf("%d group(s) were suppressed for having fewer than %d persons", m.Suppressed, m.K))
	}
	if m.Dominance > 0 {
		ws = append(ws, fmt.Sprintf("%d group(s) were suppressed by the dominance rules: one or two persons made up most of a sum, or fewer than %d persons shared a minimum or maximum", m.Dominance, m.K))
	}
	if m.Differencing > 0 {
		ws = append(ws, fmt.Sprintf("%d group(s) were suppressed against differencing: compared with job(s) %s under the same grant, fewer than %d persons' rows differ in them, so subtracting the outputs would single those persons out; check that the released groups cannot be combined with those jobs' outputs the same way", m.Differencing, strings.Join(m.Paired, ", "), m.K))
	}
	prev, err := tx.Jobs(ctx, store.JobFilter{GrantID: j.GrantID, Statuses: []string{jobs.Released, jobs.Review}})
	if err != nil {
		return ws
	}
	mine := sqlTokens(j.Body.SQL)
	for _, sp := range prev {
		if sp.ID == j.ID {
			continue
		}
		pj, err := jobs.Decode(sp)
		if err != nil {
			continue
		}
		if d := distance.Levenshtein(mine, sqlTokens(pj.Body.SQL)); d > 0 && d <= 3 {
			ws = append(ws, fmt.Sprintf("the query differs only slightly (%d token(s)) from job %s (%s) under the same grant: comparing both outputs may single out persons (differencing)", d, pj.ID, pj.Status))
		}
	}
	return ws
}

// sqlTokens splits SQL into lower-cased words, numbers, quoted strings and symbols.
func sqlTokens(q string) []string {
	var toks []string
	rs := []rune(q)
	for i := 0; i < len(rs); {
		c := rs[i]
		switch {
		case unicode.IsSpace(c):
			i++
		case c == '\'' || c == '"':
			j := i + 1
			for j < len(rs) && rs[j] != c {
				j++
			}
			toks = append(toks, string(rs[i:min(j+1, len(rs))]))
			i = j + 1
		case unicode.IsLetter(c) || unicode.IsDigit(c) || c == '_' || c == '.':
			j := i
			for j < len(rs) && (unicode.IsLetter(rs[j]) || unicode.IsDigit(rs[j]) || rs[j] == '_' || rs[j] == '.') {
				j++
			}
			toks = append(toks, strings.ToLower(string(rs[i:j])))
			i = j
		default:
			toks = append(toks, string(c))
			i++
		}
	}
	return toks
}

// Decide records a reviewer's decision on an output: a rejection deletes it, the last
// approval it needs releases it. A reviewer never decides on their own job, nor twice. An
// approval names the digest of the output the reviewer saw, and counts only if the stored
// output still is that one, the grant is still active and its submitter not revoked; the
// quorum counts only approvals of reviewers who still are.
func (s *Service) Decide(ctx context.Context, p policy.Principal, id string, req api.DecideOutput) (api.Job, error) {
	if req.Decision != "approve" && req.Decision != "reject" {
		return api.Job{}, fmt.Errorf("%w: decision must be approve or reject", policy.ErrInvalid)
	}
	if req.Decision == "reject" && strings.TrimSpace(req.Reason) == "" {
		return api.Job{}, fmt.Errorf("%w: a rejection needs a reason (--reason)", policy.ErrInvalid)
	}
	if req.Override && (req.Decision != "approve" || strings.TrimSpace(req.Reason) == "") {
		return api.Job{}, fmt.Errorf("%w: an override approves despite disclosure findings and needs a reason (--override --reason \"...\")", policy.ErrInvalid)
	}
	if req.Decision == "approve" && !digestRE.MatchString(req.Digest) {
		return api.Job{}, fmt.Errorf("%w: an approval names the output it approves: give --digest sha256:... as `veil review show` prints it", policy.ErrInvalid)
	}
	var j *jobs.Job
	var mismatch map[string]string // a digest the reviewer saw that is not the output's
	err := s.DB.Update(ctx, func(tx store.Tx) error {
		var err error
		if j, err = jobs.Load(ctx, tx, p, id); err != nil {
			return err
		}
		if j.Status != jobs.Review {
			return fmt.Errorf("%w: job %s is %s, not waiting for review", policy.ErrConflict, j.ID, j.Status)
		}
		if j.Submitter == p.ID {
			return fmt.Errorf("%w: you submitted job %s and cannot review it", policy.ErrForbidden, j.ID)
		}
		revs, err := tx.Reviews(ctx, j.ID)
		if err != nil {
			return err
		}
		for _, x := range revs {
			if x.Reviewer == p.ID {
				return fmt.Errorf("%w: you already reviewed job %s; another reviewer must decide", policy.ErrConflict, j.ID)
			}
		}
		details := map[string]string{"reason": req.Reason}
		if req.Decision == "approve" {
			if err := s.authority(ctx, tx, j); err != nil {
				return err
			}
			meta, rec, err := s.jobs.LoadOutput(ctx, tx, j.ID)
			if err != nil {
				return err
			}
			rec.Release()
			if req.Digest != meta.Digest {
				mismatch = map[string]string{"approved_sha256": req.Digest, "output_sha256": meta.Digest}
				return fmt.Errorf("%w: you approve output %s, but the output of job %s is %s: show it again (veil review show %s) and decide on what it shows", policy.ErrConflict, req.Digest, j.ID, meta.Digest, j.ID)
			}
			details["output_sha256"] = meta.Digest
			// An output with disclosure findings is released only by an explicit override,
			// which the audit log records with its reason.
			if c := meta.Mechanism.Custom; c != nil && len(c.Findings) > 0 {
				if !req.Override {
					return fmt.Errorf("%w: the output of job %s has %d disclosure findings; approve it only with --override --reason \"why it is safe\" (recorded in the audit log), or reject it", policy.ErrConflict, j.ID, len(c.Findings))
				}
				if err := s.Rec.Record(ctx, tx, p, "review.override", "job/"+j.ID, map[string]string{"reason": req.Reason, "findings": fmt.Sprint(len(c.Findings)), "output_sha256": meta.Digest}); err != nil {
					return err
				}
				req.Reason = "override: " + req.Reason
				details["reason"] = req.Reason
			}
		}
		if err := tx.AddReview(ctx, store.Review{JobID: j.ID, Reviewer: p.ID, Decision: req.Decision, Reason: req.Reason, At: s.Rec.Now()}); err != nil {
			return err
		}
		if err := s.Rec.Record(ctx, tx, p, "review."+req.Decision, "job/"+j.ID, details); err != nil {
			return err
		}
		if req.Decision == "reject" {
			// The output is deleted; the reason is kept in the review and the audit log.
			if err := tx.DeleteOutput(ctx, j.ID); err != nil {
				return err
			}
			if err := j.Move(jobs.Rejected); err != nil {
				return err
			}
			j.Body.Message = "the export review rejected the output: " + req.Reason
			if err := j.Put(ctx, tx, s.Rec.Now()); err != nil {
				return err
			}
			return s.Rec.Record(ctx, tx, platform.System, "job.reject", "job/"+j.ID, nil)
		}
		// Earlier approvals count only if their reviewers still are reviewers.
		valid, _, err := counting(ctx, tx, j)
		if err != nil {
			return err
		}
		j.Body.Approvals = valid
		if !slices.Contains(j.Body.Approvals, p.ID) {
			j.Body.Approvals = append(j.Body.Approvals, p.ID)
		}
		if len(j.Body.Approvals) < s.Config.Approvals {
			if err := j.Move(jobs.Review); err != nil {
				return err
			}
			j.Body.Message = fmt.Sprintf("approved by %d of %d reviewers", len(j.Body.Approvals), s.Config.Approvals)
			return j.Put(ctx, tx, s.Rec.Now())
		}
		if err := j.Move(jobs.Released); err != nil {
			return err
		}
		j.Body.Message = "released: fetch it with `veil export get " + j.ID + "`"
		if err := j.Put(ctx, tx, s.Rec.Now()); err != nil {
			return err
		}
		return s.Rec.Record(ctx, tx, platform.System, "job.release", "job/"+j.ID, map[string]string{"approvals": strings.Join(j.Body.Approvals, ","), "output_sha256": details["output_sha256"]})
	})
	if mismatch != nil {
		s.refusal(ctx, p, "review.digest_mismatch", id, mismatch)
	}
	if err != nil {
		return api.Job{}, s.jobs.Note(ctx, p, "review."+req.Decision, err)
	}
	s.jobs.Changed(j) // a vendor long-polling the job sees the decision at once
	return s.jobs.View(p, j), nil
}

// digestRE is a digest as outputs are named.
var digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

// refusal records, in a transaction of its own (the refused one rolled back), a refused
// decision the audit log should hold.
func (s *Service) refusal(ctx context.Context, p policy.Principal, action, job string, details map[string]string) {
	err := s.DB.Update(context.WithoutCancel(ctx), func(tx store.Tx) error {
		return s.Rec.Record(ctx, tx, p, action, "job/"+job, details)
	})
	if err != nil {
		s.Log.Error("audit a refused decision", "action", action, "job", job, "err", err)
	}
}
