#!/usr/bin/env bash
# fsync gate: measures how fast the disk under the etcd data path makes writes durable, the
# way etcd's own guidance does (fio, sequential 2300-byte writes, fdatasync after each), and
# stops the deployment when the worst p99 of the fdatasync latency exceeds the threshold.
#
# Parameters (environment):
#   ZT_ACTION        create | delete (delete: nothing to undo, this only measures) |
#                    evaluate (decide on saved fio outputs, ZT_FIO_FILES, without running fio:
#                    only ZT_NODE, ZT_DATA_PATH, as named in the message, and ZT_THRESHOLD_MS apply)
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
#   ZT_FIO_FILES     evaluate only: fio --output-format=json outputs, one per run, separated by ':'
#
# Only a fresh temporary directory inside the data path is written to, and it is always
# removed; nothing else in the data path is touched. fio and jq are installed when missing.
#
# Output: progress on stderr; one JSON object as the last line of stdout (also on a failed
# gate). This script alone decides and words the verdict (components/fsync/fsyncGate.ts only
# reads the result line): a failed gate's message stands as is on stderr, and its exit stops
# the deployment. Exit codes: 0 passed, 2 invalid parameters, 3 gate failed, 1 anything else.
set -euo pipefail

readonly apt_timeout_s=600
readonly lock_timeout_s=3600
readonly scratch_prefix=.zerotouch-fsync.

# common.sh and gate.sh: in the payload ahead of this script, or from the checkout.
if ! declare -F threshold_ms >/dev/null; then
  # shellcheck source=components/lib/scripts/common.sh
  . "$(dirname "${BASH_SOURCE[0]}")/../../lib/scripts/common.sh"
  # shellcheck source=components/lib/scripts/gate.sh
  . "$(dirname "${BASH_SOURCE[0]}")/../../lib/scripts/gate.sh"
fi
log_prefix=fsync-gate:

host="${ZT_HOST:-}"
data_path="${ZT_DATA_PATH:-}"
threshold_in="${ZT_THRESHOLD_MS:-}"
runs="${ZT_RUNS:-}"
fio_size="${ZT_FIO_SIZE:-22m}"
fio_bs="${ZT_FIO_BS:-2300}"
fio_max_s="${ZT_FIO_MAX_SECONDS:-120}"

read_action_node create delete evaluate
[ "$action" != delete ] || delete_unchanged "$node" "the fsync gate only measures; nothing to undo"

