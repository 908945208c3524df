package feedback

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/veil-dp/veil/catalog"
	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/grants"
	"github.com/veil-dp/veil/platform"
	"github.com/veil-dp/veil/policy"
	"github.com/veil-dp/veil/store"
)

// Data-quality feedback (数据质量反馈): a vendor that has used a dataset under a grant files a
// note on it, the dataset's provider reads and resolves it, and both steps are in the audit
// log.
//
// The audit log is append-only and can never be redacted, while a free-text note may quote
// something it should not (a person's name, a value seen in a dev twin). So the audit entry
// carries the SHA-256 of the text, not the text: it still binds the stored text to the entry
// (anyone holding the text can check it is the one that was filed), and the text itself
// lives only in the feedback table, where the tenant's vendors, the provider and the
// platform roles can read it and where it can be corrected if it ever has to be.

const (
	feedbackOpen     = "open"
	feedbackResolved = "resolved"
	// maxFeedbackChars bounds a message or a resolution note, in characters (not bytes).
	maxFeedbackChars = 4000
)

// Service keeps the feedback on datasets.
type Service struct {
	platform.Env
}

// New returns the feedback of db.
func New(env platform.Env) *Service {
	return &Service{Env: env}
}

// feedbackText trims s and checks that it is not empty and not too long.
func feedbackText(what, hint, s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", fmt.Errorf("%w: the %s is empty: %s", policy.ErrInvalid, what, hint)
	}
	if n := utf8.RuneCountInString(s); n > maxFeedbackChars {
		return "", fmt.Errorf("%w: the %s has %d characters; shorten it to at most %d", policy.ErrInvalid, what, n, maxFeedbackChars)
	}
	return s, nil
}

