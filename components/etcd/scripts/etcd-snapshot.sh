#!/usr/bin/env bash
# etcd snapshots: a systemd timer that saves a verified snapshot of the node's etcd and keeps the
# newest few.
#
#   create  installs this very script as /usr/local/lib/zerotouch/etcd-snapshot (with the JSON
#           functions it uses, without the parameter preamble of the payload), its parameters as
#           /etc/zerotouch/etcd-snapshot.env (mode 0600), zerotouch-etcd-snapshot.service (oneshot,
#           runs the installed script with ZT_ACTION=save) and zerotouch-etcd-snapshot.timer
#           (OnCalendar=ZT_SCHEDULE, RandomizedDelaySec, Persistent=true); reloads systemd and
#           enables and starts the timer. Idempotent: "changed" says whether anything was written
#           or started.
#   save    what the timer runs: `etcdctl snapshot save` over TLS into a temporary file in
#           ZT_SNAPSHOT_DIR (created 0700 when missing), verified (the sha256 etcd appends to a
#           snapshot, then `snapshot status`: hash, revision, total keys) before it is renamed to
#           <node>-<UTC timestamp>.db; then keeps the newest ZT_RETAIN snapshots of this node and
#           deletes older ones. Runs are serialised by a lock in the directory.
#           With ZT_OFFSITE_TYPE set, each verified snapshot is then copied off the node with
#           rclone (offsite.sh): the copy is checked (size as the target lists it, sha256 as read
#           back), a <name>.sha256 goes next to it, and the newest ZT_OFFSITE_RETAIN copies of the
#           node stay on the target. A failed copy fails the run; the local snapshot stays.
#   delete  stops and disables the timer, removes the units, the installed script, the env
#           file and the off-node credentials. The snapshots are kept: they are data. A newer
#           payload of this step (Pulumi creates a replacement before it deletes the old one)
#           owns what is installed: then the old payload's delete does nothing.
#
# create also stores the off-node credentials (ZT_OFFSITE_SSH_KEY or the S3 keys) as files of
# ZT_OFFSITE_CREDENTIALS_DIR (0700, files 0600; never in the env file), installs rclone (Debian
# package) when it is missing, and writes (and deletes) a small file on the target with them, so a
# wrong key, host key, bucket or directory fails the deploy, not the first timer run.
#
# Parameters (environment):
#   ZT_ACTION         create | save | delete
#   ZT_NODE           node name (DNS label); the snapshots' name prefix
#   ZT_ETCDCTL        etcdctl on the node: /usr/local/bin/etcdctl (release) or /usr/bin/etcdctl
#                     (preinstalled). Its status check uses etcdutl instead when etcdutl is next
#                     to it (etcd 3.5 and later).
#   ZT_ENDPOINT       etcd client URL, scheme://host:port. Defaults to https://127.0.0.1:2379.
#   ZT_CACERT         CA verifying etcd's server certificate. Defaults to /etc/etcd/pki/ca.crt.
#   ZT_CERT, ZT_KEY   client certificate and key. Default to /etc/etcd/pki/backup.crt and .key.
#   ZT_SNAPSHOT_DIR   where snapshots go (absolute). Defaults to /var/backups/etcd.
#   ZT_RETAIN         how many snapshots of this node to keep (1-1000). Defaults to 24.
#   ZT_SCHEDULE       systemd OnCalendar expression of the timer. Defaults to hourly.
#   ZT_OFFSITE_*      the off-node target and its credentials: see offsite.sh. Empty
#                     ZT_OFFSITE_TYPE (the default): no off-node copies.
#   ZT_ROOT           tests only: a directory prefixed to the paths of the installed files
#                     (script, env file, units). Empty (the default) on nodes.
#
# Output: progress on stderr; one JSON object as the last line of stdout. Exit codes: 0 done,
# 2 invalid parameters, 1 anything else (etcd unreachable, snapshot not verified, ...).
set -euo pipefail

# json_string, json_array: in the payload ahead of this script, or from the checkout.
if ! declare -F log >/dev/null; then
  # shellcheck source=components/lib/scripts/common.sh
  . "$(dirname "${BASH_SOURCE[0]}")/../../lib/scripts/common.sh"
