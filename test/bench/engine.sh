#!/usr/bin/env bash
# `npm run bench:engine`: wall time of the real `pulumi up` on the lab, one node and four nodes in
# one run, each followed by the no-op `up` and `destroy` (test/bench/engine.ts). Builds the
# toolchain if needed (test/lab/toolchain), starts a new lab with every etcd disk fast (three
# control-plane nodes, one worker), and always brings it down at the end.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source-path=SCRIPTDIR source=../engine/engine.sh
source test/engine/engine.sh

lab_root_only bench:engine

ZT_TOOLCHAIN_BIN=$(bash test/lab/toolchain/ensure.sh "${ENGINE_TOOLS[@]}")
export ZT_TOOLCHAIN_BIN
trap 'bash test/lab/lab.sh down' EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
export LAB_CONTROL_PLANES=3 LAB_WORKERS=1 LAB_SLOW_NODES="" LAB_FRESH=1
bash test/lab/lab.sh up
npx --no-install ts-node --transpile-only test/bench/engine.ts
