// Build-time helper for bridge-plugin.sh (standard library only, so no go.sum): writes the
// compact JSON files a resource plugin embeds, with the package version set in the schema.
module zerotouch.local/toolchain/plugin-embed

go 1.25.8
