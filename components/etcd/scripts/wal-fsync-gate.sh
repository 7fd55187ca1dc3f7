#!/usr/bin/env bash
# etcd disk gate: proves, from etcd's own metrics, that the node's etcd keeps its disk
# latencies within etcd's guidance while it takes writes. It scrapes etcd's /metrics, runs a
# bounded write load, scrapes again, and decides on the p99 of the two histograms between the
# scrapes, computed the way Prometheus' histogram_quantile does:
#   etcd_disk_wal_fsync_duration_seconds       (WAL fsync, threshold ZT_WAL_THRESHOLD_MS)
#   etcd_disk_backend_commit_duration_seconds  (backend commit, threshold ZT_COMMIT_THRESHOLD_MS)
#
# The write load is sequential puts of 1 KiB values through etcd's gRPC gateway (POST
# /v3/kv/put on the client URL, one curl process holding one connection): each put is one WAL
# append and fsync, about 1 ms apart on a good disk. It runs in rounds (100 puts, at most 3 s)
# and stops once each metric is decided, or after ZT_LOAD_SECONDS: a metric passes over at least
# its minimum sample count once at least ZT_WRITES puts are done; it fails as soon as more than
# 1% of its minimum sample count took longer than the bound of the bucket that holds the
# threshold (then no number of further samples brings its p99 under the threshold), so a slow
# disk is refused within seconds. etcd commits its backend in batches (every 100 ms by
# default), not once per put, so on a good disk the backend commit minimum is what makes the
# load last some seconds.
# Keys live under /zerotouch/wal-gate/<node>/ and are deleted afterwards (also when a run was
# interrupted: the next run deletes them first), so a run leaves etcd's keys as they were.
#
# Parameters (environment):
#   ZT_ACTION               create | delete (delete: nothing to undo, this only measures) |
#                           evaluate (decide on two saved scrapes, ZT_BEFORE_FILE and ZT_AFTER_FILE,
#                           without etcd: the thresholds and minimums apply, nothing else is needed)
#   ZT_NODE                 node name (DNS label), used in the keys, the result and the messages
#   ZT_HOST                 address the node is reached at; recorded in the result
#   ZT_ETCD_ENDPOINT        etcd client URL, scheme://host:port (e.g. https://127.0.0.1:2379)
#   ZT_ETCD_CACERT          CA bundle verifying etcd's server certificate (file on the node). Optional.
#   ZT_ETCD_CERT, ZT_ETCD_KEY  client certificate and key (files on the node). Optional, together.
#   ZT_METRICS_URL          etcd's metrics. Defaults to http://127.0.0.1:2381/metrics.
#   ZT_WRITES               fewest puts (1-100000). Defaults to 1000.
#   ZT_LOAD_SECONDS         longest the write load runs (1-1800). Defaults to 120.
#   ZT_WAL_THRESHOLD_MS     highest acceptable WAL fsync p99, ms (up to 6 decimals). Defaults to 10.
#   ZT_COMMIT_THRESHOLD_MS  highest acceptable backend commit p99, ms. Defaults to 25.
#   ZT_MIN_SAMPLES          fewest WAL fsyncs the p99 is taken over (1-1000000). Defaults to 500.
#   ZT_MIN_COMMIT_SAMPLES   fewest backend commits the p99 is taken over (1-1000000). Defaults to 100.
#
# Output: progress on stderr; one JSON object as the last line of stdout (also on a failed
# gate) with the raw bucket counts of both scrapes and each metric's figures and verdict. This
# script alone decides and words the verdicts (components/etcd/walGate.ts only reads the result
# line): a passed metric's message is logged, a failed one's stands as is on stderr, one line
# per metric, and its exit stops the deployment. Exit codes: 0 passed, 2 invalid parameters,
# 3 gate failed, 1 anything else (etcd unreachable, a refused write, counters reset by a restart).
set -euo pipefail

