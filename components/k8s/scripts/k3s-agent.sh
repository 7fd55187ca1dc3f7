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

# k3s.sh and common.sh: in the payload ahead of this script, or from the checkout.
if ! declare -F k3s_self_id >/dev/null; then
  # shellcheck source=components/k8s/scripts/lib/k3s.sh
  . "$(dirname "${BASH_SOURCE[0]}")/lib/k3s.sh"
fi
K3S_STEP=k3s-agent
readonly kubelet_kubeconfig=/var/lib/rancher/k3s/agent/kubelet.kubeconfig

k3s_service_begin agent
k3s_service_params agent
k3s_check_secret ZT_K3S_AGENT_TOKEN token
k3s_check_binary "$version"
deadline=$((SECONDS + timeout_s))

k3s_secrets_dir
k3s_write_secret "$K3S_SECRETS/agent-token" "$ZT_K3S_AGENT_TOKEN"
unset ZT_K3S_AGENT_TOKEN
log "agent token in ${K3S_SECRETS} (mode 0600)$([ "$k3s_secret_changed" = true ] && echo ', changed')"

k3s_drop_role "$K3S_SERVER_UNIT" "a server"
unit="$(k3s_render_unit "Lightweight Kubernetes agent (k3s ${version})" "$args")"
k3s_apply_unit "$K3S_AGENT_UNIT" "$unit" "$self_id" "$timeout_s"

agent_ready() {
  [ -f "$kubelet_kubeconfig" ] || {
    printf 'no kubelet credentials yet'
    return 1
  }
  k3s_node_ready "$kubelet_kubeconfig"
}
if ! k3s_wait_ready agent_ready "$deadline" "$timeout_s" k3s-agent; then
  k3s_create_result agent "$version" false "\"status\":$(json_string "$k3s_last_status"),\"readyTimeoutSeconds\":${timeout_s}"
  refuse "k3s agent on node ${node} is not Ready after ${timeout_s}s: ${k3s_last_status:-no status}. See journalctl -u ${K3S_AGENT_UNIT} on the node (it must reach the API endpoint on port 6443). To wait longer, raise readyTimeoutSeconds of the control plane's k3s settings."
fi

k3s_claim service "$self_id"
log "Ready after ${k3s_waited}s"
k3s_create_result agent "$version" true "\"waitedSeconds\":${k3s_waited}"
