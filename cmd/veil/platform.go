package main

import (
	"github.com/spf13/cobra"
)

// newPlatformCmd is about the platform itself: its public key.
func newPlatformCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "platform", Short: "The platform's identity: its public verification key"}
	key := &cobra.Command{
		Use:   "key",
		Short: "Print the platform's verification key, as veil export verify --key and veil audit verify --key read it",
		Long: `Print the platform's verification key (a signed-note verifier key, one line), in the form
of the data directory's platform.pub that 'veil export verify --key' and 'veil audit verify
--key' read:

  veil platform key > platform.pub

The key comes from the daemon you ask. A verification is only as good as the key it uses:
compare it once with the key the operator publishes (the data directory's platform.pub) and
keep it; do not fetch it anew from a daemon whose answers you are verifying.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect()
			if err != nil {
				return err
			}
			k, err := c.PlatformKey(cmd.Context())
			if err != nil {
				return err
			}
			return say(k, "%s\n", k.VerifierKey)
		},
	}
	cmd.AddCommand(key)
	return cmd
}
