#!/usr/bin/env bash
# k3s server: runs this node as a Kubernetes control-plane node of k3s, backed by the external
# etcd cluster over TLS (no embedded etcd), and waits until it serves.
#
# create: checks the installed k3s is the pinned version, writes the datastore CA, client
#         certificate and key and the tokens to root-only files (mode 0600, never printed),
#         writes the k3s.service unit (the k3s arguments as given, rendered by
#         components/k8s/k3s.ts), removes a k3s-agent.service this node ran before, (re)starts
#         k3s unless this very payload runs already, then waits (bounded) until the API server's
#         /readyz says ok and the node is Ready. Records this payload as the service's owner.
# delete: stops and removes the k3s services k3s-killall style (units, container shims, mounts,
#         CNI links and rules, secrets, kubeconfig and k3s's local state), unless a newer
#         payload (a replacement of this step) owns the node's service. The external etcd and its
#         data are never touched.
#
# Parameters (environment):
#   ZT_ACTION                 create | delete
#   ZT_NODE                   node name (DNS label); also the Kubernetes node name
#   ZT_K3S_VERSION            pinned version the installed binary must report
#   ZT_K3S_ARGS               `server`, then one k3s flag per line (no secrets)
#   ZT_ETCD_CA_PEM            CA bundle that verifies etcd's server certificates (secret input)
#   ZT_ETCD_CERT_PEM          client certificate for etcd (secret input)
#   ZT_ETCD_KEY_PEM           its private key (secret)
#   ZT_K3S_TOKEN              cluster token servers join with (secret)
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
K3S_STEP=k3s-server

k3s_service_begin server
k3s_service_params server
k3s_check_secret ZT_ETCD_CA_PEM pem
k3s_check_secret ZT_ETCD_CERT_PEM pem
k3s_check_secret ZT_ETCD_KEY_PEM pem
k3s_check_secret ZT_K3S_TOKEN token
k3s_check_secret ZT_K3S_AGENT_TOKEN token
k3s_check_binary "$version"
deadline=$((SECONDS + timeout_s))

# --- secrets: root-only files, never printed ---------------------------------------------
k3s_secrets_dir
k3s_write_secret "$K3S_SECRETS/etcd-ca.crt" "$ZT_ETCD_CA_PEM"
k3s_write_secret "$K3S_SECRETS/etcd-client.crt" "$ZT_ETCD_CERT_PEM"
k3s_write_secret "$K3S_SECRETS/etcd-client.key" "$ZT_ETCD_KEY_PEM"
k3s_write_secret "$K3S_SECRETS/token" "$ZT_K3S_TOKEN"
k3s_write_secret "$K3S_SECRETS/agent-token" "$ZT_K3S_AGENT_TOKEN"
unset ZT_ETCD_CA_PEM ZT_ETCD_CERT_PEM ZT_ETCD_KEY_PEM ZT_K3S_TOKEN ZT_K3S_AGENT_TOKEN
log "datastore TLS files and tokens in ${K3S_SECRETS} (mode 0600)$([ "$k3s_secret_changed" = true ] && echo ', changed')"

# --- unit ------------------------------------------------------------------------------------
k3s_drop_role "$K3S_AGENT_UNIT" "an agent"
unit="$(k3s_render_unit "Lightweight Kubernetes server (k3s ${version})" "$args")"
k3s_apply_unit "$K3S_SERVER_UNIT" "$unit" "$self_id" "$timeout_s"

# --- readiness ---------------------------------------------------------------------------------
server_ready() {
  local readyz
  readyz="$(timeout 15 "$K3S_BIN" kubectl --kubeconfig "$K3S_KUBECONFIG" --request-timeout=10s get --raw /readyz 2>&1 | head -n1 | cut -c1-200)" || true
  if [ "$readyz" != ok ]; then
    printf '/readyz said %s' "'${readyz:-nothing}'"
    return 1
  fi
  k3s_node_ready "$K3S_KUBECONFIG"
}
if ! k3s_wait_ready server_ready "$deadline" "$timeout_s" k3s; then
  k3s_create_result server "$version" false "\"status\":$(json_string "$k3s_last_status"),\"readyTimeoutSeconds\":${timeout_s}"
  refuse "k3s server on node ${node} is not ready after ${timeout_s}s: ${k3s_last_status:-no status}. See journalctl -u ${K3S_SERVER_UNIT} on the node (the external etcd must be reachable with the client certificate). To wait longer, raise readyTimeoutSeconds of the control plane's k3s settings."
fi

k3s_claim service "$self_id"
log "ready after ${k3s_waited}s: /readyz ok, ${k3s_last_status}"
k3s_create_result server "$version" true "\"waitedSeconds\":${k3s_waited}"
