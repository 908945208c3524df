package main

import (
	"github.com/spf13/cobra"
)

// newPlatformCmd is about the platform itself: its public key.
func newPlatformCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "platform", Short: "The platform's identity: its public verification key"}
	var keyring bool
	key := &cobra.Command{
		Use:   "key",
		Short: "Print the platform's verification key, as veil export verify --key and veil audit verify --key read it",
		Long: `Print the platform's verification key (a signed-note verifier key, one line), in the form
of the data directory's platform.pub that 'veil export verify --key' and 'veil audit verify
--key' read:

  veil platform key > platform.pub

The key comes from the daemon you ask. A verification is only as good as the key it uses:
compare it once with the key the operator publishes (the data directory's platform.pub) and
keep it; do not fetch it anew from a daemon whose answers you are verifying.

After a key rotation (veil key rotate), --keyring prints the keyring: the current key and the
retired ones, each with its term, which verifies what was signed before the rotation:

  veil platform key --keyring > platform.keyring
  veil export verify out.csv --key platform.keyring`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect()
			if err != nil {
				return err
			}
			if keyring {
				r, err := c.PlatformKeyring(cmd.Context())
				if err != nil {
					return err
				}
				if isTable() { // the form platform.keyring has, which --key reads
					g.output = "json"
				}
				return print(r, nil, nil)
			}
			k, err := c.PlatformKey(cmd.Context())
			if err != nil {
				return err
			}
			return say(k, "%s\n", k.VerifierKey)
		},
	}
	key.Flags().BoolVar(&keyring, "keyring", false, "print the keyring instead: the current key and the retired ones with their terms (JSON, as platform.keyring)")
	cmd.AddCommand(key)
	return cmd
}
