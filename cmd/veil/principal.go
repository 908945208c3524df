package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/veil-dp/veil/daemon/api"
)

func newWhoamiCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "whoami",
		Short: "Show who the token belongs to",
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect()
			if err != nil {
				return err
			}
			p, err := c.Whoami(cmd.Context())
			if err != nil {
				return err
			}
			return kv(p, "id", p.ID, "name", p.Name, "role", p.Role, "tenant", p.Tenant, "zone", p.Zone)
		},
	}
}

func newZoneCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "zone", Short: "Show or set the time zone you read times in (the console's dates)"}
	show := &cobra.Command{
		Use:   "show",
		Short: "Show your time zone (UTC unless you set one)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect()
			if err != nil {
				return err
			}
			p, err := c.Whoami(cmd.Context())
			if err != nil {
				return err
			}
			return kv(p, "zone", p.Zone)
		},
	}
	set := &cobra.Command{
		Use:   "set ZONE",
		Short: "Set your time zone: an IANA name such as UTC or Asia/Shanghai",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect()
			if err != nil {
				return err
			}
			p, err := c.SetZone(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return kv(p, "zone", p.Zone)
		},
	}
	cmd.AddCommand(show, set)
	return cmd
}

func newPrincipalCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "principal", Short: "Manage principals and their tokens (operator)"}
	var name, role, tenant, expires string
	create := &cobra.Command{
		Use:   "create",
		Short: "Create a principal and print its token once",
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect()
			if err != nil {
				return err
			}
			p, err := c.CreatePrincipal(cmd.Context(), api.CreatePrincipal{Name: name, Role: role, Tenant: tenant, Expires: expires})
			if err != nil {
				return err
			}
			pairs := []string{"id", p.ID, "name", p.Name, "role", p.Role, "tenant", p.Tenant, "token", p.Token}
			if !p.Expires.IsZero() {
				pairs = append(pairs, "expires", stamp(p.Expires))
			}
			return kv(p, pairs...)
		},
	}
	create.Flags().StringVar(&name, "name", "", "name of the person or system")
	create.Flags().StringVar(&role, "role", "", "provider, operator, authority, vendor, reviewer or auditor")
	create.Flags().StringVar(&tenant, "tenant", "", "tenant (vendors) or agency (providers)")
	create.Flags().StringVar(&expires, "expires", "", "end the token after this long (30d, 12h); default: it does not expire")
	list := &cobra.Command{
		Use:   "list",
		Short: "List principals",
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect()
			if err != nil {
				return err
			}
			ps, err := c.Principals(cmd.Context())
			if err != nil {
				return err
			}
			var rows [][]string
			for _, p := range ps {
				rows = append(rows, []string{p.ID, p.Name, p.Role, p.Tenant, fmt.Sprint(p.Revoked)})
			}
			return print(ps, []string{"ID", "NAME", "ROLE", "TENANT", "REVOKED"}, rows)
		},
	}
	revoke := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a principal's token",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := connect()
			if err != nil {
				return err
			}
			p, err := c.RevokePrincipal(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			return kv(p, "id", p.ID, "revoked", fmt.Sprint(p.Revoked))
		},
	}
	cmd.AddCommand(create, list, revoke, newPrincipalRotateCmd())
	return cmd
}
