#!/usr/bin/env bash
# Host firewall, apply step: loads the `inet zerotouch` nftables table behind a rollback timer.
#
# create: checks the ruleset with `nft -c`; when the confirmed ruleset is already live, changes
#         nothing. Otherwise saves the last good state of the table, arms a transient systemd
#         timer that restores it after ZT_ROLLBACK_SECONDS, and loads the new ruleset
#         atomically. The ruleset is "pending" until firewall-confirm.sh, run over a new SSH
#         connection, cancels the timer and makes it persistent. A pending ruleset is neither
#         persistent nor kept past the timer, so a ruleset that locks SSH out undoes itself.
# delete: removes the table, the boot unit and every file this step wrote, unless a newer
#         apply (a replacement of this step) owns the firewall now.
#
# Parameters:
#   ZT_ACTION            create | delete
#   ZT_NODE              node name (for messages)
#   ZT_RULESET           the nftables file rendered by components/firewall/rules.ts
#   ZT_ROLLBACK_SECONDS  seconds until an unconfirmed ruleset is rolled back (default 60)
set -euo pipefail

# State paths, log, die, live_hash, ruleset_hash: in the payload ahead of this script, or from
# the checkout.
if ! declare -F live_hash >/dev/null; then
  # shellcheck source=components/firewall/scripts/lib/state.sh
  . "$(dirname "${BASH_SOURCE[0]}")/lib/state.sh"
fi
FW_STEP=firewall

[ "$(id -u)" -eq 0 ] || die "must run as root"
action="${ZT_ACTION:?ZT_ACTION must be create or delete}"
node="${ZT_NODE:?ZT_NODE is required}"
[[ "$node" =~ ^[a-z0-9][-a-z0-9.]*$ ]] || die "ZT_NODE '$node' is not a node name"

# This run's identity: the payload file (script and parameters). A replacement of this step
# (create of the new payload before delete of the old one) is told apart by it.
if [ -f "$0" ]; then
  self_id=$(sha256sum <"$0" | cut -d' ' -f1)
else
  self_id=$(printf '%s\0' "$node" "${ZT_RULESET:-}" "${ZT_ROLLBACK_SECONDS:-}" | sha256sum | cut -d' ' -f1)
fi


stop_rollback() {
  systemctl stop "$ROLLBACK.timer" "$ROLLBACK.service" >/dev/null 2>&1 || true
  systemctl reset-failed "$ROLLBACK.timer" "$ROLLBACK.service" >/dev/null 2>&1 || true
}

lock_state() {
  mkdir -p "$STATE"
  chmod 700 "$STATE"
  exec 9>"$STATE/lock"
  flock -w 60 9 || die "another firewall step holds $STATE/lock for more than 60s"
}

ensure_nft() {
  command -v nft >/dev/null 2>&1 && return 0
  command -v apt-get >/dev/null 2>&1 || die "nft is missing and there is no apt-get to install nftables"
  log "installing nftables"
  export DEBIAN_FRONTEND=noninteractive
  timeout 300 apt-get -o DPkg::Lock::Timeout=120 -qq update >&2 || die "apt-get update failed"
  timeout 600 apt-get -o DPkg::Lock::Timeout=120 -qq install -y --no-install-recommends nftables >&2 ||
    die "apt-get install nftables failed"
  command -v nft >/dev/null 2>&1 || die "nft is still missing after installing nftables"
}

