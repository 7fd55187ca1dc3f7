#!/usr/bin/env bash
# One etcd member on its node: certificates, systemd unit, first start (forming the cluster or
# joining it), restart on change, and a bounded health gate; delete stops it and keeps its data.
#
# Members change one at a time: zerotouch runs this step for one member after another, and each
# run ends only once the member and the whole cluster report healthy.
#
# First start (empty data directory):
#   - the bootstrap member (ZT_BOOTSTRAP=true) forms a one-member cluster (state new);
#   - any other member joins through ZT_JOIN_ENDPOINT and the started members it lists: `member
#     add` (a member already added, e.g. by an interrupted run, is taken as it is), then starts
#     with state existing and the member list as its initial cluster. Whether the add happened
#     is read from the member list, never from the answer alone (which a leader change can lose).
#   Who the members are is known only then, so --initial-cluster and --initial-cluster-state go
#   into ZT_ENV_FILE, which the unit reads; etcd ignores them once its data directory exists.
# A node that was a member (its record under /var/lib/zerotouch/etcd says so) but whose data
# directory is empty is refused: forming or joining again would hide a lost disk. Restore from a
# snapshot (docs/etcd-restore.md) or remove the member by hand first.
#
# Later runs (data directory present): certificates and unit are rewritten if they differ, and
# the member restarts only if one of them changed (or it was not running).
#
# Delete: a newer payload of this step (Pulumi creates a replacement before it deletes the old
# one) owns the member, and then nothing is done. Otherwise: while other members run, the member
# is removed from the cluster first (so the quorum shrinks with it), through the members that
# stay, never through itself (a member applying its own removal stops, and its answer is lost);
# a leader first hands leadership on. The removal counts only once a surviving member's list no
# longer holds it; if that cannot be confirmed, the delete fails and the member keeps running
# (stopping it could cost the rest their quorum). Its data is then moved aside to
# <data dir>/member.removed-<UTC time>, since a removed member's data cannot start again; the
# last member keeps its data in place. Then the service stops and the unit, bootstrap file and
# private keys go. The data is deleted only with ZT_WIPE_DATA_ON_DELETE=true.
#
# Parameters (environment):
#   ZT_ACTION            create | delete
#   ZT_NODE              member (node) name, a DNS label
#   ZT_ETCD, ZT_ETCDCTL  the etcd and etcdctl binaries (installed by the install step)
#   ZT_USER              the unprivileged user etcd runs as (exists already)
#   ZT_DATA_DIR          etcd's data directory (the path the fsync gate measured)
#   ZT_PKI_DIR           where certificates and keys go (ca.crt, server.*, peer.*, backup.*)
#   ZT_UNIT_NAME         the unit's name (etcd.service); ZT_UNIT its text
#   ZT_ENV_FILE          the bootstrap environment file the unit reads
#   ZT_PEER_URL          this member's peer URL; ZT_CLIENT_URL its advertised client URL
#   ZT_LOCAL_ENDPOINT    the client URL etcdctl uses on the node (https://127.0.0.1:2379)
#   ZT_BOOTSTRAP         true for the member that forms the cluster
#   ZT_JOIN_ENDPOINT     client URL of a running member, for joining (not for the bootstrap member)
#   ZT_HEALTH_TIMEOUT    longest wait for the member and the cluster to be healthy, s (10-1800)
#   ZT_WIPE_DATA_ON_DELETE  true to delete the data directory on delete (default false)
#   ZT_CA_CERT, ZT_SERVER_CERT, ZT_SERVER_KEY, ZT_PEER_CERT, ZT_PEER_KEY, ZT_CLIENT_CERT,
#   ZT_CLIENT_KEY        PEM texts (create only). Keys are never printed.
#
# Output: progress on stderr; one JSON object as the last line of stdout. Exit codes: 0 done,
# 1 failure, 2 invalid parameter, 3 health gate failed.
set -euo pipefail

# json_string: in the payload ahead of this script, or from the checkout.
if ! declare -F log >/dev/null; then
  # shellcheck source=components/lib/scripts/common.sh
  . "$(dirname "${BASH_SOURCE[0]}")/../../lib/scripts/common.sh"
fi

