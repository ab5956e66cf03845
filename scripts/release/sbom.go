package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
)

// runSBOM sets the version of the SBOM's main component (metadata.component
// and its purl) to the release's: cyclonedx-gomod derives its own from git
// with the author's time, where scripts/version.sh takes the commit's time
// (as Go does), and the two differ after a rebase. Everything else stays
// as the tool wrote it.
func runSBOM(args []string) error {
	fs := flag.NewFlagSet("sbom", flag.ContinueOnError)
	version := fs.String("version", "", "the release version")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 || *version == "" {
		return fmt.Errorf("%w: sbom -version V FILE.json", errUsage)
	}
	path := fs.Arg(0)
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	md, _ := doc["metadata"].(map[string]any)
	comp, _ := md["component"].(map[string]any)
	old, _ := comp["version"].(string)
	if comp == nil || old == "" {
		return fmt.Errorf("%s: no metadata.component.version: not a cyclonedx-gomod SBOM", path)
	}
	comp["version"] = *version
	if purl, ok := comp["purl"].(string); ok {
		comp["purl"] = strings.Replace(purl, "@"+old, "@"+*version, 1)
	}
	var out bytes.Buffer
	enc := json.NewEncoder(&out)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(doc); err != nil {
		return err
	}
	return os.WriteFile(path, out.Bytes(), 0o644)
}
