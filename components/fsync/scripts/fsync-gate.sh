#!/usr/bin/env bash
# fsync gate: measures how fast the disk under the etcd data path makes writes durable, the
# way etcd's own guidance does (fio, sequential 2300-byte writes, fdatasync after each), and
# stops the deployment when the worst p99 of the fdatasync latency exceeds the threshold.
#
# Parameters (environment):
#   ZT_ACTION        create | delete (delete: nothing to undo, this only measures)
#   ZT_NODE          node name (DNS label), used in the result and the failure message
#   ZT_HOST          address the node is reached at; recorded in the result
#   ZT_DATA_PATH     etcd data directory; created (mode 0700) when missing
#   ZT_THRESHOLD_MS  highest acceptable p99, in ms (up to 6 decimals, i.e. whole ns)
#   ZT_RUNS          how many fio runs; the gate uses the worst p99 (1-10)
#   ZT_FIO_SIZE      fio --size. Defaults to 22m (etcd guidance).
#   ZT_FIO_BS        fio --bs, in bytes. Defaults to 2300 (etcd guidance).
#   ZT_FIO_MAX_SECONDS  longest a run may write (fio --runtime) before it stops short of the
#                    size; bounds the wait on a slow disk, which by then has given thousands
#                    of samples. Defaults to 120.
#
# Only a fresh temporary directory inside the data path is written to, and it is always
# removed; nothing else in the data path is touched. fio and jq are installed when missing.
#
# Output: progress on stderr; one JSON object as the last line of stdout (also on a failed
# gate). Exit codes: 0 passed, 2 invalid parameters, 3 gate failed, 1 anything else.
set -euo pipefail

readonly apt_timeout_s=600
readonly lock_timeout_s=3600
readonly scratch_prefix=.zerotouch-fsync.

# log, die, invalid: in the payload ahead of this script, or from the checkout.
if ! declare -F log >/dev/null; then
  # shellcheck source=components/lib/scripts/common.sh
  . "$(dirname "${BASH_SOURCE[0]}")/../../lib/scripts/common.sh"
fi
log_prefix=fsync-gate:

host="${ZT_HOST:-}"
data_path="${ZT_DATA_PATH:-}"
threshold_in="${ZT_THRESHOLD_MS:-}"
runs="${ZT_RUNS:-}"
fio_size="${ZT_FIO_SIZE:-22m}"
fio_bs="${ZT_FIO_BS:-2300}"
fio_max_s="${ZT_FIO_MAX_SECONDS:-120}"

read_action_node create delete
[ "$action" != delete ] || delete_unchanged "$node" "the fsync gate only measures; nothing to undo"