readonly STATE=/var/lib/zerotouch/etcd
readonly name_re='^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$'
readonly path_re='^/[A-Za-z0-9._/-]*[A-Za-z0-9._-]$'
readonly url_re='^https://[][A-Za-z0-9.:-]+:[0-9]{1,5}$'

log_prefix="[etcd-member ${ZT_NODE:-?}]"

action="${ZT_ACTION:-}"
node="${ZT_NODE:-}"
check_action "$action" create delete
[[ "$node" =~ $name_re ]] || invalid "ZT_NODE must be a DNS label, got '${node}'"

need_path() {
  local key=$1 value=${!1:-}
  [[ "$value" =~ $path_re && "$value" != *..* ]] || invalid "$key must be an absolute path without '..', got '${value}'"
}
need_url() {
  local key=$1 value=${!1:-}
  [[ "$value" =~ $url_re ]] || invalid "$key must be an https URL as https://host:port, got '${value}'"
}

for key in ZT_ETCD ZT_ETCDCTL ZT_DATA_DIR ZT_PKI_DIR ZT_ENV_FILE; do need_path "$key"; done
for key in ZT_PEER_URL ZT_CLIENT_URL ZT_LOCAL_ENDPOINT; do need_url "$key"; done
user="${ZT_USER:-}"
[[ "$user" =~ ^[a-z_][a-z0-9_-]{0,31}$ && "$user" != root ]] || invalid "ZT_USER must be an unprivileged user name, got '${user}'"
unit_name="${ZT_UNIT_NAME:-}"
[[ "$unit_name" =~ ^[a-z0-9][a-z0-9_.-]*\.service$ ]] || invalid "ZT_UNIT_NAME must be a service unit name, got '${unit_name}'"
timeout_s="${ZT_HEALTH_TIMEOUT:-180}"
if ! [[ "$timeout_s" =~ ^[0-9]+$ ]] || ((timeout_s < 10 || timeout_s > 1800)); then
  invalid "ZT_HEALTH_TIMEOUT must be 10 to 1800 seconds, got '${timeout_s}'"
fi
bootstrap="${ZT_BOOTSTRAP:-false}"
[[ "$bootstrap" =~ ^(true|false)$ ]] || invalid "ZT_BOOTSTRAP must be true or false, got '${bootstrap}'"
wipe="${ZT_WIPE_DATA_ON_DELETE:-false}"
[[ "$wipe" =~ ^(true|false)$ ]] || invalid "ZT_WIPE_DATA_ON_DELETE must be true or false, got '${wipe}'"
if [ "$bootstrap" = false ]; then need_url ZT_JOIN_ENDPOINT; fi
[ "$ZT_DATA_DIR" != / ] || invalid "ZT_DATA_DIR must not be /"

readonly data_dir=$ZT_DATA_DIR pki=$ZT_PKI_DIR unit_file=/etc/systemd/system/$unit_name
readonly ca=$ZT_PKI_DIR/ca.crt client_cert=$ZT_PKI_DIR/backup.crt client_key=$ZT_PKI_DIR/backup.key

# This run's identity: the payload file (script and parameters).
if [ -f "$0" ]; then
  self_id=$(sha256sum <"$0" | cut -d' ' -f1)
else
  self_id=$(printf '%s\0' "$node" "${ZT_UNIT:-}" "$data_dir" | sha256sum | cut -d' ' -f1)
fi

mkdir -p "$STATE"
chmod 700 "$STATE"
exec 9>"$STATE/lock"
flock -w 120 9 || die "another etcd step holds $STATE/lock for more than 120s"

# etcdctl against one endpoint with the node's client certificate; bounded.
ctl() {
  local endpoint=$1
  shift
  ETCDCTL_API=3 timeout 30 "$ZT_ETCDCTL" --endpoints="$endpoint" --cacert="$ca" --cert="$client_cert" \
    --key="$client_key" --dial-timeout=5s --command-timeout=20s "$@"
}

