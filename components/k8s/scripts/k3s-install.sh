#!/usr/bin/env bash
# k3s binary: puts the pinned k3s release on the node, verified before it is ever executed.
#
# create, ZT_K3S_SOURCE=release: when $ZT_K3S_BIN_DIR/k3s already has the expected sha256,
#         changes nothing. Otherwise downloads the binary for this node's architecture into a
#         fresh root-only directory, computes its sha256 and compares it with the pinned one. On a
#         mismatch the download is removed and the script exits 3 naming the node, the URL and
#         both checksums; nothing is installed and nothing downloaded is run. Only a verified
#         binary is installed (mode 0755, atomically), then asked for its version.
# create, ZT_K3S_SOURCE=preinstalled: checks that the installed k3s reports the pinned version
#         (exit 3 when not); installs nothing.
# delete: stops and removes the k3s services (k3s-killall style) and, when this step installed
#         it, the binary; unless a newer install step (a replacement of this one) owns the node.
#         The external etcd is never contacted.
#
# Parameters (environment):
#   ZT_ACTION           create | delete
#   ZT_NODE             node name (DNS label), named in every message
#   ZT_K3S_SOURCE       release | preinstalled
#   ZT_K3S_VERSION      pinned version, e.g. v1.36.4+k3s1
#   ZT_K3S_URL_AMD64, ZT_K3S_SHA256_AMD64   binary URL (https:// or file://) and sha256, x86_64
#   ZT_K3S_URL_ARM64, ZT_K3S_SHA256_ARM64   the same for aarch64 (release only)
#   ZT_K3S_BIN_DIR      where k3s goes. Defaults to /usr/local/bin.
#   ZT_K3S_STATE_DIR    state (owner record, downloads). Defaults to /var/lib/zerotouch/k3s.
#   ZT_K3S_ARCH         architecture to install for. Defaults to what `uname -m` prints.
#
# Output: progress on stderr; one JSON object as the last line of stdout.
# Exit codes: 0 ok, 1 failure, 2 invalid parameter, 3 verification failed.
set -euo pipefail

# k3s.sh and common.sh: in the payload ahead of this script, or from the checkout.
if ! declare -F k3s_self_id >/dev/null; then
  # shellcheck source=components/k8s/scripts/lib/k3s.sh
  . "$(dirname "${BASH_SOURCE[0]}")/lib/k3s.sh"
fi
K3S_STEP=k3s-install

readonly download_timeout_s=900
readonly apt_timeout_s=600

read_action_node create delete
source="${ZT_K3S_SOURCE:-}"
version="${ZT_K3S_VERSION:-}"
case "$source" in
  release | preinstalled) ;;
  *) invalid "ZT_K3S_SOURCE must be release or preinstalled, got '${source}' (node ${node})" ;;
esac
[[ "$version" =~ ^v1\.[0-9]{1,3}\.[0-9]{1,3}\+k3s[0-9]{1,2}$ ]] ||
  invalid "ZT_K3S_VERSION must be a k3s release such as v1.36.4+k3s1, got '${version}' (node ${node})"
