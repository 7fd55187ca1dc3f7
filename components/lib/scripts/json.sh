# shellcheck shell=bash
# JSON output for node scripts (which print one JSON object as their last stdout line).
# A library: zerotouch puts it in the payload ahead of the scripts that use it; a script run
# by hand sources it from the checkout.

# Prints a string as a JSON string literal.
json_string() {
  local s=$1
  s=${s//\\/\\\\}
  s=${s//\"/\\\"}
  s=${s//$'\n'/\\n}
  s=${s//$'\r'/}
  s=${s//$'\t'/\\t}
  printf '"%s"' "$s"
}

# Prints its arguments as a JSON array of strings.
json_array() {
  local out="" item
  for item in "$@"; do
    out+="${out:+,}$(json_string "$item")"
  done
  printf '[%s]' "$out"
}
