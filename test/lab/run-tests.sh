#!/usr/bin/env bash
# `npm run test:lab`: brings the lab up (unless a healthy one runs), runs the lab tests
# (*.lab.test.ts) one file at a time, and always brings the lab down at the end, also on
# failure and Ctrl-C. LAB_KEEP=1 keeps the lab running afterwards. Extra arguments go to jest,
# e.g. `npm run test:lab -- -t fio`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."

if [ "$(id -u)" -ne 0 ]; then
  echo "test:lab: run as root (the lab uses network namespaces, loop devices and systemd-nspawn)" >&2
  exit 1
fi

if [ "${LAB_KEEP:-0}" != 1 ]; then
  trap 'bash test/lab/lab.sh down' EXIT
fi
trap 'exit 130' INT
trap 'exit 143' TERM

# Five control-plane nodes: the etcd membership tests scale the control plane 3 -> 5 -> 3.
export LAB_CONTROL_PLANES="${LAB_CONTROL_PLANES:-5}"

started=$SECONDS
# Host tools of the tests (Redis, lighttpd and git for Argo CD and the manifests repository).
bash test/support/host-tools.sh ensure
# The lab's Kubernetes API (kubeApi.lab.test.ts), the chart it applies, Argo CD running on it, the
# etcd release its mirror serves and the S3 server of the off-node snapshot copies: built from
# their Go modules into the toolchain cache, which a warm cache skips.
bin=$(bash test/lab/toolchain/ensure.sh helm kube-apiserver kube-controller-manager kubectl etcd etcdctl etcdutl \
  argocd argocd-server argocd-repo-server argocd-application-controller rclone)
export ZT_HELM="$bin/helm" ZT_TOOLCHAIN_BIN="$bin"
echo "test:lab: toolchain ready after $((SECONDS - started))s ($bin)" >&2
bash test/lab/lab.sh up
echo "test:lab: lab ready after $((SECONDS - started))s" >&2
npx --no-install jest -c test/lab/jest.config.js --runInBand "$@"
echo "test:lab: done after $((SECONDS - started))s" >&2
