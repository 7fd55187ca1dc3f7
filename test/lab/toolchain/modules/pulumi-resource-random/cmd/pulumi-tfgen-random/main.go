// Build-time schema generator: `pulumi-tfgen-random schema --out DIR --skip-examples` writes
// schema.json and bridge-metadata.json, which pulumi-resource-random embeds. Runs offline.
package main

import (
	pftfgen "github.com/pulumi/pulumi-terraform-bridge/v3/pkg/pf/tfgen"

	"zerotouch.local/toolchain/pulumi-resource-random/provider"
)

func main() {
	pftfgen.Main("random", provider.Info([]byte("{}")))
}
