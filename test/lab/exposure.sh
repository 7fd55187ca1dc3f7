#!/usr/bin/env bash
# The exposure check the pipeline runs after `deploy` (components/firewall/verify-exposure.ts),
# run by `npm run lab` after `pulumi up`: the stack's own `platform` output, probed with nmap from
# the lab's internet and VPN clients (their network namespaces) against every node. It fails,
# naming node and port, as the pipeline job does. nmap's XML is kept under .lab/exposure/.
#
# Usage: exposure.sh <stack>   (the Pulumi environment of the lab set, as main.sh sets it)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
stack=${1:?usage: exposure.sh <stack>}

bash test/support/host-tools.sh ensure nmap
mkdir -p .lab/exposure
outputs=".lab/exposure/${stack}-outputs.json"
pulumi stack output --stack "$stack" --json platform >"$outputs"
for from in internet vpn; do
  netns=$(jq -er --arg c "$from" '.clients[$c].netns' .lab/state.json)
  echo "lab: exposure check from the lab's $from client ($netns), as verify-exposure runs after deploy:" >&2
  timeout 600 ip netns exec "$netns" npx --no-install ts-node --transpile-only components/firewall/verify-exposure.ts \
    --outputs "$outputs" --from "$from" --xml-out ".lab/exposure/${stack}-${from}.xml"
done
