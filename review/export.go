package review

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/veil-dp/veil/audit"
	"github.com/veil-dp/veil/daemon/api"
	"github.com/veil-dp/veil/grants"
	"github.com/veil-dp/veil/jobs"
	"github.com/veil-dp/veil/output"
	"github.com/veil-dp/veil/policy"
	"github.com/veil-dp/veil/store"
)

// Provenance is the predicate of an export's certificate: where the output came from.
type Provenance struct {
	Platform   string              `json:"platform"`
	Job        string              `json:"job"`
	Format     string              `json:"format"`
	Rows       int64               `json:"rows"`
	Columns    []string            `json:"columns"`
	Grant      ProvenanceGrant     `json:"grant"`
	Datasets   []ProvenanceDataset `json:"datasets"`
	Query      string              `json:"query"`
	Mechanism  api.Mechanism       `json:"mechanism"`
	Reviewers  []api.Decision      `json:"reviewers"`
	Submitted  time.Time           `json:"submitted"`
	Released   time.Time           `json:"released"`
	Exported   time.Time           `json:"exported"`
	AuditIndex int64               `json:"audit_index"` // the audit entry of this export
	// Output names the protected output the reviewers approved, as the gate produced it.
	Output ProvenanceOutput `json:"output"`
}

// ProvenanceOutput names the protected output an export was encoded from: the sha256 of its
// stored form, which the gate recorded in the audit entry at GateEntry and every approval
// named. The export's own bytes are the statement's subject.
type ProvenanceOutput struct {
	SHA256    string `json:"sha256"`
	GateEntry int64  `json:"gate_entry"`
}

// ProvenanceGrant names the grant and scenario.
type ProvenanceGrant struct {
	ID       string `json:"id"`
	Tenant   string `json:"tenant"`
	Scenario string `json:"scenario"`
	Purpose  string `json:"purpose"`
}

// ProvenanceDataset names a source and its content version.
type ProvenanceDataset struct {
	Name     string `json:"name"`
	Version  string `json:"version"`
	Provider string `json:"provider"`
}

// PredicateType is the in-toto predicate type of Veil's certificates.
const PredicateType = "https://veil.dev/provenance/v1"

// Export is a released output in format, with its signed certificate; the fetch is recorded
// with the hash of the bytes it returns. What the release rested on is checked again as of
// the download: the stored output is the one the gate produced and the reviewers approved,
// the grant is active, the submitter not revoked, and the approvals of reviewers who still
// are reach the quorum (else the job goes back to review).
func (s *Service) Export(ctx context.Context, p policy.Principal, id, format string) (api.Export, error) {
	if format == "" {
		format = "parquet"
	}
	var out api.Export
	var reopened error
	err := s.DB.Update(ctx, func(tx store.Tx) error {
		j, err := jobs.Load(ctx, tx, p, id)
		if err != nil {
			return err
		}
		// What p sees (a vendor: at a release quantum), not the stored status.
		if seen := s.jobs.View(p, j).Status; j.Status != jobs.Released || seen != jobs.Released {
			return fmt.Errorf("%w: job %s is %s; only released outputs can be exported", policy.ErrConflict, j.ID, seen)
		}
		if err := s.authority(ctx, tx, j); err != nil {
			return err
		}
		valid, dropped, err := counting(ctx, tx, j)
		if err != nil {
			return err
		}
		if len(valid) < s.Config.Approvals {
			// Committed: the job waits in the queue again, and this download is refused.
			reopened = s.reopen(ctx, tx, j, valid, dropped)
			if !errors.Is(reopened, policy.ErrConflict) {
				return reopened
			}
			return nil
		}
		meta, rec, err := s.jobs.LoadOutput(ctx, tx, j.ID)
		if err != nil {
			return err
		}
		defer rec.Release()
		var data []byte
		if meta.Mechanism.Custom != nil || format == "tar" {
			if meta.Mechanism.Custom == nil || format != "tar" {
				return fmt.Errorf("%w: a custom job's output is a set of files exported as tar, and only it is; ask for format tar (-o FILE.tar) or another format for other jobs", policy.ErrInvalid)
			}
			data, err = output.Tar(rec, j.Updated)
		} else {
			data, err = output.Encode(rec, format)
		}
		if err != nil {
			return err
		}
		sg, err := tx.Grant(ctx, j.GrantID)
		if err != nil {
			return err
		}
		g, err := grants.Decode(sg)
		if err != nil {
			return err
		}
		revs, err := tx.Reviews(ctx, j.ID)
		if err != nil {
			return err
		}
		prov := Provenance{Platform: s.key.VerifierKey(), Job: j.ID, Format: format, Rows: rec.NumRows(), Columns: meta.Columns,
			Grant: ProvenanceGrant{ID: g.ID, Tenant: g.Tenant, Scenario: g.Scenario, Purpose: g.Purpose},
			Query: j.Body.SQL, Mechanism: certMechanism(meta.Mechanism), Submitted: j.Created, Released: j.Updated, Exported: s.Rec.Now(),
			Output: ProvenanceOutput{SHA256: meta.Digest, GateEntry: meta.GateEntry}}
		for _, rv := range revs {
			prov.Reviewers = append(prov.Reviewers, api.Decision{Reviewer: rv.Reviewer, Decision: rv.Decision, Reason: rv.Reason, At: rv.At})
		}
		for _, d := range g.Datasets {
			ds, err := tx.Dataset(ctx, d.Name)
			if err != nil {
				return err
			}
			v := meta.Datasets[d.Name]
			prov.Datasets = append(prov.Datasets, ProvenanceDataset{Name: d.Name, Version: v, Provider: ds.Provider})
		}
		if prov.AuditIndex, err = tx.Size(ctx); err != nil {
			return err
		}
		cert, err := audit.SignCertificate(s.key, j.ID+"."+format, data, prov)
		if err != nil {
			return err
		}
		out = api.Export{Job: j.ID, Format: format, Data: data, Certificate: cert}
		return s.Rec.Record(ctx, tx, p, "export.get", "job/"+j.ID, map[string]string{"format": format, "sha256": sha256hex(data), "output_sha256": meta.Digest})
	})
	if err == nil && reopened != nil {
		return api.Export{}, reopened
	}
	return out, s.jobs.Note(ctx, p, "export.get", err)
}

// certMechanism is the mechanism as a certificate states it: a custom output's findings by
// output and rule only (their locations and messages are for reviewers; they can name cells
// of the data that the output does not hold).
func certMechanism(m api.Mechanism) api.Mechanism {
	if m.Custom == nil {
		return m
	}
	c := *m.Custom
	c.Findings = nil
	for _, f := range m.Custom.Findings {
		c.Findings = append(c.Findings, api.Finding{Output: f.Output, Rule: f.Rule, Message: "see the review"})
	}
	m.Custom = &c
	return m
}

func sha256hex(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}
