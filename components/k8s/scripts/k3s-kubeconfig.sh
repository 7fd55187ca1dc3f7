#!/usr/bin/env bash
# k3s kubeconfig: reads the cluster-admin kubeconfig k3s wrote on a server node and prints it
# in the result line. The command that runs this is not logged and its output is secret; the
# kubeconfig is never written to stderr. Its server (https://127.0.0.1:6443) is rewritten to the
# API endpoint by components/k8s/k3s.ts.
#
# create: prints {"node": …, "kubeconfig": "<the file's text>"}. Waits (bounded) for the file.
# delete: nothing to undo (this only reads).
#
# Parameters (environment):
#   ZT_ACTION       create | delete
#   ZT_NODE         node name (DNS label)
#   ZT_K3S_VERSION  the k3s version the server runs (a new version reads the kubeconfig again)
#
# Output: progress on stderr; one JSON object as the last line of stdout.
# Exit codes: 0 ok, 1 failure (no kubeconfig), 2 invalid parameter.
set -euo pipefail

# k3s.sh and common.sh: in the payload ahead of this script, or from the checkout.
if ! declare -F k3s_self_id >/dev/null; then
  # shellcheck source=components/k8s/scripts/lib/k3s.sh
  . "$(dirname "${BASH_SOURCE[0]}")/lib/k3s.sh"
fi
K3S_STEP=k3s-kubeconfig
readonly wait_s=120

read_action_node create delete
if [ "$action" = delete ]; then
  printf '{"node":%s,"action":"delete","changed":false}\n' "$(json_string "$node")"
  exit 0
fi

deadline=$((SECONDS + wait_s))
until [ -s "$K3S_KUBECONFIG" ]; do
  [ "$SECONDS" -lt "$deadline" ] || die "node ${node}: ${K3S_KUBECONFIG} did not appear within ${wait_s}s; is the k3s server running?"
  sleep 2
done
kubeconfig="$(cat -- "$K3S_KUBECONFIG")"
grep -q '^kind: Config' <<<"$kubeconfig" || die "node ${node}: ${K3S_KUBECONFIG} is not a kubeconfig"
log "read ${K3S_KUBECONFIG} (content not shown)"
printf '{"node":%s,"action":"create","kubeconfig":%s}\n' "$(json_string "$node")" "$(json_string "$kubeconfig")"
