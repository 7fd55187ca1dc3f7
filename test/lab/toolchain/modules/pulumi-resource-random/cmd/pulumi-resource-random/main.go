// The random resource plugin. schema-embed.json and bridge-metadata.json are not committed:
// bridge-plugin.sh writes them (from pulumi-tfgen-random) into a temporary copy of this module
// before building.
package main

import (
	"embed"

	"zerotouch.local/toolchain/bridged"
	"zerotouch.local/toolchain/pulumi-resource-random/provider"
)

//go:embed schema-embed.json bridge-metadata.json
var generated embed.FS

func main() { bridged.Serve(provider.Info, generated) }
