# shellcheck shell=bash
# What every node script shares: its log lines and exits, and JSON output (a script prints one
# JSON object as its last stdout line). A library: zerotouch puts it in the payload ahead of
# each script (nodeScript's libraries); a script run by hand sources it from the checkout.

# Log lines go to stderr, each starting with log_prefix, which the script sets first
# (e.g. "etcd-install:" or "[etcd-member node-1]").
log() { printf '%s %s\n' "${log_prefix:-zerotouch:}" "$*" >&2; }
# Exit codes: 1 failed, 2 invalid parameter, 3 refused (a gate or check said no).
die() {
  log "error: $*"
  exit 1
}
invalid() {
  log "invalid parameter: $*"
  exit 2
}
refuse() {
  log "$*"
  exit 3
}

# check_action <action> <allowed...>: exits 2 unless the action (ZT_ACTION) is one of the allowed.
check_action() {
  local action="$1" allowed
  shift
  for allowed in "$@"; do [ "$action" != "$allowed" ] || return 0; done
  allowed="${*:1:$#-1}"
  invalid "ZT_ACTION must be ${allowed// /, } or ${!#}, got '${action}'"
}

# check_node <node>: exits 2 unless the node name (ZT_NODE) is a DNS label.
check_node() {
  [[ "$1" =~ ^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$ ]] ||
    invalid "ZT_NODE must be a DNS label (lowercase letters, digits, '-'), got '${1}'"
}

# read_only_delete <node>: the delete of a step that changes nothing prints its result and exits 0.
read_only_delete() {
  printf '{"node":%s,"action":"delete"}\n' "$(json_string "$1")"
  exit 0
}

# read_action_node <allowed actions...>: sets action and node from ZT_ACTION and ZT_NODE, checked.
# shellcheck disable=SC2034  # action and node are the script's
read_action_node() {
  action="${ZT_ACTION:-}"
  node="${ZT_NODE:-}"
  check_action "$action" "$@"
  check_node "$node"
}

# delete_unchanged <node> <why>: a delete with nothing to undo logs why, prints its result, exits 0.
delete_unchanged() {
  log "node ${1}: ${2}"
  printf '{"action":"delete","node":%s,"changed":false}\n' "$(json_string "$1")"
  exit 0
}

# safe_path <path>: succeeds for an absolute path of safe characters, without . or .. components.
safe_path() {
  [[ "$1" =~ ^(/[A-Za-z0-9._@+-]+)+$ ]] && [[ "$1/" != */./* ]] && [[ "$1/" != */../* ]]
}

# INT, TERM and HUP end the script with 128+n, so that its EXIT trap (its cleanup) runs.
exit_on_signals() {
  trap 'exit 130' INT
  trap 'exit 143' TERM
  trap 'exit 129' HUP
}

# bounded <seconds> <stderr file> <command...>: runs the command for at most that long, its
# stderr into the file. In the background, waited for, so that a signal ends the script at once
# (bash runs traps only between commands); the script's EXIT trap calls stop_bounded.
bounded_child=""
bounded() {
  local seconds="$1" err="$2" rc=0
  shift 2
  timeout -k 10 "$seconds" "$@" 2>"$err" &
  bounded_child=$!
  wait "$bounded_child" || rc=$?
  bounded_child=""
  return "$rc"
}

# Stops the command `bounded` is running, if any.
stop_bounded() {
  [ -z "$bounded_child" ] || kill -TERM "$bounded_child" 2>/dev/null || true
}

# etcd_snapshot_check <file> <work dir> <tool> <seconds>: verifies an etcd snapshot file (the sha256
# etcd appends, then `<tool> snapshot status`); sets snap_size, snap_hash, snap_revision and
# snap_keys, or snap_problem (why not) and fails.
etcd_snapshot_check() {
  etcd_snapshot_sum "$1" && etcd_snapshot_status "$@"
}

# etcd_snapshot_sum <file>: a database of whole pages and the 32-byte sha256 of it; sets snap_size.
# shellcheck disable=SC2034  # snap_* are the caller's
etcd_snapshot_sum() {
  local expected actual
  snap_size="$(stat -c %s -- "$1")" || { snap_problem="${1}: cannot be read"; return 1; }
  if [ "$snap_size" -le 32 ] || [ $(((snap_size - 32) % 512)) -ne 0 ]; then
    snap_problem="${1}: ${snap_size} bytes is not the size of an etcd snapshot (a database of whole pages and a 32-byte sha256): truncated?"
    return 1
  fi
  expected="$(tail -c 32 -- "$1" | od -An -v -tx1 | tr -d ' \n')"
  actual="$(head -c -32 -- "$1" | sha256sum | cut -d' ' -f1)"
  [ "$expected" = "$actual" ] || {
    snap_problem="${1}: the sha256 of the database (${actual}) is not the one etcd appended (${expected}): the file is damaged"
    return 1
  }
}

# etcd_snapshot_status <file> <work dir> <tool> <seconds>: sets snap_hash, snap_revision, snap_keys.
# shellcheck disable=SC2034  # snap_* are the caller's
etcd_snapshot_status() {
  local file=$1 work=$2 tool=$3 status
  if ! bounded "$4" "$work/status.err" "$tool" snapshot status -w json -- "$file" >"$work/status.json"; then
    snap_problem="${file}: '${tool##*/} snapshot status' failed: $(grep -m 3 -iE 'error|fault|panic' "$work/status.err" | tr '\n' ' ' | cut -c1-300)"
    return 1
  fi
  status="$(tail -n 1 "$work/status.json")"
  snap_hash="$(sed -n 's/.*"hash":\([0-9]*\).*/\1/p' <<<"$status")"
  snap_revision="$(sed -n 's/.*"revision":\([0-9]*\).*/\1/p' <<<"$status")"
  snap_keys="$(sed -n 's/.*"totalKey":\([0-9]*\).*/\1/p' <<<"$status")"
  if [ -z "$snap_hash" ] || [ -z "$snap_revision" ] || [ -z "$snap_keys" ]; then
    snap_problem="${file}: unexpected 'snapshot status' output: $(cut -c1-300 <<<"$status")"
    return 1
  fi
}

# Prints a string as a JSON string literal.
json_string() {
  local s=$1
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\n'/\\n}
  s=${s//$'\r'/}
  s=${s//$'\t'/\\t}
  printf '"%s"' "$s"
}

# Prints its arguments as a JSON array of strings.
json_array() {
  local out="" item
  for item in "$@"; do
    out+="${out:+,}$(json_string "$item")"
  done
  printf '[%s]' "$out"
}
