package main

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/veil-dp/veil/daemon/api"
)

// newRuntimeCmd registers and lists the runtime images custom jobs run on (operator).
func newRuntimeCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "runtime", Short: "Runtime images for custom jobs (operator registers, vendors list)"}
	var req api.RegisterRuntime
	var entry string
	register := &cobra.Command{
		Use:   "register --name NAME --rootfs DIR|FILE.tar[.gz] [--entrypoint /usr/bin/python3]",
		Short: "Copy a root filesystem into the platform and record it with its digest",
		RunE: func(cmd *cobra.Command, args []string) error {
			p, err := filepath.Abs(req.Path)
			if err != nil {
				return err
			}
			req.Path = p
			if entry != "" {
				req.Entrypoint = strings.Fields(entry)
			}
			c, err := connect()
			if err != nil {
				return err
			}
			rt, err := c.RegisterRuntime(cmd.Context(), req)
			if err != nil {
				return err
			}
			return kv(rt, "runtime", rt.Name, "digest", rt.Digest, "entrypoint", strings.Join(rt.Entrypoint, " "), "files", fmt.Sprint(rt.Files), "bytes", fmt.Sprint(rt.Bytes))
		},
	}
	register.Flags().StringVar(&req.Name, "name", "", "the runtime's name (never reused for another image)")
	register.Flags().StringVar(&req.Path, "rootfs", "", "a root filesystem directory or tarball on the daemon's host")
	register.Flags().StringVar(&entry, "entrypoint", "", "the interpreter the program is given to, e.g. /usr/bin/python3 (none: the program is executed itself)")
	register.MarkFlagRequired("name")
	register.MarkFlagRequired("rootfs")
	list := &cobra.Command{
		Use:   "list",
		Short: "List the registered runtime images",
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect()
			if err != nil {
				return err
			}
			rts, err := c.Runtimes(cmd.Context())
			if err != nil {
				return err
			}
			var rows [][]string
			for _, r := range rts {
				rows = append(rows, []string{r.Name, r.Digest, strings.Join(r.Entrypoint, " "), fmt.Sprint(r.Files), stamp(r.Registered)})
			}
			return print(rts, []string{"NAME", "DIGEST", "ENTRYPOINT", "FILES", "REGISTERED"}, rows)
		},
	}
	cmd.AddCommand(register, list)
	return cmd
}
