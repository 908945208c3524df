package main

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"
)

// newFusionCmd fuses a vendor's own data with public data for one grant (社会数据融合).
func newFusionCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "fusion", Short: "Fuse your own table with public data for one grant (vendor uploads, authority approves)"}
	var grant, name, key, match string
	upload := &cobra.Command{
		Use:   "upload --grant G --name NAME --key COLUMN --match DATASET.COLUMN FILE.csv|FILE.parquet",
		Short: "Upload your table; in a sandbox its key and the public column are pseudonymized with the grant's secret and joined",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			abs, err := filepath.Abs(args[0])
			if err != nil {
				return err
			}
			c, err := connect()
			if err != nil {
				return err
			}
			// Sent in resumable parts (POST /v1/uploads), then fused by the upload's ID.
			u, state, err := uploadFile(cmd, c, abs)
			if err != nil {
				return err
			}
			d, err := c.UploadFusionFrom(cmd.Context(), grant, name, key, match, u.ID)
			if err != nil {
				return err
			}
			forgetUploads([]string{state})
			return kv(d, "dataset", d.Name, "rows", fmt.Sprint(d.Rows), "status", "waiting for the authority (veil fusion approve "+d.Name+")",
				"note", "your key column was replaced by the person's privacy unit; rows without a match were dropped")
		},
	}
	f := upload.Flags()
	f.StringVar(&grant, "grant", "", "your active grant the table is for (it is deleted when the grant ends)")
	f.StringVar(&name, "name", "", "a name for the table (lower-case letters, digits, _)")
	f.StringVar(&key, "key", "", "your column that identifies a person (a phone or ID number)")
	f.StringVar(&match, "match", "", "the public column it corresponds to, e.g. residents.phone")
	for _, n := range []string{"grant", "name", "key", "match"} {
		upload.MarkFlagRequired(n)
	}
	approve := &cobra.Command{
		Use:   "approve DATASET",
		Short: "Add a fused upload to its grant (authority)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect()
			if err != nil {
				return err
			}
			d, err := c.ApproveFusion(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return kv(d, "dataset", d.Name, "status", "approved: usable by its tenant's jobs under its grant until the grant ends")
		},
	}
	cmd.AddCommand(upload, approve)
	return cmd
}
