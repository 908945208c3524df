package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/veil-dp/veil/daemon/api"
)

// newFeedbackCmd is `veil dataset feedback`: vendors file data-quality notes on a dataset
// they use, providers list and resolve the notes on theirs.
func newFeedbackCmd() *cobra.Command {
	var req api.SubmitFeedback
	cmd := &cobra.Command{
		Use:   "feedback NAME --message TEXT [--column COL]",
		Short: "File data-quality feedback on a dataset (vendor); list and resolve it",
		Long: `File data-quality feedback on a dataset your tenant uses under a grant (vendor).
The message says what is wrong and where; it must not hold personal data. The audit log
records a SHA-256 of the text, not the text.

The dataset's provider lists the feedback on its datasets and resolves it with a note; the
operator and the authority list all feedback, a vendor its tenant's.`,
		Example: `  veil dataset feedback residents --column age --message "ages above 120 in district south"
  veil dataset feedback list --dataset residents --status open
  veil dataset feedback resolve f-abcdefghijkm --note "re-registered with corrected birth years"`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return fmt.Errorf("name one dataset: veil dataset feedback NAME --message TEXT (or use 'feedback list' or 'feedback resolve ID')")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect()
			if err != nil {
				return err
			}
			f, err := c.SubmitFeedback(cmd.Context(), args[0], req)
			if err != nil {
				return err
			}
			return printFeedback(f)
		},
	}
	cmd.Flags().StringVar(&req.Message, "message", "", "what is wrong with the data (at most 4000 characters, no personal data)")
	cmd.Flags().StringVar(&req.Column, "column", "", "the column concerned (default: the dataset as a whole)")
	cmd.MarkFlagRequired("message")

	var dataset, status string
	list := &cobra.Command{
		Use:   "list [--dataset NAME] [--status open|resolved]",
		Short: "List the feedback you may see",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect()
			if err != nil {
				return err
			}
			fs, err := c.Feedback(cmd.Context(), dataset, status)
			if err != nil {
				return err
			}
			var rows [][]string
			for _, f := range fs {
				rows = append(rows, []string{f.ID, f.Dataset, feedbackCell(f.Column, 40), f.Tenant, f.Status, stamp(f.Created), feedbackCell(f.Message, 60)})
			}
			return print(fs, []string{"ID", "DATASET", "COLUMN", "TENANT", "STATUS", "CREATED", "MESSAGE"}, rows)
		},
	}
	list.Flags().StringVar(&dataset, "dataset", "", "only feedback on this dataset")
	list.Flags().StringVar(&status, "status", "", "only open or only resolved feedback")

	var note string
	resolve := &cobra.Command{
		Use:   "resolve ID --note TEXT",
		Short: "Resolve feedback on your dataset with a note (provider)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect()
			if err != nil {
				return err
			}
			f, err := c.ResolveFeedback(cmd.Context(), args[0], note)
			if err != nil {
				return err
			}
			return printFeedback(f)
		},
	}
	resolve.Flags().StringVar(&note, "note", "", "what was corrected, or why the data stays as it is")
	resolve.MarkFlagRequired("note")

	cmd.AddCommand(list, resolve)
	return cmd
}

func printFeedback(f api.Feedback) error {
	pairs := []string{"feedback", f.ID, "dataset", f.Dataset, "column", feedbackCell(f.Column, 40), "tenant", f.Tenant, "submitter", f.Submitter,
		"status", f.Status, "created", stamp(f.Created), "message", feedbackCell(f.Message, 200)}
	if f.Status == "resolved" {
		pairs = append(pairs, "resolver", f.Resolver, "resolved", stamp(f.Resolved), "note", feedbackCell(f.Note, 200))
	}
	return kv(f, pairs...)
}

// feedbackCell folds whitespace and cuts s to at most n characters for a table cell; empty is "-".
func feedbackCell(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if s == "" {
		return "-"
	}
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
