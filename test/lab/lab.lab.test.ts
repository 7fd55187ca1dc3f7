/**
 * The lab itself: what the other lab tests rely on. Real nodes, real SSH, real disks; runs
 * first (sequencer.js), before any test applies a firewall.
 */
import { spawnSync } from "child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "fs";
import { tmpdir } from "os";
import * as path from "path";

import { fioSyncP99Ms, Lab, LabNode, labStatePath, loadLab, nodesByRole, RunResult, sshRun, tcpProbe } from "./harness";

const lab: Lab = loadLab();
const controlPlanes = nodesByRole(lab, "control-plane");
const workers = nodesByRole(lab, "worker");

/** Runs a command on a node and returns its trimmed stdout; fails the test on a non-zero exit. */
function on(node: LabNode, command: string, timeoutSec?: number): string {
    const r: RunResult = sshRun(lab, node, command, undefined, timeoutSec);
    if (r.code !== 0) {
        throw new Error(`${node.name}: ${command}: exit ${r.code}: ${r.stderr.trim()}`);
    }
    return r.stdout.trim();
}

/** Packets counted by the host's lab egress rule (inet zerotouch_lab). */
function egressDrops(): number {
    const r = spawnSync("nft", ["-j", "list", "table", "inet", "zerotouch_lab"], { encoding: "utf8", timeout: 10_000 });
    expect(r.status).toBe(0);
    const doc = JSON.parse(r.stdout) as { nftables: { rule?: { comment?: string; expr: { counter?: { packets: number } }[] } }[] };
    const rule = doc.nftables.map((o) => o.rule).find((x) => x?.comment?.startsWith("lab egress") === true);
    const counter = rule?.expr.find((e) => e.counter !== undefined)?.counter;
    if (counter === undefined) {
        throw new Error("the host has no lab egress rule with a counter in table inet zerotouch_lab");
    }
    return counter.packets;
}

/** fdatasync p99 (ms) of etcd's fio pattern in the node's etcd data path. */
function fioP99(node: LabNode, size: string): number {
    const script = [
        `d=$(mktemp -d ${node.etcdDataPath}/fio.XXXXXX)`,
        `fio --name=x --directory="$d" --rw=write --ioengine=sync --fdatasync=1 --size=${size} --bs=2300 --output-format=json`,
        "rc=$?",
        'rm -rf "$d"',
        'exit "$rc"',
    ].join("; ");
    return fioSyncP99Ms(on(node, script, 300));
}

describe("lab nodes", () => {
    test("the lab has 1, 3 or 5 control-plane nodes and the clients", () => {
        expect(controlPlanes.length).toBeGreaterThanOrEqual(1);
        expect(lab.clients.vpn.netns).toBe("zt-vpn");
        expect(lab.clients.internet.netns).toBe("zt-internet");
    });

    test.each(lab.nodes.map((n) => [n.name, n] as const))("%s answers SSH with its pinned host key", (_name, node) => {
        const served = on(node, "cat /etc/ssh/ssh_host_ed25519_key.pub").split(/\s+/).slice(0, 2).join(" ");
        expect(served).toBe(node.hostKey);
        expect(on(node, "hostname")).toBe(node.name);
    });

    test("host keys and machine ids differ between nodes", () => {
        expect(new Set(lab.nodes.map((n) => n.hostKey)).size).toBe(lab.nodes.length);
        expect(new Set(lab.nodes.map((n) => on(n, "cat /etc/machine-id"))).size).toBe(lab.nodes.length);
    });

    test("a node presenting another key is refused (StrictHostKeyChecking)", () => {
        const [a, b] = lab.nodes;
        if (b === undefined) {
            return;
        }
        const dir = mkdtempSync(path.join(tmpdir(), "zt-lab-known-"));
        try {
            const wrong = path.join(dir, "known_hosts");
            writeFileSync(wrong, `${a.address} ${b.hostKey}\n`);
            const r = sshRun({ ...lab, knownHostsPath: wrong }, a, "true", undefined, 30);
            expect(r.code).toBe(255);
            expect(r.stderr).toMatch(/Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED/);
        } finally {
            rmSync(dir, { recursive: true, force: true });
        }
    });

    test.each(lab.nodes.map((n) => [n.name, n] as const))("%s is a systemd-nspawn container booted by systemd", (_name, node) => {
        expect(on(node, "systemd-detect-virt || true")).toBe("systemd-nspawn");
        expect(on(node, "ps -o comm= -p 1")).toBe("systemd");
        expect(on(node, "timeout 60 systemctl is-system-running --wait || true", 90)).toMatch(/^(running|degraded)$/);
        expect(on(node, "systemctl is-active ssh")).toBe("active");
        // etcd is installed like on a VPS but left to the product to start.
        expect(on(node, "command -v etcd etcdctl | wc -l")).toBe("2");
        expect(on(node, "systemctl is-enabled etcd || true")).toBe("disabled");
    });

    test.each(lab.nodes.map((n) => [n.name, n] as const))("%s owns its network: nftables and net sysctls work", (_name, node) => {
        const script = [
            "nft add table inet zt_lab_selftest",
            "nft list table inet zt_lab_selftest >/dev/null",
            "nft delete table inet zt_lab_selftest",
            "v=$(sysctl -n net.ipv4.conf.eth0.rp_filter)",
            'sysctl -qw net.ipv4.conf.eth0.rp_filter="$v"',
            "echo ok",
        ].join(" && ");
        expect(on(node, script)).toBe("ok");
    });

    test("SSH from the host arrives from the management address", () => {
        const management = lab.managementCidr.replace(/\/32$/, "");
        for (const node of lab.nodes) {
            expect(on(node, 'echo "${SSH_CLIENT%% *}"')).toBe(management);
        }
    });
});

