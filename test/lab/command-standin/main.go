// Command pulumi-resource-command is the lab's stand-in for the `command` resource plugin
// 1.2.1: it serves `command:remote:Command` to the Pulumi engine. See README.md.
package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"zerotouch.local/lab/command-standin/provider"
)

// Version is the plugin version reported to the engine; set it with
// -ldflags "-X main.Version=1.2.1". It must equal the @pulumi/command package version.
var Version = "1.2.1"

func main() {
	prov, err := provider.New()
	if err == nil {
		err = prov.Run(context.Background(), provider.Name, strings.TrimPrefix(Version, "v"))
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "error: %v\n", err)
		os.Exit(1)
	}
}
