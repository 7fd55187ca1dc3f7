# shellcheck shell=bash disable=SC2154  # node: set by the gate script (read_action_node) ahead of the calls
# What the disk gates (fsync-gate.sh, wal-fsync-gate.sh) share. A library: zerotouch puts it in
# the payload after common.sh and ahead of each gate script; a script run by hand sources it
# from the checkout.

# threshold_ms <name> <value>: prints a gate's threshold (ms, positive, below 1000000, at most 6
# decimals: whole ns) in its canonical spelling (010.50 -> 10.5, what JavaScript's String()
# gives for the result's number); exits 2 naming the parameter and the node otherwise.
threshold_ms() {
  local name="$1" given="$2" int frac=""
  if ! [[ "$given" =~ ^[0-9]{1,6}(\.[0-9]{1,6})?$ ]] || ! [[ "$given" =~ [1-9] ]]; then
    invalid "${name} must be a positive number of ms below 1000000 with at most 6 decimals, got '${given}' (node ${node})"
  fi
  int="${given%%.*}"
  if [[ "$given" == *.* ]]; then
    frac="${given#*.}"
    frac="${frac%"${frac##*[!0]}"}"
  fi
  printf '%s' "$((10#$int))${frac:+.$frac}"
}
