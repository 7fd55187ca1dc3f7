# shellcheck shell=bash disable=SC2034  # the paths are used by the scripts this library is put ahead of
# What the k3s scripts share: paths, messages, the owner record and the teardown of a k3s
# service. A library: zerotouch puts it in the payload ahead of k3s-install.sh, k3s-server.sh,
# k3s-agent.sh and k3s-kubeconfig.sh; a script run by hand sources it from the checkout.
#
# Only this node's k3s is ever touched here. The external etcd cluster is never contacted by a
# delete, and nothing here removes or changes etcd data.

# common.sh (checks, exits, JSON): in the payload ahead of this library, or from the checkout.
if ! declare -F json_string >/dev/null; then
  # shellcheck source=components/lib/scripts/common.sh
  . "$(dirname "${BASH_SOURCE[0]}")/../../../lib/scripts/common.sh"
fi

# Where the binary goes and where the scripts keep their state. Overridable (ZT_K3S_BIN_DIR,
# ZT_K3S_STATE_DIR) so the install script can be run in a scratch directory by the tests.
K3S_BIN_DIR="${ZT_K3S_BIN_DIR:-/usr/local/bin}"
K3S_BIN="$K3S_BIN_DIR/k3s"
K3S_STATE="${ZT_K3S_STATE_DIR:-/var/lib/zerotouch/k3s}"
# Secrets the services read: datastore TLS files and tokens, root-only.
K3S_SECRETS=/etc/zerotouch/k3s
K3S_KUBECONFIG=/etc/rancher/k3s/k3s.yaml
K3S_SYSTEMD=/etc/systemd/system
K3S_SERVER_UNIT=k3s.service
K3S_AGENT_UNIT=k3s-agent.service

# Progress and errors on stderr, prefixed with the step (K3S_STEP, set by the script) and node.
log() { printf '[%s %s] %s\n' "${K3S_STEP:-k3s}" "${ZT_NODE:-?}" "$*" >&2; }
refuse() {
  log "refused: $*"
  exit 3
}

# Exits 2 unless <version> is a k3s release such as v1.36.4+k3s1: k3s_check_version version.
k3s_check_version() {
  [[ "$1" =~ ^v1\.[0-9]{1,3}\.[0-9]{1,3}\+k3s[0-9]{1,2}$ ]] ||
    invalid "ZT_K3S_VERSION must be a k3s release such as v1.36.4+k3s1, got '${1}' (node ${ZT_NODE})"
}

# This run's identity: the sha256 of the payload file (parameters, libraries and script). A
# replacement of a step (create of the new payload before delete of the old one) is told apart
# by it, so the old payload's delete leaves alone what the new one owns.
k3s_self_id() {
  if [ -f "$0" ]; then
    sha256sum <"$0" | cut -d' ' -f1
  else
    printf '%s\0' "${ZT_NODE:-}" "${K3S_STEP:-}" | sha256sum | cut -d' ' -f1
  fi
}

k3s_state_dir() {
  (umask 077 && mkdir -p "$K3S_STATE")
  chmod 700 "$K3S_STATE"
}

# Records that the payload with identity <id> owns <what> (install | service): k3s_claim what id.
k3s_claim() {
  k3s_state_dir
  printf '%s\n' "$2" >"$K3S_STATE/$1.owner.tmp"
  mv -f "$K3S_STATE/$1.owner.tmp" "$K3S_STATE/$1.owner"
}

# Succeeds when another (newer) payload than <id> owns <what>: k3s_superseded what id. Then the
# delete of payload <id> must do nothing.
k3s_superseded() {
  [ -f "$K3S_STATE/$1.owner" ] && [ "$(cat "$K3S_STATE/$1.owner")" != "$2" ]
}

# The version line the binary prints (`k3s version v1.36.4+k3s1 (abcdef12)`), or nothing.
k3s_installed_version() {
  [ -x "$K3S_BIN" ] || return 0
  timeout 30 "$K3S_BIN" --version 2>/dev/null | head -n1 | awk '$1 == "k3s" && $2 == "version" { print $3 }' || true
}

# Writes a secret to a root-only file (mode 0600) without ever printing it. Sets
# k3s_secret_changed=true when the content differs from what was there.
k3s_write_secret() {
  local file=$1 value=$2 tmp
  tmp="$(umask 077 && mktemp "$file.XXXXXX")"
  printf '%s\n' "$value" >"$tmp"
  chmod 600 "$tmp"
  if k3s_replace "$tmp" "$file"; then k3s_secret_changed=true; fi
}

# Creates the root-only directory of the secret files; sets k3s_secret_changed=false.
k3s_secrets_dir() {
  (umask 077 && mkdir -p "$K3S_SECRETS")
  chmod 700 "$K3S_SECRETS"
  k3s_secret_changed=false
}

