#!/usr/bin/env bash
# `npm run lab`: the main job on the local lab. Brings the lab up, then deploys the `lab` stack
# (Pulumi.lab.yaml, written by lab.sh up) with `pulumi up`: the CLI, language host and plugins
# of the toolchain cache (npm run toolchain), a file backend and a passphrase secrets provider
# under .lab/pulumi-state. Prints the stack outputs, then runs the exposure check on them from the
# lab's internet and VPN clients (test/lab/exposure.sh). When the toolchain is not built, it says so
# and runs the node layer's steps directly over SSH instead (test/lab/nodeLayer.ts).
#
# Every etcd disk is fast unless LAB_SLOW_NODES names nodes to throttle (e.g. lab-cp-3): then
# `pulumi up` fails with the fsync gate's refusal of those nodes, which the job reports as the
# lab's intended outcome. Likewise LAB_DELAYED_NODES (e.g. lab-worker-1) delays everything the
# latency preflight's targets send to those nodes by LAB_DELAY_MS (default 50) ms (lab.sh delay),
# above the lab stack's preflight.maxLatencyMs (20 ms): their preflight refuses them. Each node's
# latency figures are printed either way. The lab is removed at the end unless LAB_KEEP=1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source-path=SCRIPTDIR source=../engine/engine.sh
source test/engine/engine.sh

lab_root_only lab

export LAB_SLOW_NODES="${LAB_SLOW_NODES-}"
export LAB_DELAYED_NODES="${LAB_DELAYED_NODES-}"
LAB_DELAY_MS="${LAB_DELAY_MS:-50}"
if [ "${LAB_KEEP:-0}" != "1" ]; then
  trap 'bash test/lab/lab.sh down' EXIT
fi
trap 'exit 130' INT
trap 'exit 143' TERM
bash test/lab/lab.sh up
for node in ${LAB_DELAYED_NODES//,/ }; do
  bash test/lab/lab.sh delay "$node" "$LAB_DELAY_MS"
done

# latency_table: the latency figures per node of the `platform` output (JSON on stdin), one line each.
latency_table() {
  jq -r '
    .nodes | to_entries[] | .key as $n | .value.latency as $l
    | [$n] + (["gitlab", "probe"] | map(. as $t | $l[$t] | if . == null then "\($t) -" else "\($t) \(.target) median \(.medianMs) worst \(.worstMs) (\(.connected)/\(.tries))" end))
      + ["threshold \($l.maxLatencyMs // "none")"]
    | join("  ")' | sed 's/^/  /'
}

# latency_figures <log>: each node's latency figures as its preflight logged them.
latency_figures() {
  echo "lab: latency per node, as each node's preflight measured it (TCP connect; threshold preflight.maxLatencyMs):"
  grep -o 'node [a-z0-9-]*: latency to .*' "$1" | sort -u | sed 's/^/  /' || echo "  (none logged)"
}

if ! bin=$(bash test/lab/toolchain/ensure.sh --built "${ENGINE_TOOLS[@]}"); then
  echo "lab: the Pulumi toolchain is not built (npm run toolchain builds it): running the node layer's steps directly" >&2
  exec npx --no-install ts-node --transpile-only test/lab/nodeLayer.ts Pulumi.lab.yaml
fi

state="$PWD/.lab/pulumi-state"
# The state describes the lab it was deployed to: a new lab (new machines) starts a new stack.
lab_id=$(jq -c '[.image, (.nodes[] | [.name, .machine, .hostKey])]' .lab/state.json | sha256sum | cut -c1-16)
if [ "$(cat "$state/lab-id" 2>/dev/null || true)" != "$lab_id" ]; then
  rm -rf "$state"
fi
engine_env "$bin" "$state"
echo "$lab_id" >"$state/lab-id"
echo "lab: pulumi $(pulumi version) from $bin, state $state" >&2

pulumi stack select --create lab --non-interactive
pulumi config set --secret --stack lab zerotouch:sshPrivateKey <.lab/id_ed25519
log=$(mktemp)
trap 'rm -f "$log"; [ "${LAB_KEEP:-0}" = 1 ] || bash test/lab/lab.sh down' EXIT
started=$SECONDS
set +e
pulumi up --stack lab --yes --skip-preview --non-interactive 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
echo "lab: pulumi up exited $rc after $((SECONDS - started))s" >&2

latency_figures "$log"
if [ "$rc" -eq 0 ]; then
  echo "lab: stack outputs (secrets hidden):"
  pulumi stack output --stack lab --json
  echo "lab: latency per node from the stack outputs (ms):"
  pulumi stack output --stack lab --json platform | latency_table
  bash test/lab/exposure.sh lab
  exit 0
fi
# A refusal the lab asked for (LAB_SLOW_NODES, LAB_DELAYED_NODES) is the outcome it intends;
# anything else fails.
[ -n "$LAB_SLOW_NODES$LAB_DELAYED_NODES" ] || exit "$rc"
for node in ${LAB_SLOW_NODES//,/ }; do
  grep -q "fsync gate failed on node $node:" "$log" || exit "$rc"
done
for node in ${LAB_DELAYED_NODES//,/ }; do
  grep -q "preflight failed on node $node: latency:" "$log" || exit "$rc"
done
[ -z "$LAB_SLOW_NODES" ] || echo "lab: refused by the fsync gate as the lab intends (throttled etcd disk on: $LAB_SLOW_NODES)"
[ -z "$LAB_DELAYED_NODES" ] || echo "lab: refused by the latency preflight as the lab intends (link delayed by $LAB_DELAY_MS ms on: $LAB_DELAYED_NODES)"