# Simple `member list` output: "<id>, <status>, <name>, <peer urls>, <client urls>[, <learner>]",
# as the member asked has it (serializable). etcdctl 3.6 lists linearizably by default, which
# needs quorum: between `member add` and the new member's start, a cluster of two has none, so the
# add could never be confirmed. etcdctl 3.4 and 3.5 have no such flag and always list this way.
member_lines() {
  local consistency=()
  if timeout 10 "$ZT_ETCDCTL" member list --help 2>/dev/null | grep -q -- '--consistency'; then
    consistency=(--consistency=s)
  fi
  ctl "$1" member list "${consistency[@]}" 2>/dev/null
}

# hand_over_leadership <before what> <doing what>: when the local member leads, it hands
# leadership to another started member first (`move-leader`); otherwise the others wait out an
# election timeout, and writes fail meanwhile. A failed hand-over is logged, not fatal.
hand_over_leadership() {
  local status me other
  status=$(ctl "$ZT_LOCAL_ENDPOINT" endpoint status 2>/dev/null | head -n1 || true)
  [ "$(printf '%s\n' "$status" | awk -F', ' '{ print $5 }')" = true ] || return 0
  me=$(printf '%s\n' "$status" | awk -F', ' '{ print $2 }')
  other=$(member_lines "$ZT_LOCAL_ENDPOINT" | awk -F', ' -v me="$me" '$2 == "started" && $1 != me { print $1; exit }' || true)
  [ -n "$other" ] || return 0
  log "moving leadership to member ${other} before $1"
  ctl "$ZT_LOCAL_ENDPOINT" move-leader "$other" >&2 || log "move-leader failed; $2 anyway (an election follows)"
}

has_data() { [ -d "$data_dir/member/wal" ] && [ -n "$(ls -A "$data_dir/member/wal" 2>/dev/null)" ]; }

journal_tail() {
  journalctl -u "$unit_name" -n 25 --no-pager -o cat 2>/dev/null | sed 's/^/  journal: /' >&2 || true
}

# Client URLs of the started members other than <id>, comma-separated, from member list output.
other_endpoints() {
  awk -F', ' -v id="$1" '$1 != id && $2 == "started" && NF >= 5 { n = split($5, u, ","); for (i = 1; i <= n; i++) printf "%s%s", sep, u[i]; sep = "," }'
}

# The members that stay decide (never the one leaving: a member that applies its own removal
# stops, so its answer may be lost or "server stopped" although the removal was committed).
# remove_member <id> <survivor endpoints>: sets removed=true once a survivor's member list no
# longer holds <id>; etcd's own refusal to lose quorum ("unhealthy cluster") and lost answers are
# retried within the health timeout. Returns 1 when the removal is not confirmed.
remove_member() {
  local id=$1 survivors=$2 out list deadline
  deadline=$(($(date +%s) + timeout_s))
  while :; do
    out=$(ctl "$survivors" member remove "$id" 2>&1) || true
    if list=$(member_lines "$survivors"); then
      if ! printf '%s\n' "$list" | awk -F', ' -v id="$id" '$1 == id { f = 1 } END { exit !f }'; then
        removed=true
        log "member ${id} is no longer in the member list of the members that stay"
        return 0
      fi
    fi
    if [ "$(date +%s)" -ge "$deadline" ]; then
      log "member remove not confirmed within ${timeout_s}s (etcd.healthTimeoutSeconds): $(printf '%s' "$out" | grep -v '"level":"warn"' | head -n2)"
      return 1
    fi
    case "$out" in
      *"unhealthy cluster"*) log "etcd refuses to remove a member now (unhealthy cluster: the rest would lose quorum or members connected only now); retrying" ;;
      *) log "member ${id} is still listed ($(printf '%s' "$out" | grep -v '"level":"warn"' | head -n1)); retrying" ;;
    esac
    sleep 2
  done
}