# common.sh and gate.sh: in the payload ahead of this script, or from the checkout.
if ! declare -F threshold_ms >/dev/null; then
  # shellcheck source=components/lib/scripts/common.sh
  . "$(dirname "${BASH_SOURCE[0]}")/../../lib/scripts/common.sh"
  # shellcheck source=components/lib/scripts/gate.sh
  . "$(dirname "${BASH_SOURCE[0]}")/../../lib/scripts/gate.sh"
fi

readonly wal_metric=etcd_disk_wal_fsync_duration_seconds
readonly commit_metric=etcd_disk_backend_commit_duration_seconds
readonly quantile=0.99
readonly round_puts=100
readonly round_max_ms=3000
readonly value_bytes=1024
readonly apt_timeout_s=600

log_prefix=wal-fsync-gate:

read_action_node create delete evaluate
[ "$action" != delete ] || delete_unchanged "$node" "the etcd disk gate only measures; nothing to undo"

host="${ZT_HOST:-}"
endpoint="${ZT_ETCD_ENDPOINT:-}"
cacert="${ZT_ETCD_CACERT:-}"
cert="${ZT_ETCD_CERT:-}"
key="${ZT_ETCD_KEY:-}"
metrics_url="${ZT_METRICS_URL:-http://127.0.0.1:2381/metrics}"
writes="${ZT_WRITES:-1000}"
load_s="${ZT_LOAD_SECONDS:-120}"
min_wal="${ZT_MIN_SAMPLES:-500}"
min_commit="${ZT_MIN_COMMIT_SAMPLES:-100}"

in_range() { [[ "$1" =~ ^[1-9][0-9]{0,6}$ ]] && [ "$1" -le "$2" ]; }
in_range "$writes" 100000 || invalid "ZT_WRITES must be an integer from 1 to 100000, got '${writes}' (node ${node})"
in_range "$load_s" 1800 || invalid "ZT_LOAD_SECONDS must be a whole number of seconds from 1 to 1800, got '${load_s}' (node ${node})"
in_range "$min_wal" 1000000 || invalid "ZT_MIN_SAMPLES must be an integer from 1 to 1000000, got '${min_wal}' (node ${node})"
in_range "$min_commit" 1000000 ||
  invalid "ZT_MIN_COMMIT_SAMPLES must be an integer from 1 to 1000000, got '${min_commit}' (node ${node})"

wal_threshold="$(threshold_ms ZT_WAL_THRESHOLD_MS "${ZT_WAL_THRESHOLD_MS:-10}")"
commit_threshold="$(threshold_ms ZT_COMMIT_THRESHOLD_MS "${ZT_COMMIT_THRESHOLD_MS:-25}")"

