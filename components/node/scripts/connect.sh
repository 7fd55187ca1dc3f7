#!/usr/bin/env bash
# Connect phase: the SSH dial itself is retried (bounded) by the caller; this waits, bounded,
# until the node has finished booting, and reports who answered: hostname and host key.
# Parameters: ZT_NODE, ZT_BOOT_TIMEOUT_SECONDS (default 120). Read-only on the node.
set -euo pipefail

node="${ZT_NODE:?ZT_NODE is required}"
boot_timeout="${ZT_BOOT_TIMEOUT_SECONDS:-120}"
action="${ZT_ACTION:-create}"

# json_string, read_only_delete: in the payload ahead of this script, or from the checkout.
if ! declare -F json_string >/dev/null; then
  # shellcheck source=components/lib/scripts/common.sh
  . "$(dirname "${BASH_SOURCE[0]}")/../../lib/scripts/common.sh"
fi
[ "$action" != delete ] || read_only_delete "$node"

boot_state="unknown"
if command -v systemctl >/dev/null 2>&1; then
  # "running" or "degraded" means boot finished; --wait blocks until then, bounded by timeout.
  boot_state=$(timeout "$boot_timeout" systemctl is-system-running --wait 2>/dev/null || true)
  case "$boot_state" in
    running|degraded) ;;
    *)
      echo "zerotouch: node $node: boot did not finish within ${boot_timeout}s (systemctl is-system-running: ${boot_state:-no answer})" >&2
      exit 2
      ;;
  esac
fi

if [ ! -r /etc/ssh/ssh_host_ed25519_key.pub ]; then
  echo "zerotouch: node $node: sshd has no ed25519 host key (/etc/ssh/ssh_host_ed25519_key.pub); run ssh-keygen -A on the node so its key can be pinned" >&2
  exit 2
fi
read -r key_type key_body _ < /etc/ssh/ssh_host_ed25519_key.pub
host_key="$key_type $key_body"

printf '{"node":%s,"hostname":%s,"hostKey":%s,"bootState":%s}\n' \
  "$(json_string "$node")" "$(json_string "$(hostname)")" \
  "$(json_string "$host_key")" "$(json_string "$boot_state")"