func textHash(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// usedDataset reports whether tenant holds a grant naming dataset that is or has been active
// (active, suspended, expired or revoked after approval). Feedback is about what a vendor
// saw when using the data, so a grant still in review, or rejected, does not count; a grant
// that has since ended still does, because problems are often found after the work is done.
func usedDataset(ctx context.Context, tx store.Tx, tenant, dataset string) (bool, error) {
	if tenant == "" {
		return false, nil
	}
	gs, err := tx.Grants(ctx, tenant)
	if err != nil {
		return false, err
	}
	for _, sg := range gs {
		if sg.Tenant != tenant {
			continue
		}
		g, err := grants.Decode(sg)
		if err != nil {
			return false, err
		}
		if g.ValidFrom.IsZero() { // never approved: pending, rejected, or revoked while pending
			continue
		}
		for _, d := range g.Datasets {
			if d.Name == dataset {
				return true, nil
			}
		}
	}
	return false, nil
}

// canSeeFeedback: a vendor sees its tenant's feedback, a provider the feedback on its own
// datasets (provider is the dataset's provider), the operator and the authority all of it.
func canSeeFeedback(p policy.Principal, f store.Feedback, provider string) bool {
	switch p.Role {
	case policy.Vendor:
		return p.Tenant != "" && p.Tenant == f.Tenant
	case policy.Provider:
		return p.Tenant != "" && p.Tenant == provider
	case policy.Operator, policy.Authority:
		return true
	}
	return false
}

// loadFeedback reads feedback p may see. Feedback p may not see is reported as not found,
// exactly like feedback that does not exist.
func loadFeedback(ctx context.Context, tx store.Tx, p policy.Principal, id string) (store.Feedback, error) {
	notFound := fmt.Errorf("%w: feedback %s not found; `veil dataset feedback list` shows the feedback you may see", policy.ErrNotFound, id)
	f, err := tx.Feedback(ctx, id)
	if err != nil {
		return f, notFound
	}
	var provider string
	if d, err := tx.Dataset(ctx, f.Dataset); err == nil {
		provider = d.Provider
	}
	if !canSeeFeedback(p, f, provider) {
		return store.Feedback{}, notFound
	}
	return f, nil
}

func toAPIFeedback(f store.Feedback) api.Feedback {
	return api.Feedback{ID: f.ID, Dataset: f.Dataset, Column: f.Column, Tenant: f.Tenant, Submitter: f.Submitter, Message: f.Message,
		Status: f.Status, Created: f.Created, Resolver: f.Resolver, Note: f.Note, Resolved: f.Resolved}
}

// Submit files a vendor's data-quality note on a dataset its tenant has used.
func (s *Service) Submit(ctx context.Context, p policy.Principal, name string, req api.SubmitFeedback) (api.Feedback, error) {
	msg, err := feedbackText("message", "say what is wrong with the data, and where", req.Message)
	if err != nil {
		return api.Feedback{}, err
	}
	column := strings.TrimSpace(req.Column)
	f := store.Feedback{ID: platform.NewID("f"), Dataset: name, Column: column, Tenant: p.Tenant, Submitter: p.ID, Message: msg,
		Status: feedbackOpen, Created: s.Rec.Now()}
	err = s.DB.Update(ctx, func(tx store.Tx) error {
		schemas, _, err := catalog.Load(ctx, tx, []string{name})
		if err != nil {
			return err
		}
		if column != "" && !hasColumn(schemas[name], column) {
			return fmt.Errorf("%w: dataset %q has no column %q; `veil dataset show %s` lists its columns, or leave the column out for feedback on the whole dataset",
				policy.ErrInvalid, name, column, name)
		}
		used, err := usedDataset(ctx, tx, p.Tenant, name)
		if err != nil {
			return err
		}
		if !used {
			return fmt.Errorf("%w: tenant %s holds no approved grant naming dataset %q; feedback comes from vendors that have used a dataset under a grant",
				policy.ErrForbidden, p.Tenant, name)
		}
		if err := tx.PutFeedback(ctx, f); err != nil {
			return err
		}
		details := map[string]string{"dataset": name, "message_sha256": textHash(msg)}
		if column != "" {
			details["column"] = column
		}
		return s.Rec.Record(ctx, tx, p, "feedback.submit", "feedback/"+f.ID, details)
	})
	if err != nil {
		return api.Feedback{}, err
	}
	return toAPIFeedback(f), nil
}

func hasColumn(sch *policy.Schema, name string) bool {
	for _, c := range sch.Columns {
		if c.Name == name {
			return true
		}
	}
	return false
}

// List lists the feedback p may see, optionally of one dataset and one status.
func (s *Service) List(ctx context.Context, p policy.Principal, dataset, status string) ([]api.Feedback, error) {
	filter := store.FeedbackFilter{Dataset: dataset, Status: status}
	if filter.Status != "" && filter.Status != feedbackOpen && filter.Status != feedbackResolved {
		return nil, fmt.Errorf("%w: status %q: use open or resolved, or leave it out for both", policy.ErrInvalid, filter.Status)
	}
	if p.Role == policy.Vendor {
		filter.Tenant = p.Tenant
	}
	out := []api.Feedback{}
	err := s.DB.View(ctx, func(tx store.Tx) error {
		ds, err := tx.Datasets(ctx)
		if err != nil {
			return err
		}
		provider := map[string]string{}
		for _, d := range ds {
			provider[d.Name] = d.Provider
		}
		fs, err := tx.Feedbacks(ctx, filter)
		if err != nil {
			return err
		}
		for _, f := range fs {
			if canSeeFeedback(p, f, provider[f.Dataset]) {
				out = append(out, toAPIFeedback(f))
			}
		}
		return nil
	})
	return out, err
}

// MayResolve says whether p may resolve feedback at all: only a provider, the one that holds
// the dataset, resolves it.
func MayResolve(p policy.Principal) error {
	if err := policy.Allow(p, policy.ActFeedbackRead); err != nil {
		return err
	}
	if p.Role != policy.Provider {
		return fmt.Errorf("%w: role %s may not resolve feedback: the provider that holds the dataset resolves it", policy.ErrForbidden, p.Role)
	}
	return nil
}

// Resolve closes open feedback with the provider's note. Only the provider that holds the
// dataset resolves, and only once.
func (s *Service) Resolve(ctx context.Context, p policy.Principal, id string, req api.ResolveFeedback) (api.Feedback, error) {
	if err := MayResolve(p); err != nil {
		return api.Feedback{}, err
	}
	note, err := feedbackText("resolution note", "say what was corrected, or why the data stays as it is", req.Note)
	if err != nil {
		return api.Feedback{}, err
	}
	var f store.Feedback
	err = s.DB.Update(ctx, func(tx store.Tx) error {
		var err error
		if f, err = loadFeedback(ctx, tx, p, id); err != nil {
			return err
		}
		if f.Status != feedbackOpen {
			return fmt.Errorf("%w: feedback %s was already resolved on %s; it cannot be resolved again",
				policy.ErrConflict, f.ID, f.Resolved.Format("2006-01-02 15:04 MST"))
		}
		f.Status, f.Resolver, f.Note, f.Resolved = feedbackResolved, p.ID, note, s.Rec.Now()
		if err := tx.PutFeedback(ctx, f); err != nil {
			return err
		}
		return s.Rec.Record(ctx, tx, p, "feedback.resolve", "feedback/"+f.ID, map[string]string{
			"dataset": f.Dataset, "vendor": f.Tenant, "note_sha256": textHash(note)})
	})
	if err != nil {
		return api.Feedback{}, err
	}
	return toAPIFeedback(f), nil
}
