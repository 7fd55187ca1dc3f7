#!/usr/bin/env bash
# `npm run test:engine`: the real Pulumi engine on the lab. Builds the Pulumi toolchain from its
# Go modules into the toolchain cache (the CLI, the nodejs language host, the tls and random
# plugins, the lab's command plugin, the kubernetes plugin and a test API server's binaries; a warm
# cache builds nothing), brings up a lab whose etcd disks are all fast (three control-plane nodes,
# one worker), runs the engine tests
# (test/engine/*.engine.test.ts), and always brings the lab down at the end. LAB_KEEP=1 keeps it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

# shellcheck source-path=SCRIPTDIR source=engine.sh
source test/engine/engine.sh
lab_root_only test:engine
started=$SECONDS
bin=$(bash test/lab/toolchain/ensure.sh "${ENGINE_TOOLS[@]}" "${ENGINE_K8S_TOOLS[@]}")
export ZT_TOOLCHAIN_BIN="$bin"
echo "test:engine: toolchain ready after $((SECONDS - started))s ($bin)" >&2

if [ "${LAB_KEEP:-0}" != 1 ]; then
  trap 'bash test/lab/lab.sh down' EXIT
fi
trap 'exit 130' INT
trap 'exit 143' TERM
# A new lab every run: destroy keeps etcd's data on the nodes, which a new stack must not find.
export LAB_CONTROL_PLANES=3 LAB_WORKERS=1 LAB_SLOW_NODES="" LAB_FRESH=1
bash test/lab/lab.sh up
echo "test:engine: lab ready after $((SECONDS - started))s" >&2
npx --no-install jest -c test/engine/jest.config.js --runInBand "$@"
echo "test:engine: done after $((SECONDS - started))s" >&2
