#!/usr/bin/env bash
# Preflight phase: gathers the node's facts and checks them against the stack's policy before
# anything is installed. Read-only: it changes nothing on the node, so it is idempotent.
#
# Parameters:
#   ZT_NODE                  node name (for messages)
#   ZT_ROLE                  control-plane | worker
#   ZT_ETCD_DATA_PATH        where etcd keeps its data (need not exist yet)
#   ZT_ALLOWED_VIRT          allowed systemd-detect-virt values, one per line
#   ZT_REQUIRE_NVME          true | false: the etcd disk of a control-plane node must be NVMe
#   ZT_SUPPORTED_OS          supported "<id> <version_id>" pairs, one per line
#   ZT_REQUIRED_TOOLS        "<command> <debian package>" pairs, one per line
#   ZT_LATENCY_TARGETS       "<name> <host> <port>" per target whose TCP connect time is measured
#                            (latency.sh), one per line; empty for none
#   ZT_LATENCY_TRIES         connects per target
#   ZT_LATENCY_TIMEOUT_MS    bound of one connect, ms
#   ZT_MAX_LATENCY_MS        threshold on each target's median, ms (empty: figures only)
#   ZT_MAX_LATENCY_NS        the same threshold in whole ns
#
# Output: one JSON line with the facts, the latency figures, the problems found and "passed".
# Exit 4 when a check fails, with one line per problem on stderr; each latency target's figures
# are logged on stderr.
set -euo pipefail

# json_string, json_array, read_only_delete: in the payload ahead of this script, or from the checkout.
if ! declare -F json_string >/dev/null; then
  # shellcheck source=components/lib/scripts/common.sh
  . "$(dirname "${BASH_SOURCE[0]}")/../../lib/scripts/common.sh"
fi
# latency_run: in the payload ahead of this script, or from the checkout.
if ! declare -F latency_run >/dev/null; then
  # shellcheck source=components/node/scripts/latency.sh
  . "$(dirname "${BASH_SOURCE[0]}")/latency.sh"
fi

node="${ZT_NODE:?ZT_NODE is required}"
role="${ZT_ROLE:?ZT_ROLE is required}"
etcd_path="${ZT_ETCD_DATA_PATH:?ZT_ETCD_DATA_PATH is required}"
allowed_virt="${ZT_ALLOWED_VIRT:?ZT_ALLOWED_VIRT is required}"
require_nvme="${ZT_REQUIRE_NVME:-true}"
supported_os="${ZT_SUPPORTED_OS:?ZT_SUPPORTED_OS is required}"
required_tools="${ZT_REQUIRED_TOOLS:-}"
latency_targets="${ZT_LATENCY_TARGETS:-}"
latency_tries="${ZT_LATENCY_TRIES:-5}"
latency_timeout_ms="${ZT_LATENCY_TIMEOUT_MS:-2000}"
max_latency_ms="${ZT_MAX_LATENCY_MS:-}"
max_latency_ns="${ZT_MAX_LATENCY_NS:-}"
action="${ZT_ACTION:-create}"
[ "$action" != delete ] || read_only_delete "$node"

problems=()
problem() {
  problems+=("$1")
}
# in_lines <value> <lines>: succeeds when the value is one of the lines.
in_lines() {
  local line
  while IFS= read -r line; do
    if [ -n "$line" ] && [ "$line" = "$1" ]; then return 0; fi
  done <<< "$2"
  return 1
}
# comma_list <lines>: the lines joined with ", ".
comma_list() { tr '\n' ',' <<< "$1" | sed 's/,$//; s/,/, /g'; }

# --- Operating system -------------------------------------------------------------------
os_id="unknown"
os_version="unknown"
os_pretty="unknown"
if [ -r /etc/os-release ]; then
  # shellcheck disable=SC1091
  os_id=$(. /etc/os-release && printf '%s' "${ID:-unknown}")
  # shellcheck disable=SC1091
  os_version=$(. /etc/os-release && printf '%s' "${VERSION_ID:-unknown}")
  # shellcheck disable=SC1091
  os_pretty=$(. /etc/os-release && printf '%s' "${PRETTY_NAME:-unknown}")
