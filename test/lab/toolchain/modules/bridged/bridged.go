// Package bridged is what the resource plugins bridged from Terraform providers (random, tls)
// share: the version they report, the provider info every such Pulumi package carries, and the
// plugin's main.
package bridged

import (
	"context"
	"fmt"
	"io/fs"
	"os"

	tfpf "github.com/hashicorp/terraform-plugin-framework/provider"
	pf "github.com/pulumi/pulumi-terraform-bridge/v3/pkg/pf/tfbridge"
	"github.com/pulumi/pulumi-terraform-bridge/v3/pkg/tfbridge"
)

// Version is the version the plugin reports (GetPluginInfo, --version), set at link time:
// -ldflags "-X zerotouch.local/toolchain/bridged.Version=4.21.2".
var Version = "0.0.0-dev"

// Info returns the provider info of the Pulumi package name (tokens name:..., repository
// github.com/pulumi/pulumi-<name>) bridged from the Terraform provider p. metadata is the
// bridge-metadata.json written by the tfgen step ("{}" when running tfgen itself).
func Info(name, description string, p tfpf.Provider, metadata []byte) tfbridge.ProviderInfo {
	return tfbridge.ProviderInfo{
		P:            pf.ShimProvider(p),
		Name:         name,
		Description:  description,
		Keywords:     []string{"pulumi", name},
		License:      "Apache-2.0",
		Homepage:     "https://pulumi.io",
		Repository:   "https://github.com/pulumi/pulumi-" + name,
		Version:      Version,
		MetadataInfo: tfbridge.NewProviderMetadata(metadata),
		JavaScript:   &tfbridge.JavaScriptInfo{RespectSchemaVersion: true},
	}
}

// Serve is the plugin's main. generated holds the files the tfgen step writes and the plugin
// embeds: schema-embed.json (the package schema) and bridge-metadata.json, given to info.
func Serve(info func(metadata []byte) tfbridge.ProviderInfo, generated fs.FS) {
	schema, err := fs.ReadFile(generated, "schema-embed.json")
	if err != nil {
		fail(err)
	}
	metadata, err := fs.ReadFile(generated, "bridge-metadata.json")
	if err != nil {
		fail(err)
	}
	prov := info(metadata)
	pf.Main(context.Background(), prov.Name, prov, pf.ProviderMetadata{PackageSchema: schema})
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "plugin: %v\n", err)
	os.Exit(1)
}
