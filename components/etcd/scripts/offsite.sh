# shellcheck shell=bash
# Off-node copies of etcd snapshots, with rclone: an S3-compatible bucket or an SFTP target. A
# library of etcd-snapshot.sh (copy after each verified save, keep the newest on the target) and
# etcd-restore.sh (fetch a copy back); needs common.sh ahead of it.
#
# The rclone remote is made from the environment only (RCLONE_CONFIG_ZTOFFSITE_*, RCLONE_CONFIG
# /notfound: no rclone.conf is read or written). Credentials never go on a command line: they are
# files of the credentials directory (0700, files 0600), read into rclone's environment
# (S3 keys) or named by path (SSH private key, known_hosts with the pinned host key).
#
# Parameters (environment):
#   ZT_OFFSITE_TYPE             empty (no off-node copies), s3 or sftp
#   ZT_OFFSITE_ENDPOINT         (s3) the service's URL, scheme://host[:port]
#   ZT_OFFSITE_REGION           (s3) optional region name
#   ZT_OFFSITE_BUCKET           (s3) the bucket
#   ZT_OFFSITE_HOST             (sftp) host name or IP address
#   ZT_OFFSITE_PORT             (sftp) SSH port. Defaults to 22.
#   ZT_OFFSITE_USER             (sftp) user name
#   ZT_OFFSITE_HOST_KEY         (sftp) the target's pinned public host key, "ssh-ed25519 AAAA..."
#   ZT_OFFSITE_PATH             the directory on the target (sftp: absolute, or relative to the
#                               user's home) or the key prefix in the bucket (s3). Optional.
#   ZT_OFFSITE_RETAIN           copies of this node kept on the target (1-1000). Defaults to 24.
#   ZT_OFFSITE_CREDENTIALS_DIR  where the credential files are. Defaults to /etc/zerotouch/etcd-offsite.
#   Secrets, read once by offsite_store_credentials into that directory and then unset:
#   ZT_OFFSITE_SSH_KEY (sftp: OpenSSH/PEM private key), ZT_OFFSITE_ACCESS_KEY_ID and
#   ZT_OFFSITE_SECRET_ACCESS_KEY (s3).

offsite_remote=ztoffsite
offsite_rclone_timeout_s=1800
offsite_list_timeout_s=120

