package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/veil-dp/veil/client"
	"github.com/veil-dp/veil/daemon/api"
)

// registerRequest reads a schema (domain files resolved) and names the files, or uploads
// them when upload is set (resuming uploads an interrupted run left); it returns the
// uploads' state files, for forgetUploads once they are registered.
func registerRequest(cmd *cobra.Command, c *client.Client, schemaFile string, args []string, upload bool) (api.RegisterDataset, []string, error) {
	sch, err := os.ReadFile(schemaFile)
	if err != nil {
		return api.RegisterDataset{}, nil, fmt.Errorf("read schema file: %w", err)
	}
	if sch, err = resolveDomainFiles(sch, filepath.Dir(schemaFile)); err != nil {
		return api.RegisterDataset{}, nil, err
	}
	req := api.RegisterDataset{Schema: string(sch)}
	var states []string
	for _, a := range args {
		abs, err := filepath.Abs(a)
		if err != nil {
			return req, nil, err
		}
		if !upload {
			req.Files = append(req.Files, abs)
			continue
		}
		u, state, err := uploadFile(cmd, c, abs)
		if err != nil {
			return req, nil, err
		}
		req.Uploads = append(req.Uploads, u.ID)
		states = append(states, state)
	}
	return req, states, nil
}

func printVersions(v api.DatasetVersions) error {
	if g.output != "table" {
		return print(v, nil, nil)
	}
	fmt.Fprintf(g.out, "dataset: %s\nversion: %s\nrows: %d\n\n", v.Dataset.Name, v.Dataset.Version, v.Dataset.Rows)
	var rows [][]string
	for _, ver := range v.Versions {
		cur := ""
		if ver.Current {
			cur = "current"
		}
		rows = append(rows, []string{ver.Version[:12], fmt.Sprint(ver.Rows), stamp(ver.Registered), cur})
	}
	if err := print(v, []string{"VERSION", "ROWS", "REGISTERED", ""}, rows); err != nil {
		return err
	}
	if len(v.Grants) == 0 {
		fmt.Fprintln(g.out, "\nno active grant reads this dataset")
	} else {
		fmt.Fprintf(g.out, "\nactive grants that read the current version: %s\n", strings.Join(v.Grants, ", "))
	}
	return nil
}

func newDatasetVersionCmds() []*cobra.Command {
	var schemaFile string
	var upload bool
	update := &cobra.Command{
		Use:   "update NAME --schema FILE.yaml DATA-FILE...",
		Short: "Register a new version of a dataset (provider); lists its versions and the active grants that will read the new one",
		Example: `  veil dataset update strikes --schema strikes.yaml birdstrikes-2025.csv
  veil dataset update strikes --schema strikes.yaml --upload birdstrikes-2025.csv   # the daemon on another machine`,
		Args: cobra.MinimumNArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect()
			if err != nil {
				return err
			}
			req, states, err := registerRequest(cmd, c, schemaFile, args[1:], upload)
			if err != nil {
				return err
			}
			v, err := c.UpdateDataset(cmd.Context(), args[0], req)
			if err != nil {
				return err
			}
			forgetUploads(states)
			return printVersions(v)
		},
	}
	update.Flags().StringVar(&schemaFile, "schema", "", "schema file (YAML) classifying every column")
	update.Flags().BoolVar(&upload, "upload", false, "send the files to the daemon over the API (see dataset register --upload)")
	update.MarkFlagRequired("schema")
	versions := &cobra.Command{
		Use:     "versions NAME",
		Short:   "List a dataset's versions and the active grants that read it (its provider)",
		Example: "  veil dataset versions strikes",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect()
			if err != nil {
				return err
			}
			v, err := c.DatasetVersions(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return printVersions(v)
		},
	}
	return []*cobra.Command{update, versions}
}
