// Build-time schema generator: `pulumi-tfgen-tls schema --out DIR --skip-examples` writes
// schema.json and bridge-metadata.json, which pulumi-resource-tls embeds. Runs offline.
package main

import (
	pftfgen "github.com/pulumi/pulumi-terraform-bridge/v3/pkg/pf/tfgen"

	"zerotouch.local/toolchain/pulumi-resource-tls/provider"
)

func main() {
	pftfgen.Main("tls", provider.Info([]byte("{}")))
}