# --- evaluation -----------------------------------------------------------------------------
# For each metric, from two scrapes: the buckets of both (raw, for the result), their
# difference, the p99 with Prometheus' histogram_quantile method, and the verdict. Prints per
# metric "json <object>", "verdict <passed|above-threshold|too-few-samples>" and
# "message <text>", or a line "error <text>". The p99 is Prometheus' histogram_quantile: the
# rank q x samples is found in the first bucket whose cumulative count reaches it and
# interpolated linearly between that bucket's bounds (from 0 for the first bucket); in the +Inf
# bucket it is the highest finite bound, a lower bound of the true p99.
# With fewer samples than the minimum, a metric is already above its threshold when more than
# 1% of the minimum took longer than the bound of the bucket that holds the threshold: however
# many samples follow, the p99 of the minimum stays above that bound.
# shellcheck disable=SC2016 # an awk program
readonly evaluate_awk='
  BEGIN {
    m[1] = wal; label[1] = "WAL fsync"; key[1] = "zerotouch:etcd.walFsyncThresholdMs"; thr[1] = walThr; min[1] = walMin + 0
    m[2] = commit; label[2] = "backend commit"; key[2] = "zerotouch:etcd.backendCommitThresholdMs"; thr[2] = commitThr; min[2] = commitMin + 0
    for (k = 1; k <= 2; k++) { which[m[k] "_bucket"] = k; which[m[k] "_sum"] = k; which[m[k] "_count"] = k }
  }
  function fail(why) { print "error " why; failed = 1; exit 1 }
  FILENAME != current { f++; current = FILENAME }
  /^#/ { next }
  {
    if (!match($0, /^[a-zA-Z_:][a-zA-Z0-9_:]*/)) next
    name = substr($0, 1, RLENGTH)
    if (!(name in which)) next
    k = which[name]; rest = substr($0, RLENGTH + 1); le = ""
    if (substr(rest, 1, 1) == "{") {
      if (!match(rest, /^\{le="[^"]*",?\}/)) fail("unexpected labels on " name " in scrape " f ": " rest)
      le = substr(rest, 6, RLENGTH - 6); sub(/",?$/, "", le); rest = substr(rest, RLENGTH + 1)
    }
    sub(/^[ \t]+/, "", rest); split(rest, v, /[ \t]+/); value = v[1]
    if (name == m[k] "_bucket") {
      if (le == "") fail(name " without le in scrape " f)
      if (value !~ /^(0|[1-9][0-9]*)$/) fail(name " has a count that is not an integer in scrape " f ": " value)
      n[f, k]++; les[f, k, n[f, k]] = le; cnt[f, k, n[f, k]] = value
    } else if (name == m[k] "_count") {
      if (value !~ /^(0|[1-9][0-9]*)$/) fail(name " is not an integer in scrape " f ": " value)
      total[f, k] = value
    } else {
      if (value !~ /^-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$/) fail(name " is not a number in scrape " f ": " value)
      sum[f, k] = value
    }
  }
  function ms2(x,   h) { h = int(x * 100 + 0.5); return sprintf("%d.%02d", int(h / 100), h % 100) }
  function bound(x) { return sprintf("%.12g", x) }
  function num(x) { return sprintf("%.17g", x) }
  function scrapeJson(g, k,   i, s) {
    s = "{\"buckets\":["
    for (i = 1; i <= n[g, k]; i++) s = s (i > 1 ? "," : "") "{\"le\":\"" les[g, k, i] "\",\"count\":" cnt[g, k, i] "}"
    return s "],\"sum\":\"" sum[g, k] "\",\"count\":" total[g, k] "}"
  }
  function problem(why) { print "error " why; failed = 1 }
  # Checks scrape g of metric k as a histogram; returns 0 after printing an error line.
  function valid(g, k,   i) {
    if (n[g, k] < 2 || !((g, k) in total) || !((g, k) in sum)) { problem("scrape " g " has no complete histogram " m[k]); return 0 }
    if (les[g, k, n[g, k]] != "+Inf") { problem(m[k] " has no +Inf bucket in scrape " g); return 0 }
    for (i = 1; i < n[g, k]; i++) {
      if (les[g, k, i] !~ /^[0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?$/ || (i > 1 && les[g, k, i] + 0 <= les[g, k, i - 1] + 0)) {
        problem(m[k] " has unordered or invalid bucket bounds in scrape " g); return 0
      }
    }
    for (i = 2; i <= n[g, k]; i++) if (cnt[g, k, i] + 0 < cnt[g, k, i - 1] + 0) { problem(m[k] " buckets are not cumulative in scrape " g); return 0 }
    if (total[g, k] + 0 != cnt[g, k, n[g, k]] + 0) { problem(m[k] "_count differs from its +Inf bucket in scrape " g); return 0 }
    return 1
  }
  END {
    if (failed) exit 1
    if (f != 2) { print "error expected two scrapes"; exit 1 }
    for (k = 1; k <= 2; k++) {
      if (!valid(1, k) || !valid(2, k)) exit 1
      nb = n[1, k]
      if (n[2, k] != nb) { print "error the two scrapes have different buckets for " m[k]; exit 1 }
      for (i = 1; i <= nb; i++) {
        if (les[1, k, i] != les[2, k, i]) { print "error the two scrapes have different buckets for " m[k]; exit 1 }
        d[i] = cnt[2, k, i] - cnt[1, k, i]
        if (d[i] < 0) { print "error " m[k] ": counters reset between scrapes (etcd restarted?): the le=\"" les[1, k, i] "\" bucket went from " cnt[1, k, i] " to " cnt[2, k, i]; exit 1 }
      }
      if (total[2, k] - total[1, k] < 0) { print "error " m[k] ": counters reset between scrapes (etcd restarted?)"; exit 1 }
      samples = d[nb]
      t = thr[k] + 0
      defined = 0; inf = 0
      if (samples > 0) {
        defined = 1
        rank = q * samples
        for (b = 1; b < nb; b++) if (d[b] >= rank) break
        if (b == nb) {
          inf = 1; value = les[1, k, nb - 1] + 0; lower = value
        } else {
          end = les[1, k, b] + 0
          if (b == 1 && end <= 0) {
            value = end; lower = end
          } else {
            start = 0; count = d[b]
            if (b > 1) { start = les[1, k, b - 1] + 0; count -= d[b - 1]; rank -= d[b - 1] }
            value = start + (end - start) * (rank / count); lower = start
          }
        }
        p99 = value * 1000; lowerMs = lower * 1000; upperMs = inf ? "" : end * 1000
      }
      # Samples slower than the bound of the bucket that holds the threshold.
      slow = 0; slowBound = ""
      for (i = 1; i < nb; i++) if (les[1, k, i] * 1000 >= t) { slowBound = les[1, k, i] * 1000; slow = samples - d[i]; break }
      early = samples < min[k] && slow > (1 - q) * min[k]
      if (samples >= min[k] && defined) verdict = p99 <= t ? "passed" : "above-threshold"
      else verdict = early ? "above-threshold" : "too-few-samples"
      note = ""
      if (defined && inf) note = "This p99 lies beyond etcd'\''s highest bucket: the true p99 is at least " ms2(p99) " ms."
      else if (defined && lowerMs < t && t < upperMs) note = "This p99 lies in etcd'\''s (" bound(lowerMs) ", " bound(upperMs) "] ms bucket, which holds the threshold: " ms2(p99) " ms is a linear estimate within that bucket."
      head = "etcd disk gate " (verdict == "passed" ? "passed" : "failed") " on node " node ":"
      figure = head " " m[k] " gives a " label[k] " p99 of " ms2(p99) " ms over " samples " samples"
      if (verdict == "passed") {
        msg = figure ", within the threshold of " thr[k] " ms." (note != "" ? " " note : "")
      } else if (verdict == "above-threshold") {
        msg = figure ", above the threshold of " thr[k] " ms." \
          (early ? " " slow " of them took over " bound(slowBound) " ms, more than 1% of the " min[k] " samples the gate needs: the p99 stays above the threshold however many samples follow." : "") \
          (note != "" ? " " note : "") \
          " etcd needs fast, durable writes; the better fix is to put the etcd data on a faster NVMe disk. To accept this disk anyway, raise the threshold: pulumi config set --path '\''" key[k] "'\'' <ms>"
      } else {
        msg = head " only " samples " samples of " m[k] " (" label[k] ") were seen, " min[k] " are needed for a p99" \
          (defined ? " (the p99 of those is " ms2(p99) " ms)" : "") ". A slow disk lets few writes through in the time the write load is given."
      }
      json = "{\"metric\":\"" m[k] "\",\"thresholdMs\":" thr[k] ",\"minSamples\":" min[k] ",\"before\":" scrapeJson(1, k) ",\"after\":" scrapeJson(2, k) \
        ",\"samples\":" samples ",\"p99Ms\":" (defined ? num(p99) : "null") \
        ",\"bucketMs\":" (defined ? "{\"lowerMs\":" num(lowerMs) ",\"upperMs\":" (inf ? "null" : num(upperMs)) "}" : "null") \
        ",\"slowBoundMs\":" (slowBound == "" ? "null" : num(slowBound)) ",\"slowSamples\":" slow ",\"decidedEarly\":" (early ? "true" : "false") \
        ",\"estimate\":" (note != "" ? "true" : "false") ",\"verdict\":\"" verdict "\",\"passed\":" (verdict == "passed" ? "true" : "false") "}"
      print "json " json
      print "verdict " verdict
      print "message " msg
    }
  }'

# Evaluates two scrapes (files); sets metrics_json, verdicts[] and messages[]. Dies on an error.
evaluate() {
  local out error
  out="$(awk -v wal="$wal_metric" -v commit="$commit_metric" -v q="$quantile" -v node="$node" \
    -v walThr="$wal_threshold" -v commitThr="$commit_threshold" -v walMin="$min_wal" -v commitMin="$min_commit" \
    "$evaluate_awk" "$1" "$2")" || true
  error="$(sed -n 's/^error //p' <<<"$out" | head -n1)"
  [ -z "$error" ] || die "node ${node}: ${error}"
  [ -n "$out" ] || die "node ${node}: the metrics could not be evaluated"
  metrics_json="$(sed -n 's/^json //p' <<<"$out" | paste -sd, -)"
  mapfile -t verdicts < <(sed -n 's/^verdict //p' <<<"$out")
  mapfile -t messages < <(sed -n 's/^message //p' <<<"$out")
}

# Prints the messages (a failed metric's as is on stderr), then the result: $1, the JSON object
# without its closing brace, completed with "passed". Returns 1 unless every metric passed.
report() {
  local passed=true i
  for i in "${!verdicts[@]}"; do
    if [ "${verdicts[$i]}" = passed ]; then
      log "${messages[$i]}"
    else
      passed=false
      printf '%s\n' "${messages[$i]}" >&2
    fi
  done
  printf '%s,"passed":%s}\n' "$1" "$passed"
  [ "$passed" = true ]
}

# --- evaluate two saved scrapes --------------------------------------------------------------
# ZT_ACTION=evaluate decides on two scrapes saved in files (ZT_BEFORE_FILE, ZT_AFTER_FILE)
# without touching etcd (the tests decide on crafted and recorded scrapes this way).
if [ "$action" = evaluate ]; then
  for file in "${ZT_BEFORE_FILE:-}" "${ZT_AFTER_FILE:-}"; do
    [ -r "$file" ] || invalid "ZT_BEFORE_FILE and ZT_AFTER_FILE must be readable files, got '${file}' (node ${node})"
  done
  evaluate "$ZT_BEFORE_FILE" "$ZT_AFTER_FILE"
  report "$(printf '{"action":"evaluate","node":%s,"quantile":%s,"metrics":[%s]' "$(json_string "$node")" "$quantile" "$metrics_json")" || exit 3
  exit 0
fi

# --- etcd parameters ------------------------------------------------------------------------
[ -n "$host" ] || invalid "ZT_HOST must be set (node ${node})"
[[ "$endpoint" =~ ^https?://[^/[:space:]\"\\]+$ ]] ||
  invalid "ZT_ETCD_ENDPOINT must be an etcd client URL like https://127.0.0.1:2379 (no path), got '${endpoint}' (node ${node})"
[[ "$metrics_url" =~ ^https?://[^[:space:]\"\\]+$ ]] ||
  invalid "ZT_METRICS_URL must be an http(s) URL, got '${metrics_url}' (node ${node})"
for pair in "ZT_ETCD_CACERT=${cacert}" "ZT_ETCD_CERT=${cert}" "ZT_ETCD_KEY=${key}"; do
  name="${pair%%=*}"
  file="${pair#*=}"
  [ -n "$file" ] || continue
  if [[ "$file" != /* ]] || [[ "$file" == *[\"\\]* ]] || [[ "$file" == *$'\n'* ]]; then
    invalid "${name} must be an absolute path without quotes or backslashes, got '${file}' (node ${node})"
  fi
  [ -r "$file" ] || die "node ${node}: ${name} ${file} is not a readable file"
done
if { [ -n "$cert" ] && [ -z "$key" ]; } || { [ -z "$cert" ] && [ -n "$key" ]; }; then
  invalid "ZT_ETCD_CERT and ZT_ETCD_KEY go together (node ${node})"
fi
# --- tools ----------------------------------------------------------------------------------
if ! command -v curl >/dev/null 2>&1; then
  command -v apt-get >/dev/null 2>&1 || die "node ${node}: curl missing and apt-get not available to install it"
  log "node ${node}: installing curl"
  export DEBIAN_FRONTEND=noninteractive
  timeout "$apt_timeout_s" apt-get -q -o DPkg::Lock::Timeout=300 update >&2 ||
    die "node ${node}: apt-get update failed or timed out"
  timeout "$apt_timeout_s" apt-get -q -y -o DPkg::Lock::Timeout=300 install --no-install-recommends curl >&2 ||
    die "node ${node}: installing curl failed or timed out"
fi
for tool in awk base64 timeout; do
  command -v "$tool" >/dev/null 2>&1 || die "node ${node}: ${tool} is missing"
done

# --- etcd access ----------------------------------------------------------------------------
tls=()
[ -z "$cacert" ] || tls+=(--cacert "$cacert")
[ -z "$cert" ] || tls+=(--cert "$cert" --key "$key")
readonly key_prefix="/zerotouch/wal-gate/${node}/"
# The end of the prefix's key range: the prefix with its last byte ('/') incremented ('0').
readonly key_range_end="/zerotouch/wal-gate/${node}0"

work=""
keys_written=false
cleanup() {
  if [ "$keys_written" = true ]; then
    delete_keys || log "node ${node}: could not delete the gate's keys under ${key_prefix} (HTTP ${delete_code}); the next run deletes them"
  fi
  [ -z "$work" ] || rm -rf -- "$work"
}
trap cleanup EXIT
exit_on_signals
work="$(mktemp -d -t zerotouch-wal-gate.XXXXXXXX)"

b64() { printf '%s' "$1" | base64 -w0; }

# POSTs a JSON body to one of the gateway's endpoints; the answer goes to $work/answer.
# Prints the HTTP status (000 when etcd did not answer).
etcd_post() {
  curl -sS --connect-timeout 5 --max-time 15 "${tls[@]}" -o "$work/answer" -w '%{http_code}' \
    -X POST --data-binary "$2" "${endpoint}$1" 2>"$work/curl.err" || true
}

refused() {
  local what="$1" code="$2" why
  if [ "$code" = 000 ]; then
    why="$(tr '\n' ' ' <"$work/curl.err" | cut -c1-300)"
    die "node ${node}: etcd does not answer at ${endpoint} (${what}): ${why}"
  fi
  why="$(tr '\n' ' ' <"$work/answer" 2>/dev/null | cut -c1-300)"
  die "node ${node}: etcd refused ${what} at ${endpoint} with HTTP ${code}: ${why}. The gate writes through etcd's gRPC gateway (POST /v3/kv/put), which etcd serves on its client URLs unless started with --enable-grpc-gateway=false."
}

# Deletes every key under the gate's prefix. Sets delete_code (HTTP status) and deleted (how
# many keys were deleted); returns 1 unless etcd confirmed.
delete_code=""
deleted=0
delete_keys() {
  delete_code="$(etcd_post /v3/kv/deleterange "{\"key\":\"$(b64 "$key_prefix")\",\"range_end\":\"$(b64 "$key_range_end")\"}")"
  [ "$delete_code" = 200 ] || return 1
  keys_written=false
  # The gateway leaves out a count of 0 (proto3 JSON).
  deleted="$(sed -n 's/.*"deleted":"\{0,1\}\([0-9]*\).*/\1/p' "$work/answer")"
  deleted="${deleted:-0}"
}

scrape() {
  local file="$1" code
  code="$(curl -sS --connect-timeout 5 --max-time 30 "${tls[@]}" -o "$file" -w '%{http_code}' "$metrics_url" 2>"$work/curl.err" || true)"
  if [ "$code" != 200 ]; then
    die "node ${node}: cannot read etcd's metrics at ${metrics_url} (HTTP ${code}): $(tr '\n' ' ' <"$work/curl.err" | cut -c1-300)"
  fi
}

# Prints the _count of the WAL fsync and the backend commit histograms of a scrape; dies when
# the scrape has none.
counts() {
  awk -v wal="${wal_metric}_count" -v commit="${commit_metric}_count" '
    $1 == wal { w = $2 } $1 == commit { c = $2 }
    END { if (w !~ /^[0-9]+$/ || c !~ /^[0-9]+$/) exit 1; print w, c }' "$1" ||
    die "node ${node}: the metrics at ${metrics_url} have no ${wal_metric} or ${commit_metric}"
}

now_ms() { date +%s%3N; }

# --- keys of an interrupted run, first scrape -----------------------------------------------
delete_keys || refused "a delete of ${key_prefix}" "$delete_code"
[ "$deleted" = 0 ] || log "node ${node}: deleted ${deleted} keys left under ${key_prefix} by an interrupted run"

scrape "$work/before.prom"
counts "$work/before.prom" >/dev/null

# --- write load -----------------------------------------------------------------------------
value="$(head -c "$value_bytes" /dev/zero | tr '\0' z | base64 -w0)"
put_url="${endpoint}/v3/kv/put"
# One curl config per round: a put per key, each its own operation (--next) on the same
# connection, printing its HTTP status. Keys are <prefix><6 digits>, encoded in awk.
round_config() {
  awk -v first="$1" -v n="$2" -v writes="$writes" '
    BEGIN {
      prefix = ENVIRON["ZT_GATE_PREFIX"]; url = ENVIRON["ZT_GATE_URL"]; value = ENVIRON["ZT_GATE_VALUE"]
      tls = ENVIRON["ZT_GATE_TLS"]
      alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
      for (i = 32; i < 127; i++) ord[sprintf("%c", i)] = i
      for (i = 0; i < n; i++) {
        if (i > 0) print "next"
        printf "url = \"%s\"\n", url
        printf "data = \"{\\\"key\\\":\\\"%s\\\",\\\"value\\\":\\\"%s\\\"}\"\n", b64(sprintf("%s%06d", prefix, (first + i) % writes)), value
        print "output = \"/dev/null\""
        print "write-out = \"%{http_code}\\n\""
        print "connect-timeout = 5"
        print "max-time = 15"
        if (tls != "") print tls
      }
    }
    function b64(s,   out, i, len, v, c2, c3) {
      len = length(s); out = ""
      for (i = 1; i <= len; i += 3) {
        c2 = i + 1 <= len; c3 = i + 2 <= len
        v = ord[substr(s, i, 1)] * 65536 + (c2 ? ord[substr(s, i + 1, 1)] * 256 : 0) + (c3 ? ord[substr(s, i + 2, 1)] : 0)
        out = out substr(alphabet, int(v / 262144) % 64 + 1, 1) substr(alphabet, int(v / 4096) % 64 + 1, 1)
        out = out (c2 ? substr(alphabet, int(v / 64) % 64 + 1, 1) : "=") (c3 ? substr(alphabet, v % 64 + 1, 1) : "=")
      }
      return out
    }'
}
tls_config=""
[ -z "$cacert" ] || tls_config="cacert = \"${cacert}\""
[ -z "$cert" ] || tls_config="${tls_config:+${tls_config}$'\n'}cert = \"${cert}\""$'\n'"key = \"${key}\""

log "node ${node}: write load on ${endpoint}: at least ${writes} puts, ${min_wal} WAL fsyncs and ${min_commit} backend commits, at most ${load_s}s"
started_ms="$(now_ms)"
deadline_ms=$((started_ms + load_s * 1000))
written=0
rounds=0
cut_short=false
keys_written=true
while :; do
  left_ms=$((deadline_ms - $(now_ms)))
  if [ "$left_ms" -le 0 ]; then
    cut_short=true
    break
  fi
  round_ms=$((left_ms < round_max_ms ? left_ms : round_max_ms))
  ZT_GATE_PREFIX="$key_prefix" ZT_GATE_URL="$put_url" ZT_GATE_VALUE="$value" ZT_GATE_TLS="$tls_config" \
    round_config "$written" "$round_puts" >"$work/round.cfg"
  rc=0
  # Line-buffered, so the statuses of a round cut short by its time limit are all in the file.
  timeout -k 5 "$((round_ms / 1000)).$(printf '%03d' $((round_ms % 1000)))" stdbuf -oL curl -sS -K "$work/round.cfg" \
    >"$work/codes" 2>"$work/curl.err" || rc=$?
  ok="$(grep -c '^200$' "$work/codes" || true)"
  written=$((written + ok))
  rounds=$((rounds + 1))
  bad="$(grep -v '^200$' "$work/codes" | head -n1 || true)"
  if [ -n "$bad" ]; then
    # Repeat one put to show etcd's answer.
    code="$(etcd_post /v3/kv/put "{\"key\":\"$(b64 "${key_prefix}000000")\",\"value\":\"${value}\"}")"
    if [ "$code" = 200 ]; then
      refused "a put" "$bad"
    fi
    refused "a put" "$code"
  fi
  case "$rc" in
    0 | 124 | 137) ;;
    *) die "node ${node}: curl failed (exit ${rc}) during the write load: $(tr '\n' ' ' <"$work/curl.err" | cut -c1-300)" ;;
  esac
  # Done when each metric is decided: above its threshold, or passing over enough samples
  # after at least the asked-for puts.
  scrape "$work/during.prom"
  evaluate "$work/before.prom" "$work/during.prom"
  decided=true
  for v in "${verdicts[@]}"; do
    case "$v" in
      above-threshold) ;;
      passed) [ "$written" -ge "$writes" ] || decided=false ;;
      *) decided=false ;;
    esac
  done
  [ "$decided" = false ] || break
done
load_ms=$(($(now_ms) - started_ms))
if [ "$cut_short" = true ]; then
  log "node ${node}: the write load reached its bound of ${load_s}s after ${written} puts"
else
  log "node ${node}: ${written} puts in ${load_ms} ms"
fi

scrape "$work/after.prom"
if delete_keys; then
  log "node ${node}: deleted the ${deleted} keys of the write load under ${key_prefix}"
else
  log "node ${node}: could not delete the gate's keys under ${key_prefix} (HTTP ${delete_code}); the next run deletes them"
fi

# --- decide ---------------------------------------------------------------------------------
evaluate "$work/before.prom" "$work/after.prom"
report "$(printf '{"action":"create","node":%s,"host":%s,"endpoint":%s,"metricsUrl":%s,"keyPrefix":%s,"writes":%d,"written":%d,"rounds":%d,"loadSeconds":%d,"loadMs":%d,"cutShort":%s,"quantile":%s,"metrics":[%s]' \
  "$(json_string "$node")" "$(json_string "$host")" "$(json_string "$endpoint")" "$(json_string "$metrics_url")" "$(json_string "$key_prefix")" \
  "$writes" "$written" "$rounds" "$load_s" "$load_ms" "$cut_short" "$quantile" "$metrics_json")" || exit 3
