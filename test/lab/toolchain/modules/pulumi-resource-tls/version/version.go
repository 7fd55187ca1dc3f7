// Package version holds the plugin version, set at link time:
// -ldflags "-X zerotouch.local/toolchain/pulumi-resource-tls/version.Version=5.6.1".
package version

// Version is the version the plugin reports (GetPluginInfo, --version).
var Version = "0.0.0-dev"
