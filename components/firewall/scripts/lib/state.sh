# shellcheck shell=bash disable=SC2034  # FW_STEP and the paths are used by the scripts this library is put ahead of
# Where the host firewall keeps its state, and how its scripts compare rulesets. A library:
# zerotouch puts it in the payload ahead of firewall.sh and firewall-confirm.sh; a script run
# by hand sources it from the checkout.

readonly CONF_DIR=/etc/zerotouch
readonly RULES="$CONF_DIR/firewall.nft"
readonly RULES_LIVE="$CONF_DIR/firewall.nft.live-sha256"
readonly STATE=/var/lib/zerotouch/firewall
readonly UNIT=zerotouch-firewall.service
readonly UNIT_FILE=/etc/systemd/system/$UNIT
readonly ROLLBACK=zerotouch-firewall-rollback

# Progress and errors on stderr, prefixed with the step (FW_STEP, set by the script) and node.
log() { printf '[%s %s] %s\n' "${FW_STEP:-firewall}" "${ZT_NODE:-?}" "$*" >&2; }
die() {
  log "error: $*"
  exit 1
}

have_table() { nft list table inet zerotouch >/dev/null 2>&1; }

# sha256 of the live table as nft prints it (stateless), or "absent".
live_hash() {
  if have_table; then
    nft -s list table inet zerotouch | sha256sum | cut -d' ' -f1
  else
    echo absent
  fi
}

# The hash in a rendered ruleset's header, or the file's own hash if it has none.
ruleset_hash() {
  local h
  h=$(sed -n '1,5s/^# sha256 \([0-9a-f]\{64\}\)$/\1/p' "$1")
  [ -n "$h" ] || h=$(sha256sum <"$1" | cut -d' ' -f1)
  echo "$h"
}
