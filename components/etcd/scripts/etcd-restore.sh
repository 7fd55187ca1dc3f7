#!/usr/bin/env bash
# etcd restore: makes a member's data directory from a snapshot saved by etcd-snapshot.sh (or by
# `etcdctl snapshot save`). Run by an operator on the node (see docs/etcd-restore.md), with etcd
# stopped, or by the tests.
#
#   verify   checks the snapshot only: the sha256 etcd appends to a snapshot, then `snapshot
#            status` (hash, revision, total keys). Writes nothing.
#   restore  verifies the snapshot, then restores it into ZT_DATA_DIR with `etcdutl snapshot
#            restore` when etcdutl is next to etcdctl (etcd 3.5+), else `etcdctl snapshot restore`
#            (etcd 3.4). Never writes over data: refuses when ZT_DATA_DIR exists and is not an
#            empty directory (an empty lost+found aside). The restore goes into a new directory next to ZT_DATA_DIR first and
#            is moved into place only once complete, owned by ZT_USER, mode 0700.
#   fetch    downloads an off-node copy (see below) and verifies it; restores nothing.
#
# From the off-node copy: with ZT_OFFSITE_TYPE set (and the target's ZT_OFFSITE_* parameters of
# offsite.sh), every action first fetches a copy of node ZT_OFFSITE_NODE's snapshots from the
# target into ZT_FETCH_DIR and checks it against the <name>.sha256 written next to it at upload;
# ZT_SNAPSHOT then names the copy (<node>-<timestamp>.db) or is `latest`. The credentials are the
# files of ZT_OFFSITE_CREDENTIALS_DIR, or, on a node that has none (a fresh one), the secrets
# ZT_OFFSITE_SSH_KEY or ZT_OFFSITE_ACCESS_KEY_ID and ZT_OFFSITE_SECRET_ACCESS_KEY, which go into a
# private scratch directory removed on exit.
#
# Parameters (environment):
#   ZT_ACTION                       verify | restore | fetch
#   ZT_SNAPSHOT                     the snapshot file; with ZT_OFFSITE_TYPE the copy's name or latest
#   ZT_OFFSITE_NODE                 (off-node copy) the node whose snapshots to fetch
#   ZT_FETCH_DIR                    (off-node copy) where the copy goes. Defaults to
#                                   /var/backups/etcd/offsite.
#   ZT_ETCDCTL                      etcdctl on the node: /usr/local/bin/etcdctl (release) or
#                                   /usr/bin/etcdctl (preinstalled)
#   ZT_NAME                         (restore) the member's name (DNS label), as etcd's --name
#   ZT_INITIAL_CLUSTER              (restore) every member of the restored cluster,
#                                   name=peer-URL[,name=peer-URL...], as etcd's --initial-cluster
#   ZT_INITIAL_ADVERTISE_PEER_URLS  (restore) this member's peer URL(s), comma-separated; each
#                                   must be in ZT_INITIAL_CLUSTER under ZT_NAME
#   ZT_INITIAL_CLUSTER_TOKEN        (restore) token of the restored cluster (a new one keeps
#                                   members of the old cluster from talking to it)
#   ZT_DATA_DIR                     (restore) the member's data directory (absolute), e.g. /var/lib/etcd
#   ZT_USER                         (restore) owner of the data directory. Defaults to etcd; empty:
#                                   leave the owner as is (tests).
#
# Output: progress on stderr; one JSON object as the last line of stdout. Exit codes: 0 done,
# 2 invalid parameters, 1 anything else (snapshot damaged, data directory not empty, ...).
set -euo pipefail

# json_string: in the payload ahead of this script, or from the checkout.
if ! declare -F log >/dev/null; then
  # shellcheck source=components/lib/scripts/common.sh
  . "$(dirname "${BASH_SOURCE[0]}")/../../lib/scripts/common.sh"
fi
# offsite_*: likewise.
if ! declare -F offsite_params >/dev/null; then
  # shellcheck source=components/etcd/scripts/offsite.sh
  . "$(dirname "${BASH_SOURCE[0]}")/offsite.sh"
fi

readonly status_timeout_s=120
readonly restore_timeout_s=1800
export ETCDCTL_API=3

