#!/usr/bin/env bash
# The Debian tools the tests run for real (etcd, nft, fio, shellcheck, ...): one list, used by
# `npm test` (jest's global setup), `npm run lint` (shellcheck) and CI.
#
# Usage: host-tools.sh check             print the missing packages, one a line; exit 1 if any
#        host-tools.sh ensure [command]  install what is missing (all, or the one command's
#                                        package) when running as root on Debian; otherwise fail
#                                        at once with the exact apt-get line to run
set -euo pipefail

# command:package. A command is looked up on PATH (and in /usr/sbin and /sbin); an absolute path
# (a plugin, not a command) must exist.
readonly TOOLS=(
  bash:bash
  curl:curl
  etcd:etcd-server
  etcdctl:etcd-client
  fio:fio
  flock:util-linux
  getent:libc-bin
  git:git
  ip:iproute2
  jq:jq
  lighttpd:lighttpd
  /usr/lib/lighttpd/mod_openssl.so:lighttpd-mod-openssl
  nft:nftables
  nmap:nmap
  openssl:openssl
  python3:python3-minimal
  redis-server:redis-server
  setsid:util-linux
  shellcheck:shellcheck
  systemd-analyze:systemd
  systemd-run:systemd
  tar:tar
  unshare:util-linux
  useradd:passwd
)

log() { printf 'host-tools: %s\n' "$*" >&2; }

has() {
  case "$1" in
    /*) [ -e "$1" ] ;;
    *) PATH="$PATH:/usr/sbin:/sbin" command -v "$1" >/dev/null 2>&1 ;;
  esac
}

# missing [command]: the packages of missing commands, sorted, one a line.
missing() {
  local only=${1:-} entry cmd pkg found=false out=()
  for entry in "${TOOLS[@]}"; do
    cmd=${entry%%:*}
    pkg=${entry#*:}
    if [ -n "$only" ] && [ "$cmd" != "$only" ]; then continue; fi
    found=true
    has "$cmd" || out+=("$pkg")
  done
  if [ "$found" = false ]; then
    log "unknown command '${only}': not in the list of test tools (test/support/host-tools.sh)"
    exit 2
  fi
  if [ "${#out[@]}" -gt 0 ]; then printf '%s\n' "${out[@]}" | sort -u; fi
}

case "${1:-}" in
  check)
    list=$(missing "${2:-}")
    [ -z "$list" ] || {
      printf '%s\n' "$list"
      exit 1
    }
    ;;
  ensure)
    list=$(missing "${2:-}")
    [ -n "$list" ] || exit 0
    mapfile -t packages <<<"$list"
    line="apt-get update && apt-get install -y --no-install-recommends ${packages[*]}"
    if [ "$(id -u)" -ne 0 ] || ! [ -f /etc/debian_version ] || ! has apt-get; then
      log "the tests need Debian packages that are not installed: ${packages[*]}"
      log "install them as root, then run again:"
      log "  ${line}"
      exit 1
    fi
    log "installing ${packages[*]} (${line})"
    timeout 600 apt-get update -qq
    DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
    list=$(missing "${2:-}")
    [ -z "$list" ] || {
      log "still missing after apt-get install: $(printf '%s' "$list" | paste -sd' ' -)"
      exit 1
    }
    ;;
  *)
    printf 'usage: %s check|ensure [command]\n' "$0" >&2
    exit 2
    ;;
esac
