#!/usr/bin/env bash
# Runs shellcheck on every shell script the project ships (components, lab, CI).
set -euo pipefail
cd "$(dirname "$0")/.."
# The shellcheck tool: installed as root on Debian, or a failure naming the apt-get line.
bash test/support/host-tools.sh ensure shellcheck
mapfile -t scripts < <(git ls-files -co --exclude-standard -- '*.sh' '.ci/run' | sort -u)
if [ "${#scripts[@]}" -eq 0 ]; then
  echo "shellcheck: no scripts found" >&2
  exit 1
fi
shellcheck --severity=style --external-sources "${scripts[@]}"
echo "shellcheck: ${#scripts[@]} scripts clean"
