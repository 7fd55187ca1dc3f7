# shellcheck shell=bash
# The real Pulumi engine from the toolchain cache (test/lab/toolchain), for the scripts that run
# it: `npm run lab`, `npm run test:engine` and `npm run bench:engine`. Sourced, not run.

# What `pulumi up` on the lab needs: the CLI, the nodejs language host (the v3.68.0 host and the
# lab's adapter that runs policy packs), the policy-pack launcher, and the command (the lab's
# stand-in), tls and random plugins.
ENGINE_TOOLS=(pulumi pulumi-language-nodejs pulumi-language-nodejs-v3.68.0 pulumi-analyzer-policy
  pulumi-resource-command pulumi-resource-tls pulumi-resource-random)
# The GitOps layer's engine test adds the kubernetes plugin and a test API server (test/k8s).
ENGINE_K8S_TOOLS=(pulumi-resource-kubernetes kube-apiserver kube-controller-manager kubectl)
export ENGINE_TOOLS ENGINE_K8S_TOOLS

# engine_env BIN STATE_DIR: the toolchain first on PATH (its plugins are used as ambient plugins),
# a file backend and a PULUMI_HOME under STATE_DIR (nothing of the user's is read or written),
# a passphrase secrets provider, no plugin downloads and no update check.
engine_env() {
  local bin="$1" state="$2"
  install -d -m 0700 "$state" "$state/.pulumi-home"
  export PATH="$bin:$PATH"
  export PULUMI_HOME="$state/.pulumi-home"
  export PULUMI_BACKEND_URL="file://$state"
  export PULUMI_CONFIG_PASSPHRASE="${PULUMI_CONFIG_PASSPHRASE:-zerotouch-lab}"
  export PULUMI_SKIP_UPDATE_CHECK=true
  export PULUMI_SKIP_CONFIRMATIONS=true
  export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
}

# lab_root_only NAME: stops with a message unless run as root (the lab uses network namespaces,
# loop devices and systemd-nspawn).
lab_root_only() {
  [ "$(id -u)" -eq 0 ] && return 0
  echo "$1: run as root (the lab uses network namespaces, loop devices and systemd-nspawn)" >&2
  exit 1
}