[ "$action" = evaluate ] || [ -n "$host" ] || invalid "ZT_HOST must be set (node ${node})"
case "$data_path" in
  /*) ;;
  *) invalid "ZT_DATA_PATH must be an absolute path, got '${data_path}' (node ${node})" ;;
esac
if [ "$data_path" = / ] || [[ "$data_path" =~ (^|/)\.\.?(/|$) ]] || [[ "$data_path" == */ ]] ||
  [[ "$data_path" == *//* ]] || [[ "$data_path" == *$'\n'* ]]; then
  invalid "ZT_DATA_PATH must be a normalized absolute path other than /, got '${data_path}' (node ${node})"
fi
threshold_ms="$(threshold_ms ZT_THRESHOLD_MS "$threshold_in")"
[ "$action" = evaluate ] || [[ "$runs" =~ ^([1-9]|10)$ ]] || invalid "ZT_RUNS must be an integer from 1 to 10, got '${runs}' (node ${node})"
if ! [[ "$fio_max_s" =~ ^[1-9][0-9]{0,3}$ ]] || [ "$fio_max_s" -gt 1800 ]; then
  invalid "ZT_FIO_MAX_SECONDS must be a whole number of seconds from 1 to 1800, got '${fio_max_s}' (node ${node})"
fi
# fio stops itself at --runtime; the timeout only catches a fio that hangs.
fio_timeout_s=$((fio_max_s + 120))
[[ "$fio_size" =~ ^[1-9][0-9]{0,5}[kKmMgG]?$ ]] ||
  invalid "ZT_FIO_SIZE must be a size like 22m, got '${fio_size}' (node ${node})"
[[ "$fio_bs" =~ ^[1-9][0-9]{0,6}$ ]] || invalid "ZT_FIO_BS must be a number of bytes, got '${fio_bs}' (node ${node})"

# --- reading fio -----------------------------------------------------------------------------
# Per run, keep the raw figures the gate is decided on: fio's version, and per job its name,
# error, fdatasync latencies (sync.lat_ns with percentiles) and write IOPS.
readonly trim='{"fio version": .["fio version"],
  jobs: [.jobs[] | {jobname, error, sync, write: {iops: .write.iops, total_ios: .write.total_ios}}]}'

# run_result <run> <fio's stdout>: prints the run's figures (p50, p90, p99 of the fdatasync
# latency, ns; write IOPS) with fio's trimmed JSON; dies when fio's output has none.
run_result() {
  local i="$1" raw
  # fio may print notes before the JSON document; the document starts with a line "{".
  raw="$(printf '%s\n' "$2" | sed -n '/^{/,$p' | jq -c "$trim")" || raw=""
  [ -n "$raw" ] || die "node ${node}: fio run ${i} printed no JSON result"
  jq -c -n --argjson fio "$raw" '
    ($fio.jobs[0] // error("fio reported no job")) as $job
    | if $job.error != 0 then error("fio job \($job.jobname) failed with error \($job.error)") else . end
    | if ($job.sync.lat_ns.N // 0) == 0 then error("fio reported no fdatasync latencies: fio must run with --fdatasync=1") else . end
    | ($job.sync.lat_ns.percentile // error("fio reported no fdatasync percentiles")) as $p
    | if ($p["99.000000"] | type) != "number" then error("fio reported no p99 of the fdatasync latency") else . end
    | {p50Ns: $p["50.000000"], p90Ns: $p["90.000000"], p99Ns: $p["99.000000"], iops: $job.write.iops, fio: $fio}' ||
    die "node ${node}: fio run ${i}: unusable result"
}

# decide <JSON object>: the result is that object with the threshold, the runs ($runs_json), the
# worst p99 and the verdict. Logs a pass and prints the result; on a failed gate prints the
# refusal on stderr, then the result, and exits 3.
decide() {
  local result worst_ns passed hundredths worst_ms measured n
  result="$(jq -c -n --argjson head "$1" --argjson threshold "$threshold_ms" --argjson runs "$runs_json" '
    ($runs | map(.p99Ns) | max) as $worst
    | $head + {thresholdMs: $threshold, runs: $runs, worstP99Ns: $worst, passed: ($worst <= $threshold * 1000000)}')"
  worst_ns="$(jq -r '.worstP99Ns' <<<"$result")"
  passed="$(jq -r '.passed' <<<"$result")"
  n="$(jq -r '.runs | length' <<<"$result")"
  # p99 in ms with 2 decimals, rounded half up on the integer ns figure.
  hundredths=$(((worst_ns + 5000) / 10000))
  worst_ms="$((hundredths / 100)).$(printf '%02d' "$((hundredths % 100))")"
  if [ "$n" -eq 1 ]; then
    measured="(1 run)"
  else
    measured="(worst of ${n} runs)"
  fi
  if [ "$passed" = true ]; then
    log "node ${node}: passed: fdatasync p99 ${worst_ms} ms ${measured} <= ${threshold_ms} ms on ${data_path}"
    printf '%s\n' "$result"
    return 0
  fi
  printf 'fsync gate failed on node %s: fio measured an fdatasync p99 of %s ms %s on %s, above the threshold of %s ms. etcd needs fast, durable writes; the better fix is to put the etcd data on a faster NVMe disk. To accept this disk anyway, raise the threshold for this node: pulumi config set --path '\''zerotouch:nodes.%s.fsyncThresholdMs'\'' <ms>, or for all nodes: pulumi config set --path '\''zerotouch:fsyncGate.thresholdMs'\'' <ms>\n' \
    "$node" "$worst_ms" "$measured" "$data_path" "$threshold_ms" "$node" >&2
  printf '%s\n' "$result"
  exit 3
}

# --- evaluate saved fio outputs ----------------------------------------------------------------
# ZT_ACTION=evaluate decides on fio outputs saved in files (ZT_FIO_FILES) without running fio or
# touching the data path (the tests decide on recorded and crafted outputs this way).
if [ "$action" = evaluate ]; then
  command -v jq >/dev/null 2>&1 || die "node ${node}: jq is missing"
  IFS=: read -r -a files <<<"${ZT_FIO_FILES:-}"
  [ "${#files[@]}" -ge 1 ] || invalid "ZT_FIO_FILES must name at least one file (node ${node})"
  runs_json="[]"
  for i in "${!files[@]}"; do
    [ -r "${files[$i]}" ] || invalid "ZT_FIO_FILES must be readable files, got '${files[$i]}' (node ${node})"
    run="$(run_result "$((i + 1))" "$(cat -- "${files[$i]}")")"
    runs_json="$(jq -c -n --argjson a "$runs_json" --argjson r "$run" '$a + [$r]')"
  done
  decide "$(jq -c -n --arg node "$node" --arg path "$data_path" '{action: "evaluate", node: $node, path: $path}')"
  exit 0
fi

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
  run="$(run_result "$i" "$out")"
  log "node ${node}: run ${i}: fdatasync p99 $(jq -r '.p99Ns' <<<"$run") ns"
  runs_json="$(jq -c -n --argjson a "$runs_json" --argjson r "$run" '$a + [$r]')"
  rm -rf -- "${scratch:?}"/*
done

# --- decide ---------------------------------------------------------------------------------
decide "$(jq -c -n --arg node "$node" --arg host "$host" --arg path "$data_path" \
  --arg source "$source_dev" --arg fstype "$fstype" --arg mount "$mountpoint" --argjson rotational "$rotational" \
  --arg size "$fio_size" --argjson bs "$fio_bs" --arg version "$(jq -r '.[0].fio["fio version"]' <<<"$runs_json")" '
  {action: "create", node: $node, host: $host, path: $path, fioVersion: $version, fioSize: $size, fioBs: $bs,
   device: {source: $source, fstype: $fstype, mount: $mount, rotational: $rotational}}')"
