#!/usr/bin/env bash
# `npm run test:k8s`: builds helm, kube-apiserver, kube-controller-manager and kubectl from their
# Go modules into the toolchain cache (a warm cache builds nothing), then runs the tests against
# the real chart and a real API server on loopback (test/k8s/*.k8s.test.ts). Extra arguments go
# to jest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

log=$(mktemp)
trap 'rm -f "$log"' EXIT
tools=(helm kube-apiserver kube-controller-manager kubectl)
if ! bash test/lab/toolchain/build.sh "${tools[@]}" >"$log" 2>&1; then
  cat "$log" >&2
  echo "test:k8s: building ${tools[*]} failed" >&2
  exit 1
fi
bin=$(sed -n 's/^toolchain bin: //p' "$log" | tail -n1)
for tool in "${tools[@]}"; do
  [ -x "$bin/$tool" ] || {
    cat "$log" >&2
    echo "test:k8s: no $tool in ${bin:-the toolchain}" >&2
    exit 1
  }
done
export ZT_HELM="$bin/helm" ZT_TOOLCHAIN_BIN="$bin"
echo "test:k8s: $("$ZT_HELM" version --short)" >&2
npx --no-install jest -c test/k8s/jest.config.js --runInBand "$@"
