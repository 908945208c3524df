package review

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/veil-dp/veil/grants"
	"github.com/veil-dp/veil/jobs"
	"github.com/veil-dp/veil/platform"
	"github.com/veil-dp/veil/policy"
	"github.com/veil-dp/veil/store"
)

// What was decided once and could have changed since is decided again at each approval and
// each download, never trusted from the moment the job ran: the grant is still active (not
// suspended, revoked or expired), the principal who submitted the job is not revoked, and
// the approvals that count are those of reviewers who are still reviewers, against the
// quorum the platform requires now.

// authority checks the grant and the submitter of j as of now.
func (s *Service) authority(ctx context.Context, tx store.Tx, j *jobs.Job) error {
	if j.GrantID != "" { // a twin build has no grant
		sg, err := tx.Grant(ctx, j.GrantID)
		if err != nil {
			return err
		}
		g, err := grants.Decode(sg)
		if err != nil {
			return err
		}
		switch st := g.Effective(s.Rec.Now()); st {
		case policy.StatusActive:
		case policy.StatusSuspended:
			return fmt.Errorf("%w: grant %s is suspended: the outputs of its jobs are neither approved nor released until the authority reinstates it", policy.ErrConflict, g.ID)
		default:
			return fmt.Errorf("%w: grant %s is %s: the outputs of its jobs are no longer approved or released", policy.ErrConflict, g.ID, st)
		}
	}
	sp, err := tx.Principal(ctx, j.Submitter)
	if errors.Is(err, store.ErrNotFound) || (err == nil && sp.Revoked) {
		return fmt.Errorf("%w: the principal who submitted job %s was revoked: its output is no longer approved or released", policy.ErrConflict, j.ID)
	}
	return err
}

// counting splits the approvals of j into those that still count (reviewers not revoked,
// still reviewers, not the submitter) and those that no longer do.
func counting(ctx context.Context, tx store.Tx, j *jobs.Job) (valid, dropped []string, err error) {
	for _, id := range j.Body.Approvals {
		sp, err := tx.Principal(ctx, id)
		switch {
		case errors.Is(err, store.ErrNotFound):
			dropped = append(dropped, id)
		case err != nil:
			return nil, nil, err
		case sp.Revoked || sp.Role != string(policy.Reviewer) || id == j.Submitter:
			dropped = append(dropped, id)
		default:
			valid = append(valid, id)
		}
	}
	return valid, dropped, nil
}

// reopen sends a released job whose approvals no longer reach the quorum back to review, with
// the approvals that still count; it returns why, for the caller to say.
func (s *Service) reopen(ctx context.Context, tx store.Tx, j *jobs.Job, valid, dropped []string) error {
	if err := j.Move(jobs.Review); err != nil {
		return err
	}
	j.Body.Approvals = valid
	why := fmt.Sprintf("back in review: the approval of %s no longer counts (revoked or no longer a reviewer); approved by %d of %d reviewers",
		strings.Join(dropped, ", "), len(valid), s.Config.Approvals)
	if len(dropped) == 0 {
		why = fmt.Sprintf("back in review: the platform now requires %d approvals and it has %d", s.Config.Approvals, len(valid))
	}
	j.Body.Message = why
	if err := j.Put(ctx, tx, s.Rec.Now()); err != nil {
		return err
	}
	if err := s.Rec.Record(ctx, tx, platform.System, "job.reopen", "job/"+j.ID, map[string]string{
		"approvals": strings.Join(valid, ","), "dropped": strings.Join(dropped, ","), "needed": fmt.Sprint(s.Config.Approvals)}); err != nil {
		return err
	}
	return fmt.Errorf("%w: job %s is %s; another reviewer must approve it before it is released again", policy.ErrConflict, j.ID, why)
}

// Reopen sends back to review the released jobs that reviewer approved, when without that
// approval they no longer reach the quorum: called when a principal is revoked, so that the
// queue shows them at once rather than at their next download.
func (s *Service) Reopen(ctx context.Context, reviewer string) error {
	return s.DB.Update(ctx, func(tx store.Tx) error {
		sjs, err := tx.Jobs(ctx, store.JobFilter{Statuses: []string{jobs.Released}})
		if err != nil {
			return err
		}
		for _, sj := range sjs {
			j, err := jobs.Decode(sj)
			if err != nil {
				return err
			}
			if !slices.Contains(j.Body.Approvals, reviewer) {
				continue
			}
			valid, dropped, err := counting(ctx, tx, j)
			if err != nil {
				return err
			}
			if len(valid) >= s.Config.Approvals {
				continue
			}
			if err := s.reopen(ctx, tx, j, valid, dropped); err != nil && !errors.Is(err, policy.ErrConflict) {
				return err
			}
		}
		return nil
	})
}
