package cli

import (
	"encoding/json"
	"fmt"

	"github.com/podfim/podfim/internal/version"
	"github.com/spf13/cobra"
)

func newVersionCmd(s *streams) *cobra.Command {
	var format string
	c := &cobra.Command{
		Use:   "version",
		Short: "Print the version, the commit it was built from, that commit's time and the Go version",
		Long: `Print which podfim this is: the release version (from git describe, see
docs/install.md), the commit, the commit's time (release builds are
reproducible, so the build carries no build time of its own), the Go version
and the platform.`,
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			return printVersion(s, format, version.Get())
		},
	}
	c.Flags().StringVar(&format, "format", "text", "text (for people) or json (for machines)")
	return c
}

func printVersion(s *streams, format string, i version.Info) error {
	switch format {
	case "text":
		fmt.Fprintln(s.out, i.String())
		return nil
	case "json":
		enc := json.NewEncoder(s.out)
		enc.SetIndent("", "  ")
		return enc.Encode(i)
	default:
		return fail(ExitUsage, fmt.Errorf("unknown --format %q: text or json", format))
	}
}

// versionString is the one-line version the sidecar and the webhook log.
func versionString() string { return version.Get().String() }