# Writes a file (mode 0644) from stdin. Sets k3s_file_changed=true when it changed.
k3s_write_file() {
  local file=$1 tmp
  tmp="$(mktemp "$file.XXXXXX")"
  cat >"$tmp"
  chmod 644 "$tmp"
  if k3s_replace "$tmp" "$file"; then k3s_file_changed=true; fi
}

# Moves <tmp> over <file>, or removes it when the file has that content: fails when unchanged.
k3s_replace() {
  if [ -f "$2" ] && cmp -s "$1" "$2"; then
    rm -f "$1"
    return 1
  fi
  mv -f "$1" "$2"
}

# The systemd unit of a k3s service; args (one per line) are checked by the caller.
k3s_render_unit() {
  local description=$1 args=$2 arg
  cat <<UNIT
# Written by zerotouch (components/k8s). Changes are overwritten on the next deployment.
[Unit]
Description=${description}
Documentation=https://docs.k3s.io
Wants=network-online.target
After=network-online.target

[Service]
Type=notify
KillMode=process
Delegate=yes
User=root
LimitNOFILE=1048576
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
TimeoutStartSec=0
Restart=always
RestartSec=5s
ExecStartPre=-/sbin/modprobe br_netfilter
ExecStartPre=-/sbin/modprobe overlay
UNIT
  printf 'ExecStart=%s' "$K3S_BIN"
  while IFS= read -r arg; do
    printf ' \\\n    %s' "$arg"
  done <<<"$args"
  printf '\n\n[Install]\nWantedBy=multi-user.target\n'
}

# Arguments are `server`/`agent` then `--flag` or `--flag=value`, nothing a unit file or a
# shell would read specially (no spaces, quotes, `$`, `%`, backslashes).
k3s_check_args() {
  local args=$1 first=$2 arg n=0
  # In a bracket expression `]` is literal only first; `[` and `-` (last) are literal anyway.
  local plain='^--[a-z][a-z0-9-]*(=[]A-Za-z0-9._:/,=+@[-]+)?$'
  while IFS= read -r arg; do
    n=$((n + 1))
    if [ "$n" -eq 1 ]; then
      [ "$arg" = "$first" ] || invalid "ZT_K3S_ARGS must start with '$first', got '$arg'"
      continue
    fi
    [[ "$arg" =~ $plain ]] ||
      invalid "ZT_K3S_ARGS: '$arg' is not a --flag or --flag=value of plain characters"
    case "$arg" in
      --token=* | --agent-token=* | --datastore-endpoint=*://*:*@*)
        invalid "ZT_K3S_ARGS: secrets go into files (--token-file), never on the command line" ;;
      --cluster-init | --disable-etcd | --disable-etcd=*)
        invalid "ZT_K3S_ARGS: '$arg' is not allowed: k3s uses the external etcd (--datastore-endpoint)" ;;
    esac
  done <<<"$args"
  [ "$n" -ge 1 ] || invalid "ZT_K3S_ARGS is empty"
}

# Stops and removes one k3s unit. Sets k3s_teardown_changed=true when there was one.
k3s_remove_unit() {
  local unit=$1
  if [ -f "$K3S_SYSTEMD/$unit" ]; then
    timeout 120 systemctl disable --now "$unit" >/dev/null 2>&1 || timeout 60 systemctl kill "$unit" >/dev/null 2>&1 || true
    rm -f "$K3S_SYSTEMD/$unit"
    timeout 60 systemctl daemon-reload >/dev/null 2>&1 || true
    timeout 30 systemctl reset-failed "$unit" >/dev/null 2>&1 || true
    k3s_teardown_changed=true
    log "stopped and removed $unit"
  fi
}

# Kills a process and all its descendants.
k3s_kill_tree() {
  local pid child
  for pid in "$@"; do
    for child in $(pgrep -P "$pid" 2>/dev/null || true); do
      k3s_kill_tree "$child"
    done
    kill -9 "$pid" 2>/dev/null || true
  done
}

# Unmounts everything mounted below a path, deepest first.
k3s_unmount_below() {
  local prefix=$1 mnt
  while IFS= read -r mnt; do
    [ -n "$mnt" ] || continue
    timeout 30 umount "$mnt" 2>/dev/null || timeout 30 umount -l "$mnt" 2>/dev/null || log "cannot unmount $mnt"
  done < <(awk -v p="$prefix" 'index($2, p) == 1 { print $2 }' /proc/self/mounts | sort -r)
}

