package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/veil-dp/veil/audit"
	"github.com/veil-dp/veil/client"
	"github.com/veil-dp/veil/durable"
)

// maxCertificate is the largest certificate audit.VerifyCertificate accepts; a certificate is
// untrusted input, so no more of it than that is read.
const maxCertificate = 4 << 20

// readAtMost reads at most n bytes of path.
func readAtMost(path string, n int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, n))
}

var formats = map[string]string{".parquet": "parquet", ".csv": "csv", ".json": "json", ".arrow": "arrow", ".arrows": "arrow", ".ipc": "arrow", ".tar": "tar"}

func newExportCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "export", Short: "Fetch released outputs and verify their certificates"}
	var out, format string
	get := &cobra.Command{
		Use:   "get JOB -o FILE  |  get JOB FILE [-o table|json|yaml]",
		Short: "Fetch a released output; its signed certificate is written to FILE.cert.json",
		Long: `Fetch a released output into FILE and its signed certificate into FILE.cert.json.

Here -o names the file, as in 'veil export get JOB -o wages.parquet'. To have the report
as JSON or YAML, name the file as the second argument: 'veil export get JOB wages.parquet -o json'.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			// -o is the file, unless it names an output format and the file is an argument.
			if outputFormats[out] && len(args) == 2 {
				g.output, out = out, args[1]
			} else if len(args) == 2 {
				if out != "" {
					return usageErr("name the output file once: veil export get JOB FILE, or veil export get JOB -o FILE")
				}
				out = args[1]
			}
			if out == "" || outputFormats[out] {
				return usageErr("name the output file with -o FILE (its extension chooses the format: .parquet, .csv, .json, .arrow; .tar for a custom job's files)")
			}
			if format == "" {
				format = formats[strings.ToLower(filepath.Ext(out))]
				if format == "" {
					return usageErr("cannot tell the format from %q: use .parquet, .csv, .json or .arrow, or --format", out)
				}
			}
			c, err := connect()
			if err != nil {
				return err
			}
			e, err := c.Export(cmd.Context(), args[0], format)
			if err != nil {
				return err
			}
			if err := durable.WriteFile(out, e.Data, 0o644); err != nil {
				return err
			}
			if err := durable.WriteFile(out+".cert.json", e.Certificate, 0o644); err != nil {
				return err
			}
			rep := struct {
				Job         string `json:"job"`
				File        string `json:"file"`
				Format      string `json:"format"`
				Bytes       int    `json:"bytes"`
				Certificate string `json:"certificate"`
			}{e.Job, out, e.Format, len(e.Data), out + ".cert.json"}
			return say(rep, "wrote %s (%s, %d bytes) and its certificate %s.cert.json\n", out, e.Format, len(e.Data), out)
		},
	}
	// -o names the file here, as in the issue's `veil export get JOB -o FILE`; it shadows the global -o.
	get.Flags().StringVarP(&out, "output", "o", "", "output file (its extension chooses the format), or table, json or yaml with FILE as an argument")
	get.Flags().StringVar(&format, "format", "", "parquet, csv, json or arrow (default: from the file's extension)")
	var cert, keyFile string
	verify := &cobra.Command{
		Use:   "verify FILE",
		Short: "Verify an export offline against its certificate and the platform's public key",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if cert == "" {
				cert = args[0] + ".cert.json"
			}
			data, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			env, err := readAtMost(cert, maxCertificate+1) // the verifier refuses it beyond
			if err != nil {
				return fmt.Errorf("read certificate: %w", err)
			}
			key, err := os.ReadFile(keyFile)
			if err != nil {
				return fmt.Errorf("read platform key (--key): %w", err)
			}
			ring, err := client.ParseKeyring(key)
			if err != nil {
				return fmt.Errorf("%s: %w", keyFile, err)
			}
			st, err := client.VerifyExportKeyring(ring, data, env)
			if err != nil {
				return checkErr("certificate does NOT verify: %w", err)
			}
			rep := struct {
				OK          bool             `json:"ok"`
				File        string           `json:"file"`
				Certificate string           `json:"certificate"`
				Statement   *audit.Statement `json:"statement"`
			}{true, args[0], cert, st}
			if !isTable() {
				return print(rep, nil, nil)
			}
			fmt.Fprintf(g.out, "OK: %s matches its certificate, signed by the platform key\n", args[0])
			return nil
		},
	}
	verify.Flags().StringVar(&cert, "cert", "", "certificate (default FILE.cert.json)")
	verify.Flags().StringVar(&keyFile, "key", "/var/lib/veil/platform.pub", "the platform's public key file (veil platform key prints it), or its keyring after a key rotation (platform.keyring, veil platform key --keyring)")
	cmd.AddCommand(get, verify)
	return cmd
}