fi
# offsite_*: likewise.
if ! declare -F offsite_params >/dev/null; then
  # shellcheck source=components/etcd/scripts/offsite.sh
  . "$(dirname "${BASH_SOURCE[0]}")/offsite.sh"
fi

readonly installed_script=/usr/local/lib/zerotouch/etcd-snapshot
readonly env_file=/etc/zerotouch/etcd-snapshot.env
readonly unit_dir=/etc/systemd/system
readonly service=zerotouch-etcd-snapshot.service
readonly timer=zerotouch-etcd-snapshot.timer
# Which payload of this step installed what is there (see delete).
readonly owner_file=/var/lib/zerotouch/etcd-snapshot.owner
readonly randomized_delay_s=300
readonly save_timeout_s=600
readonly status_timeout_s=120
readonly lock_timeout_s=900
readonly systemctl_timeout_s=120
readonly health_timeout_s=30
export ETCDCTL_API=3

log_prefix=etcd-snapshot:

read_action_node create save delete
etcdctl="${ZT_ETCDCTL:-}"
endpoint="${ZT_ENDPOINT:-https://127.0.0.1:2379}"
cacert="${ZT_CACERT:-/etc/etcd/pki/ca.crt}"
cert="${ZT_CERT:-/etc/etcd/pki/backup.crt}"
key="${ZT_KEY:-/etc/etcd/pki/backup.key}"
dir="${ZT_SNAPSHOT_DIR:-/var/backups/etcd}"
retain="${ZT_RETAIN:-24}"
schedule="${ZT_SCHEDULE:-hourly}"
root="${ZT_ROOT:-}"

# --- parameters -----------------------------------------------------------------------------
# check_path <name> <value>: exits 2 unless the parameter's value is a safe_path.
check_path() {
  safe_path "$2" ||
    invalid "$1 must be an absolute path of letters, digits and . _ @ + - (no . or .. components), got '${2}' (node ${node})"
}
check_path ZT_ETCDCTL "$etcdctl"
check_path ZT_CACERT "$cacert"
check_path ZT_CERT "$cert"
check_path ZT_KEY "$key"
check_path ZT_SNAPSHOT_DIR "$dir"
readonly endpoint_re='^https?://([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\]):[0-9]{1,5}$'
[[ "$endpoint" =~ $endpoint_re ]] ||
  invalid "ZT_ENDPOINT must be an etcd client URL scheme://host:port like https://127.0.0.1:2379 (no path), got '${endpoint}' (node ${node})"
if ! [[ "$retain" =~ ^[1-9][0-9]{0,3}$ ]] || [ "$retain" -gt 1000 ]; then
  invalid "ZT_RETAIN must be an integer from 1 to 1000, got '${retain}' (node ${node})"
fi
readonly schedule_re='^[A-Za-z0-9*:,./~-]+( [A-Za-z0-9*:,./~-]+)*$'
if ! [[ "$schedule" =~ $schedule_re ]] || [ "${#schedule}" -gt 100 ]; then
  invalid "ZT_SCHEDULE must be a systemd OnCalendar expression (letters, digits, * : , . / ~ - and single spaces, at most 100 characters) such as hourly or '*-*-* 00/6:00:00', got '${schedule}' (node ${node})"
fi
[ -z "$root" ] || safe_path "$root" ||
  invalid "ZT_ROOT must be empty or an absolute path, got '${root}' (node ${node})"
offsite_params "$node"
readonly apt_timeout_s=600

# Snapshots of this node: <node>-YYYYMMDDTHHMMSS.mmmZ.db; the name sorts by time.
readonly snapshot_re="^${node}-[0-9]{8}T[0-9]{6}\\.[0-9]{3}Z\\.db$"
# Temporary files of an unfinished save of this node (etcdctl itself writes <name>.part first).
readonly partial_re="^\\.${node}-[0-9]{8}T[0-9]{6}\\.[0-9]{3}Z\\.db\\.tmp(\\.part)?$"

# Prints the names of this node's snapshots in $dir, oldest first.
list_snapshots() {
  local f name
  for f in "$dir"/*.db; do
    name="${f##*/}"
    if [[ "$name" =~ $snapshot_re ]] && [ -f "$f" ] && [ ! -L "$f" ]; then
      printf '%s\n' "$name"
    fi
  done | LC_ALL=C sort
}

