#!/usr/bin/env bash
# Builds the named toolchain binaries unless the cache has them (build.sh; a warm cache builds
# nothing) and prints the folder that holds them. On failure prints build.sh's log to stderr
# and exits non-zero.
#
# Usage: bin=$(bash test/lab/toolchain/ensure.sh helm kubectl ...)
#        bin=$(bash test/lab/toolchain/ensure.sh --built helm ...)   builds nothing: exits 3, quietly,
#                                                                   unless all are built and current
set -euo pipefail
check_only=0
if [ "${1:-}" = --built ]; then
  check_only=1
  shift
fi
[ "$#" -gt 0 ] || {
  echo "usage: $0 [--built] binary..." >&2
  exit 2
}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
if ! TOOLCHAIN_CHECK_ONLY=$check_only bash "$(dirname "${BASH_SOURCE[0]}")/build.sh" "$@" >"$log" 2>&1; then
  [ "$check_only" = 0 ] || exit 3
  cat "$log" >&2
  echo "toolchain: building $* failed" >&2
  exit 1
fi
bin=$(sed -n 's/^toolchain bin: //p' "$log" | tail -n1)
for tool in "$@"; do
  [ -x "$bin/$tool" ] || {
    cat "$log" >&2
    echo "toolchain: no $tool in ${bin:-the toolchain}" >&2
    exit 1
  }
done
printf '%s\n' "$bin"
