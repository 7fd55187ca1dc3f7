#!/usr/bin/env bash
# Host firewall, confirm step: runs over a new SSH connection after firewall.sh has loaded a
# ruleset. Getting here proves that the new rules still let SSH in, so it cancels the rollback
# timer, stores the ruleset as the persistent one and enables the boot unit that loads it.
# If the rules cut SSH, this step never connects and the timer restores the previous table.
#
# create: confirms the pending ruleset (fails if it was already rolled back); when the ruleset
#         is already confirmed and live, only checks that the boot unit is in place.
# delete: nothing (the apply step's delete removes the firewall).
#
# Parameters:
#   ZT_ACTION        create | delete
#   ZT_NODE          node name (for messages)
#   ZT_RULESET_HASH  the hash in the header of the ruleset to confirm
#   ZT_APPLY         hash of the apply step's payload: not read, it makes this step run again
#                    after every run of the apply step
set -euo pipefail

# State paths, log, die, live_hash, ruleset_hash: in the payload ahead of this script, or from
# the checkout.
if ! declare -F live_hash >/dev/null; then
  # shellcheck source=components/firewall/scripts/lib/state.sh
  . "$(dirname "${BASH_SOURCE[0]}")/lib/state.sh"
fi
FW_STEP=firewall-confirm

[ "$(id -u)" -eq 0 ] || die "must run as root"
action="${ZT_ACTION:?ZT_ACTION must be create or delete}"
node="${ZT_NODE:?ZT_NODE is required}"
[[ "$node" =~ ^[a-z0-9][-a-z0-9.]*$ ]] || die "ZT_NODE '$node' is not a node name"

if [ "$action" = delete ]; then
  printf '{"node":"%s","action":"delete","changed":false}\n' "$node"
  exit 0
fi
[ "$action" = create ] || die "ZT_ACTION '$action' must be create or delete"
want="${ZT_RULESET_HASH:?ZT_RULESET_HASH is required}"
[[ "$want" =~ ^[0-9a-f]{64}$ ]] || die "ZT_RULESET_HASH '$want' is not a sha256"
command -v nft >/dev/null 2>&1 || die "nft is not installed: run the apply step first"


# Writes and enables the boot unit; prints "changed" if it had to do anything.
ensure_unit() {
  local unit
  unit="[Unit]
Description=zerotouch host firewall (nftables table inet zerotouch)
Documentation=file://$RULES
DefaultDependencies=no
Wants=network-pre.target
Before=network-pre.target shutdown.target
After=nftables.service
Conflicts=shutdown.target
# nftables.service flushes the whole ruleset when it (re)starts or reloads: load again after it.
PartOf=nftables.service
ReloadPropagatedFrom=nftables.service

[Service]
Type=oneshot
RemainAfterExit=yes
StandardInput=null
ExecStart=$(command -v nft) -f $RULES
ExecReload=$(command -v nft) -f $RULES

[Install]
WantedBy=multi-user.target"
  local did=""
  if [ "$(cat "$UNIT_FILE" 2>/dev/null || true)" != "$unit" ]; then
    printf '%s\n' "$unit" >"$UNIT_FILE.tmp"
    mv "$UNIT_FILE.tmp" "$UNIT_FILE"
    systemctl daemon-reload >&2
    did=changed
  fi
  if ! systemctl is-enabled --quiet "$UNIT" 2>/dev/null; then
    systemctl enable --quiet "$UNIT" >&2
    did=changed
  fi
  # Active, so that a restart or reload of nftables.service loads the table again. Starting it
  # loads the file that is live already, which changes nothing.
  if ! systemctl is-active --quiet "$UNIT"; then
    systemctl start "$UNIT" >&2
    did=changed
  fi
  echo "$did"
}

[ -d "$STATE" ] || die "ruleset $want was never applied on this node: run the apply step first"
exec 9>"$STATE/lock"
flock -w 60 9 || die "another firewall step holds $STATE/lock for more than 60s"

changed=false
if [ -f "$STATE/pending.nft" ]; then
  pending=$(ruleset_hash "$STATE/pending.nft")
  [ "$pending" = "$want" ] || die "the pending ruleset is $pending, not $want: run the apply step for this ruleset first"
  # Cancel the timer first: from here on the live table cannot change under us.
  systemctl stop "$ROLLBACK.timer" "$ROLLBACK.service" >/dev/null 2>&1 || true
  systemctl reset-failed "$ROLLBACK.timer" "$ROLLBACK.service" >/dev/null 2>&1 || true
  live=$(live_hash)
  [ "$live" = "$(cat "$STATE/pending.live-sha256")" ] ||
    die "ruleset $want was rolled back before it was confirmed (the live table is no longer the one applied). The rules probably cut the SSH path of this step; fix them and apply again."
  install -d -m 755 "$CONF_DIR"
  cp "$STATE/pending.nft" "$RULES.tmp"
  cp "$STATE/pending.live-sha256" "$RULES_LIVE.tmp"
  mv "$RULES.tmp" "$RULES"
  mv "$RULES_LIVE.tmp" "$RULES_LIVE"
  ensure_unit >/dev/null
  rm -f "$STATE/pending.nft" "$STATE/pending.live-sha256" "$STATE/rollback.nft"
  changed=true
  log "ruleset $want confirmed: rollback cancelled, $UNIT loads it at boot"
elif [ -f "$RULES" ] && [ "$(ruleset_hash "$RULES")" = "$want" ] && [ -f "$RULES_LIVE" ] &&
  [ "$(live_hash)" = "$(cat "$RULES_LIVE")" ]; then
  [ -z "$(ensure_unit)" ] || changed=true
  log "ruleset $want was confirmed already"
else
  die "ruleset $want is not live on this node: nothing to confirm (run the apply step first)"
fi

printf '{"node":"%s","action":"create","confirmed":true,"hash":"%s","changed":%s}\n' "$node" "$want" "$changed"