# The tool that reads snapshot files: etcdutl next to etcdctl (3.5+), else etcdctl (3.4).
snapshot_tool() {
  local etcdutl
  etcdutl="$(dirname "$etcdctl")/etcdutl"
  if [ -x "$etcdutl" ]; then
    printf '%s' "$etcdutl"
  else
    printf '%s' "$etcdctl"
  fi
}

# Verifies a snapshot file (etcd_snapshot_check): sets snap_size, snap_hash, snap_revision,
# snap_keys, or prints why not on stderr and returns 1.
verify_snapshot() {
  etcd_snapshot_check "$1" "$2" "$(snapshot_tool)" "$status_timeout_s" || {
    log "$snap_problem"
    return 1
  }
}

# A scratch directory, and the temporary snapshot of a save until it is renamed: removed on exit,
# after the command still running (if any) is stopped.
work=""
tmp=""
cleanup() {
  stop_bounded
  [ -z "$tmp" ] || rm -f -- "$tmp" "${tmp}.part"
  [ -z "$work" ] || rm -rf -- "$work"
}
trap cleanup EXIT
exit_on_signals

# --- save -----------------------------------------------------------------------------------
if [ "$action" = save ]; then
  [ -x "$etcdctl" ] || die "node ${node}: ZT_ETCDCTL ${etcdctl} is not an executable file"
  for pair in "ZT_CACERT=${cacert}" "ZT_CERT=${cert}" "ZT_KEY=${key}"; do
    [ -r "${pair#*=}" ] || die "node ${node}: ${pair%%=*} ${pair#*=} is not a readable file"
  done
  for tool in flock timeout sha256sum od stat; do
    command -v "$tool" >/dev/null 2>&1 || die "node ${node}: ${tool} is missing"
  done

  work="$(mktemp -d -t zerotouch-etcd-snapshot.XXXXXXXX)"

  # Snapshots hold every secret the cluster stores: root only. A directory that exists keeps its
  # mode (it may be shared, e.g. /var/backups); the files in it are 0600 anyway.
  umask 077
  if [ ! -d "$dir" ]; then
    mkdir -p -- "$dir"
    chmod 0700 -- "$dir"
    log "node ${node}: created ${dir} (mode 0700)"
  elif [ "$(($(stat -c '%#a' -- "$dir") & 8#077))" -ne 0 ]; then
    log "node ${node}: note: ${dir} is mode $(stat -c %a -- "$dir"); the snapshots in it are 0600"
  fi
  exec 9>"${dir}/.${node}.lock"
  flock -w "$lock_timeout_s" 9 || die "node ${node}: another snapshot of this node still runs after ${lock_timeout_s}s (lock ${dir}/.${node}.lock)"

  # Temporary files of a run that was killed (the lock says none runs now).
  for f in "$dir"/.*.tmp "$dir"/.*.tmp.part; do
    if [[ "${f##*/}" =~ $partial_re ]] && [ -f "$f" ]; then
      log "node ${node}: removing ${f}, left by an interrupted run"
      rm -f -- "$f"
    fi
  done

  name="${node}-$(date -u +%Y%m%dT%H%M%S.%3NZ).db"
  file="${dir}/${name}"
  [ ! -e "$file" ] || die "node ${node}: ${file} exists already"
  tmp="${dir}/.${name}.tmp"
  tls=(--endpoints="$endpoint" --cacert="$cacert" --cert="$cert" --key="$key" --dial-timeout=10s)
  # etcdctl's snapshot save waits for an unreachable endpoint without end: ask for health first.
  if ! bounded "$health_timeout_s" "$work/health.err" "$etcdctl" "${tls[@]}" --command-timeout=20s endpoint health >"$work/health.out"; then
    die "node ${node}: etcd does not answer at ${endpoint}: $(grep -h -m 2 -iE 'unhealthy|^Error' "$work/health.out" "$work/health.err" | tr '\n' ' ' | cut -c1-400)"
  fi
  log "node ${node}: saving a snapshot of ${endpoint} into ${file}"
  rc=0
  bounded "$save_timeout_s" "$work/save.err" "$etcdctl" "${tls[@]}" snapshot save "$tmp" >"$work/save.out" || rc=$?
  if [ "$rc" -ne 0 ]; then
    [ "$rc" -ne 124 ] || die "node ${node}: the snapshot of ${endpoint} did not finish within ${save_timeout_s}s"
    die "node ${node}: etcdctl snapshot save from ${endpoint} failed (exit ${rc}): $(grep -h -m 3 -iE 'error|fail' "$work/save.err" "$work/save.out" | tr '\n' ' ' | cut -c1-400)"
  fi
  [ -f "$tmp" ] || die "node ${node}: etcdctl reported success but wrote no ${tmp}"
  verify_snapshot "$tmp" "$work" || die "node ${node}: the new snapshot failed verification; nothing was kept"
  chmod 0600 -- "$tmp"
  sync -- "$tmp"
  mv -- "$tmp" "$file"
  tmp=""
  sync -- "$dir"
  log "node ${node}: ${file}: ${snap_size} bytes, revision ${snap_revision}, ${snap_keys} keys, hash ${snap_hash}"

  # Retention: the newest $retain snapshots of this node stay.
  mapfile -t snapshots < <(list_snapshots)
  removed=()
  drop=$((${#snapshots[@]} - retain))
  for ((i = 0; i < drop; i++)); do
    rm -f -- "${dir}/${snapshots[$i]}"
    removed+=("${dir}/${snapshots[$i]}")
  done
  kept=$((${#snapshots[@]} - ${#removed[@]}))
  log "node ${node}: keeping ${kept} snapshots (at most ${retain}), removed ${#removed[@]}"

  offsite=null
  if [ -n "$offsite_type" ]; then
    command -v rclone >/dev/null 2>&1 || die "node ${node}: ${file} is kept on the node, but rclone is missing for its off-node copy (run the snapshot step's create again)"
    offsite_env "$offsite_credentials"
    offsite_copy "$node" "$file" "$work"
    offsite="$(printf '{"type":%s,"target":%s,"file":%s,"size":%d,"sha256":%s,"copyMs":%d,"verifyMs":%d,"retain":%d,"kept":%d,"removed":%s}' \
      "$(json_string "$offsite_type")" "$(json_string "${offsite_base#"${offsite_remote}:"}")" "$(json_string "$name")" "$offsite_size" \
      "$(json_string "$offsite_sha256")" "$offsite_copy_ms" "$offsite_verify_ms" "$offsite_retain" "$offsite_kept" \
      "$(json_array "${offsite_removed[@]}")")"
  fi

  printf '{"action":"save","node":%s,"file":%s,"size":%d,"hash":%d,"revision":%d,"totalKeys":%d,"retain":%d,"kept":%d,"removed":%s,"offsite":%s}\n' \
    "$(json_string "$node")" "$(json_string "$file")" "$snap_size" "$snap_hash" "$snap_revision" "$snap_keys" \
    "$retain" "$kept" "$(json_array "${removed[@]}")" "$offsite"
  exit 0
fi

# --- create and delete: the installed files -------------------------------------------------
systemctl_() {
  timeout -k 10 "$systemctl_timeout_s" systemctl "$@" >&2 || die "node ${node}: systemctl $* failed"
}
# Counts this node's snapshots, for the messages.
snapshot_count() {
  if [ -d "$dir" ]; then list_snapshots | wc -l; else echo 0; fi
}

# This run's identity: the payload file (script and parameters), as create and delete both run it.
self_id="$(sha256sum <"$0" | cut -d' ' -f1)"

if [ "$action" = delete ]; then
  if [ -f "${root}${owner_file}" ] && [ "$(cat -- "${root}${owner_file}")" != "$self_id" ]; then
    log "node ${node}: a newer deployment of this step owns the timer; nothing to undo"
    printf '{"action":"delete","node":%s,"changed":false,"snapshotDir":%s,"snapshotsKept":%d,"owner":"newer"}\n' \
      "$(json_string "$node")" "$(json_string "$dir")" "$(snapshot_count)"
    exit 0
  fi
  changed=false
  if [ -e "${root}${unit_dir}/${timer}" ]; then
    systemctl_ disable --now "$timer"
    systemctl_ stop "$service"
  fi
  for f in "${unit_dir}/${timer}" "${unit_dir}/${service}" "$installed_script" "$env_file"; do
    if [ -e "${root}${f}" ]; then
      rm -f -- "${root}${f}"
      log "node ${node}: removed ${f}"
      changed=true
    fi
  done
  rm -f -- "${root}${owner_file}"
  if [ -n "$offsite_type" ] && [ -e "${root}${offsite_credentials}" ]; then
    rm -rf -- "${root}${offsite_credentials}"
    log "node ${node}: removed the off-node credentials ${offsite_credentials}"
    changed=true
  fi
  [ "$changed" = false ] || systemctl_ daemon-reload
  count="$(snapshot_count)"
  log "node ${node}: the snapshots are kept: ${count} in ${dir}; delete them by hand once they are no longer needed"
  printf '{"action":"delete","node":%s,"changed":%s,"snapshotDir":%s,"snapshotsKept":%d}\n' \
    "$(json_string "$node")" "$changed" "$(json_string "$dir")" "$count"
  exit 0
fi

# create
[ -x "$etcdctl" ] || die "node ${node}: ZT_ETCDCTL ${etcdctl} is not an executable file"
if command -v systemd-analyze >/dev/null 2>&1; then
  systemd-analyze calendar -- "$schedule" >/dev/null 2>&1 ||
    invalid "ZT_SCHEDULE '${schedule}' is not an OnCalendar expression systemd accepts (see systemd.time(7)) (node ${node})"
fi
work="$(mktemp -d -t zerotouch-etcd-snapshot.XXXXXXXX)"

# The script as the timer runs it: the JSON functions, then this script's text without the
# parameter preamble a payload starts with (the parameters are in the env file).
{
  printf '#!/usr/bin/env bash\n# Installed by zerotouch (etcd snapshots); runs as zerotouch-etcd-snapshot.service.\n'
  declare -f json_string json_array
  awk 'NR == 1 && $0 == "# zerotouch script parameters" { skip = 1 }
       !skip { print }
       skip && $0 == "# end of parameters" { skip = 0 }' "$0"
} >"$work/script"
grep -q '^# end of parameters$' "$work/script" && die "node ${node}: could not strip the parameter preamble from $0"

cat >"$work/env" <<EOF
# zerotouch etcd snapshots: the parameters of ${installed_script} (ZT_ACTION=save).
ZT_NODE="${node}"
ZT_ETCDCTL="${etcdctl}"
ZT_ENDPOINT="${endpoint}"
ZT_CACERT="${cacert}"
ZT_CERT="${cert}"
ZT_KEY="${key}"
ZT_SNAPSHOT_DIR="${dir}"
ZT_RETAIN="${retain}"
ZT_SCHEDULE="${schedule}"
ZT_OFFSITE_TYPE="${offsite_type}"
EOF
if [ -n "$offsite_type" ]; then
  # The target, not its credentials: those are files of ZT_OFFSITE_CREDENTIALS_DIR.
  for pair in "ZT_OFFSITE_ENDPOINT=${offsite_endpoint}" "ZT_OFFSITE_REGION=${offsite_region}" "ZT_OFFSITE_BUCKET=${offsite_bucket}" \
    "ZT_OFFSITE_HOST=${offsite_host}" "ZT_OFFSITE_PORT=${offsite_port}" "ZT_OFFSITE_USER=${offsite_user}" \
    "ZT_OFFSITE_HOST_KEY=${offsite_host_key}" "ZT_OFFSITE_PATH=${offsite_path}" "ZT_OFFSITE_RETAIN=${offsite_retain}" \
    "ZT_OFFSITE_CREDENTIALS_DIR=${offsite_credentials}"; do
    printf '%s="%s"\n' "${pair%%=*}" "${pair#*=}" >>"$work/env"
  done
fi

cat >"$work/service" <<EOF
[Unit]
Description=zerotouch: etcd snapshot of node ${node} into ${dir}
After=etcd.service

[Service]
Type=oneshot
EnvironmentFile=${env_file}
Environment=ZT_ACTION=save
ExecStart=/bin/bash ${installed_script}
TimeoutStartSec=$((save_timeout_s + status_timeout_s + 60))
Nice=10
IOSchedulingClass=best-effort
IOSchedulingPriority=7
EOF

cat >"$work/timer" <<EOF
[Unit]
Description=zerotouch: etcd snapshots of node ${node} (${schedule}, newest ${retain} kept)

[Timer]
OnCalendar=${schedule}
RandomizedDelaySec=${randomized_delay_s}
Persistent=true
Unit=${service}

[Install]
WantedBy=timers.target
EOF

changed=false
units_changed=false
timer_changed=false

# The off-node target: its credentials as files (first in the scratch directory), rclone, and a
# write check with them; only credentials that passed it replace those the timer uses.
offsite_store_credentials "$node" "$work/credentials"
if [ -n "$offsite_type" ]; then
  if ! command -v rclone >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 || die "node ${node}: rclone is missing and apt-get is not available to install it"
    log "node ${node}: installing rclone (Debian package) for the off-node copies"
    export DEBIAN_FRONTEND=noninteractive
    timeout "$apt_timeout_s" apt-get -q -o DPkg::Lock::Timeout=300 update >&2 || die "node ${node}: apt-get update failed or timed out"
    timeout "$apt_timeout_s" apt-get -q -y -o DPkg::Lock::Timeout=300 install --no-install-recommends rclone >&2 ||
      die "node ${node}: installing rclone failed or timed out"
    changed=true
  fi
  (
    offsite_env "$work/credentials"
    offsite_check "$node" "$work" ||
      die "node ${node}: the off-node target ${offsite_type} ${offsite_base#"${offsite_remote}:"} does not take a file with the configured credentials: $(offsite_why "$work/check.err")"
  )
  log "node ${node}: the off-node target answers; each snapshot is copied there, the newest ${offsite_retain} kept"
fi
credentials_dir="${root}${offsite_credentials}"
if [ -z "$offsite_type" ]; then
  if [ -e "$credentials_dir" ]; then
    rm -rf -- "$credentials_dir"
    log "node ${node}: removed the off-node credentials ${offsite_credentials}"
    changed=true
  fi
elif ! diff -r -q -- "$work/credentials" "$credentials_dir" >/dev/null 2>&1; then
  mkdir -p -- "$(dirname "$credentials_dir")"
  rm -rf -- "${credentials_dir}.new"
  cp -a -- "$work/credentials" "${credentials_dir}.new"
  rm -rf -- "$credentials_dir"
  mv -- "${credentials_dir}.new" "$credentials_dir"
  log "node ${node}: wrote the off-node credentials ${offsite_credentials}"
  changed=true
fi
# Installs $1 (a file in $work) at $2 with mode $3 unless it is there already; sets placed.
place() {
  local target="${root}$2"
  placed=false
  if [ -f "$target" ] && cmp -s -- "$1" "$target" && [ "$(stat -c %a -- "$target")" = "${3#0}" ]; then
    return 0
  fi
  install -D -m "$3" -- "$1" "$target"
  log "node ${node}: wrote $2"
  placed=true
  changed=true
}
# The record of which payload installed the timer is bookkeeping, not a change.
printf '%s\n' "$self_id" >"$work/owner"
was_changed="$changed"
place "$work/owner" "$owner_file" 0600
changed="$was_changed"
place "$work/script" "$installed_script" 0755
place "$work/env" "$env_file" 0600
place "$work/service" "${unit_dir}/${service}" 0644
[ "$placed" = false ] || units_changed=true
place "$work/timer" "${unit_dir}/${timer}" 0644
if [ "$placed" = true ]; then
  units_changed=true
  timer_changed=true
fi

[ "$units_changed" = false ] || systemctl_ daemon-reload
if systemctl is-enabled --quiet "$timer" 2>/dev/null && systemctl is-active --quiet "$timer" 2>/dev/null; then
  # A running timer takes a new schedule on restart.
  [ "$timer_changed" = false ] || systemctl_ restart "$timer"
else
  systemctl_ enable --now "$timer"
  changed=true
fi
log "node ${node}: ${timer}: OnCalendar=${schedule}, snapshots into ${dir}, newest ${retain} kept$([ "$changed" = true ] || printf ' (unchanged)')"
offsite=null
[ -z "$offsite_type" ] || offsite="$(json_string "$offsite_type")"
printf '{"action":"create","node":%s,"changed":%s,"schedule":%s,"snapshotDir":%s,"retain":%d,"timer":%s,"offsite":%s}\n' \
  "$(json_string "$node")" "$changed" "$(json_string "$schedule")" "$(json_string "$dir")" "$retain" "$(json_string "$timer")" "$offsite"
