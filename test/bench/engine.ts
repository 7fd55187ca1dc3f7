/**
 * `npm run bench:engine` (test/bench/engine.sh starts the lab): the real Pulumi engine on the lab,
 * timed. For a stack of one node (lab-cp-1, a one-member etcd) and then of all four (three
 * control-plane nodes and a worker): the first `pulumi up`, a second `up` with nothing changed,
 * and `destroy`. `destroy` keeps etcd's data on the nodes, as the product must; between the two
 * stacks the bench removes it (and the program's member record) so that the second one forms a
 * new cluster.
 */
import { readFileSync, rmSync } from "fs";
import * as path from "path";

import { PulumiCli, REPO_ROOT, raiseFsyncThreshold, writeLabStackFile } from "../engine/pulumi";
import { Lab, loadLab, nodesByRole, sshRun } from "../lab/harness";

const STATE = path.join(REPO_ROOT, ".lab", "bench-engine");

interface Row {
    nodes: number;
    resources: number;
    up: number;
    noop: number;
    destroy: number;
}

function count(pattern: RegExp, text: string): number {
    const m = pattern.exec(text);
    if (m === null) {
        throw new Error(`no ${pattern} in the output:\n${text.slice(-2000)}`);
    }
    return Number(m[1]);
}

function runStack(cli: PulumiCli, lab: Lab, stack: string, nodes: string[]): Row {
    rmSync(path.join(REPO_ROOT, `Pulumi.${stack}.yaml`), { force: true });
    writeLabStackFile(stack, { nodes, edit: raiseFsyncThreshold });
    cli.must(["stack", "init", stack, "--secrets-provider", "passphrase"]);
    cli.must(["config", "set", "--secret", "--stack", stack, "zerotouch:sshPrivateKey"], { input: readFileSync(lab.keyPath, "utf8") });
    const up = cli.must(["up", "--stack", stack, "--yes", "--skip-preview"]);
    const noop = cli.must(["up", "--stack", stack, "--yes", "--skip-preview", "--expect-no-changes"]);
    const down = cli.must(["destroy", "--stack", stack, "--yes", "--skip-preview"]);
    cli.must(["stack", "rm", stack, "--yes"]);
    rmSync(path.join(REPO_ROOT, `Pulumi.${stack}.yaml`), { force: true });
    const row = { nodes: nodes.length, resources: count(/\+ (\d+) created/, up.stdout), up: up.seconds, noop: noop.seconds, destroy: down.seconds };
    console.log(`${stack}: ${row.resources} resources; up ${row.up.toFixed(1)} s, no-op up ${row.noop.toFixed(1)} s (${count(/(\d+) unchanged/, noop.stdout)} unchanged), destroy ${row.destroy.toFixed(1)} s`);
    return row;
}

/**
 * Removes etcd's data (kept by destroy) and the member record the program keeps beside it on every
 * control-plane node, as on a new machine: with the record and no data the member step refuses
 * to start ("its disk was lost or wiped"), as it must.
 */
function clearEtcdData(lab: Lab): void {
    for (const node of nodesByRole(lab, "control-plane")) {
        const r = sshRun(lab, node, `systemctl stop etcd 2>/dev/null; rm -rf ${node.etcdDataPath}/member ${node.etcdDataPath}/member.removed-* /var/lib/zerotouch/etcd`);
        if (r.code !== 0) {
            throw new Error(`clearing etcd's data on ${node.name}: exit ${r.code}: ${r.stderr}`);
        }
    }
}

function main(): void {
    const lab = loadLab();
    rmSync(STATE, { recursive: true, force: true });
    const cli = new PulumiCli(STATE);
    const version = cli.must(["version"]).stdout.trim();
    const one = [nodesByRole(lab, "control-plane")[0].name];
    const all = lab.nodes.map((n) => n.name);
    const rows = [runStack(cli, lab, "bench-1", one)];
    clearEtcdData(lab);
    rows.push(runStack(cli, lab, "bench-4", all));
    console.log(`\npulumi ${version} on the lab (${all.length} nodes available; fsync gate: 2 fio runs of at most 30 s per node, WAL gate load 30 s at most)\n`);
    console.log("| nodes | resources | first `up` (s) | no-op `up` (s) | `destroy` (s) |");
    console.log("|------:|----------:|---------------:|---------------:|--------------:|");
    for (const r of rows) {
        console.log(`| ${r.nodes} | ${r.resources} | ${r.up.toFixed(1)} | ${r.noop.toFixed(1)} | ${r.destroy.toFixed(1)} |`);
    }
}

main();