log_prefix=etcd-restore:

action="${ZT_ACTION:-}"
snapshot="${ZT_SNAPSHOT:-}"
etcdctl="${ZT_ETCDCTL:-}"
name="${ZT_NAME:-}"
initial_cluster="${ZT_INITIAL_CLUSTER:-}"
peer_urls="${ZT_INITIAL_ADVERTISE_PEER_URLS:-}"
token="${ZT_INITIAL_CLUSTER_TOKEN:-}"
data_dir="${ZT_DATA_DIR:-}"
user="${ZT_USER-etcd}"
offsite_node="${ZT_OFFSITE_NODE:-}"
fetch_dir="${ZT_FETCH_DIR:-/var/backups/etcd/offsite}"

# --- parameters -----------------------------------------------------------------------------
check_action "$action" verify restore fetch
safe_path "$etcdctl" ||
  invalid "ZT_ETCDCTL must be the absolute path of etcdctl (/usr/local/bin/etcdctl or /usr/bin/etcdctl), got '${etcdctl}'"
if [ -z "$snapshot" ] || [[ "$snapshot" == *$'\n'* ]]; then
  invalid "ZT_SNAPSHOT must be the snapshot file to restore, got '${snapshot}'"
fi

readonly label_re='^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'
offsite_params "${offsite_node:-(ZT_OFFSITE_NODE)}"
if [ -n "$offsite_type" ]; then
  [[ "$offsite_node" =~ $label_re ]] ||
    invalid "ZT_OFFSITE_NODE must be the name of the node whose off-node copies to fetch (a DNS label), got '${offsite_node}'"
  if [ "$snapshot" != latest ] && ! [[ "$snapshot" =~ ^${offsite_node}-[0-9]{8}T[0-9]{6}\.[0-9]{3}Z\.db$ ]]; then
    invalid "with ZT_OFFSITE_TYPE, ZT_SNAPSHOT must be latest or the name of a copy of node ${offsite_node} (${offsite_node}-YYYYMMDDTHHMMSS.mmmZ.db), got '${snapshot}'"
  fi
  safe_path "$fetch_dir" || invalid "ZT_FETCH_DIR must be an absolute path of letters, digits and . _ @ + -, got '${fetch_dir}'"
elif [ "$action" = fetch ]; then
  invalid "ZT_ACTION fetch needs ZT_OFFSITE_TYPE (s3 or sftp) and the target's parameters"
fi

if [ "$action" = restore ]; then
  readonly url_re='^https?://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):[0-9]{1,5}$'
  [[ "$name" =~ $label_re ]] || invalid "ZT_NAME must be a member name (DNS label: lowercase letters, digits, '-'), got '${name}'"
  IFS=, read -r -a own_urls <<<"$peer_urls"
  [ "${#own_urls[@]}" -gt 0 ] || invalid "ZT_INITIAL_ADVERTISE_PEER_URLS must be this member's peer URL(s), e.g. https://10.0.0.1:2380, got ''"
  for url in "${own_urls[@]}"; do
    [[ "$url" =~ $url_re ]] ||
      invalid "ZT_INITIAL_ADVERTISE_PEER_URLS must be peer URLs scheme://host:port separated by commas, e.g. https://10.0.0.1:2380, got '${peer_urls}'"
  done
  IFS=, read -r -a entries <<<"$initial_cluster"
  [ "${#entries[@]}" -gt 0 ] || invalid "ZT_INITIAL_CLUSTER must list the members, name=peer-URL separated by commas, got ''"
  listed=()
  for entry in "${entries[@]}"; do
    if ! [[ "${entry%%=*}" =~ $label_re ]] || ! [[ "${entry#*=}" =~ $url_re ]]; then
      invalid "ZT_INITIAL_CLUSTER must be name=peer-URL entries separated by commas (e.g. cp-1=https://10.0.0.1:2380), got '${initial_cluster}' (entry '${entry}')"
    fi
    [ "${entry%%=*}" != "$name" ] || listed+=("${entry#*=}")
  done
  if [ "$(printf '%s\n' "${listed[@]}" | sort -u)" != "$(printf '%s\n' "${own_urls[@]}" | sort -u)" ]; then
    invalid "ZT_INITIAL_CLUSTER must list member ${name} with exactly its ZT_INITIAL_ADVERTISE_PEER_URLS (${peer_urls}), got '${initial_cluster}'"
  fi
  [[ "$token" =~ ^[A-Za-z0-9._-]{1,128}$ ]] ||
    invalid "ZT_INITIAL_CLUSTER_TOKEN must be 1-128 letters, digits, '.', '_' or '-', got '${token}'"
  safe_path "$data_dir" ||
    invalid "ZT_DATA_DIR must be an absolute path of letters, digits and . _ @ + - (no . or .. components), got '${data_dir}'"
  if [ -n "$user" ]; then
    [[ "$user" =~ ^[a-z_][a-z0-9_-]{0,31}$ ]] || invalid "ZT_USER must be a user name (or empty to leave the owner as is), got '${user}'"
    id -u -- "$user" >/dev/null 2>&1 || invalid "ZT_USER ${user} is not a user on this node (etcd's user; empty leaves the owner as is)"
  fi