fi
if ! in_lines "$os_id $os_version" "$supported_os"; then
  problem "operating system: found $os_pretty ($os_id $os_version); supported: $(comma_list "$supported_os")"
fi

# --- Virtualization -----------------------------------------------------------------------
virt="unknown"
if command -v systemd-detect-virt >/dev/null 2>&1; then
  virt=$(systemd-detect-virt 2>/dev/null || true)
  virt=${virt:-none}
fi
if ! in_lines "$virt" "$allowed_virt"; then
  problem "virtualization: systemd-detect-virt reports '$virt'; allowed: $(comma_list "$allowed_virt") (set zerotouch:preflight.allowedVirtualization to allow it)"
fi

# --- The disk under the etcd data path -------------------------------------------------------
# The path may not exist yet: look at its nearest existing ancestor.
probe="$etcd_path"
while [ ! -e "$probe" ] && [ "$probe" != "/" ]; do
  probe=$(dirname "$probe")
done
mount_source=$(findmnt -no SOURCE -T "$probe" 2>/dev/null | head -n1 || true)
mount_fstype=$(findmnt -no FSTYPE -T "$probe" 2>/dev/null | head -n1 || true)
mount_target=$(findmnt -no TARGET -T "$probe" 2>/dev/null | head -n1 || true)
majmin=$(findmnt -no MAJ:MIN -T "$probe" 2>/dev/null | head -n1 | tr -d ' ' || true)

disk_name=""
rotational=""
transport=""
disk_model=""
if [ -n "$majmin" ] && [ "${majmin%%:*}" != "0" ] && [ -e "/sys/dev/block/$majmin" ]; then
  sys_path=$(readlink -f "/sys/dev/block/$majmin")
  # A partition's parent directory is its disk.
  if [ -e "$sys_path/partition" ]; then
    sys_path=$(dirname "$sys_path")
  fi
  disk_name=$(basename "$sys_path")
  # A device-mapper or md device sits on slaves; use the first one for the disk's traits.
  if [ -d "$sys_path/slaves" ] && [ -n "$(ls -A "$sys_path/slaves" 2>/dev/null)" ]; then
    slave=$(find "$sys_path/slaves" -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort | head -n1)
    slave_path=$(readlink -f "$sys_path/slaves/$slave")
    if [ -e "$slave_path/partition" ]; then
      slave_path=$(dirname "$slave_path")
    fi
    disk_name="$disk_name on $(basename "$slave_path")"
    sys_path="$slave_path"
  fi
  rotational=$(cat "$sys_path/queue/rotational" 2>/dev/null || true)
  if [ -r "$sys_path/device/model" ]; then
    disk_model=$(tr -s ' ' < "$sys_path/device/model" | sed 's/ *$//')
  fi
  case "$(basename "$sys_path")" in
    nvme*) transport="nvme" ;;
    vd*) transport="virtio" ;;
    sd*) transport="scsi" ;;
    xvd*) transport="xen" ;;
    loop*) transport="loop" ;;
    *) transport="other" ;;
  esac
fi

disk_desc="${disk_name:-no block device} (source ${mount_source:-unknown}, ${mount_fstype:-unknown} at ${mount_target:-unknown}"
case "$rotational" in
  0) disk_desc+=", non-rotational" ;;
  1) disk_desc+=", rotational" ;;
esac
[ -n "$transport" ] && disk_desc+=", transport $transport"
[ -n "$disk_model" ] && disk_desc+=", model $disk_model"
disk_desc+=")"

if [ "$role" = "control-plane" ]; then
  if [ -z "$disk_name" ]; then
    problem "etcd disk: $etcd_path is not on a block device: found $disk_desc; etcd needs its data on a local NVMe disk"
  elif [ "$rotational" = "1" ]; then
    problem "etcd disk: $etcd_path is on a rotational disk: found $disk_desc; etcd needs a non-rotational (NVMe) disk"
  elif [ "$require_nvme" = "true" ] && [ "$transport" != "nvme" ]; then
    problem "etcd disk: $etcd_path is not on NVMe: found $disk_desc; expected an NVMe disk (set zerotouch:preflight.requireNvme to false to accept any non-rotational disk; the fsync gate still applies)"
  fi