if [ "$action" = delete ]; then
  if [ -f "$STATE/owner" ] && [ "$(cat "$STATE/owner")" != "$self_id" ]; then
    log "a newer deployment of this member owns it; nothing to undo"
    printf '{"action":"delete","node":%s,"changed":false,"owner":"newer"}\n' "$(json_string "$node")"
    exit 0
  fi
  removed=false
  kept=""
  if [ -f "$client_key" ]; then
    # The member list, from this member if it runs, else from the members it last saw.
    lines=""
    if systemctl is-active --quiet "$unit_name"; then
      lines=$(member_lines "$ZT_LOCAL_ENDPOINT" || true)
    fi
    if [ -z "$lines" ] && [ -s "$STATE/endpoints" ]; then
      lines=$(member_lines "$(cat "$STATE/endpoints")" || true)
    fi
    id=$(printf '%s\n' "$lines" | awk -F', ' -v u="$ZT_PEER_URL" '$4 == u { print $1 }' | head -n1)
    survivors=$(printf '%s\n' "$lines" | other_endpoints "$id")
    if [ -n "$id" ] && [ -n "$survivors" ]; then
      total=$(printf '%s\n' "$lines" | grep -c ', started, ' || true)
      # Removing the leader itself would make the others wait out an election.
      hand_over_leadership "leaving" "removing"
      log "removing member ${id} through the members that stay (${survivors}); ${total} members started"
      remove_member "$id" "$survivors" ||
        die "member ${id} could not be removed; it keeps running and its data stays as it is (stopping it now could cost the cluster its quorum). Check 'etcdctl endpoint health --cluster' and run again"
    fi
  fi
  systemctl disable --now "$unit_name" >/dev/null 2>&1 || true
  rm -f "$unit_file" "$ZT_ENV_FILE"
  systemctl daemon-reload || true
  rm -f "$pki/server.key" "$pki/peer.key" "$client_key"
  if [ "$wipe" = true ]; then
    log "etcd.wipeDataOnDelete is true: deleting the contents of ${data_dir}"
    # The contents, not the directory: it is often a mount point of its own.
    if [ -d "$data_dir" ]; then find "$data_dir" -xdev -mindepth 1 -delete; fi
    rm -f "$STATE/member"
  elif [ "$removed" = true ] && [ -d "$data_dir/member" ]; then
    # Inside the data directory, which is often a mount point of its own.
    kept="${data_dir}/member.removed-$(date -u +%Y%m%dT%H%M%SZ)"
    mv "$data_dir/member" "$kept"
    rm -f "$STATE/member"
    log "the member left the cluster; its data is kept at ${kept}"
  elif [ -d "$data_dir" ]; then
    kept=$data_dir
    log "the data is kept at ${kept} (set etcd.wipeDataOnDelete to delete it)"
  fi
  rm -f "$STATE/owner"
  printf '{"action":"delete","node":%s,"changed":true,"removedFromCluster":%s,"wiped":%s,"dataKept":%s}\n' \
    "$(json_string "$node")" "$removed" "$wipe" "$([ -n "$kept" ] && json_string "$kept" || echo null)"
  exit 0
fi

for key in ZT_CA_CERT ZT_SERVER_CERT ZT_SERVER_KEY ZT_PEER_CERT ZT_PEER_KEY ZT_CLIENT_CERT ZT_CLIENT_KEY ZT_UNIT; do
  [ -n "${!key:-}" ] || invalid "$key is empty"
done
for key in ZT_CA_CERT ZT_SERVER_CERT ZT_PEER_CERT ZT_CLIENT_CERT; do
  [[ "${!key}" == "-----BEGIN CERTIFICATE-----"* ]] || invalid "$key is not a PEM certificate"
done
for key in ZT_SERVER_KEY ZT_PEER_KEY ZT_CLIENT_KEY; do
  [[ "${!key}" == "-----BEGIN "*"PRIVATE KEY"* ]] || invalid "$key is not a PEM private key (not shown)"
done
[ -x "$ZT_ETCD" ] || die "etcd is not installed at ${ZT_ETCD}"
[ -x "$ZT_ETCDCTL" ] || die "etcdctl is not installed at ${ZT_ETCDCTL}"
id -u "$user" >/dev/null 2>&1 || die "the user ${user} does not exist (the install step creates it)"
version=$("$ZT_ETCD" --version 2>/dev/null | sed -n 's/^etcd Version: *//p' | head -n1)

changed=false
# put <file> <mode> <owner:group> <content>: writes atomically if the content or mode differs.
put() {
  local file=$1 mode=$2 owner=$3 content=$4 tmp
  # $(...) drops trailing newlines on both sides: PEM texts end with one, the files too.
  if [ -f "$file" ] && [ "$(cat "$file")" = "$(printf '%s' "$content")" ] &&
    [ "$(stat -c '%a %U:%G' "$file")" = "${mode#0} $owner" ]; then
    return 0
  fi
  tmp=$(mktemp "${file}.XXXXXX")
  printf '%s\n' "$content" >"$tmp"
  chown "$owner" "$tmp"
  chmod "$mode" "$tmp"
  mv -f "$tmp" "$file"
  changed=true
}

