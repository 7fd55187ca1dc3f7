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