[ -n "$host" ] || invalid "ZT_HOST must be set (node ${node})"
case "$data_path" in
  /*) ;;
  *) invalid "ZT_DATA_PATH must be an absolute path, got '${data_path}' (node ${node})" ;;
esac
if [ "$data_path" = / ] || [[ "$data_path" =~ (^|/)\.\.?(/|$) ]] || [[ "$data_path" == */ ]] ||
  [[ "$data_path" == *//* ]] || [[ "$data_path" == *$'\n'* ]]; then
  invalid "ZT_DATA_PATH must be a normalized absolute path other than /, got '${data_path}' (node ${node})"
fi
if ! [[ "$threshold_in" =~ ^[0-9]{1,6}(\.[0-9]{1,6})?$ ]] || ! [[ "$threshold_in" =~ [1-9] ]]; then
  invalid "ZT_THRESHOLD_MS must be a positive number of ms below 1000000 with at most 6 decimals, got '${threshold_in}' (node ${node})"
fi
# Canonical spelling (010.50 -> 10.5): what JavaScript's String() gives for the result's number.
threshold_int="${threshold_in%%.*}"
threshold_frac=""
if [[ "$threshold_in" == *.* ]]; then
  threshold_frac="${threshold_in#*.}"
  threshold_frac="${threshold_frac%"${threshold_frac##*[!0]}"}"
fi
threshold_ms="$((10#$threshold_int))${threshold_frac:+.$threshold_frac}"
[[ "$runs" =~ ^([1-9]|10)$ ]] || invalid "ZT_RUNS must be an integer from 1 to 10, got '${runs}' (node ${node})"
if ! [[ "$fio_max_s" =~ ^[1-9][0-9]{0,3}$ ]] || [ "$fio_max_s" -gt 1800 ]; then
  invalid "ZT_FIO_MAX_SECONDS must be a whole number of seconds from 1 to 1800, got '${fio_max_s}' (node ${node})"
fi
# fio stops itself at --runtime; the timeout only catches a fio that hangs.
fio_timeout_s=$((fio_max_s + 120))
[[ "$fio_size" =~ ^[1-9][0-9]{0,5}[kKmMgG]?$ ]] ||
  invalid "ZT_FIO_SIZE must be a size like 22m, got '${fio_size}' (node ${node})"
[[ "$fio_bs" =~ ^[1-9][0-9]{0,6}$ ]] || invalid "ZT_FIO_BS must be a number of bytes, got '${fio_bs}' (node ${node})"

# --- tools ----------------------------------------------------------------------------------
missing=()
command -v fio >/dev/null 2>&1 || missing+=(fio)
command -v jq >/dev/null 2>&1 || missing+=(jq)
if [ "${#missing[@]}" -gt 0 ]; then
  command -v apt-get >/dev/null 2>&1 || die "node ${node}: ${missing[*]} missing and apt-get not available to install it"
  log "node ${node}: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  timeout "$apt_timeout_s" apt-get -q -o DPkg::Lock::Timeout=300 update >&2 ||
    die "node ${node}: apt-get update failed or timed out"
  timeout "$apt_timeout_s" apt-get -q -y -o DPkg::Lock::Timeout=300 install --no-install-recommends "${missing[@]}" >&2 ||
    die "node ${node}: installing ${missing[*]} failed or timed out"
fi

# --- data path ------------------------------------------------------------------------------
if [ ! -e "$data_path" ]; then
  parent="$(dirname -- "$data_path")"
  (umask 022 && mkdir -p -- "$parent")
  mkdir -m 0700 -- "$data_path"
  log "node ${node}: created ${data_path} (mode 0700)"
fi
[ -d "$data_path" ] || die "node ${node}: ${data_path} exists and is not a directory"

# One gate at a time per data path: lock the directory itself (no lock file to leave behind).
exec 9<"$data_path"
timeout "$lock_timeout_s" flock 9 || die "node ${node}: another fsync gate holds ${data_path} for too long"

# Scratch directories left by an earlier run that was killed: ours (prefix), and unused (lock).
for stale in "$data_path/$scratch_prefix"*; do
  [ -d "$stale" ] || continue
  log "node ${node}: removing ${stale}, left by an interrupted gate"
  rm -rf -- "$stale"
done

scratch=""
trap '[ -z "$scratch" ] || rm -rf -- "$scratch"' EXIT
exit_on_signals
scratch="$(mktemp -d -- "$data_path/${scratch_prefix}XXXXXXXX")"

# --- device facts ---------------------------------------------------------------------------
source_dev="$(findmnt -n -o SOURCE -T "$data_path" | head -n1)"
fstype="$(findmnt -n -o FSTYPE -T "$data_path" | head -n1)"
mountpoint="$(findmnt -n -o TARGET -T "$data_path" | head -n1)"
block_dev="${source_dev%%\[*}"
rotational=null
if [ -b "$block_dev" ]; then
  rota="$(lsblk -n -d -o ROTA -- "$block_dev" 2>/dev/null | head -n1 | tr -d '[:space:]')" || rota=""
  case "$rota" in
    1) rotational=true ;;
    0) rotational=false ;;
  esac
fi

# --- measure --------------------------------------------------------------------------------
# Per run, keep the raw figures the gate is decided on: fio's version, and per job its name,
# error, fdatasync latencies (sync.lat_ns with percentiles) and write IOPS.
readonly trim='{"fio version": .["fio version"],
  jobs: [.jobs[] | {jobname, error, sync, write: {iops: .write.iops, total_ios: .write.total_ios}}]}'
