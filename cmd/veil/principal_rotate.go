package main

import (
	"github.com/spf13/cobra"

	"github.com/veil-dp/veil/daemon/api"
)

func newPrincipalRotateCmd() *cobra.Command {
	var grace, expires string
	cmd := &cobra.Command{
		Use:   "rotate ID [--grace 24h] [--expires 30d]",
		Short: "Give a principal a new token, printed once; the old one keeps working for the grace period",
		Long: `Give the principal ID a new token, printed once. The old token keeps working for --grace
(default 24h; 0 ends it at once, and it never outlives its own expiry), then is refused with
a message saying it was replaced. --expires ends the new token after that long.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect()
			if err != nil {
				return err
			}
			p, err := c.RotatePrincipal(cmd.Context(), args[0], api.RotatePrincipal{Grace: grace, Expires: expires})
			if err != nil {
				return err
			}
			pairs := []string{"id", p.ID, "name", p.Name, "role", p.Role, "token", p.Token}
			if !p.Expires.IsZero() {
				pairs = append(pairs, "expires", stamp(p.Expires))
			}
			return kv(p, pairs...)
		},
	}
	cmd.Flags().StringVar(&grace, "grace", "24h", "how long the old token keeps working (0: not at all)")
	cmd.Flags().StringVar(&expires, "expires", "", "end the new token after this long (30d, 12h)")
	return cmd
}