describe("etcd disks", () => {
    test("each control-plane etcd data path is its own non-rotational block device", () => {
        const devices = new Set<string>();
        for (const node of controlPlanes) {
            const [source, fstype, majmin] = on(node, `findmnt -n -o SOURCE,FSTYPE,MAJ:MIN -M ${node.etcdDataPath}`).split(/\s+/);
            console.log(`${node.name}: ${node.etcdDataPath} on ${source} (${majmin}, ${fstype})`);
            expect(source).toMatch(/^\/dev\/loop\d+$/);
            expect(fstype).toBe("ext4");
            expect(on(node, `cat /sys/dev/block/${majmin}/queue/rotational`)).toBe("0");
            expect(on(node, `lsblk -dno ROTA ${source}`)).toBe("0");
            expect(on(node, "findmnt -n -o MAJ:MIN /")).not.toBe(majmin);
            devices.add(majmin);
        }
        expect(devices.size).toBe(controlPlanes.length);
    });

    test("workers have no etcd disk", () => {
        for (const node of workers) {
            expect(sshRun(lab, node, `findmnt -M ${node.etcdDataPath}`).code).not.toBe(0);
        }
    });

    test("a slow node's etcd disk is throttled in the blkio cgroup that holds all of the node", () => {
        const state = JSON.parse(readFileSync(labStatePath(), "utf8")) as { nodes: { name: string; machine: string }[] };
        for (const node of controlPlanes.filter((n) => n.slowDisk)) {
            const cgroup = `/sys/fs/cgroup/blkio/zerotouch-lab/${node.name}`;
            const majmin = on(node, `findmnt -n -o MAJ:MIN -M ${node.etcdDataPath}`);
            expect(readFileSync(`${cgroup}/blkio.throttle.write_iops_device`, "utf8")).toContain(`${majmin} 40`);
            const pids = readFileSync(`${cgroup}/cgroup.procs`, "utf8").split("\n").filter((l) => l !== "");
            const machine = state.nodes.find((n) => n.name === node.name)?.machine ?? "";
            expect(pids).toContain(machine.replace(/^pid:/, ""));
            // nspawn's own process, the node's systemd, journald, sshd and this session at least.
            expect(pids.length).toBeGreaterThanOrEqual(5);
            // Inside, the node sits at the root of its blkio cgroup namespace: that same cgroup.
            expect(on(node, "grep -E '^[0-9]+:blkio:' /proc/self/cgroup")).toMatch(/:blkio:\/$/);
        }
    });

    test("fio fdatasync p99: slow disk far above 10 ms, normal disk well below", () => {
        const slow = controlPlanes.find((n) => n.slowDisk);
        const normal = controlPlanes.find((n) => !n.slowDisk);
        if (slow === undefined || normal === undefined) {
            throw new Error("the lab needs a control-plane node with a slow etcd disk and one with a normal one (LAB_SLOW_NODES)");
        }
        // The normal disk gets etcd's full pattern (22 MiB); the slow one syncs about 13 times
        // a second, so 1 MiB (about 450 syncs) keeps it near 30 s.
        const normalP99 = fioP99(normal, "22m");
        const slowP99 = fioP99(slow, "1m");
        console.log(`fio fdatasync p99: ${normal.name} (normal) ${normalP99.toFixed(2)} ms, ${slow.name} (slow) ${slowP99.toFixed(2)} ms`);
        expect(normalP99).toBeLessThan(10);
        expect(slowP99).toBeGreaterThan(30);
    });
});

describe("lab network", () => {
    test("no firewall is applied yet", () => {
        for (const node of lab.nodes) {
            expect(on(node, "nft list ruleset | wc -l")).toBe("0");
        }
    });

    test.each(["vpn", "internet"] as const)("the %s client reaches port 22 of every node", (client) => {
        for (const node of lab.nodes) {
            expect(tcpProbe(lab.clients[client], lab, node.address, 22)).toBe(true);
            expect(tcpProbe(client, lab, node.address, 22)).toBe(true);
        }
    });

    test("nodes reach each other's port 22", () => {
        for (const from of lab.nodes) {
            for (const to of lab.nodes.filter((n) => n !== from)) {
                expect(tcpProbe({ node: from }, lab, to.address, 22)).toBe(true);
            }
        }
    });

    test("a closed port is reported closed", () => {
        expect(tcpProbe("vpn", lab, lab.nodes[0].address, 1)).toBe(false);
    });

    test("nothing from a node leaves the lab: the host drops it", () => {
        const before = egressDrops();
        for (const node of lab.nodes) {
            expect(on(node, "ip route show default")).toMatch(/^default via 10\.213\.0\.1 dev eth0/);
            // 10.213.250.1 is in the lab range but on no lab link: the host routes it to its
            // sink, and the egress rule drops it on the way.
            expect(tcpProbe({ node }, lab, "10.213.250.1", 22, 2)).toBe(false);
        }
        expect(egressDrops()).toBeGreaterThan(before);
    });

    test("probes outside the lab range are refused by the harness", () => {
        expect(() => tcpProbe("vpn", lab, "192.0.2.1", 22)).toThrow(/outside the lab range/);
    });
});
