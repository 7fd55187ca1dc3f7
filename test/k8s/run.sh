#!/usr/bin/env bash
# `npm run test:k8s`: builds helm from its Go module into the toolchain cache (a warm cache
# builds nothing), then runs the tests against the real chart (test/k8s/*.k8s.test.ts).
# Extra arguments go to jest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! bash test/lab/toolchain/build.sh helm >"$log" 2>&1; then
  cat "$log" >&2
  echo "test:k8s: building helm failed" >&2
  exit 1
fi
bin=$(sed -n 's/^toolchain bin: //p' "$log" | tail -n1)
[ -x "$bin/helm" ] || {
  cat "$log" >&2
  echo "test:k8s: no helm in ${bin:-the toolchain}" >&2
  exit 1
}
export ZT_HELM="$bin/helm"
echo "test:k8s: $("$ZT_HELM" version --short)" >&2
npx --no-install jest -c test/k8s/jest.config.js --runInBand "$@"
