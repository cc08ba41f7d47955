package main

import (
	"fmt"
	"net/http"
	"net/url"

	"github.com/spf13/cobra"
)

// newTenantCmd: wisp tenant token|revoke TENANT, with the operator's token.
func newTenantCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "tenant",
		Short: "Manage tenants' admin tokens (operator only)",
		Long: `A tenant's token opens the admin API to that tenant's functions only: deploys with it
belong to the tenant, its functions' kv calls use the Global KV namespace named after it, and
other tenants' functions are not found. Only the operator's token (WISP_TOKEN) manages tokens.`,
	}
	var cf, rf clientFlags
	create := &cobra.Command{
		Use:   "token TENANT",
		Short: "Make a new token for TENANT and print it (it is shown once: only its hash is kept)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cf.client()
			if err != nil {
				return err
			}
			var out struct {
				Token string `json:"token"`
			}
			if err := c.do(cmd.Context(), http.MethodPost, "/_wisp/tenants/"+url.PathEscape(args[0])+"/tokens", nil, nil, &out); err != nil {
				return err
			}
			fmt.Println(out.Token)
			return nil
		},
	}
	cf.register(create)
	revoke := &cobra.Command{
		Use:   "revoke TENANT",
		Short: "Revoke every token of TENANT",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := rf.client()
			if err != nil {
				return err
			}
			var out struct {
				Revoked int `json:"revoked"`
			}
			if err := c.do(cmd.Context(), http.MethodDelete, "/_wisp/tenants/"+url.PathEscape(args[0])+"/tokens", nil, nil, &out); err != nil {
				return err
			}
			fmt.Printf("%s: %d tokens revoked\n", args[0], out.Revoked)
			return nil
		},
	}
	rf.register(revoke)
	cmd.AddCommand(create, revoke)
	return cmd
}
