#!/usr/bin/env bash
# `npm run lab`: the main job on the local lab. Brings the lab up, then runs the program's node
# layer against it: `pulumi up` on the `lab` stack (local file backend) when the Pulumi CLI is
# on PATH, else the same node-layer steps directly over SSH (test/lab/nodeLayer.ts).
# The lab is removed at the end unless LAB_KEEP=1.
set -euo pipefail
cd "$(dirname "$0")/../.."

if [ "$(id -u)" -ne 0 ]; then
  echo "lab: run as root (the lab uses network namespaces, loop devices and systemd-nspawn)" >&2
  exit 1
fi

if [ "${LAB_KEEP:-0}" != "1" ]; then
  trap 'bash test/lab/lab.sh down' EXIT
fi
bash test/lab/lab.sh up

if command -v pulumi >/dev/null 2>&1; then
  mkdir -p .lab/pulumi-state
  export PULUMI_BACKEND_URL="file://$PWD/.lab/pulumi-state"
  export PULUMI_CONFIG_PASSPHRASE="${PULUMI_CONFIG_PASSPHRASE:-zerotouch-lab}"
  export PULUMI_SKIP_UPDATE_CHECK=true
  pulumi stack select --create lab --non-interactive
  pulumi config set --secret --stack lab zerotouch:sshPrivateKey < .lab/id_ed25519
  pulumi up --stack lab --yes --skip-preview --non-interactive
else
  npx --no-install ts-node --transpile-only test/lab/nodeLayer.ts Pulumi.lab.yaml
fi