# What k3s-killall.sh does, for the k3s of this node: stops both units, kills the container
# shims (KillMode=process leaves them running), unmounts what k3s mounted, deletes the CNI
# links and the KUBE-/CNI-/flannel iptables rules, then removes the units, zerotouch's secret
# files, the kubeconfig and k3s's local state. The external etcd and its data are not touched.
k3s_teardown() {
  k3s_teardown_changed=false
  if command -v systemctl >/dev/null 2>&1; then
    k3s_remove_unit "$K3S_SERVER_UNIT"
    k3s_remove_unit "$K3S_AGENT_UNIT"
  fi
  local shims
  shims="$(pgrep -f '/var/lib/rancher/k3s/data/[^/]+/bin/containerd-shim' 2>/dev/null || true)"
  if [ -n "$shims" ]; then
    # shellcheck disable=SC2086  # one pid per word
    k3s_kill_tree $shims
    k3s_teardown_changed=true
    log "killed the container shims"
  fi
  local prefix
  for prefix in /run/k3s /var/lib/rancher/k3s /var/lib/kubelet/pods /var/lib/kubelet/plugins /run/netns/cni-; do
    k3s_unmount_below "$prefix"
  done
  if command -v ip >/dev/null 2>&1; then
    local link
    for link in cni0 flannel.1 flannel-v6.1 flannel-wg flannel-wg-v6 kube-ipvs0; do
      if ip link show "$link" >/dev/null 2>&1; then
        ip link delete "$link" 2>/dev/null || true
        k3s_teardown_changed=true
      fi
    done
  fi
  local save
  for save in iptables-save ip6tables-save; do
    command -v "$save" >/dev/null 2>&1 || continue
    local restore=${save%-save}-restore
    command -v "$restore" >/dev/null 2>&1 || continue
    if timeout 60 "$save" 2>/dev/null | grep -qE 'KUBE-|CNI-|flannel'; then
      timeout 60 "$save" | grep -v 'KUBE-' | grep -v 'CNI-' | grep -iv 'flannel' | timeout 60 "$restore" ||
        log "could not remove the Kubernetes rules with $restore"
      k3s_teardown_changed=true
    fi
  done
  local dir
  for dir in "$K3S_SECRETS" /etc/rancher/k3s /var/lib/rancher/k3s /run/k3s /run/flannel /var/lib/cni; do
    if [ -e "$dir" ]; then
      rm -rf -- "$dir"
      k3s_teardown_changed=true
    fi
  done
}

# Fails unless systemd is there to run k3s (exit 1) and the installed binary reports the pinned
# version (exit 3).
k3s_check_binary() {
  local version=$1 installed
  command -v systemctl >/dev/null 2>&1 || die "node ${ZT_NODE}: systemd is required to run k3s"
  installed="$(k3s_installed_version)"
  [ "$installed" = "$version" ] ||
    refuse "node ${ZT_NODE}: ${K3S_BIN} reports version '${installed:-none}', the pinned version is ${version}; the install step must run first"
}

# Checks a secret parameter's shape without ever printing it: k3s_check_secret NAME kind.
k3s_check_secret() {
  local name=$1 kind=$2 value
  value="${!name:-}"
  case "$kind" in
    pem)
      [[ "$value" == "-----BEGIN "* && "$value" == *"-----END "* ]] ||
        invalid "${name} must be a PEM block (value not shown) (node ${ZT_NODE})" ;;
    token)
      [[ "$value" =~ ^[A-Za-z0-9._~+/=-]{16,256}$ ]] ||
        invalid "${name} must be 16 to 256 plain characters (value not shown) (node ${ZT_NODE})" ;;
  esac
}

# Writes the unit and (re)starts it when this payload is not the one running or the unit is not
# active; waits for systemd's readiness (Type=notify) at most <timeout> seconds. Sets
# k3s_restarted=true when it (re)started the unit, k3s_start_timed_out=true when systemd did not
# report the unit started in time.
k3s_apply_unit() {
  local unit=$1 text=$2 self=$3 timeout_s=$4
  k3s_file_changed=false
  k3s_write_file "$K3S_SYSTEMD/$unit" <<<"$text"
  if [ "$k3s_file_changed" = true ]; then
    timeout 60 systemctl daemon-reload || die "node ${ZT_NODE}: systemctl daemon-reload failed"
  fi
  timeout 60 systemctl enable "$unit" >/dev/null 2>&1 || die "node ${ZT_NODE}: cannot enable ${unit}"
  k3s_restarted=false
  k3s_start_timed_out=false
  local owner=""
  [ -f "$K3S_STATE/service.owner" ] && owner="$(cat "$K3S_STATE/service.owner")"
  if [ "$owner" = "$self" ] && systemctl is-active --quiet "$unit"; then
    log "${unit} runs this configuration already"
    return 0
  fi
  log "(re)starting ${unit}; waiting at most ${timeout_s}s for it to report ready"
  k3s_restarted=true
  local rc=0
  timeout "$timeout_s" systemctl restart "$unit" || rc=$?
  if [ "$rc" -eq 124 ]; then
    k3s_start_timed_out=true
    return 0
  fi
  [ "$rc" -eq 0 ] || die "node ${ZT_NODE}: systemctl restart ${unit} failed (exit ${rc}); see journalctl -u ${unit} on the node"
}