fi

[ -x "$etcdctl" ] || die "ZT_ETCDCTL ${etcdctl} is not an executable file"
for tool in timeout sha256sum od stat; do
  command -v "$tool" >/dev/null 2>&1 || die "${tool} is missing"
done
if [ -n "$offsite_type" ]; then
  command -v rclone >/dev/null 2>&1 || die "rclone is missing, which fetches the off-node copy (Debian: apt-get install rclone)"
elif [ ! -f "$snapshot" ] || [ ! -r "$snapshot" ]; then
  die "ZT_SNAPSHOT ${snapshot} is not a readable file"
fi

# The tool that reads snapshot files: etcdutl next to etcdctl (3.5+), else etcdctl (3.4).
tool="$(dirname "$etcdctl")/etcdutl"
[ -x "$tool" ] || tool="$etcdctl"

# Says why the data directory may not be written, or nothing when it may. An empty lost+found
# (the root of an ext4 file system, when the data directory is a disk of its own) is no data.
occupied() {
  if [ -L "$data_dir" ] || { [ -e "$data_dir" ] && [ ! -d "$data_dir" ]; }; then
    printf '%s exists and is not a directory' "$data_dir"
  elif [ -d "$data_dir" ] && [ -n "$(entries | head -n 1)" ]; then
    printf '%s exists and is not empty (%s)' "$data_dir" "$(entries | head -n 5 | paste -sd, -)"
  fi
}
entries() {
  find "$data_dir" -mindepth 1 -maxdepth 1 -printf '%f\n' | LC_ALL=C sort |
    while IFS= read -r entry; do
      if [ "$entry" = lost+found ] && [ -d "${data_dir}/lost+found" ] && [ -z "$(find "${data_dir}/lost+found" -mindepth 1 -print -quit 2>/dev/null)" ]; then
        continue
      fi
      printf '%s\n' "$entry"
    done
}

# Staging directory of the restore, and a scratch directory: removed on exit, after the command
# still running (if any) is stopped.
work=""
staging=""
cleanup() {
  stop_bounded
  [ -z "$staging" ] || rm -rf -- "$staging"
  [ -z "$work" ] || rm -rf -- "$work"
}
trap cleanup EXIT
exit_on_signals

# Refuse before anything is read or written.
if [ "$action" = restore ]; then
  why="$(occupied)"
  [ -z "$why" ] ||
    die "${why}: a restore never writes over data. Stop etcd, move the directory aside (mv ${data_dir} ${data_dir}.old), or choose another ZT_DATA_DIR"
  parent="$(dirname "$data_dir")"
  [ -d "$parent" ] || die "${parent}, where ZT_DATA_DIR ${data_dir} would be, is not a directory"
fi
work="$(mktemp -d -t zerotouch-etcd-restore.XXXXXXXX)"

