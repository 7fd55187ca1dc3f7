#!/usr/bin/env bash
# `npm run test:gitops`: the GitOps loop for real (`run.sh bench`: `npm run bench:gitops`). Builds what it needs into the toolchain cache
# (Argo CD v3.6.2 from its Go module, helm, kube-apiserver, kube-controller-manager, kubectl; a
# warm cache builds nothing), installs the Debian tools (Redis, lighttpd, git), and runs the tests
# (test/gitops/*.gitops.test.ts). Everything runs on loopback and is stopped by the tests. Argo CD
# needs Go 1.27: build.sh runs its build with GOTOOLCHAIN=go1.27.3 (its wrapper module says so).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

if [ "$(id -u)" -ne 0 ]; then
  echo "test:gitops: run as root (it installs Debian tools and starts servers)" >&2
  exit 1
fi

started=$SECONDS
bash test/support/host-tools.sh ensure
ZT_TOOLCHAIN_BIN=$(bash test/lab/toolchain/ensure.sh argocd argocd-server argocd-repo-server argocd-application-controller helm kube-apiserver kube-controller-manager kubectl)
export ZT_TOOLCHAIN_BIN ZT_HELM="$ZT_TOOLCHAIN_BIN/helm"
echo "test:gitops: toolchain ready after $((SECONDS - started))s ($ZT_TOOLCHAIN_BIN)" >&2
if [ "${1:-}" = bench ]; then
  npx --no-install ts-node --transpile-only test/bench/gitops.ts
else
  npx --no-install jest -c test/gitops/jest.config.js --runInBand "$@"
fi
echo "test:gitops: done after $((SECONDS - started))s" >&2
