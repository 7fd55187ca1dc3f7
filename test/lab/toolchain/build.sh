#!/usr/bin/env bash
# Builds the pinned Pulumi toolchain (CLI, nodejs language host, resource plugins)
# from the Go module proxy, into a cache folder outside the checkout keyed by the
# sha256 of versions.env. A binary that is already there is not built again, so a
# warm run does nothing.
#
# Usage: test/lab/toolchain/build.sh [binary...]   (default: every line of versions.env)
# Env:   ZEROTOUCH_TOOLCHAIN_CACHE  cache root (default /var/cache/zerotouch-toolchain)
#        TOOLCHAIN_BUILD_TIMEOUT    seconds allowed for one binary (default 2400)
#        TOOLCHAIN_CHECK_ONLY=1     build nothing: exit 3 unless every named binary is already
#                                   built and current (what `npm run lab` asks before using it)
# Prints the bin folder on its last line as "toolchain bin: <path>".
# Exits non-zero when a binary marked "required" in versions.env is missing.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
versions_file="$here/versions.env"
cache_root="${ZEROTOUCH_TOOLCHAIN_CACHE:-/var/cache/zerotouch-toolchain}"
build_timeout="${TOOLCHAIN_BUILD_TIMEOUT:-2400}"

command -v go >/dev/null || { echo "toolchain: go is not on PATH" >&2; exit 1; }

key="$(sha256sum "$versions_file" | cut -c1-16)"
out="$cache_root/$key"
bin="$out/bin"
logs="$out/logs"
mkdir -p "$bin" "$logs"
cp "$versions_file" "$out/versions.env"

log() { printf '%s toolchain: %s\n' "$(date -u +%H:%M:%S)" "$*"; }

# build_one NAME MODULE VERSION PACKAGE VERSION_VAR WRAPPER LOGFILE
build_one() {
  local name="$1" module="$2" version="$3" package="$4" version_var="$5" wrapper="$6" logfile="$7"
  local ldflags="-s -w" entry
  # version_var: "-", or a comma-separated list of variables, each set to the version or, written
  # as var=value, to that value.
  if [ "$version_var" != "-" ]; then
    IFS=, read -r -a entries <<<"$version_var"
    for entry in "${entries[@]}"; do
      case "$entry" in
        *=*) ldflags="$ldflags -X $entry" ;;
        *) ldflags="$ldflags -X $entry=$version" ;;
      esac
    done
  fi
  # A wrapper module whose go.mod has a toolchain line (argocd: go1.27.3, newer than the local
  # go) is built, and its pin checked, with that toolchain: go fetches it from the module proxy
  # once. The other entries run the go on PATH, as its own GOTOOLCHAIN setting says.
  if [[ "$wrapper" != - && "$wrapper" != script:* && "$wrapper" != local:* ]]; then
    local toolchain
    toolchain="$(sed -n 's/^toolchain[[:space:]]\{1,\}\(go[^[:space:]]*\).*/\1/p' "$here/modules/$wrapper/go.mod")"
    if [ -n "$toolchain" ]; then
      local -x GOTOOLCHAIN="$toolchain"
    fi
  fi
  local tmp
  tmp="$(mktemp -d "$out/tmp.XXXXXX")"
  {
    echo "module:  $module@$version"
    echo "package: $package"
    echo "ldflags: $ldflags"
    echo "go:      $(go version)"
  } >"$logfile"

  if [ "$wrapper" = "-" ]; then
    echo "mode:    go install $package@$version" >>"$logfile"
    if ! GOBIN="$tmp" timeout "$build_timeout" nice -n 19 \
        go install -trimpath -ldflags "$ldflags" "$package@$version" >>"$logfile" 2>&1; then
      rm -rf "$tmp"
      return 1
    fi
  elif [[ "$wrapper" == script:* ]]; then
    # A build script of this folder (e.g. bridge-plugin.sh: generation, then go build), given the
    # name without its "pulumi-resource-" prefix, the output folder and the version.
    local script="$here/${wrapper#script:}"
    echo "mode:    ${wrapper#script:} ${name#pulumi-resource-} (wrapper module modules/$name)" >>"$logfile"
    if ! timeout "$build_timeout" nice -n 19 bash "$script" "${name#pulumi-resource-}" "$tmp" "${version#v}" >>"$logfile" 2>&1; then
      rm -rf "$tmp"
      return 1
    fi
  elif [[ "$wrapper" == local:* ]]; then
    # A module of this repository (the lab's own code): built from its folder as it is.
    local dir="$here/${wrapper#local:}"
    echo "mode:    go build in the repository's module ${wrapper#local:}" >>"$logfile"
    if ! (cd "$dir" && timeout "$build_timeout" nice -n 19 \
        go build -mod=readonly -trimpath -ldflags "$ldflags" -o "$tmp/$name" "$package") >>"$logfile" 2>&1; then
      rm -rf "$tmp"
      return 1
    fi
  else
    local dir="$here/modules/$wrapper"
    echo "mode:    go build in wrapper module modules/$wrapper" >>"$logfile"
    # The wrapper's go.mod/go.sum pin the module; refuse to build another version.
    local pinned
    if ! pinned="$(cd "$dir" && go list -mod=readonly -m -f '{{.Version}}' "$module" 2>>"$logfile")"; then
      rm -rf "$tmp"
      return 1
    fi
    if [ "$pinned" != "$version" ]; then
      echo "wrapper modules/$wrapper pins $module@$pinned, versions.env says $version;" \
        "run: (cd $dir && go get $module@$version && go mod tidy)" >>"$logfile"
      rm -rf "$tmp"
      return 1
    fi
    if ! (cd "$dir" && timeout "$build_timeout" nice -n 19 \
        go build -mod=readonly -trimpath -ldflags "$ldflags" -o "$tmp/$name" "$package") >>"$logfile" 2>&1; then
      rm -rf "$tmp"
      return 1
    fi
    # Files of the module that its binary runs beside it, as its release image ships them
    # (modules/<wrapper>/runtime-files: one "<module> <path in the module>" per line).
    if [ -f "$dir/runtime-files" ]; then
      local mod file src
      while read -r mod file; do
        case "$mod" in '' | '#'*) continue ;; esac
        src="$(cd "$dir" && go list -mod=readonly -m -f '{{.Dir}}' "$mod")/$file"
        if ! install -m 0755 "$src" "$bin/$(basename "$file")"; then
          echo "runtime file $mod $file: not found at $src" >>"$logfile"
          rm -rf "$tmp"
          return 1
        fi
        echo "runtime file: $(basename "$file") from $mod" >>"$logfile"
      done <"$dir/runtime-files"
    fi
  fi
  mv "$tmp/$name" "$bin/$name"
  rm -rf "$tmp"
}

