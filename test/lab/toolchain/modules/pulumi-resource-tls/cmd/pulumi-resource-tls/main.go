// The tls resource plugin. schema-embed.json and bridge-metadata.json are not committed:
// bridge-plugin.sh writes them (from pulumi-tfgen-tls) into a temporary copy of this module
// before building.
package main

import (
	"context"
	_ "embed"

	pf "github.com/pulumi/pulumi-terraform-bridge/v3/pkg/pf/tfbridge"

	"zerotouch.local/toolchain/pulumi-resource-tls/provider"
)

//go:embed schema-embed.json
var schema []byte

//go:embed bridge-metadata.json
var metadata []byte

func main() {
	pf.Main(context.Background(), "tls", provider.Info(metadata), pf.ProviderMetadata{PackageSchema: schema})
}
