#!/usr/bin/env bash
# Builds the lab node image (Debian bookworm root filesystem) once and caches it outside the
# checkout. Prints the path of the ready image on stdout; progress goes to stderr.
#
# The cache name is the sha256 of packages.txt and this file, so editing either builds a new
# image. The image is built in a temporary directory next to the cache and renamed into place
# only when complete, so a half-built image is never used. Concurrent builds are serialised
# with a lock file.
#
# Usage: rootfs.sh           build if needed, print the image path
#        rootfs.sh --path    print the image path only
#
# Environment:
#   LAB_CACHE_DIR  where images are kept. Defaults to /var/cache/zerotouch-lab.
#   LAB_MIRROR     Debian mirror for debootstrap. Defaults to http://deb.debian.org/debian.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache_dir="${LAB_CACHE_DIR:-/var/cache/zerotouch-lab}"
mirror="${LAB_MIRROR:-http://deb.debian.org/debian}"
suite=bookworm

log() { printf 'rootfs: %s\n' "$*" >&2; }

packages() { grep -v -e '^#' -e '^[[:space:]]*$' "$here/packages.txt"; }

image_hash() { cat "$here/packages.txt" "$here/rootfs.sh" | sha256sum | cut -c1-16; }

# Settings baked into the image. Per-node identity (hostname, machine-id, host keys, root's
# authorized key) is written into each node's private upper layer by lab.sh, never here.
configure_image() {
  local root="$1"

  # Name resolution without DNS: the lab has no resolver and must not reach one.
  printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
  printf '# zerotouch lab: no resolver; names come from /etc/hosts\n' >"$root/etc/resolv.conf"
  : >"$root/etc/fstab"

  # Each node gets its own identity at first boot of its overlay.
  : >"$root/etc/machine-id"
  rm -f "$root/var/lib/dbus/machine-id"
  rm -f "$root"/etc/ssh/ssh_host_*

  # sshd: root by key only, one ed25519 host key per node.
  cat >"$root/etc/ssh/sshd_config.d/zerotouch-lab.conf" <<'EOF'
# zerotouch lab node: key-only root login, ed25519 host key written per node.
HostKey /etc/ssh/ssh_host_ed25519_key
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UseDNS no
EOF
  chroot "$root" systemctl enable ssh.service >/dev/null 2>&1

  # etcd-server is installed like on a VPS, but stopped and disabled: the product's etcd
  # component decides when and how it runs. Disabled rather than masked, so a unit file
  # written to /etc/systemd/system/etcd.service lands in a file, not in /dev/null.
  chroot "$root" systemctl disable etcd.service >/dev/null 2>&1 || true

  # Units that have nothing to do in a container node and only make boot noisy.
  local unit
  for unit in systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer \
    e2scrub_reap.service fstrim.timer; do
    chroot "$root" systemctl mask "$unit" >/dev/null 2>&1 || true
  done

  install -d -m 0700 "$root/root/.ssh"
  chroot "$root" apt-get clean
  printf '%s\n' "$(image_hash)" >"$root/etc/zerotouch-lab-image"
}

# Unmounts whatever debootstrap left mounted below a directory (deepest first), then removes it.
discard() {
  local dir="$1" target
  [ -e "$dir" ] || return 0
  while read -r target; do
    umount -l "$target" 2>/dev/null || true
  done < <(awk -v d="$dir/" 'index($5, d) == 1 { print $5 }' /proc/self/mountinfo | sort -r)
  rm -rf --one-file-system "$dir" "$dir.log"
}

build() {
  local dest="$1" tmp
  tmp="$(mktemp -d "$cache_dir/.build-XXXXXX")"
  # Remove the partial build on any exit before the rename, also on Ctrl-C.
  trap 'discard "$tmp"' EXIT
  trap 'exit 130' INT TERM
  log "building $dest (debootstrap $suite from $mirror, takes a few minutes)"
  local include
  include="$(packages | paste -sd, -)"
  timeout 1800 debootstrap --variant=minbase --include="$include" "$suite" "$tmp" "$mirror" >"$tmp.log" 2>&1 || {
    tail -n 30 "$tmp.log" >&2
    rm -f "$tmp.log"
    return 1
  }
  rm -f "$tmp.log"
  # mktemp made the directory 0700; a root directory is 0755.
  chmod 0755 "$tmp"
  configure_image "$tmp"
  mv -T "$tmp" "$dest"
  trap - EXIT
  log "built $dest"
  prune "$dest"
}

# Removes images of older recipes that no running lab uses as its lower layer.
prune() {
  local keep="$1" old
  for old in "$cache_dir"/rootfs-*; do
    if [ ! -d "$old" ] || [ "$old" = "$keep" ] || grep -qF "lowerdir=$old" /proc/self/mountinfo; then
      continue
    fi
    log "removing old image $old"
    rm -rf --one-file-system "$old"
  done
}

main() {
  local dest
  dest="$cache_dir/rootfs-$(image_hash)"
  if [ "${1:-}" = "--path" ]; then
    # Where the image for the current recipe lives (built or not).
    printf '%s\n' "$dest"
    return 0
  fi
  install -d -m 0755 "$cache_dir"
  if [ -f "$dest/etc/zerotouch-lab-image" ]; then
    printf '%s\n' "$dest"
    return 0
  fi
  exec 9>"$cache_dir/.lock"
  timeout 1900 flock 9 || { log "another build holds $cache_dir/.lock"; return 1; }
  if [ ! -f "$dest/etc/zerotouch-lab-image" ]; then
    command -v debootstrap >/dev/null || { log "debootstrap is not installed"; return 1; }
    # Leftovers of builds that were killed outright; we hold the lock, so none is running.
    local stale
    for stale in "$cache_dir"/.build-*; do
      case "$stale" in *.log) continue ;; esac
      [ -d "$stale" ] && discard "$stale"
    done
    build "$dest"
  fi
  printf '%s\n' "$dest"
}

main "$@"
