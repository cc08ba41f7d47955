// Command wisp is the one Wisp binary: the server (serve), the function builder (build), the
// admin client (deploy, ls, rm, invoke) and the load generator (loadtest).
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	root := &cobra.Command{
		Use:           "wisp",
		Short:         "Wisp: many WebAssembly functions behind one gateway",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	lt := newLoadtestCmd()
	lt.AddCommand(newColdCmd())
	root.AddCommand(newServeCmd(), newBuildCmd(), newDeployCmd(), newListCmd(), newRemoveCmd(), newInvokeCmd(), newLogsCmd(), newRollbackCmd(), newTenantCmd(), lt)
	root.AddCommand(newProfileCmd())
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "wisp:", err)
		os.Exit(1)
	}
}
