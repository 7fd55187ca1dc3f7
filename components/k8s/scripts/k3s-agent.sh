#!/usr/bin/env bash
# k3s agent: joins this node to the cluster as a worker and waits until it is Ready.
#
# create: checks the installed k3s is the pinned version, writes the agent token to a
#         root-only file (mode 0600, never printed), writes the k3s-agent.service unit (the k3s
#         arguments as given, rendered by components/k8s/k3s.ts), removes a k3s.service this node
#         ran before, (re)starts the agent unless this very payload runs already, then waits
#         (bounded) until the API server reports the node Ready (asked with the node's own
#         kubelet credentials). Records this payload as the service's owner.
# delete: stops and removes the k3s services k3s-killall style (units, container shims, mounts,
#         CNI links and rules, the token and k3s's local state), unless a newer payload (a
#         replacement of this step) owns the node's service. etcd is never touched.
#
# Parameters (environment):
#   ZT_ACTION                 create | delete
#   ZT_NODE                   node name (DNS label); also the Kubernetes node name
#   ZT_K3S_VERSION            pinned version the installed binary must report
#   ZT_K3S_ARGS               `agent`, then one k3s flag per line (no secrets)
#   ZT_K3S_AGENT_TOKEN        token agents join with (secret)
#   ZT_READY_TIMEOUT_SECONDS  longest wait for readiness (10-3600)
#
# Output: progress on stderr; one JSON object as the last line of stdout.
# Exit codes: 0 ok, 1 failure, 2 invalid parameter, 3 not ready in time / wrong binary.
set -euo pipefail

if ! declare -F k3s_self_id >/dev/null; then
  # shellcheck source=components/k8s/scripts/lib/k3s.sh
  . "$(dirname "${BASH_SOURCE[0]}")/lib/k3s.sh"
fi
if ! declare -F json_string >/dev/null; then
  # shellcheck source=components/lib/scripts/common.sh
  . "$(dirname "${BASH_SOURCE[0]}")/../../lib/scripts/common.sh"
fi
K3S_STEP=k3s-agent
readonly kubelet_kubeconfig=/var/lib/rancher/k3s/agent/kubelet.kubeconfig

action="${ZT_ACTION:-}"
case "$action" in
  create | delete) ;;
  *) invalid "ZT_ACTION must be create or delete, got '${action}'" ;;
esac
k3s_check_node
node="$ZT_NODE"
[ "$(id -u)" -eq 0 ] || die "node ${node}: must run as root"
self_id="$(k3s_self_id)"

if [ "$action" = delete ]; then
  if k3s_superseded service "$self_id"; then
    log "a newer step owns the k3s service on this node (this one was replaced); leaving it"
    printf '{"node":%s,"action":"delete","role":"agent","changed":false,"superseded":true}\n' "$(json_string "$node")"
    exit 0
  fi
  k3s_teardown
  rm -f "$K3S_STATE/service.owner"
  printf '{"node":%s,"action":"delete","role":"agent","changed":%s}\n' "$(json_string "$node")" "$k3s_teardown_changed"
  exit 0
fi

version="${ZT_K3S_VERSION:-}"
args="${ZT_K3S_ARGS:-}"
timeout_s="${ZT_READY_TIMEOUT_SECONDS:-}"
[[ "$version" =~ ^v1\.[0-9]{1,3}\.[0-9]{1,3}\+k3s[0-9]{1,2}$ ]] ||
  invalid "ZT_K3S_VERSION must be a k3s release such as v1.36.4+k3s1, got '${version}' (node ${node})"
if ! [[ "$timeout_s" =~ ^[0-9]{2,4}$ ]] || [ "$timeout_s" -lt 10 ] || [ "$timeout_s" -gt 3600 ]; then
  invalid "ZT_READY_TIMEOUT_SECONDS must be a whole number of seconds from 10 to 3600, got '${timeout_s}' (node ${node})"
fi
k3s_check_args "$args" agent
k3s_check_secret ZT_K3S_AGENT_TOKEN token
command -v systemctl >/dev/null 2>&1 || die "node ${node}: systemd is required to run k3s"
k3s_check_binary "$version"
deadline=$((SECONDS + timeout_s))

(umask 077 && mkdir -p "$K3S_SECRETS")
chmod 700 "$K3S_SECRETS"
k3s_secret_changed=false
k3s_write_secret "$K3S_SECRETS/agent-token" "$ZT_K3S_AGENT_TOKEN"
unset ZT_K3S_AGENT_TOKEN
log "agent token in ${K3S_SECRETS} (mode 0600)$([ "$k3s_secret_changed" = true ] && echo ', changed')"

if [ -f "$K3S_SYSTEMD/$K3S_SERVER_UNIT" ]; then
  log "this node ran as a server before; removing ${K3S_SERVER_UNIT}"
  k3s_remove_unit "$K3S_SERVER_UNIT"
fi
unit="$(k3s_render_unit "Lightweight Kubernetes agent (k3s ${version})" "$args")"
k3s_apply_unit "$K3S_AGENT_UNIT" "$unit" "$self_id" "$timeout_s"

agent_ready() {
  [ -f "$kubelet_kubeconfig" ] || {
    printf 'no kubelet credentials yet'
    return 1
  }
  k3s_node_ready "$kubelet_kubeconfig"
}
ready=false
if [ "$k3s_start_timed_out" = true ]; then
  k3s_last_status="k3s-agent did not report started to systemd"
elif k3s_wait_until "$deadline" agent_ready; then
  ready=true
fi
waited=$((timeout_s - (deadline - SECONDS)))
[ "$waited" -ge 0 ] || waited=0
if [ "$ready" != true ]; then
  printf '{"node":%s,"action":"create","role":"agent","version":%s,"restarted":%s,"ready":false,"status":%s,"readyTimeoutSeconds":%s}\n' \
    "$(json_string "$node")" "$(json_string "$version")" "$k3s_restarted" "$(json_string "$k3s_last_status")" "$timeout_s"
  refuse "k3s agent on node ${node} is not Ready after ${timeout_s}s: ${k3s_last_status:-no status}. See journalctl -u ${K3S_AGENT_UNIT} on the node (it must reach the API endpoint on port 6443). To wait longer, raise readyTimeoutSeconds of the control plane's k3s settings."
fi

k3s_claim service "$self_id"
log "Ready after ${waited}s"
printf '{"node":%s,"action":"create","role":"agent","version":%s,"restarted":%s,"ready":true,"waitedSeconds":%s}\n' \
  "$(json_string "$node")" "$(json_string "$version")" "$k3s_restarted" "$waited"
