#!/usr/bin/env bash
# etcd install: puts etcd on a node, either from the official release tarball, verified against
# a pinned sha256 before anything in it is unpacked, or by checking the distribution's package
# (Debian's etcd-server) for the right major.minor version. Creates the unprivileged user and
# group etcd runs as.
#
# Parameters (environment):
#   ZT_ACTION     create | delete (delete: nothing is removed; the binaries stay, see below)
#   ZT_NODE       node name (DNS label), used in the result and the messages
#   ZT_SOURCE     release | preinstalled
#   ZT_VERSION    release: the exact version, e.g. 3.5.21. preinstalled: the version whose
#                 major.minor the package must have (3.4 or 3.4.23): distributions patch their
#                 builds, so the patch level is reported, not required.
#   ZT_USER       the system user and group etcd runs as; created (no login shell, no home)
#                 when missing. Not root.
#   release only:
#   ZT_BIN_DIR    where etcd, etcdctl and etcdutl go, e.g. /usr/local/bin; created when missing.
#                 The record of what was installed (.zerotouch-etcd-install) is kept there too.
#   ZT_URL_AMD64, ZT_SHA256_AMD64  tarball (https:// or file://) and its sha256 for x86_64 nodes
#   ZT_URL_ARM64, ZT_SHA256_ARM64  the same for aarch64 nodes; the script picks by `uname -m`.
#                 Each pair is optional, but the node's own architecture needs its pair.
#
# release: when the binaries in ZT_BIN_DIR are the ones this script recorded installing from a
# tarball with the same sha256, and etcd reports the version, nothing is done. Otherwise the
# tarball is downloaded (bounded) into a private temporary directory, its sha256 checked before
# it is read any further, and only etcd, etcdctl and etcdutl (when present) are taken from its
# top directory. The new etcd must report the version before anything is replaced; each binary is
# then copied next to its destination and renamed over it (mode 0755, owned by root).
#
# delete: the binaries are left in place. A member's data outlives its deployment unless the user
# opts in to removing it, and the binaries are what reads that data.
#
# Output: progress on stderr; one JSON object as the last line of stdout on success.
# Exit codes: 0 done, 2 invalid parameters, 3 verification failed (checksum mismatch, wrong
# version, not an etcd release, no suitable preinstalled etcd), 1 anything else.
set -euo pipefail

# json_string: in the payload ahead of this script, or from the checkout.
if ! declare -F log >/dev/null; then
  # shellcheck source=components/lib/scripts/common.sh
  . "$(dirname "${BASH_SOURCE[0]}")/../../lib/scripts/common.sh"
fi

readonly record_name=.zerotouch-etcd-install
readonly lock_timeout_s=600
readonly version_timeout_s=30
# Download bounds: per attempt, retries, and for the whole download.
readonly curl_connect_timeout_s=20 curl_max_time_s=300
readonly curl_retries=3
readonly download_timeout_s=1300 max_tarball_bytes=268435456

log_prefix=etcd-install:

read_action_node create delete
[ "$action" != delete ] ||
  delete_unchanged "$node" "etcd's binaries and user stay in place (they read the member's data, which is kept)"

source_kind="${ZT_SOURCE:-}"
version="${ZT_VERSION:-}"
user="${ZT_USER:-}"

case "$source_kind" in
  release)
    [[ "$version" =~ ^(0|[1-9][0-9]{0,3})\.(0|[1-9][0-9]{0,3})\.(0|[1-9][0-9]{0,3})$ ]] ||
      invalid "ZT_VERSION must be a release version such as 3.5.21, got '${version}' (node ${node})"
    ;;
  preinstalled)
    [[ "$version" =~ ^(0|[1-9][0-9]{0,3})\.(0|[1-9][0-9]{0,3})(\.(0|[1-9][0-9]{0,3}))?$ ]] ||
      invalid "ZT_VERSION must be a version such as 3.4 or 3.4.23, got '${version}' (node ${node})"
    ;;
  *) invalid "ZT_SOURCE must be release or preinstalled, got '${source_kind}' (node ${node})" ;;
esac
wanted_minor="${BASH_REMATCH[1]}.${BASH_REMATCH[2]}"
if ! [[ "$user" =~ ^[a-z_][a-z0-9_-]{0,31}$ ]] || [ "$user" = root ]; then
  invalid "ZT_USER must be an unprivileged user name (not root), got '${user}' (node ${node})"
fi

# The node's architecture, in etcd's release names.
machine="$(uname -m)"
case "$machine" in
  x86_64 | amd64) arch=amd64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) arch="$machine" ;;