# source_stamp NAME WRAPPER: for what is built from this repository's own files (local:<dir>,
# script:<file> with its wrapper module modules/<NAME>, or a wrapper module modules/<WRAPPER>,
# each with the modules of modules/ its go.mod replaces in as ../<module>), the sha256 of those
# files: the cache key covers versions.env only, so a binary built from older files is built
# again. Empty for `go install` entries.
source_stamp() {
  local dirs=() module sibling
  case "$2" in
    local:*) dirs=("$here/${2#local:}") ;;
    script:*) dirs=("$here/${2#script:}" "$here/modules/$1") ;;
    -) echo "" && return 0 ;;
    *) dirs=("$here/modules/$2") ;;
  esac
  module="${dirs[-1]}"
  if [[ "$module" == "$here/modules/"* && -f "$module/go.mod" ]]; then
    while read -r sibling; do
      dirs+=("$here/modules/$sibling")
    done < <(sed -n '/^[[:space:]]*\/\//!s#.*=>[[:space:]]*\.\./\([^[:space:]/]*\)[[:space:]]*$#\1#p' "$module/go.mod")
  fi
  find "${dirs[@]}" -type f \( -name '*.go' -o -name go.mod -o -name go.sum -o -name '*.sh' -o -name runtime-files \) ! -name '*_test.go' -print0 |
    sort -z | xargs -0 sha256sum | sed "s#$here/##" | sha256sum | cut -c1-64
}

# install_links NAME LINKS: LINKS is "-" (or empty) or a comma-separated list of names, each made a
# symlink to NAME in bin/ (a multi-call binary, e.g. argocd, picks its command by the name it is
# run as). Done whenever NAME is there, so a binary built before its links were listed gets them.
install_links() {
  local name="$1" links="${2:--}" link link_names
  [ "$links" != "-" ] || return 0
  IFS=, read -r -a link_names <<<"$links"
  for link in "${link_names[@]}"; do
    [ "$(readlink "$bin/$link" 2>/dev/null || true)" = "$name" ] || ln -sfn "$name" "$bin/$link"
  done
}

# entry_line FILE NAME: NAME's line of a versions.env, blanks squeezed.
entry_line() { awk -v n="$2" '$1 == n { $1 = $1; print; exit }' "$1"; }

# runtime_files WRAPPER: the names of the files the wrapper module's binary runs beside it
# (modules/<wrapper>/runtime-files), one a line.
runtime_files() {
  local list="$here/modules/$1/runtime-files" mod file
  [ -n "$1" ] && [ -f "$list" ] || return 0
  while read -r mod file; do
    case "$mod" in '' | '#'*) continue ;; esac
    basename "$file"
  done <"$list"
}

# has_runtime_files WRAPPER: whether every runtime file of the wrapper's binary is in this folder.
has_runtime_files() {
  local f
  while read -r f; do
    [ -z "$f" ] || [ -x "$bin/$f" ] || return 1
  done < <(runtime_files "$1")
}

