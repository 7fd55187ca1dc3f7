#!/usr/bin/env bash
# `npm run test:k8s`: builds helm, kube-apiserver, kube-controller-manager and kubectl from their
# Go modules into the toolchain cache (a warm cache builds nothing), then runs the tests against
# the real chart and a real API server on loopback (test/k8s/*.k8s.test.ts). Extra arguments go
# to jest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

bin=$(bash test/lab/toolchain/ensure.sh helm kube-apiserver kube-controller-manager kubectl)
export ZT_HELM="$bin/helm" ZT_TOOLCHAIN_BIN="$bin"
echo "test:k8s: $("$ZT_HELM" version --short)" >&2
npx --no-install jest -c test/k8s/jest.config.js --runInBand "$@"