do_create() {
  local ruleset="${ZT_RULESET:?ZT_RULESET is required}"
  local seconds="${ZT_ROLLBACK_SECONDS:-60}"
  if ! [[ "$seconds" =~ ^[0-9]{1,4}$ ]] || [ "$seconds" -lt 5 ] || [ "$seconds" -gt 3600 ]; then
    die "ZT_ROLLBACK_SECONDS '$seconds' must be a whole number of seconds from 5 to 3600"
  fi
  ensure_nft
  lock_state

  local candidate="$STATE/candidate.nft"
  printf '%s' "$ruleset" >"$candidate"
  local msg
  if ! msg=$(nft -c -f "$candidate" 2>&1); then
    rm -f "$candidate"
    die "nft rejects the ruleset:
$msg"
  fi
  local hash
  hash=$(ruleset_hash "$candidate")

  local live
  live=$(live_hash)
  if [ "$live" != absent ] && cmp -s "$candidate" "$RULES" && [ -f "$RULES_LIVE" ] &&
    [ "$live" = "$(cat "$RULES_LIVE")" ]; then
    # The confirmed ruleset is live: nothing to do. A leftover pending apply has been rolled
    # back already (the live table is the confirmed one), so forget it.
    if [ -f "$STATE/pending.nft" ]; then
      stop_rollback
      rm -f "$STATE/pending.nft" "$STATE/pending.live-sha256" "$STATE/rollback.nft"
    fi
    rm -f "$candidate"
    echo "$self_id" >"$STATE/owner"
    log "ruleset $hash is live and confirmed; nothing to do"
    printf '{"node":"%s","action":"create","changed":false,"hash":"%s","rollbackArmed":false}\n' "$node" "$hash"
    return 0
  fi

  local state
  state=$(systemctl is-system-running 2>/dev/null || true)
  case "$state" in
  "" | offline | unknown) die "systemd is not running (state '${state:-none}'): the rollback timer cannot be armed" ;;
  esac

  # The state to roll back to is the last confirmed one: while an earlier apply is still
  # unconfirmed, its saved state stays (that apply may have been the lockout).
  if [ ! -f "$STATE/pending.nft" ] || [ ! -f "$STATE/rollback.nft" ]; then
    {
      printf 'table inet zerotouch\ndelete table inet zerotouch\n'
      if [ "$live" != absent ]; then nft -s list table inet zerotouch; fi
    } >"$STATE/rollback.nft.tmp"
    mv "$STATE/rollback.nft.tmp" "$STATE/rollback.nft"
    log "saved the current table ($live) as the rollback state"
  else
    log "an earlier apply is unconfirmed; keeping its rollback state"
  fi

  stop_rollback
  # AccuracySec: timers may otherwise fire up to a minute late (the default coalescing window).
  systemd-run --quiet --collect --unit="$ROLLBACK" --on-active="${seconds}s" --timer-property=AccuracySec=1s \
    --description="zerotouch: restore the previous firewall unless confirmed" \
    "$(command -v nft)" -f "$STATE/rollback.nft" >&2 || die "cannot arm the rollback timer with systemd-run"
  log "rollback armed: $ROLLBACK.timer fires in ${seconds}s unless confirmed"

  if ! msg=$(nft -f "$candidate" 2>&1); then
    # nft -f is atomic: nothing changed. An earlier unconfirmed apply stays under the timer.
    [ -f "$STATE/pending.nft" ] || stop_rollback
    die "nft -f failed (nothing was changed):
$msg"
  fi
  live_hash >"$STATE/pending.live-sha256"
  mv "$candidate" "$STATE/pending.nft"
  echo "$self_id" >"$STATE/owner"
  log "ruleset $hash applied; pending confirmation"
  printf '{"node":"%s","action":"create","changed":true,"hash":"%s","rollbackArmed":true,"rollbackSeconds":%s}\n' \
    "$node" "$hash" "$seconds"
}

do_delete() {
  if [ -f "$STATE/owner" ] && [ "$(cat "$STATE/owner")" != "$self_id" ]; then
    log "a newer apply owns the firewall (this one was replaced); leaving it"
    printf '{"node":"%s","action":"delete","changed":false,"superseded":true}\n' "$node"
    return 0
  fi
  local changed=false
  if [ -d "$STATE" ]; then lock_state; fi
  if command -v systemctl >/dev/null 2>&1; then
    stop_rollback
    if [ -f "$UNIT_FILE" ]; then
      systemctl disable --now zerotouch-firewall.service >/dev/null 2>&1 || true
      rm -f "$UNIT_FILE"
      systemctl daemon-reload >/dev/null 2>&1 || true
      changed=true
      log "removed zerotouch-firewall.service"
    fi
  fi
  if [ -e "$RULES" ] || [ -e "$RULES_LIVE" ]; then
    rm -f "$RULES" "$RULES_LIVE"
    changed=true
  fi
  rmdir "$CONF_DIR" 2>/dev/null || true
  if command -v nft >/dev/null 2>&1 && have_table; then
    nft delete table inet zerotouch
    changed=true
    log "deleted table inet zerotouch"
  fi
  if [ -d "$STATE" ]; then
    rm -rf "$STATE"
    changed=true
  fi
  rmdir /var/lib/zerotouch 2>/dev/null || true
  printf '{"node":"%s","action":"delete","changed":%s}\n' "$node" "$changed"
}

case "$action" in
create) do_create ;;
delete) do_delete ;;
*) die "ZT_ACTION '$action' must be create or delete" ;;
esac