install -d -m 0750 -o root -g "$user" "$pki"
put "$ca" 0644 root:root "$ZT_CA_CERT"
put "$pki/server.crt" 0644 root:root "$ZT_SERVER_CERT"
put "$pki/server.key" 0640 "root:$user" "$ZT_SERVER_KEY"
put "$pki/peer.crt" 0644 root:root "$ZT_PEER_CERT"
put "$pki/peer.key" 0640 "root:$user" "$ZT_PEER_KEY"
put "$client_cert" 0644 root:root "$ZT_CLIENT_CERT"
put "$client_key" 0600 root:root "$ZT_CLIENT_KEY"
put "$unit_file" 0644 root:root "$ZT_UNIT"
echo "$self_id" >"$STATE/owner"
systemctl daemon-reload

state=existing
if ! has_data; then
  if [ -f "$STATE/member" ]; then
    die "this node was etcd member $(cat "$STATE/member") but ${data_dir} holds no data: its disk was lost or wiped. Restore from a snapshot (docs/etcd-restore.md), or remove the member (etcdctl member remove <id>) and delete $STATE/member, then run again"
  fi
  if [ "$bootstrap" = true ]; then
    state=bootstrapped
    initial="${node}=${ZT_PEER_URL}"
    cluster_state=new
    log "forming a new cluster with this node as its first member"
  else
    log "joining the cluster through ${ZT_JOIN_ENDPOINT}"
    lines=$(member_lines "$ZT_JOIN_ENDPOINT") ||
      die "cannot list the cluster's members through ${ZT_JOIN_ENDPOINT}: is the bootstrap member running and healthy?"
    if printf '%s\n' "$lines" | awk -F', ' -v u="$ZT_PEER_URL" '$4 == u { f = 1 } END { exit !f }'; then
      existing_name=$(printf '%s\n' "$lines" | awk -F', ' -v u="$ZT_PEER_URL" '$4 == u { print $3 }' | head -n1)
      if [ -n "$existing_name" ]; then
        die "the cluster already has a started member ${existing_name} at ${ZT_PEER_URL}, but ${data_dir} holds no data: remove that member (etcdctl member remove) or restore this node's data, then run again"
      fi
      log "already a member (added earlier, not started yet)"
    else
      # Every started member can take the request: the join endpoint and the members it lists.
      endpoints=$(printf '%s\n' "$ZT_JOIN_ENDPOINT" "$(printf '%s\n' "$lines" | other_endpoints none)" | tr ',' '\n' | awk 'NF && !seen[$0]++' | paste -sd, -)
      # Whether the member was added is read from the member list, not from the answer to
      # `member add` (lost when the member that took it restarts or changes leader). etcd refuses
      # to add a voting member until the members it has are connected for a few seconds
      # (strict reconfiguration check: "unhealthy cluster"), e.g. right after the previous member
      # joined; that is retried until the health timeout.
      add_deadline=$(($(date +%s) + timeout_s))
      while :; do
        out=$(ctl "$endpoints" member add "$node" --peer-urls="$ZT_PEER_URL" 2>&1) || true
        if lines=$(member_lines "$endpoints") &&
          printf '%s\n' "$lines" | awk -F', ' -v u="$ZT_PEER_URL" '$4 == u { f = 1 } END { exit !f }'; then
          log "added as a member (the member list holds ${ZT_PEER_URL})"
          break
        fi
        [ "$(date +%s)" -lt "$add_deadline" ] ||
          die "member add not confirmed within ${timeout_s}s (etcd.healthTimeoutSeconds): $(printf '%s' "$out" | grep -v '"level":"warn"' | head -n3)"
        case "$out" in
          *"unhealthy cluster"*) log "the cluster is not ready to add a member yet (unhealthy cluster); retrying" ;;
          *"Peer URLs already exists"* | *"peerURL exists"*) log "the peer URL is taken: $(printf '%s' "$out" | head -n1); retrying" ;;
          *) log "member add: $(printf '%s' "$out" | grep -v '"level":"warn"' | head -n1); checking again" ;;
        esac
        sleep 2
      done
    fi
    unstarted=$(printf '%s\n' "$lines" | awk -F', ' -v u="$ZT_PEER_URL" '$3 == "" && $4 != u { print $1 " at " $4 }')
    [ -z "$unstarted" ] ||
      die "the cluster has a member that was added but never started (${unstarted}); start or remove it first: members join one at a time"
    initial=$(printf '%s\n' "$lines" | awk -F', ' -v u="$ZT_PEER_URL" -v n="$node" '
      NF >= 4 { name = ($4 == u) ? n : $3; split($4, urls, ","); printf "%s%s=%s", sep, name, urls[1]; sep = "," }')
    cluster_state=existing
    state=joined
  fi
  put "$ZT_ENV_FILE" 0644 root:root "ETCD_INITIAL_CLUSTER=${initial}
ETCD_INITIAL_CLUSTER_STATE=${cluster_state}"
fi

systemctl enable "$unit_name" >/dev/null 2>&1
restarted=false
started=$(date +%s)
if ! systemctl is-active --quiet "$unit_name"; then
  log "starting ${unit_name}"
  systemctl start --no-block "$unit_name"
  restarted=true
elif [ "$changed" = true ]; then
  # So that the cluster does not wait out an election while this member restarts.
  hand_over_leadership "the restart" "restarting"
  log "certificates or unit changed: restarting ${unit_name}"
  systemctl restart --no-block "$unit_name"
  restarted=true
fi

# Health gate: this member, then every member of the cluster, within the timeout.
deadline=$((started + timeout_s))
healthy=false
while [ "$(date +%s)" -lt "$deadline" ]; do
  if ctl "$ZT_LOCAL_ENDPOINT" endpoint health >/dev/null 2>&1 &&
    ctl "$ZT_LOCAL_ENDPOINT" endpoint health --cluster >/dev/null 2>&1; then
    healthy=true
    break
  fi
  sleep 2
done
waited=$(($(date +%s) - started))
if [ "$healthy" = false ]; then
  log "health gate failed: member ${node} or the cluster not healthy after ${waited}s (limit ${timeout_s}s, etcd.healthTimeoutSeconds)"
  ctl "$ZT_LOCAL_ENDPOINT" endpoint health --cluster >&2 || true
  journal_tail
  printf '{"action":"create","node":%s,"state":"%s","healthy":false,"waitedSeconds":%s}\n' \
    "$(json_string "$node")" "$state" "$waited"
  exit 3
fi

# Simple status: "<endpoint>, <member id (hex)>, <version>, ..."; fields: "ClusterID" : <decimal>.
member_hex=$(ctl "$ZT_LOCAL_ENDPOINT" endpoint status 2>/dev/null | awk -F', ' 'NR == 1 { print $2 }')
cluster_id=$(ctl "$ZT_LOCAL_ENDPOINT" endpoint status -w fields 2>/dev/null | sed -n 's/^"ClusterID" : \([0-9]*\)$/\1/p' | head -n1)
[[ "$member_hex" =~ ^[0-9a-f]+$ && -n "$cluster_id" ]] || die "endpoint status gave no member or cluster ID"
echo "${member_hex} ${cluster_id}" >"$STATE/member"
all_lines=$(member_lines "$ZT_LOCAL_ENDPOINT" || true)
members=$(printf '%s\n' "$all_lines" | grep -c ', started, ' || true)
# The other members' client URLs: a delete finds the cluster through them if this member is down.
printf '%s\n' "$all_lines" | other_endpoints "$member_hex" >"$STATE/endpoints"
log "member ${member_hex} of cluster ${cluster_id} healthy after ${waited}s; ${members} members started"
printf '{"action":"create","node":%s,"state":"%s","changed":%s,"restarted":%s,"healthy":true,"waitedSeconds":%s,"memberId":"%s","clusterId":"%s","members":%s,"version":%s}\n' \
  "$(json_string "$node")" "$state" "$changed" "$restarted" "$waited" "$member_hex" "$cluster_id" "${members:-0}" \
  "$(json_string "${version:-unknown}")"
