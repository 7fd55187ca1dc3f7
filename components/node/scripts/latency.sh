# shellcheck shell=bash
# The latency preflight: times TCP connects from this node to each target (the GitLab host, an
# optional probe target), several tries each, every try bounded, and judges the median against
# a threshold. A library: zerotouch puts it in the preflight's payload after common.sh; run by
# hand, it is sourced from the checkout. Read-only: it opens and closes TCP connections, nothing
# else. Measured with bash's /dev/tcp and $EPOCHREALTIME (µs, no process started inside the
# timed part); the host is resolved once before the tries, so name lookups are not timed.
#
# latency_run <node> <targets> <tries> <timeout ms> <threshold ms> <threshold ns>
#   targets: lines "<name> <host> <port>"; threshold empty: figures only, nothing refused.
# Sets latency_results (one JSON object per target) and latency_problems (one message per
# refused target, in the wording of formatLatencyRefusal in components/node/latency.ts), and
# logs each target's figures on stderr.

# common.sh (log, JSON): in the payload ahead of this library, or from the checkout.
if ! declare -F json_string >/dev/null; then
  # shellcheck source=components/lib/scripts/common.sh
  . "$(dirname "${BASH_SOURCE[0]}")/../../lib/scripts/common.sh"
fi

# latency_ms3 <ns>: milliseconds with 3 decimals, rounded half up.
latency_ms3() {
  local t=$((($1 + 500) / 1000))
  printf '%d.%03d' "$((t / 1000))" "$((t % 1000))"
}

# latency_resolve <host>: the address to connect to (an IP address as given, else the first
# address the resolver returns, IPv4 first); fails when the name does not resolve.
latency_resolve() {
  if [[ "$1" =~ ^[0-9.]+$ ]] || [[ "$1" == *:* ]]; then
    printf '%s\n' "$1"
    return 0
  fi
  local address
  address="$(timeout 5 getent ahostsv4 "$1" 2>/dev/null | awk 'NR == 1 { print $1 }')" || true
  [ -n "$address" ] || address="$(timeout 5 getent ahosts "$1" 2>/dev/null | awk 'NR == 1 { print $1 }')" || true
  [ -n "$address" ] || return 1
  printf '%s\n' "$address"
}

# latency_connect_us <address> <port> <timeout ms>: prints how many µs one TCP connect took;
# fails when it did not connect within the timeout.
latency_connect_us() {
  local bound
  bound="$(printf '%d.%03d' "$(($3 / 1000))" "$(($3 % 1000))")"
  # shellcheck disable=SC2016  # expanded by the inner bash
  timeout "$bound" bash -c '
    start=$EPOCHREALTIME
    exec 3<>"/dev/tcp/$0/$1" || exit 1
    end=$EPOCHREALTIME
    exec 3>&-
    start=${start//[.,]/}
    end=${end//[.,]/}
    printf "%d\n" "$((10#$end - 10#$start))"' "$1" "$2" 2>/dev/null
}

# latency_median_ns <µs...> (sorted): the median in ns (the mean of the middle two for an even count).
latency_median_ns() {
  local -a s=("$@")
  local n=${#s[@]}
  if ((n % 2 == 1)); then
    printf '%d\n' "$((s[n / 2] * 1000))"
  else
    printf '%d\n' "$(((s[n / 2 - 1] + s[n / 2]) * 500))"
  fi
}

# latency_label <name>: what a target is called in messages.
latency_label() {
  case "$1" in
    gitlab) printf 'the GitLab host' ;;
    probe) printf 'the probe target' ;;
    *) printf 'target %s' "$1" ;;
  esac
}

# latency_endpoint <host> <port>: host:port, [v6]:port.
latency_endpoint() {
  if [[ "$1" == *:* ]]; then printf '[%s]:%s' "$1" "$2"; else printf '%s:%s' "$1" "$2"; fi
}

latency_run() {
  local node="$1" targets="$2" tries="$3" timeout_ms="$4" max_ms="$5" max_ns="$6"
  latency_results=()
  latency_problems=()
  local name host port
  while read -r name host port; do
    [ -n "${name:-}" ] || continue
    latency_target "$node" "$name" "$host" "$port" "$tries" "$timeout_ms" "$max_ms" "$max_ns"
  done <<<"$targets"
}

# latency_target <node> <name> <host> <port> <tries> <timeout ms> <threshold ms> <threshold ns>
latency_target() {
  local node="$1" name="$2" host="$3" port="$4" tries="$5" timeout_ms="$6" max_ms="$7" max_ns="$8"
  local what override address="" i us
  local -a samples=()
  what="$(latency_label "$name") $(latency_endpoint "$host" "$port")"
  override="To accept it anyway, raise the threshold for this node: pulumi config set --path 'zerotouch:nodes.${node}.maxLatencyMs' <ms>, or for all nodes: pulumi config set --path 'zerotouch:preflight.maxLatencyMs' <ms>"
  if address="$(latency_resolve "$host")"; then
    for ((i = 0; i < tries; i++)); do
      if us="$(latency_connect_us "$address" "$port" "$timeout_ms")" && [[ "$us" =~ ^[0-9]+$ ]]; then
        samples+=("$us")
      fi
    done
  else
    address=""
  fi
  local median="null" worst="null" passed=true connected=${#samples[@]}
  if [ "$connected" -gt 0 ]; then
    mapfile -t samples < <(printf '%s\n' "${samples[@]}" | sort -n)
    median="$(latency_median_ns "${samples[@]}")"
    worst=$((samples[connected - 1] * 1000))
    log "node ${node}: latency to ${what} (${address}): median $(latency_ms3 "$median") ms, worst $(latency_ms3 "$worst") ms over ${connected} of ${tries} connects${max_ms:+ (threshold ${max_ms} ms)}"
  elif [ -z "$address" ]; then
    log "node ${node}: latency to ${what}: ${host} did not resolve"
  else
    log "node ${node}: latency to ${what} (${address}): no connect in ${tries} tries of at most ${timeout_ms} ms"
  fi
  if [ -n "$max_ns" ]; then
    if [ "$connected" -eq 0 ]; then
      passed=false
      local where="no TCP connect to ${address} succeeded in ${tries} tries of at most ${timeout_ms} ms each"
      [ -n "$address" ] || where="${host} did not resolve"
      latency_problems+=("latency: ${what}: ${where}, so the threshold of ${max_ms} ms cannot be checked. Check the node's route and DNS to it, or the target (zerotouch:preflight.latency.${name})")
    elif [ "$median" -gt "$max_ns" ]; then
      passed=false
      latency_problems+=("latency: ${what} (${address}): TCP connect took a median of $(latency_ms3 "$median") ms over ${connected} of ${tries} tries (worst $(latency_ms3 "$worst") ms), above the threshold of ${max_ms} ms. The node is far from it; a node nearer to it is the better fix. ${override}")
    fi
  fi
  local samples_json
  samples_json="[$(
    IFS=,
    printf '%s' "${samples[*]}"
  )]"
  latency_results+=("$(printf '{"name":%s,"host":%s,"port":%d,"address":%s,"tries":%d,"timeoutMs":%d,"connected":%d,"samplesUs":%s,"medianNs":%s,"worstNs":%s,"thresholdMs":%s,"passed":%s}' \
    "$(json_string "$name")" "$(json_string "$host")" "$port" "$(json_string "$address")" "$tries" "$timeout_ms" "$connected" \
    "$samples_json" "$median" "$worst" "${max_ms:-null}" "$passed")")
}
