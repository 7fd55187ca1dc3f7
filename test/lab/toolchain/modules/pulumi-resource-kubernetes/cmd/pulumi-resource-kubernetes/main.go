// The kubernetes resource plugin: pulumi-kubernetes' provider, served as its own cmd does it.
// That cmd cannot be built from the module cache, as it embeds files its build generates.
// schema-embed.json and terraform-mapping-embed.json are not committed: bridge-plugin.sh
// writes them (from the schema.json and terraform-mapping.json the provider module ships, the
// schema with its version set) into a temporary copy of this module before building. The
// version is set at link time on github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version.
package main

import (
	_ "embed"

	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/provider"
	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version"
)

//go:embed schema-embed.json
var schema []byte

//go:embed terraform-mapping-embed.json
var terraformMapping []byte

func main() {
	provider.Serve("kubernetes", version.Version, schema, terraformMapping)
}
