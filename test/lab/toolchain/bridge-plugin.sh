#!/usr/bin/env bash
# Builds one Pulumi resource plugin whose own module the Go module proxy does not serve, from
# the wrapper module under modules/pulumi-resource-<name>/ (see PLUGINS.md):
#   random, tls   the Terraform bridge around the Terraform provider; the schema the plugin
#                 embeds is generated at build time by the wrapper's own tfgen program (offline)
#   kubernetes    pulumi-kubernetes' provider module; the compact, versioned schema and
#                 Terraform mapping it embeds are generated from the files that module ships
# Generated files go into a temporary copy of modules/ (the wrapper and the modules it replaces
# in), never into the checkout.
#
# Usage: test/lab/toolchain/bridge-plugin.sh <random|tls|kubernetes> <outdir> [version]
#   Writes <outdir>/pulumi-resource-<name>; version defaults to the one package.json pins.
# Env:   PLUGIN_BUILD_TIMEOUT  seconds allowed for one go build (default 2400)
#        PLUGIN_GEN_TIMEOUT    seconds allowed for one generation step (default 600)
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
build_timeout="${PLUGIN_BUILD_TIMEOUT:-2400}"
gen_timeout="${PLUGIN_GEN_TIMEOUT:-600}"

usage() {
  echo "usage: $0 <random|tls|kubernetes> <outdir> [version]" >&2
  exit 2
}
if [ "$#" -lt 2 ] || [ "$#" -gt 3 ]; then usage; fi
name="$1"
outdir="$2"
case "$name" in
  random)
    version="${3:-4.21.2}"
    version_var="zerotouch.local/toolchain/bridged.Version"
    ;;
  tls)
    version="${3:-5.6.1}"
    version_var="zerotouch.local/toolchain/bridged.Version"
    ;;
  kubernetes)
    version="${3:-4.34.2}"
    version_var="github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version"
    ;;
  *) usage ;;
esac

command -v go >/dev/null || {
  echo "bridge-plugin: go is not on PATH" >&2
  exit 1
}
wrapper="$here/modules/pulumi-resource-$name"
[ -f "$wrapper/go.mod" ] || {
  echo "bridge-plugin: no wrapper module at $wrapper" >&2
  exit 1
}
mkdir -p "$outdir"
outdir="$(cd "$outdir" && pwd)"
binary="pulumi-resource-$name"
ldflags="-s -w -X $version_var=$version"

work="$(mktemp -d "${TMPDIR:-/tmp}/bridge-plugin-$name.XXXXXX")"
trap 'rm -rf "$work"' EXIT
# The wrapper is copied with the other modules of modules/ (under 1 MB), so that a replace
# directive "=> ../<module>" in its go.mod resolves (random and tls share modules/bridged).
cp -R "$here/modules" "$work/modules"
src="$work/modules/pulumi-resource-$name"

log() { printf '%s bridge-plugin %s: %s\n' "$(date -u +%H:%M:%S)" "$name" "$*"; }
started=$(date +%s)
step_start=$started
step() {
  local now
  now=$(date +%s)
  log "$1 in $((now - step_start))s"
  step_start=$now
}

# go_build OUT PACKAGE: a pinned build inside the temporary copy of the wrapper module.
go_build() {
  (cd "$src" && timeout "$build_timeout" nice -n 19 \
    go build -mod=readonly -trimpath -ldflags "$ldflags" -o "$1" "$2")
}

# The stdlib-only helper that writes the compact JSON files the plugin embeds.
embed_tool="$work/plugin-embed"
(cd "$here/modules/plugin-embed" && timeout "$gen_timeout" go build -trimpath -o "$embed_tool" .)

log "version $version ($version_var), wrapper modules/pulumi-resource-$name, work dir $work"
cmd_dir="$src/cmd/$binary"
case "$name" in
  random | tls)
    go_build "$work/pulumi-tfgen-$name" "./cmd/pulumi-tfgen-$name"
    step "built pulumi-tfgen-$name"
    # Run from the module root: tfgen finds the Terraform provider's docs through
    # `go mod download` in ./provider, served here from the module cache (GOPROXY=off).
    (cd "$src" && GOPROXY=off GOFLAGS=-mod=readonly timeout "$gen_timeout" nice -n 19 \
      "$work/pulumi-tfgen-$name" schema --out "$work/gen" --skip-examples) >"$work/tfgen.log" 2>&1 || {
      cat "$work/tfgen.log" >&2
      echo "bridge-plugin: pulumi-tfgen-$name schema failed" >&2
      exit 1
    }
    "$embed_tool" -version "$version" "$work/gen/schema.json" "$cmd_dir/schema-embed.json"
    cp "$work/gen/bridge-metadata.json" "$cmd_dir/bridge-metadata.json"
    step "generated schema ($(wc -c <"$cmd_dir/schema-embed.json") bytes)"
    ;;
  kubernetes)
    module="github.com/pulumi/pulumi-kubernetes/provider/v4"
    (cd "$src" && timeout "$gen_timeout" go mod download "$module")
    moddir="$(cd "$src" && go list -mod=readonly -m -f '{{.Dir}}' "$module")"
    if [ -z "$moddir" ] || [ ! -f "$moddir/cmd/$binary/schema.json" ]; then
      echo "bridge-plugin: no cmd/$binary/schema.json in $module (dir: ${moddir:-none})" >&2
      exit 1
    fi
    "$embed_tool" -version "$version" "$moddir/cmd/$binary/schema.json" "$cmd_dir/schema-embed.json"
    "$embed_tool" "$moddir/cmd/$binary/terraform-mapping.json" "$cmd_dir/terraform-mapping-embed.json"
    step "generated embed files ($(wc -c <"$cmd_dir/schema-embed.json") bytes of schema)"
    ;;
esac

go_build "$work/$binary" "./cmd/$binary"
step "built $binary"
mv "$work/$binary" "$outdir/$binary"
log "wrote $outdir/$binary ($(du -h "$outdir/$binary" | cut -f1)), total $(($(date +%s) - started))s"