# Polls until <check> (a function printing a status and succeeding when ready) succeeds or
# <deadline> ($SECONDS) passes. Sets k3s_last_status to what the last check printed.
k3s_wait_until() {
  local deadline=$1 check=$2
  k3s_last_status=""
  while :; do
    if k3s_last_status="$("$check" 2>/dev/null)"; then
      return 0
    fi
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 2
  done
}

# The node's Ready condition as the API server reports it, through the given kubeconfig.
k3s_node_ready() {
  local kubeconfig=$1 status
  status="$(timeout 15 "$K3S_BIN" kubectl --kubeconfig "$kubeconfig" --request-timeout=10s get node "$ZT_NODE" \
    -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" || status="unreachable"
  printf 'node Ready=%s' "${status:-unknown}"
  [ "$status" = True ]
}

# Exits 2 unless <seconds> (ZT_READY_TIMEOUT_SECONDS) is a whole number from 10 to 3600.
k3s_check_ready_timeout() {
  if ! [[ "$1" =~ ^[0-9]{2,4}$ ]] || [ "$1" -lt 10 ] || [ "$1" -gt 3600 ]; then
    invalid "ZT_READY_TIMEOUT_SECONDS must be a whole number of seconds from 10 to 3600, got '${1}' (node ${ZT_NODE})"
  fi
}

# The start of a server or agent: reads the action and node (read_action_node), needs root, sets
# self_id; a delete tears the service down and exits: k3s_service_begin role.
k3s_service_begin() {
  read_action_node create delete
  [ "$(id -u)" -eq 0 ] || die "node ${node}: must run as root"
  self_id="$(k3s_self_id)"
  [ "$action" != delete ] || k3s_delete_service "$1" "$self_id"
}

# Sets version, args and timeout_s from ZT_K3S_VERSION, ZT_K3S_ARGS (first `role`) and
# ZT_READY_TIMEOUT_SECONDS, checked: k3s_service_params role.
k3s_service_params() {
  version="${ZT_K3S_VERSION:-}"
  args="${ZT_K3S_ARGS:-}"
  timeout_s="${ZT_READY_TIMEOUT_SECONDS:-}"
  k3s_check_version "$version"
  k3s_check_ready_timeout "$timeout_s"
  k3s_check_args "$args" "$1"
}

# The delete of a server or agent: tears k3s down unless a newer step owns the service, prints
# the result and exits: k3s_delete_service role id.
k3s_delete_service() {
  local role=$1 self=$2 node
  node="$(json_string "$ZT_NODE")"
  if k3s_superseded service "$self"; then
    log "a newer step owns the k3s service on this node (this one was replaced); leaving it"
    printf '{"node":%s,"action":"delete","role":"%s","changed":false,"superseded":true}\n' "$node" "$role"
    exit 0
  fi
  k3s_teardown
  rm -f "$K3S_STATE/service.owner"
  printf '{"node":%s,"action":"delete","role":"%s","changed":%s}\n' "$node" "$role" "$k3s_teardown_changed"
  exit 0
}

# Removes the unit of the role this node had before, if any: k3s_drop_role unit "a server".
k3s_drop_role() {
  [ -f "$K3S_SYSTEMD/$1" ] || return 0
  log "this node ran as ${2} before; removing ${1}"
  k3s_remove_unit "$1"
}

# Waits for <check> once the unit started: k3s_wait_ready check deadline timeout label. Sets
# k3s_waited (seconds) and k3s_last_status; fails when not ready in time.
k3s_wait_ready() {
  local check=$1 deadline=$2 timeout_s=$3 label=$4 rc=0
  if [ "$k3s_start_timed_out" = true ]; then
    k3s_last_status="${label} did not report started to systemd"
    rc=1
  else
    k3s_wait_until "$deadline" "$check" || rc=1
  fi
  k3s_waited=$((timeout_s - (deadline - SECONDS)))
  [ "$k3s_waited" -ge 0 ] || k3s_waited=0
  return "$rc"
}

# Prints a server's or agent's create result: k3s_create_result role version ready fields.
k3s_create_result() {
  printf '{"node":%s,"action":"create","role":"%s","version":%s,"restarted":%s,"ready":%s,%s}\n' \
    "$(json_string "$ZT_NODE")" "$1" "$(json_string "$2")" "$k3s_restarted" "$3" "$4"
}