# offsite_params <node>: reads and checks the ZT_OFFSITE_* parameters (exits 2 on a bad one).
offsite_params() {
  local node=$1 host_re='^([A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*|[0-9.]+|\[?[0-9A-Fa-f:.]+\]?)$'
  local path_re='^/?[A-Za-z0-9._@+-]+(/[A-Za-z0-9._@+-]+)*$'
  offsite_type="${ZT_OFFSITE_TYPE:-}"
  offsite_endpoint="${ZT_OFFSITE_ENDPOINT:-}"
  offsite_region="${ZT_OFFSITE_REGION:-}"
  offsite_bucket="${ZT_OFFSITE_BUCKET:-}"
  offsite_host="${ZT_OFFSITE_HOST:-}"
  offsite_port="${ZT_OFFSITE_PORT:-22}"
  offsite_user="${ZT_OFFSITE_USER:-}"
  offsite_host_key="${ZT_OFFSITE_HOST_KEY:-}"
  offsite_path="${ZT_OFFSITE_PATH:-}"
  offsite_retain="${ZT_OFFSITE_RETAIN:-24}"
  offsite_credentials="${ZT_OFFSITE_CREDENTIALS_DIR:-/etc/zerotouch/etcd-offsite}"
  case "$offsite_type" in
    "") return 0 ;;
    s3)
      [[ "$offsite_endpoint" =~ ^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?/?$ ]] ||
        invalid "ZT_OFFSITE_ENDPOINT must be the S3 service's URL scheme://host[:port] without a path, got '${offsite_endpoint}' (node ${node})"
      [[ "$offsite_bucket" =~ ^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$ ]] ||
        invalid "ZT_OFFSITE_BUCKET must be an S3 bucket name (3-63 of a-z 0-9 . -), got '${offsite_bucket}' (node ${node})"
      [ -z "$offsite_region" ] || [[ "$offsite_region" =~ ^[a-z0-9-]{1,32}$ ]] ||
        invalid "ZT_OFFSITE_REGION must be a region name (a-z, 0-9, -), got '${offsite_region}' (node ${node})"
      ;;
    sftp)
      if ! [[ "$offsite_host" =~ $host_re ]] || [ "${#offsite_host}" -gt 253 ]; then
        invalid "ZT_OFFSITE_HOST must be a host name or IP address, got '${offsite_host}' (node ${node})"
      fi
      if ! [[ "$offsite_port" =~ ^[1-9][0-9]{0,4}$ ]] || [ "$offsite_port" -gt 65535 ]; then
        invalid "ZT_OFFSITE_PORT must be a port from 1 to 65535, got '${offsite_port}' (node ${node})"
      fi
      [[ "$offsite_user" =~ ^[a-z_][a-z0-9_.-]{0,31}$ ]] ||
        invalid "ZT_OFFSITE_USER must be a user name, got '${offsite_user}' (node ${node})"
      [[ "$offsite_host_key" =~ ^(ssh-ed25519|ecdsa-sha2-nistp256|ecdsa-sha2-nistp384|ecdsa-sha2-nistp521|ssh-rsa)\ [A-Za-z0-9+/]+={0,3}$ ]] ||
        invalid "ZT_OFFSITE_HOST_KEY must be the target's public host key as 'ssh-ed25519 AAAA...' (key type and base64), got '${offsite_host_key}' (node ${node})"
      ;;
    *) invalid "ZT_OFFSITE_TYPE must be empty, s3 or sftp, got '${offsite_type}' (node ${node})" ;;
  esac
  if [ -n "$offsite_path" ]; then
    if ! [[ "$offsite_path" =~ $path_re ]] || [[ "/${offsite_path}/" == */./* ]] || [[ "/${offsite_path}/" == */../* ]]; then
      invalid "ZT_OFFSITE_PATH must be a path of letters, digits and . _ @ + - (no . or .. components), got '${offsite_path}' (node ${node})"
    fi
  fi
  if ! [[ "$offsite_retain" =~ ^[1-9][0-9]{0,3}$ ]] || [ "$offsite_retain" -gt 1000 ]; then
    invalid "ZT_OFFSITE_RETAIN must be an integer from 1 to 1000, got '${offsite_retain}' (node ${node})"
  fi
  safe_path "$offsite_credentials" ||
    invalid "ZT_OFFSITE_CREDENTIALS_DIR must be an absolute path, got '${offsite_credentials}' (node ${node})"
}

# offsite_store_credentials <node> <dir>: writes the secrets of the ZT_OFFSITE_* parameters into
# <dir> (0700; files 0600; those another type would use are removed), then unsets them. Without a
# type, removes <dir>. Sets offsite_stored_changed (true when a file was written or removed).
# shellcheck disable=SC2034  # offsite_stored_changed is the caller's
offsite_store_credentials() {
  local node=$1 dir=$2 name value f
  offsite_stored_changed=false
  if [ -z "$offsite_type" ]; then
    if [ -e "$dir" ]; then
      rm -rf -- "$dir"
      offsite_stored_changed=true
    fi
    unset ZT_OFFSITE_SSH_KEY ZT_OFFSITE_ACCESS_KEY_ID ZT_OFFSITE_SECRET_ACCESS_KEY
    return 0
  fi
  local -A wanted=()
  if [ "$offsite_type" = sftp ]; then
    [[ "${ZT_OFFSITE_SSH_KEY:-}" == -----BEGIN* ]] ||
      invalid "ZT_OFFSITE_SSH_KEY must be the SFTP user's private key (OpenSSH or PEM; not shown) (node ${node})"
    wanted[ssh-key]="${ZT_OFFSITE_SSH_KEY%$'\n'}"$'\n'
    if [ "$offsite_port" = 22 ]; then
      wanted[known_hosts]="${offsite_host} ${offsite_host_key}"$'\n'
    else
      wanted[known_hosts]="[${offsite_host}]:${offsite_port} ${offsite_host_key}"$'\n'
    fi
  else
    [[ "${ZT_OFFSITE_ACCESS_KEY_ID:-}" =~ ^[!-~]{1,256}$ ]] ||
      invalid "ZT_OFFSITE_ACCESS_KEY_ID must be the S3 access key id (printable, no spaces; not shown) (node ${node})"
    [[ "${ZT_OFFSITE_SECRET_ACCESS_KEY:-}" =~ ^[!-~]{1,256}$ ]] ||
      invalid "ZT_OFFSITE_SECRET_ACCESS_KEY must be the S3 secret access key (printable, no spaces; not shown) (node ${node})"
    wanted[access-key-id]="$ZT_OFFSITE_ACCESS_KEY_ID"
    wanted[secret-access-key]="$ZT_OFFSITE_SECRET_ACCESS_KEY"
  fi
  unset ZT_OFFSITE_SSH_KEY ZT_OFFSITE_ACCESS_KEY_ID ZT_OFFSITE_SECRET_ACCESS_KEY
  (umask 077 && mkdir -p -- "$dir")
  chmod 0700 -- "$dir"
  for name in ssh-key known_hosts access-key-id secret-access-key; do
    f="${dir}/${name}"
    if [ -z "${wanted[$name]+set}" ]; then
      if [ -e "$f" ]; then
        rm -f -- "$f"
        offsite_stored_changed=true
      fi
      continue
    fi
    value="${wanted[$name]}"
    if [ -f "$f" ] && [ "$(stat -c %a -- "$f")" = 600 ] && [ "$(cat -- "$f"; printf x)" = "${value}x" ]; then
      continue
    fi
    (umask 077 && printf '%s' "$value" >"${f}.new")
    chmod 0600 -- "${f}.new"
    mv -f -- "${f}.new" "$f"
    offsite_stored_changed=true
  done
}

# offsite_set <KEY> <value>: one parameter of the rclone remote, exported as RCLONE_CONFIG_ZTOFFSITE_<KEY>.
offsite_set() {
  export "RCLONE_CONFIG_ZTOFFSITE_$1=$2"
}

# offsite_env <credentials dir>: exports the rclone remote `ztoffsite:` of the parameters, with
# the credentials of <dir>; sets offsite_base (the remote path the copies go to).
offsite_env() {
  local dir=$1 f v
  # Only the parameters make the remote: no rclone.conf, no AWS_* or other RCLONE_* of the caller.
  for v in $(compgen -e); do
    case "$v" in AWS_* | RCLONE_*) unset "$v" ;; esac
  done
  export RCLONE_CONFIG=/notfound
  offsite_set TYPE "$offsite_type"
  if [ "$offsite_type" = s3 ]; then
    for f in access-key-id secret-access-key; do
      [ -r "${dir}/${f}" ] || die "the off-node copy's credential ${dir}/${f} is missing (run the snapshot step's create again)"
    done
    offsite_set PROVIDER Other
    offsite_set ENV_AUTH false
    offsite_set ENDPOINT "$offsite_endpoint"
    offsite_set FORCE_PATH_STYLE true
    offsite_set NO_CHECK_BUCKET true
    [ -z "$offsite_region" ] || offsite_set REGION "$offsite_region"
    # Read in this shell (no process sees them as arguments).
    offsite_set ACCESS_KEY_ID "$(<"${dir}/access-key-id")"
    offsite_set SECRET_ACCESS_KEY "$(<"${dir}/secret-access-key")"
    offsite_base="${offsite_remote}:${offsite_bucket}${offsite_path:+/${offsite_path#/}}"
  else
    for f in ssh-key known_hosts; do
      [ -r "${dir}/${f}" ] || die "the off-node copy's credential ${dir}/${f} is missing (run the snapshot step's create again)"
    done
    local host="${offsite_host#[}"
    offsite_set HOST "${host%]}"
    offsite_set PORT "$offsite_port"
    offsite_set USER "$offsite_user"
    offsite_set KEY_FILE "${dir}/ssh-key"
    offsite_set KNOWN_HOSTS_FILE "${dir}/known_hosts"
    offsite_set KEY_USE_AGENT false
    # Hashes are checked by reading the copy back; no remote commands beyond SFTP itself.
    offsite_set DISABLE_HASHCHECK true
    offsite_base="${offsite_remote}:${offsite_path}"
  fi
}

# offsite_rclone <seconds> <stderr file> <rclone args...>: rclone bounded in time, with retries.
offsite_rclone() {
  local seconds=$1 err=$2
  shift 2
  bounded "$seconds" "$err" rclone --contimeout 30s --timeout 300s --retries 3 --low-level-retries 10 --stats 0 "$@"
}

# offsite_why <stderr file>: the lines of an rclone error worth a message.
offsite_why() {
  grep -h -m 3 -iE 'error|fail|denied|refused|mismatch|not found|no such' "$1" | tr '\n' ' ' | cut -c1-400
}

# offsite_file <name>: the remote path of a file of the target's directory.
offsite_file() {
  case "$offsite_base" in
    *:) printf '%s%s' "$offsite_base" "$1" ;;
    *) printf '%s/%s' "$offsite_base" "$1" ;;
  esac
}

# offsite_list <work> <regex>: the target's file names matching the regex, sorted (oldest first).
# A directory (or S3 prefix) that does not exist yet lists as empty.
offsite_list() {
  local work=$1 re=$2 name
  if ! offsite_rclone "$offsite_list_timeout_s" "$work/lsf.err" lsf --files-only "$offsite_base" >"$work/lsf.out"; then
    grep -q 'directory not found' "$work/lsf.err" ||
      die "cannot list the off-node target ${offsite_base#"${offsite_remote}:"} (${offsite_type}): $(offsite_why "$work/lsf.err")"
    : >"$work/lsf.out"
  fi
  while IFS= read -r name; do
    [[ "$name" =~ $re ]] && printf '%s\n' "$name"
  done <"$work/lsf.out" | LC_ALL=C sort
}

# offsite_remote_size <work> <name>: the size the target reports for a file, or nothing.
offsite_remote_size() {
  offsite_rclone "$offsite_list_timeout_s" "$1/lsjson.err" lsjson --files-only --no-modtime --no-mimetype "$offsite_base" >"$1/lsjson.out" || return 1
  tr '{' '\n' <"$1/lsjson.out" | grep -F "\"Name\":$(json_string "$2")," | sed -n 's/.*"Size":\([0-9]*\).*/\1/p' | head -n 1
}

# offsite_readback_sha256 <work> <name>: the sha256 of a file as read back from the target.
offsite_readback_sha256() {
  # shellcheck disable=SC2016  # $1 is the inner shell's
  bounded "$offsite_rclone_timeout_s" "$1/cat.err" bash -c 'set -o pipefail; rclone --contimeout 30s --timeout 300s --low-level-retries 10 cat "$1" | sha256sum' \
    _ "$(offsite_file "$2")" | cut -d' ' -f1
}

# offsite_check <node> <work>: writes a small file to the target and deletes it again: the
# credentials, the pinned host key, the bucket or directory and the right to write there all work.
offsite_check() {
  local node=$1 work=$2 probe=".zerotouch-check-$1"
  printf 'zerotouch: write check of node %s\n' "$node" >"$work/$probe"
  offsite_rclone "$offsite_list_timeout_s" "$work/check.err" mkdir "$offsite_base" &&
    offsite_rclone "$offsite_list_timeout_s" "$work/check.err" copyto --no-traverse "$work/$probe" "$(offsite_file "$probe")" &&
    offsite_rclone "$offsite_list_timeout_s" "$work/check.err" deletefile "$(offsite_file "$probe")"
}

# offsite_copy <node> <file> <work>: copies a verified snapshot to the target, checks the copy
# (size as listed, sha256 as read back), writes its <name>.sha256 next to it, then keeps the newest
# offsite_retain copies of the node. Sets offsite_sha256, offsite_size, offsite_copy_ms,
# offsite_verify_ms, offsite_kept, offsite_removed (names).
offsite_copy() {
  local node=$1 file=$2 work=$3 name local_sha remote_size remote_sha t0 t1 t2 i drop
  name="${file##*/}"
  local_sha="$(sha256sum -- "$file" | cut -d' ' -f1)"
  offsite_size="$(stat -c %s -- "$file")"
  t0="$(date +%s%3N)"
  offsite_rclone "$offsite_rclone_timeout_s" "$work/copy.err" copyto --no-traverse "$file" "$(offsite_file "$name")" ||
    die "node ${node}: ${file} is kept on the node, but its off-node copy to ${offsite_type} ${offsite_base#"${offsite_remote}:"} failed: $(offsite_why "$work/copy.err")"
  t1="$(date +%s%3N)"
  remote_size="$(offsite_remote_size "$work" "$name")" || remote_size=""
  remote_sha="$(offsite_readback_sha256 "$work" "$name")" || remote_sha=""
  t2="$(date +%s%3N)"
  [ "$remote_size" = "$offsite_size" ] ||
    die "node ${node}: the off-node copy of ${name} is ${remote_size:-unknown} bytes on the target, ${offsite_size} on the node: not verified; ${file} is kept on the node"
  [ "$remote_sha" = "$local_sha" ] ||
    die "node ${node}: the off-node copy of ${name} reads back with sha256 ${remote_sha:-unknown}, the node's file has ${local_sha}: not verified; ${file} is kept on the node"
  printf '%s  %s\n' "$local_sha" "$name" >"$work/${name}.sha256"
  offsite_rclone "$offsite_list_timeout_s" "$work/sidecar.err" copyto --no-traverse "$work/${name}.sha256" "$(offsite_file "${name}.sha256")" ||
    die "node ${node}: the checksum file ${name}.sha256 could not be written next to the off-node copy: $(offsite_why "$work/sidecar.err")"
  offsite_sha256="$local_sha"
  offsite_copy_ms=$((t1 - t0))
  offsite_verify_ms=$((t2 - t1))
  log "node ${node}: copied off the node to ${offsite_type} ${offsite_base#"${offsite_remote}:"}/${name}: ${offsite_size} bytes in ${offsite_copy_ms} ms, read back with sha256 ${local_sha} in ${offsite_verify_ms} ms"

  # Retention on the target: the newest offsite_retain copies of this node stay.
  mapfile -t copies < <(offsite_list "$work" "^${node}-[0-9]{8}T[0-9]{6}\\.[0-9]{3}Z\\.db$")
  offsite_removed=()
  drop=$((${#copies[@]} - offsite_retain))
  for ((i = 0; i < drop; i++)); do
    offsite_rclone "$offsite_list_timeout_s" "$work/delete.err" deletefile "$(offsite_file "${copies[$i]}")" ||
      die "node ${node}: could not delete the old off-node copy ${copies[$i]}: $(offsite_why "$work/delete.err")"
    offsite_rclone "$offsite_list_timeout_s" "$work/delete.err" deletefile "$(offsite_file "${copies[$i]}.sha256")" ||
      log "node ${node}: note: ${copies[$i]}.sha256 was not there to delete"
    offsite_removed+=("${copies[$i]}")
  done
  offsite_kept=$((${#copies[@]} - ${#offsite_removed[@]}))
  log "node ${node}: keeping ${offsite_kept} off-node copies (at most ${offsite_retain}), removed ${#offsite_removed[@]}"
}

# offsite_fetch <node> <name|latest> <directory> <work>: downloads a copy of the node's snapshot
# (latest: the newest with its .sha256) into the directory and checks it against its .sha256.
# Sets offsite_fetched (the local file) and offsite_sha256.
# shellcheck disable=SC2034  # offsite_fetched and offsite_sha256 are the caller's
offsite_fetch() {
  local node=$1 want=$2 dest=$3 work=$4 name expected actual f
  local re="^${node}-[0-9]{8}T[0-9]{6}\\.[0-9]{3}Z\\.db(\\.sha256)?$"
  mapfile -t listed < <(offsite_list "$work" "$re")
  if [ "$want" = latest ]; then
    name=""
    for f in "${listed[@]}"; do
      [[ "$f" == *.db ]] && printf '%s\n' "${listed[@]}" | grep -qxF "${f}.sha256" && name="$f"
    done
    [ -n "$name" ] || die "no off-node copy of node ${node} with its .sha256 on ${offsite_type} ${offsite_base#"${offsite_remote}:"} (found: ${listed[*]:-none})"
  else
    name="$want"
    printf '%s\n' "${listed[@]}" | grep -qxF "$name" || die "${name} is not an off-node copy of node ${node} on ${offsite_type} ${offsite_base#"${offsite_remote}:"}"
    printf '%s\n' "${listed[@]}" | grep -qxF "${name}.sha256" || die "${name} has no ${name}.sha256 next to it on the target: its upload was not verified"
  fi
  (umask 077 && mkdir -p -- "$dest")
  [ ! -e "${dest}/${name}" ] || die "${dest}/${name} exists already; move it aside or restore from it with ZT_SNAPSHOT=${dest}/${name} and no ZT_OFFSITE_TYPE"
  log "fetching ${name} from ${offsite_type} ${offsite_base#"${offsite_remote}:"} into ${dest}"
  offsite_rclone "$offsite_rclone_timeout_s" "$work/fetch.err" copyto "$(offsite_file "${name}.sha256")" "$work/expected.sha256" ||
    die "cannot read ${name}.sha256 from the target: $(offsite_why "$work/fetch.err")"
  offsite_rclone "$offsite_rclone_timeout_s" "$work/fetch.err" copyto "$(offsite_file "$name")" "${dest}/.${name}.part" ||
    die "cannot download ${name} from the target: $(offsite_why "$work/fetch.err")"
  expected="$(cut -d' ' -f1 "$work/expected.sha256")"
  actual="$(sha256sum -- "${dest}/.${name}.part" | cut -d' ' -f1)"
  if [ "$expected" != "$actual" ]; then
    rm -f -- "${dest}/.${name}.part"
    die "${name} as downloaded has sha256 ${actual}, its .sha256 on the target says ${expected}: not used"
  fi
  chmod 0600 -- "${dest}/.${name}.part"
  mv -- "${dest}/.${name}.part" "${dest}/${name}"
  offsite_fetched="${dest}/${name}"
  offsite_sha256="$actual"
  log "fetched ${offsite_fetched}: sha256 ${actual}, as its .sha256 on the target says"
}