fi

# --- Tools ------------------------------------------------------------------------------------
present=()
installable=()
have_apt=false
if command -v apt-get >/dev/null 2>&1; then
  have_apt=true
fi
while read -r tool package; do
  [ -n "${tool:-}" ] || continue
  if command -v "$tool" >/dev/null 2>&1; then
    present+=("$tool")
  elif [ "$have_apt" = true ]; then
    installable+=("$tool (package ${package:-$tool})")
  else
    problem "tools: $tool is missing and there is no apt-get to install package ${package:-$tool}"
  fi
done <<< "$required_tools"

# --- Latency to the GitLab host and the probe target -----------------------------------------
if ! [[ "$latency_tries" =~ ^[0-9]+$ && "$latency_timeout_ms" =~ ^[0-9]+$ ]]; then
  invalid "ZT_LATENCY_TRIES and ZT_LATENCY_TIMEOUT_MS must be whole numbers"
fi
[ -z "$max_latency_ns" ] || [[ "$max_latency_ns" =~ ^[0-9]+$ ]] || invalid "ZT_MAX_LATENCY_NS must be whole nanoseconds"
latency_run "$node" "$latency_targets" "$latency_tries" "$latency_timeout_ms" "$max_latency_ms" "$max_latency_ns"
for p in "${latency_problems[@]+"${latency_problems[@]}"}"; do
  problem "$p"
done

# --- Other facts (reported, not gated) -------------------------------------------------------------
kernel=$(uname -r)
arch=$(uname -m)
cpus=$(getconf _NPROCESSORS_ONLN 2>/dev/null || echo 0)
mem_kib=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo 2>/dev/null || echo 0)
ntp_synced=$(timedatectl show -p NTPSynchronized --value 2>/dev/null || echo unknown)

passed=true
if [ "${#problems[@]}" -gt 0 ]; then
  passed=false
  for p in "${problems[@]}"; do
    echo "zerotouch: preflight failed on node $node: $p" >&2
  done
fi

printf '{"node":%s,"role":%s,"passed":%s,"problems":%s,' \
  "$(json_string "$node")" "$(json_string "$role")" "$passed" "$(json_array "${problems[@]+"${problems[@]}"}")"
printf '"os":{"id":%s,"versionId":%s,"prettyName":%s},"kernel":%s,"arch":%s,"cpus":%s,"memoryMiB":%s,' \
  "$(json_string "$os_id")" "$(json_string "$os_version")" "$(json_string "$os_pretty")" \
  "$(json_string "$kernel")" "$(json_string "$arch")" "$cpus" "$((mem_kib / 1024))"
printf '"virtualization":%s,"ntpSynchronized":%s,' "$(json_string "$virt")" "$(json_string "$ntp_synced")"
printf '"etcdDisk":{"path":%s,"disk":%s,"source":%s,"fstype":%s,"mountpoint":%s,"rotational":%s,"transport":%s,"model":%s,"description":%s},' \
  "$(json_string "$etcd_path")" "$(json_string "$disk_name")" "$(json_string "$mount_source")" \
  "$(json_string "$mount_fstype")" "$(json_string "$mount_target")" \
  "$(json_string "$rotational")" "$(json_string "$transport")" "$(json_string "$disk_model")" \
  "$(json_string "$disk_desc")"
latency_json="[$(
  IFS=,
  printf '%s' "${latency_results[*]+"${latency_results[*]}"}"
)]"
printf '"latency":%s,' "$latency_json"
printf '"tools":{"present":%s,"installable":%s}}\n' \
  "$(json_array "${present[@]+"${present[@]}"}")" "$(json_array "${installable[@]+"${installable[@]}"}")"

if [ "$passed" != true ]; then
  exit 4
fi