esac

if [ "$source_kind" = release ]; then
  bin_dir="${ZT_BIN_DIR:-}"
  case "$bin_dir" in
    /*) ;;
    *) invalid "ZT_BIN_DIR must be an absolute path, got '${bin_dir}' (node ${node})" ;;
  esac
  if [ "$bin_dir" = / ] || [[ "$bin_dir" =~ (^|/)\.\.?(/|$) ]] || [[ "$bin_dir" == */ ]] ||
    [[ "$bin_dir" == *//* ]] || ! [[ "$bin_dir" =~ ^[A-Za-z0-9._/-]+$ ]]; then
    invalid "ZT_BIN_DIR must be a normalized absolute path other than / (letters, digits, '.', '_', '-', '/'), got '${bin_dir}' (node ${node})"
  fi
  for a in AMD64 ARM64; do
    url_var="ZT_URL_${a}"
    sha_var="ZT_SHA256_${a}"
    u="${!url_var:-}"
    s="${!sha_var:-}"
    if [ -z "$u" ] && [ -z "$s" ]; then
      continue
    fi
    if [ -z "$u" ] || [ -z "$s" ]; then
      invalid "${url_var} and ${sha_var} go together (node ${node})"
    fi
    [[ "$u" =~ ^(https|file)://[^[:space:]\"\'\\]+$ ]] ||
      invalid "${url_var} must be an https:// or file:// URL, got '${u}' (node ${node})"
    [[ "$s" =~ ^[0-9a-fA-F]{64}$ ]] || invalid "${sha_var} must be 64 hex digits, got '${s}' (node ${node})"
  done
  case "$arch" in
    amd64) url="${ZT_URL_AMD64:-}" expected="${ZT_SHA256_AMD64:-}" ;;
    arm64) url="${ZT_URL_ARM64:-}" expected="${ZT_SHA256_ARM64:-}" ;;
    *) die "node ${node}: etcd releases are pinned for amd64 and arm64; this node is ${machine}" ;;
  esac
  [ -n "$url" ] ||
    invalid "node ${node} is ${arch}, but no tarball and sha256 are given for ${arch} (ZT_URL_${arch^^}, ZT_SHA256_${arch^^}) for etcd ${version}"
  expected="${expected,,}"
fi

[ "$(id -u)" -eq 0 ] || die "node ${node}: must run as root (installs binaries and creates a system user)"

changed=false

# --- user ------------------------------------------------------------------------------------
if ! getent group "$user" >/dev/null; then
  groupadd --system "$user"
  log "node ${node}: created system group ${user}"
  changed=true
fi
if ! getent passwd "$user" >/dev/null; then
  nologin="$(command -v nologin || true)"
  [ -n "$nologin" ] || nologin=/usr/sbin/nologin
  useradd --system --gid "$user" --no-create-home --home-dir /nonexistent --shell "$nologin" \
    --comment "etcd (zerotouch)" "$user"
  log "node ${node}: created system user ${user} (no login shell, no home)"
  changed=true
fi

# Prints the version an etcd binary reports (`etcd Version: X.Y.Z`), or fails.
etcd_version_of() {
  local out
  out="$(timeout -k 5 "$version_timeout_s" "$1" --version 2>/dev/null)" || return 1
  [[ "$out" =~ (^|$'\n')etcd\ Version:\ *([0-9]+\.[0-9]+\.[0-9]+) ]] || return 1
  printf '%s\n' "${BASH_REMATCH[2]}"
}

# Prints the result line. Arguments: version, etcd, etcdctl, etcdutl (may be empty), sha256 (may be empty).
result() {
  local out
  out="{\"node\":$(json_string "$node"),\"source\":$(json_string "$source_kind"),\"version\":$(json_string "$1")"
  out+=",\"arch\":$(json_string "$arch"),\"user\":$(json_string "$user")"
  out+=",\"etcd\":$(json_string "$2"),\"etcdctl\":$(json_string "$3")"
  [ -z "$4" ] || out+=",\"etcdutl\":$(json_string "$4")"
  [ -z "$5" ] || out+=",\"sha256\":$(json_string "$5")"
  out+=",\"changed\":${changed}}"
  printf '%s\n' "$out"
}

# --- preinstalled ----------------------------------------------------------------------------
if [ "$source_kind" = preinstalled ]; then
  etcd_path="$(command -v etcd || true)"
  etcdctl_path="$(command -v etcdctl || true)"
  etcdutl_path="$(command -v etcdutl || true)"
  [[ "$etcd_path" == /* ]] ||
    refuse "etcd install failed on node ${node}: no etcd on PATH (${PATH}); etcd ${wanted_minor} must be installed from the distribution (Debian: apt-get install etcd-server etcd-client), or use source release"
  [[ "$etcdctl_path" == /* ]] ||
    refuse "etcd install failed on node ${node}: etcd is at ${etcd_path} but there is no etcdctl on PATH; install it from the distribution (Debian: apt-get install etcd-client)"
  [[ "$etcdutl_path" == /* ]] || etcdutl_path=""
  # PATH may list a release this script installed (/usr/local/bin) ahead of the package's.
  if [ -f "$(dirname -- "$etcd_path")/${record_name}" ]; then
    refuse "etcd install failed on node ${node}: the etcd first on PATH, ${etcd_path}, was installed from a release tarball, not by the distribution; remove it (and its ${record_name}) to use the package, or use source release"
  fi
  found="$(etcd_version_of "$etcd_path")" ||
    refuse "etcd install failed on node ${node}: ${etcd_path} --version does not report an etcd version"
  if [ "${found%.*}" != "$wanted_minor" ]; then
    refuse "etcd install failed on node ${node}: the preinstalled etcd at ${etcd_path} is version ${found}, but etcd ${wanted_minor} is required (ZT_VERSION ${version}); install etcd ${wanted_minor} from the distribution, or use source release"
  fi
  log "node ${node}: using the preinstalled etcd ${found} at ${etcd_path} (etcdctl at ${etcdctl_path})"
  result "$found" "$etcd_path" "$etcdctl_path" "$etcdutl_path" ""
  exit 0
fi

# --- release ---------------------------------------------------------------------------------
top="etcd-v${version}-linux-${arch}"
record="${bin_dir}/${record_name}"

if [ ! -d "$bin_dir" ]; then
  (umask 022 && mkdir -p -- "$bin_dir")
  log "node ${node}: created ${bin_dir}"
fi
# One install at a time per directory: lock the directory itself (no lock file to leave behind).
exec 9<"$bin_dir"
timeout "$lock_timeout_s" flock 9 || die "node ${node}: another etcd install holds ${bin_dir} for too long"

scratch=""
staged=()
cleanup() {
  [ -z "$scratch" ] || rm -rf -- "$scratch"
  [ "${#staged[@]}" -eq 0 ] || rm -f -- "${staged[@]}"
}
trap cleanup EXIT
exit_on_signals

sha_of() {
  local sum
  sum="$(sha256sum -- "$1")" || return 1
  printf '%s\n' "${sum%% *}"
}

# The record: "key value" lines (version, arch, tarball, and the sha256 of each binary).
declare -A recorded=()
if [ -f "$record" ] && [ ! -L "$record" ] && [ -O "$record" ]; then
  while read -r key value; do
    case "$key" in
      version | arch | tarball | etcd | etcdctl | etcdutl) recorded[$key]="$value" ;;
    esac
  done <"$record"
fi

# Whether the binaries are the ones recorded from this very tarball, and etcd reports the version.
# The checksums are compared before anything in the directory is run.
installed_is_current() {
  local name file sum
  [ "${recorded[version]:-}" = "$version" ] && [ "${recorded[arch]:-}" = "$arch" ] &&
    [ "${recorded[tarball]:-}" = "$expected" ] || return 1
  for name in etcd etcdctl etcdutl; do
    [ -n "${recorded[$name]:-}" ] || { [ "$name" = etcdutl ] && continue; return 1; }
    file="${bin_dir}/${name}"
    [ -f "$file" ] && [ ! -L "$file" ] && [ "$(stat -c '%u %a' -- "$file")" = "0 755" ] || return 1
    sum="$(sha_of "$file")" || return 1
    [ "$sum" = "${recorded[$name]}" ] || return 1
  done
  [ "$(etcd_version_of "${bin_dir}/etcd")" = "$version" ]
}

if installed_is_current; then
  log "node ${node}: etcd ${version} (${arch}) from ${url} is installed in ${bin_dir}; nothing to do"
  result "$version" "${bin_dir}/etcd" "${bin_dir}/etcdctl" "${recorded[etcdutl]:+${bin_dir}/etcdutl}" "$expected"
  exit 0
fi

scratch="$(mktemp -d -- "${TMPDIR:-/tmp}/zerotouch-etcd.XXXXXXXX")"
chmod 0700 -- "$scratch"
tarball="${scratch}/${top}.tar.gz"

log "node ${node}: downloading etcd ${version} (${arch}) from ${url}"
rc=0
timeout -k 10 "$download_timeout_s" curl --fail --silent --show-error --location \
  --proto '=https,file' --proto-redir '=https' \
  --connect-timeout "$curl_connect_timeout_s" --max-time "$curl_max_time_s" \
  --retry "$curl_retries" --retry-delay 5 --retry-max-time "$download_timeout_s" \
  --max-filesize "$max_tarball_bytes" --output "$tarball" -- "$url" || rc=$?
[ "$rc" -eq 0 ] || die "node ${node}: downloading ${url} failed (curl exit ${rc}); nothing was installed"

actual="$(sha_of "$tarball")"
if [ "$actual" != "$expected" ]; then
  refuse "etcd install refused on node ${node}: ${url} has sha256 ${actual}, but ${expected} is pinned for etcd ${version} (${arch}); nothing was installed"
fi
log "node ${node}: sha256 ${actual} matches the pinned checksum"

# Only the binaries, from the top directory, as plain files.
listing="$(tar -tzf "$tarball")" || refuse "etcd install refused on node ${node}: ${url} is not a gzip tar archive"
members=()
for name in etcd etcdctl etcdutl; do
  if grep -qxF -- "${top}/${name}" <<<"$listing"; then
    members+=("${top}/${name}")
  elif [ "$name" != etcdutl ]; then
    refuse "etcd install refused on node ${node}: ${url} holds no ${top}/${name}; it is not the etcd ${version} ${arch} release"
  fi
done
mkdir -m 0700 -- "${scratch}/x"
tar -xzf "$tarball" -C "${scratch}/x" --no-same-owner --no-same-permissions -- "${members[@]}"
names=()
for member in "${members[@]}"; do
  name="${member##*/}"
  file="${scratch}/x/${member}"
  if [ ! -f "$file" ] || [ -L "$file" ]; then
    refuse "etcd install refused on node ${node}: ${member} in ${url} is not a regular file"
  fi
  names+=("$name")
done

# Stage each binary next to its destination, so that the rename below is atomic.
declare -A stage_of=() sum_of=()
for name in "${names[@]}"; do
  stage="$(mktemp -- "${bin_dir}/.${name}.zerotouch.XXXXXXXX")"
  staged+=("$stage")
  install -m 0755 -o root -g root -- "${scratch}/x/${top}/${name}" "$stage"
  stage_of[$name]="$stage"
  sum_of[$name]="$(sha_of "$stage")"
done

staged_version="$(etcd_version_of "${stage_of[etcd]}")" || staged_version=""
if [ "$staged_version" != "$version" ]; then
  refuse "etcd install refused on node ${node}: the etcd in ${url} reports version '${staged_version}', not ${version}; nothing was installed"
fi

# Replace: the record goes first, so an interrupted install is redone on the next run.
rm -f -- "$record"
for name in "${names[@]}"; do
  if [ "$name" != etcd ]; then
    mv -f -T -- "${stage_of[$name]}" "${bin_dir}/${name}"
  fi
done
mv -f -T -- "${stage_of[etcd]}" "${bin_dir}/etcd"
staged=()
etcdutl_path=""
if [ -n "${sum_of[etcdutl]:-}" ]; then
  etcdutl_path="${bin_dir}/etcdutl"
elif [ -n "${recorded[etcdutl]:-}" ] && [ -f "${bin_dir}/etcdutl" ]; then
  # Installed by an earlier release of ours; this one has none.
  rm -f -- "${bin_dir}/etcdutl"
  log "node ${node}: removed ${bin_dir}/etcdutl, which etcd ${version} does not ship"
fi
changed=true

installed_version="$(etcd_version_of "${bin_dir}/etcd")" || installed_version=""
[ "$installed_version" = "$version" ] ||
  refuse "etcd install failed on node ${node}: ${bin_dir}/etcd reports version '${installed_version}' after the install, not ${version}"

new_record="$(mktemp -- "${bin_dir}/.${record_name}.XXXXXXXX")"
staged+=("$new_record")
{
  printf 'version %s\narch %s\ntarball %s\n' "$version" "$arch" "$expected"
  for name in "${names[@]}"; do
    printf '%s %s\n' "$name" "${sum_of[$name]}"
  done
} >"$new_record"
chmod 0644 -- "$new_record"
mv -f -T -- "$new_record" "$record"
staged=()

log "node ${node}: installed etcd ${version} (${arch}) in ${bin_dir}: ${names[*]}"
result "$version" "${bin_dir}/etcd" "${bin_dir}/etcdctl" "$etcdutl_path" "$expected"
