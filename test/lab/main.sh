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
# lab's intended outcome. The lab is removed at the end unless LAB_KEEP=1.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source-path=SCRIPTDIR source=../engine/engine.sh
source test/engine/engine.sh

lab_root_only lab

export LAB_SLOW_NODES="${LAB_SLOW_NODES-}"
if [ "${LAB_KEEP:-0}" != "1" ]; then
  trap 'bash test/lab/lab.sh down' EXIT
fi
trap 'exit 130' INT
trap 'exit 143' TERM
bash test/lab/lab.sh up

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

if [ "$rc" -eq 0 ]; then
  echo "lab: stack outputs (secrets hidden):"
  pulumi stack output --stack lab --json
  bash test/lab/exposure.sh lab
  exit 0
fi
# A refusal the lab asked for (LAB_SLOW_NODES) is the outcome it intends; anything else fails.
[ -n "$LAB_SLOW_NODES" ] || exit "$rc"
for node in ${LAB_SLOW_NODES//,/ }; do
  grep -q "fsync gate failed on node $node:" "$log" || exit "$rc"
done
echo "lab: refused by the fsync gate as the lab intends (throttled etcd disk on: $LAB_SLOW_NODES)"