# --- the off-node copy, fetched first -------------------------------------------------------
fetched=null
if [ -n "$offsite_type" ]; then
  credentials="$offsite_credentials"
  if [ -n "${ZT_OFFSITE_SSH_KEY:-}${ZT_OFFSITE_ACCESS_KEY_ID:-}${ZT_OFFSITE_SECRET_ACCESS_KEY:-}" ]; then
    credentials="${work}/credentials"
    offsite_store_credentials "$offsite_node" "$credentials"
  fi
  offsite_env "$credentials"
  offsite_fetch "$offsite_node" "$snapshot" "$fetch_dir" "$work"
  snapshot="$offsite_fetched"
  fetched="$(printf '{"type":%s,"target":%s,"sha256":%s}' "$(json_string "$offsite_type")" \
    "$(json_string "${offsite_base#"${offsite_remote}:"}")" "$(json_string "$offsite_sha256")")"
fi

# --- verify ---------------------------------------------------------------------------------
# A problem ends in "." before "Nothing was written", unless it ends in a question already.
etcd_snapshot_check "$snapshot" "$work" "$tool" "$status_timeout_s" ||
  die "${snap_problem}$([[ "$snap_problem" == *\? ]] || printf .) Nothing was written"
log "${snapshot}: verified: ${snap_size} bytes, revision ${snap_revision}, ${snap_keys} keys, hash ${snap_hash}"
summary="$(printf '"snapshot":%s,"size":%d,"hash":%d,"revision":%d,"totalKeys":%d,"offsite":%s' \
  "$(json_string "$snapshot")" "$snap_size" "$snap_hash" "$snap_revision" "$snap_keys" "$fetched")"

if [ "$action" != restore ]; then
  printf '{"action":"%s",%s}\n' "$action" "$summary"
  exit 0
fi

# --- restore --------------------------------------------------------------------------------
# Into a new directory next to the data directory (same file system), moved into place at the end.
staging="$(mktemp -d -- "${parent}/.$(basename "$data_dir").restore.XXXXXXXX")"
chmod 0700 -- "$staging"
log "restoring ${snapshot} as member ${name} of ${initial_cluster} (token ${token}) with ${tool##*/}"
rc=0
bounded "$restore_timeout_s" "$work/restore.err" "$tool" snapshot restore "$snapshot" \
  --name="$name" --initial-cluster="$initial_cluster" --initial-advertise-peer-urls="$peer_urls" \
  --initial-cluster-token="$token" --data-dir="${staging}/data" >"$work/restore.out" || rc=$?
if [ "$rc" -ne 0 ]; then
  die "'${tool##*/} snapshot restore' failed (exit ${rc}): $(grep -h -m 3 -iE 'error|fail' "$work/restore.err" "$work/restore.out" | tr '\n' ' ' | cut -c1-400). ${data_dir} was not touched"
fi
[ -d "${staging}/data/member" ] || die "'${tool##*/} snapshot restore' wrote no member directory. ${data_dir} was not touched"
chmod 0700 -- "${staging}/data"
[ -z "$user" ] || chown -R -- "${user}:" "${staging}/data"
sync -f -- "${staging}/data/member" 2>/dev/null || sync

# Into place, checking again that nothing appeared meanwhile.
why="$(occupied)"
[ -z "$why" ] || die "${why} (it appeared during the restore); nothing was written to it"
if [ -d "$data_dir" ]; then
  # An empty directory (e.g. made by etcd's unit): the restored member directory goes into it.
  mv -- "${staging}/data/member" "${data_dir}/member"
  chmod 0700 -- "$data_dir"
  [ -z "$user" ] || chown -- "${user}:" "$data_dir"
else
  mv -- "${staging}/data" "$data_dir"
fi
sync -- "$data_dir" "$parent"
log "restored into ${data_dir}$([ -z "$user" ] || printf ', owned by %s' "$user"), mode 0700. Start etcd with --name=${name} --initial-cluster=${initial_cluster} --initial-advertise-peer-urls=${peer_urls} --initial-cluster-token=${token}"

owner=null
[ -z "$user" ] || owner="$(json_string "$user")"
printf '{"action":"restore",%s,"name":%s,"initialCluster":%s,"initialAdvertisePeerUrls":%s,"initialClusterToken":%s,"dataDir":%s,"user":%s,"tool":%s}\n' \
  "$summary" "$(json_string "$name")" "$(json_string "$initial_cluster")" "$(json_string "$peer_urls")" \
  "$(json_string "$token")" "$(json_string "$data_dir")" "$owner" \
  "$(json_string "${tool##*/}")"
