#!/usr/bin/env bash
# The zerotouch lab: local Debian nodes with systemd and sshd, each in its own network
# namespace, reached over real SSH. See test/lab/README.md.
#
# Usage: lab.sh up       start the lab (or keep a healthy one that matches the settings)
#        lab.sh down     remove everything the lab put on the host
#        lab.sh status   show the nodes; exits 0 only when the lab is up and healthy
#        lab.sh throttle NODE IOPS   limit a running node's etcd disk to IOPS writes per
#                        second (0 lifts the limit); the lab's state keeps the disk as it was
#                        started (LAB_SLOW_NODES)
#        lab.sh delay NODE MS   delay everything the internet namespace (where the latency
#                        preflight's targets listen) sends to the node by MS ms (0 lifts it)
#
# Environment:
#   LAB_CONTROL_PLANES  control-plane nodes, lab-cp-1..N. Defaults to 3.
#   LAB_WORKERS         worker nodes, lab-worker-1..N. Defaults to 1.
#   LAB_SLOW_NODES      control-plane nodes whose etcd disk is throttled. Defaults to lab-cp-3.
#   LAB_SLOW_WRITE_IOPS write IOPS allowed on a slow etcd disk. Defaults to 40.
#   LAB_MAX_LATENCY_MS  the lab stack's preflight.maxLatencyMs. Defaults to 20.
#   LAB_FRESH=1         make `up` start a new lab even when a healthy one is running.
#   LAB_KEEP_ON_FAILURE=1  leave a failed `up` in place for inspection (`down` removes it).
#   LAB_STATE_DIR       state directory. Defaults to .lab in the repository root.
#   LAB_CACHE_DIR       where node images are kept. Defaults to /var/cache/zerotouch-lab.
set -euo pipefail

# shellcheck source-path=SCRIPTDIR source=lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

[ "$(id -u)" -eq 0 ] || die "the lab needs root (network namespaces, mounts, cgroups)"

# One lab command at a time on this host.
lock() {
  install -d -m 0755 "$RUN_DIR"
  exec 8>"$RUN_DIR/lock"
  timeout 300 flock 8 || die "another lab command holds $RUN_DIR/lock"
}

# The running lab is healthy when every node of the current settings runs and answers SSH
# with its pinned host key, and it was started from the current image.
healthy() {
  [ -f "$STATE_FILE" ] && [ -f "$KNOWN_HOSTS" ] || return 1
  local want have
  want="$(for n in $(node_names); do printf '%s %s\n' "$n" "$(is_slow "$n" && echo true || echo false)"; done)"
  have="$(jq -r '.nodes[] | "\(.name) \(.slowDisk)"' "$STATE_FILE")" || return 1
  [ "$want" = "$have" ] || return 1
  [ "$(jq -r .image "$STATE_FILE")" = "$("$LAB_HERE/rootfs.sh" --path)" ] || return 1
  local node
  for node in $(node_names); do
    node_pid "$node" >/dev/null || return 1
    LAB_SSH_TIMEOUT=10 lab_ssh "$node" true 2>/dev/null || return 1
  done
}

teardown_after_failure() {
  if [ "${LAB_KEEP_ON_FAILURE:-0}" = 1 ]; then
    log "up failed; LAB_KEEP_ON_FAILURE=1 keeps what was started for inspection (run lab.sh down after)"
    return 0
  fi
  log "up failed or was interrupted: tearing the lab down"
  lab_teardown || true
}

cmd_up() {
  # Ctrl-C ends the script even when it lands in a child that exits normally on it (timeout,
  # ssh); once the lab is being built, the EXIT trap below removes it.
  trap 'exit 130' INT
  trap 'exit 143' TERM
  validate_config
  lock
  build_standin
  if [ "${LAB_FRESH:-0}" != 1 ] && healthy; then
    targets_up
    write_pulumi_config
    log "lab is already up and healthy ($(node_names | paste -sd' ' -))"
    return 0
  fi
  local started=$SECONDS
  # From here on, any failure or interruption removes what this run (or an earlier, partial
  # one) put on the host.
  # The teardown itself is bounded and not interruptible: a second Ctrl-C must not leave half.
  trap 'rc=$?; trap "" INT TERM; trap - EXIT; if [ "$rc" -ne 0 ]; then teardown_after_failure; fi; exit "$rc"' EXIT

  ensure_host_packages
  if [ -n "$(lab_leftovers)" ] || [ -d "$RUN_DIR/nodes" ]; then
    log "removing the previous lab"
    lab_teardown
  fi
  local image
  image="$("$LAB_HERE/rootfs.sh")"
  ensure_keys

  log "network: bridge $BRIDGE ($HOST_ADDR, $VPN_GW, $INET_GW), clients zt-vpn ($VPN_CLIENT) and zt-internet ($INET_CLIENT)"
  net_up
  targets_up
  local node
  for node in $(node_names); do
    prepare_node "$node" "$image"
  done
  write_known_hosts

  log "starting $(node_names | paste -sd' ' -)"
  for node in $(node_names); do
    launch_node "$node"
  done
  # Wait for all nodes at once; each wait is bounded.
  local waits=() failed=0
  for node in $(node_names); do
    wait_node "$node" &
    waits+=("$!")
  done
  local pid
  for pid in "${waits[@]}"; do
    wait "$pid" || failed=1
  done
  [ "$failed" -eq 0 ] || die "not every node came up"

  write_state "$image"
  write_pulumi_config
  trap - EXIT INT TERM
  log "lab is up in $((SECONDS - started))s: state $STATE_FILE, stack config $PULUMI_LAB_FILE"
}

cmd_down() {
  lock
  trap '' INT
  lab_teardown
  log "lab is down; nothing of it is left on the host"
}

cmd_status() {
  if [ ! -f "$STATE_FILE" ]; then
    log "lab is down (no $STATE_FILE)"
    local left
    left="$(lab_leftovers)"
    [ -z "$left" ] || log "leftovers of an earlier lab (run lab.sh down):"$'\n'"$left"
    return 1
  fi
  local rc=0 name address pid ssh
  printf '%-14s %-14s %-13s %-9s %-6s %s\n' NODE ADDRESS ROLE PID SSH SLOW
  while read -r name address; do
    pid="$(node_pid "$name" || echo -)"
    ssh=ok
    LAB_SSH_TIMEOUT=10 lab_ssh "$name" true 2>/dev/null || {
      ssh=fail
      rc=1
    }
    [ "$pid" != - ] || rc=1
    printf '%-14s %-14s %-13s %-9s %-6s %s\n' "$name" "$address" "$(node_role "$name")" "$pid" "$ssh" \
      "$(jq -r --arg n "$name" '.nodes[] | select(.name == $n) | .slowDisk' "$STATE_FILE")"
  done < <(jq -r '.nodes[] | "\(.name) \(.address)"' "$STATE_FILE")
  return "$rc"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) cmd_status ;;
  throttle)
    [ "$#" -eq 3 ] || die "usage: $0 throttle NODE IOPS"
    lock
    throttle_disk "$2" "$3"
    ;;
  delay)
    [ "$#" -eq 3 ] || die "usage: $0 delay NODE MS"
    lock
    [ -f "$STATE_FILE" ] || die "delay: the lab is not up"
    delay_node "$2" "$3"
    ;;
  *)
    printf 'usage: %s up|down|status|throttle NODE IOPS|delay NODE MS\n' "$0" >&2
    exit 2
    ;;
esac