runs_json="[]"
for i in $(seq 1 "$runs"); do
  log "node ${node}: fio run ${i}/${runs} on ${data_path} (${source_dev}, ${fstype}), size ${fio_size}, bs ${fio_bs}, at most ${fio_max_s}s"
  rc=0
  out="$(cd "$scratch" && timeout -k 30 "$fio_timeout_s" fio --rw=write --ioengine=sync --fdatasync=1 \
    --directory="$scratch" --size="$fio_size" --bs="$fio_bs" --runtime="$fio_max_s" --name=zerotouch-fsync \
    --output-format=json)" || rc=$?
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    die "node ${node}: fio run ${i} did not finish within ${fio_timeout_s}s on ${data_path}; this disk is far too slow for etcd"
  fi
  [ "$rc" -eq 0 ] || die "node ${node}: fio run ${i} failed (exit ${rc}) on ${data_path}"
  # fio may print notes before the JSON document; the document starts with a line "{".
  raw="$(printf '%s\n' "$out" | sed -n '/^{/,$p' | jq -c "$trim")" ||
    die "node ${node}: fio run ${i} printed no JSON result"
  run="$(jq -c -n --argjson fio "$raw" '
    ($fio.jobs[0] // error("fio reported no job")) as $job
    | if $job.error != 0 then error("fio job failed with error \($job.error)") else . end
    | ($job.sync.lat_ns.percentile // error("fio reported no fdatasync latencies")) as $p
    | {p50Ns: $p["50.000000"], p90Ns: $p["90.000000"], p99Ns: ($p["99.000000"] // error("no p99")),
       iops: $job.write.iops, fio: $fio}')" ||
    die "node ${node}: fio run ${i}: unusable result"
  log "node ${node}: run ${i}: fdatasync p99 $(jq -r '.p99Ns' <<<"$run") ns"
  runs_json="$(jq -c -n --argjson a "$runs_json" --argjson r "$run" '$a + [$r]')"
  rm -rf -- "${scratch:?}"/*
done

# --- decide ---------------------------------------------------------------------------------
result="$(jq -c -n \
  --arg node "$node" --arg host "$host" --arg path "$data_path" \
  --argjson threshold "$threshold_ms" --argjson runs "$runs_json" \
  --arg source "$source_dev" --arg fstype "$fstype" --arg mount "$mountpoint" --argjson rotational "$rotational" \
  --arg size "$fio_size" --argjson bs "$fio_bs" '
  ($runs | map(.p99Ns) | max) as $worst
  | {action: "create", node: $node, host: $host, path: $path,
     fioVersion: $runs[0].fio["fio version"], fioSize: $size, fioBs: $bs,
     device: {source: $source, fstype: $fstype, mount: $mount, rotational: $rotational},
     thresholdMs: $threshold, runs: $runs, worstP99Ns: $worst,
     passed: ($worst <= $threshold * 1000000)}')"

worst_ns="$(jq -r '.worstP99Ns' <<<"$result")"
passed="$(jq -r '.passed' <<<"$result")"
# p99 in ms with 2 decimals, rounded half up on the integer ns figure (same as the TS side).
hundredths=$(((worst_ns + 5000) / 10000))
worst_ms="$((hundredths / 100)).$(printf '%02d' "$((hundredths % 100))")"

if [ "$runs" -eq 1 ]; then
  measured="(1 run)"
else
  measured="(worst of ${runs} runs)"
fi

if [ "$passed" = true ]; then
  log "node ${node}: passed: fdatasync p99 ${worst_ms} ms ${measured} <= ${threshold_ms} ms on ${data_path}"
  printf '%s\n' "$result"
  exit 0
fi

# The wording below is also produced by formatGateFailure() in components/fsync/fio.ts.
printf 'fsync gate failed on node %s: fio measured an fdatasync p99 of %s ms %s on %s, above the threshold of %s ms. etcd needs fast, durable writes; the better fix is to put the etcd data on a faster NVMe disk. To accept this disk anyway, raise the threshold for this node: pulumi config set --path '\''zerotouch:nodes.%s.fsyncThresholdMs'\'' <ms>, or for all nodes: pulumi config set --path '\''zerotouch:fsyncGate.thresholdMs'\'' <ms>\n' \
  "$node" "$worst_ms" "$measured" "$data_path" "$threshold_ms" "$node" >&2
printf '%s\n' "$result"
exit 3