# reuse NAME STAMP WRAPPER: a binary that an earlier versions.env built from the same line and
# the same sources (another folder of the cache) is linked in with its runtime files, not built
# again: editing one line of versions.env rebuilds that binary only. Prints the folder it came from.
reuse() {
  local name="$1" stamp="$2" line dir f files
  line="$(entry_line "$versions_file" "$name")"
  mapfile -t files < <(runtime_files "$3")
  for dir in "$cache_root"/*; do
    if [ "$dir" = "$out" ] || [ ! -x "$dir/bin/$name" ] || [ ! -f "$dir/versions.env" ]; then
      continue
    fi
    [ "$(entry_line "$dir/versions.env" "$name")" = "$line" ] || continue
    [ "$(cat "$dir/bin/.$name.source" 2>/dev/null || true)" = "$stamp" ] || continue
    for f in "${files[@]}"; do [ -x "$dir/bin/$f" ] || continue 2; done
    for f in "${files[@]}"; do ln -f "$dir/bin/$f" "$bin/$f" 2>/dev/null || cp -p "$dir/bin/$f" "$bin/$f"; done
    ln -f "$dir/bin/$name" "$bin/$name" 2>/dev/null || cp -p "$dir/bin/$name" "$bin/$name"
    if [ -n "$stamp" ]; then echo "$stamp" >"$bin/.$name.source"; else rm -f "$bin/.$name.source"; fi
    echo "$dir"
    return 0
  done
  return 1
}

wanted=("$@")
is_wanted() {
  local n
  [ "${#wanted[@]}" -eq 0 ] && return 0
  for n in "${wanted[@]}"; do [ "$n" = "$1" ] && return 0; done
  return 1
}

built=0 skipped=0 failed=0 missing_required=()
results="$out/results.tsv"
touch "$results"
log "versions.env sha256 prefix $key, output $bin"

while read -r name module version package version_var wrapper required links; do
  case "$name" in ''|'#'*) continue ;; esac
  is_wanted "$name" || continue
  stamp="$(source_stamp "$name" "$wrapper")"
  if [ -x "$bin/$name" ] && [ "$(cat "$bin/.$name.source" 2>/dev/null || true)" = "$stamp" ] && has_runtime_files "$wrapper"; then
    log "$name: already built ($module@$version), skipped"
    install_links "$name" "$links"
    skipped=$((skipped + 1))
    continue
  fi
  if [ "${TOOLCHAIN_CHECK_ONLY:-0}" != 1 ] && from="$(reuse "$name" "$stamp" "$wrapper")"; then
    log "$name: built earlier from the same line and sources, linked from $from"
    install_links "$name" "$links"
    skipped=$((skipped + 1))
    continue
  fi
  if [ "${TOOLCHAIN_CHECK_ONLY:-0}" = 1 ]; then
    log "$name: not built, or built from older sources"
    failed=$((failed + 1))
    continue
  fi
  logfile="$logs/$name.log"
  log "$name: building $module@$version (log: $logfile, timeout ${build_timeout}s)"
  start=$(date +%s)
  if build_one "$name" "$module" "$version" "$package" "$version_var" "$wrapper" "$logfile"; then
    secs=$(($(date +%s) - start))
    if [ -n "$stamp" ]; then echo "$stamp" >"$bin/.$name.source"; else rm -f "$bin/.$name.source"; fi
    install_links "$name" "$links"
    log "$name: built in ${secs}s"
    printf '%s\t%s@%s\tbuilt\t%ss\n' "$name" "$module" "$version" "$secs" >>"$results"
    built=$((built + 1))
  else
    secs=$(($(date +%s) - start))
    log "$name: FAILED after ${secs}s; last lines of $logfile:"
    tail -n 5 "$logfile" | sed 's/^/    /'
    printf '%s\t%s@%s\tfailed\t%ss\n' "$name" "$module" "$version" "$secs" >>"$results"
    failed=$((failed + 1))
    [ "$required" = "yes" ] && missing_required+=("$name")
  fi
done <"$versions_file"

# The small launchers a release tarball ships beside the CLI (launchers/), always the checkout's.
for launcher in "$here"/launchers/*; do
  [ -f "$launcher" ] || continue
  is_wanted "$(basename "$launcher")" || continue
  cmp -s "$launcher" "$bin/$(basename "$launcher")" || install -m 0755 "$launcher" "$bin/$(basename "$launcher")"
done

if [ "$built" -eq 0 ] && [ "$failed" -eq 0 ]; then
  log "nothing to do: all $skipped binaries already built"
else
  log "built $built, skipped $skipped, failed $failed"
fi
echo "toolchain bin: $bin"
if [ "${TOOLCHAIN_CHECK_ONLY:-0}" = 1 ] && [ "$failed" -gt 0 ]; then
  exit 3
fi
if [ "${#missing_required[@]}" -gt 0 ]; then
  echo "toolchain: required binaries missing: ${missing_required[*]}" >&2
  exit 1
fi