case "$K3S_BIN_DIR" in
  /*) ;;
  *) invalid "ZT_K3S_BIN_DIR must be an absolute path, got '${K3S_BIN_DIR}' (node ${node})" ;;
esac
self_id="$(k3s_self_id)"

result() {
  printf '{"node":%s,"action":"%s","source":"%s","version":%s,"changed":%s%s}\n' \
    "$(json_string "$node")" "$action" "$source" "$(json_string "$version")" "$1" "${2:-}"
}

# A failed verification: the result line (verified false, plus the given fields), then exit 3.
refuse_unverified() {
  result false ",\"verified\":false${1}"
  refuse "$2"
}

if [ "$action" = delete ]; then
  if k3s_superseded install "$self_id"; then
    log "a newer install step owns k3s on this node (this one was replaced); leaving it"
    result false ',"superseded":true'
    exit 0
  fi
  k3s_teardown
  changed=$k3s_teardown_changed
  if [ "$source" = release ] && [ -f "$K3S_STATE/install.sha256" ] && [ -f "$K3S_BIN" ] &&
    [ "$(sha256sum <"$K3S_BIN" | cut -d' ' -f1)" = "$(cat "$K3S_STATE/install.sha256")" ]; then
    rm -f "$K3S_BIN"
    changed=true
    log "removed $K3S_BIN"
  fi
  rm -f "$K3S_STATE/install.owner" "$K3S_STATE/install.sha256" "$K3S_STATE/service.owner"
  rmdir "$K3S_STATE" 2>/dev/null || true
  result "$changed"
  exit 0
fi

# --- create: preinstalled ------------------------------------------------------------------
if [ "$source" = preinstalled ]; then
  [ -x "$K3S_BIN" ] || refuse_unverified "" "node ${node}: k3s source is 'preinstalled' but ${K3S_BIN} is missing or not executable; install k3s ${version} there, or use the release source"
  installed="$(k3s_installed_version)"
  [ "$installed" = "$version" ] ||
    refuse_unverified ",\"installedVersion\":$(json_string "$installed")" "node ${node}: the preinstalled ${K3S_BIN} reports version '${installed:-unknown}', the pinned version is ${version}; install ${version}, or pin the installed version"
  k3s_claim install "$self_id"
  log "the preinstalled k3s is ${version}"
  result false
  exit 0
fi

# --- create: release -----------------------------------------------------------------------
machine="${ZT_K3S_ARCH:-$(uname -m)}"
case "$machine" in
  x86_64 | amd64) arch=amd64 url="${ZT_K3S_URL_AMD64:-}" expected="${ZT_K3S_SHA256_AMD64:-}" ;;
  aarch64 | arm64) arch=arm64 url="${ZT_K3S_URL_ARM64:-}" expected="${ZT_K3S_SHA256_ARM64:-}" ;;
  *) die "node ${node}: no k3s binary is pinned for the architecture '${machine}' (allowed: x86_64, aarch64)" ;;
esac
upper_arch=$(printf '%s' "$arch" | tr '[:lower:]' '[:upper:]')
[[ "$url" =~ ^(https://|file:///)[^[:space:]\"\'\\]+$ ]] ||
  invalid "ZT_K3S_URL_${upper_arch} must be an https:// or file:/// URL, got '${url}' (node ${node})"
[[ "$expected" =~ ^[0-9a-f]{64}$ ]] ||
  invalid "ZT_K3S_SHA256_${upper_arch} must be 64 lowercase hex digits, got '${expected}' (node ${node})"

mkdir -p "$K3S_BIN_DIR"
if [ -f "$K3S_BIN" ] && [ "$(sha256sum <"$K3S_BIN" | cut -d' ' -f1)" = "$expected" ]; then
  k3s_claim install "$self_id"
  printf '%s\n' "$expected" >"$K3S_STATE/install.sha256"
  log "${K3S_BIN} is k3s ${version} (${arch}, sha256 ${expected}); nothing to do"
  result false ",\"arch\":\"${arch}\",\"sha256\":\"${expected}\""
  exit 0
fi

if ! command -v curl >/dev/null 2>&1; then
  command -v apt-get >/dev/null 2>&1 || die "node ${node}: curl is missing and apt-get is not available to install it"
  log "installing curl"
  export DEBIAN_FRONTEND=noninteractive
  timeout "$apt_timeout_s" apt-get -q -o DPkg::Lock::Timeout=300 update >&2 || die "node ${node}: apt-get update failed or timed out"
  timeout "$apt_timeout_s" apt-get -q -y -o DPkg::Lock::Timeout=300 install --no-install-recommends curl ca-certificates >&2 ||
    die "node ${node}: installing curl failed or timed out"
fi

# The download lands in a fresh directory only root can enter, and leaves with the script.
k3s_state_dir
workdir=""
trap '[ -z "$workdir" ] || rm -rf -- "$workdir"' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
workdir="$(umask 077 && mktemp -d "$K3S_STATE/download.XXXXXXXX")"
download="$workdir/k3s"

log "downloading k3s ${version} (${arch}) from ${url}"
(umask 077 && curl --fail --silent --show-error --location --proto '=https,file' --proto-redir '=https' \
  --connect-timeout 30 --max-time "$download_timeout_s" --retry 3 --retry-delay 5 \
  --output "$download" -- "$url") || die "node ${node}: downloading ${url} failed"
[ -s "$download" ] || die "node ${node}: ${url} gave an empty file"
actual="$(sha256sum <"$download" | cut -d' ' -f1)"
if [ "$actual" != "$expected" ]; then
  rm -f -- "$download"
  refuse_unverified ",\"arch\":\"${arch}\",\"expectedSha256\":\"${expected}\",\"actualSha256\":\"${actual}\"" "node ${node}: the k3s binary from ${url} has sha256 ${actual}, expected ${expected} (k3s ${version}, ${arch}); it was deleted and nothing was installed. Check the mirror (releaseBaseUrl), or the pinned checksum in components/k8s/k3s.ts"
fi

# Verified: only now does it become executable, next to its final place, then replaces it.
staged="$K3S_BIN_DIR/.k3s.zerotouch-new"
install -m 0755 -- "$download" "$staged"
mv -f -- "$staged" "$K3S_BIN"
rm -f -- "$download"
log "installed ${K3S_BIN} (sha256 ${actual})"

installed="$(k3s_installed_version)"
[ "$installed" = "$version" ] ||
  refuse_unverified ",\"arch\":\"${arch}\",\"installedVersion\":$(json_string "$installed")" "node ${node}: the verified binary reports version '${installed:-unknown}', expected ${version}; the pinned checksum belongs to another release"
k3s_claim install "$self_id"
printf '%s\n' "$expected" >"$K3S_STATE/install.sha256"
result true ",\"arch\":\"${arch}\",\"sha256\":\"${actual}\""
