/**
 * The exposure check (components/firewall/exposure.ts, verify-exposure.ts): which ports may answer
 * where the prober stands (derived from firewallRules()), the parser of nmap's XML (real output
 * captured on the lab: test/fixtures/firewall/nmap/), the verdict and its messages, and the CLI
 * run for real with nmap against loopback addresses.
 */
import { spawnSync } from "child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "fs";
import * as os from "os";
import * as path from "path";

import {
    answers,
    expectedExposure,
    ExposureTargets,
    failureLines,
    formatTable,
    judge,
    nmapArgs,
    parseNmapXml,
    parsePosition,
    PROBED_PORTS,
} from "../components/firewall/exposure";
import { readTargets } from "../components/firewall/verify-exposure";
import { K3S_FIREWALL } from "../components/k8s/k3s";
import { itAsRoot } from "./support/host";

const FIXTURES = path.join(__dirname, "fixtures", "firewall", "nmap");
const fixture = (name: string) => readFileSync(path.join(FIXTURES, name), "utf8");
const ALL = PROBED_PORTS.map((p) => `${p.port}/${p.protocol}`);

/** A production-like cluster: k3s' pod range and flannel rule, three control planes, a worker. */
const PROD: ExposureTargets = {
    nodes: {
        "cp-1": { host: "203.0.113.11", role: "control-plane" },
        "cp-2": { host: "203.0.113.12", role: "control-plane" },
        "cp-3": { host: "2001:DB8::13", role: "control-plane" },
        "worker-1": { host: "203.0.113.21", role: "worker" },
    },
    vpnCidr: "10.8.0.0/24",
    managementCidrs: ["198.51.100.0/28"],
    firewall: { podCidrs: K3S_FIREWALL.podCidrs, extraRules: K3S_FIREWALL.rules },
};

/** The lab the fixtures were captured on: its outputs as the lab test wrote them. */
const LAB = readTargets(fixture("lab-outputs.json"), "lab-outputs.json");
const LAB_NODES = ["lab-cp-1", "lab-cp-2", "lab-cp-3", "lab-cp-4", "lab-cp-5", "lab-worker-1"];

/** node → the ports that may answer. */
function allowed(targets: ExposureTargets, from: string): Record<string, string[]> {
    const out: Record<string, string[]> = {};
    for (const e of expectedExposure(targets, parsePosition(from))) {
        out[e.node] ??= [];
        if (e.mayAnswer) out[e.node].push(`${e.port}/${e.protocol}`);
    }
    return out;
}

const every = (ports: string[]) => Object.fromEntries(Object.keys(PROD.nodes).map((n) => [n, ports]));

describe("expected exposure, derived from the firewall rules", () => {
    test.each<[string, string[]]>([
        ["internet", ["80/tcp", "443/tcp"]],
        ["management", ["22/tcp", "80/tcp", "443/tcp"]],
        ["vpn", ["22/tcp", "80/tcp", "443/tcp", "6443/tcp"]],
        ["192.0.2.55", ["80/tcp", "443/tcp"]],
        ["198.51.100.7", ["22/tcp", "80/tcp", "443/tcp"]],
        ["10.8.0.20", ["22/tcp", "80/tcp", "443/tcp", "6443/tcp"]],
        ["10.42.3.4", ["80/tcp", "443/tcp", "6443/tcp", "10250/tcp"]],
    ])("from %s", (from, ports) => {
        expect(allowed(PROD, from)).toEqual(every(ports));
    });

    test("from a worker's address: the cluster's ports, etcd on no node", () => {
        expect(allowed(PROD, "203.0.113.21")).toEqual(every(["80/tcp", "443/tcp", "6443/tcp", "10250/tcp", "8472/udp"]));
    });

    test("from a control plane's address: etcd on the control planes only", () => {
        const cluster = ["80/tcp", "443/tcp", "6443/tcp", "10250/tcp", "8472/udp"];
        const cp = ["80/tcp", "443/tcp", "2379/tcp", "2380/tcp", "6443/tcp", "10250/tcp", "8472/udp"];
        expect(allowed(PROD, "203.0.113.12")).toEqual({ "cp-1": cp, "cp-2": cp, "cp-3": cp, "worker-1": cluster });
        // cp-3's address in another spelling is the same member of every node's sets.
        expect(allowed(PROD, "2001:db8:0::13")).toEqual({ "cp-1": cp, "cp-2": cp, "cp-3": cp, "worker-1": cluster });
        expect(allowed(PROD, "2001:db8::14")).toEqual(every(["80/tcp", "443/tcp"]));
    });

    test("extra rules count: from any by name, from their CIDRs only by address", () => {
        const targets: ExposureTargets = {
            ...PROD,
            firewall: {
                podCidrs: [],
                extraRules: [
                    { name: "api-public", protocol: "tcp", ports: 6443, from: "any" },
                    { name: "office-ssh", protocol: "tcp", ports: [20, 23], from: ["192.0.2.0/24"] },
                ],
            },
        };
        expect(allowed(targets, "internet")).toEqual(every(["80/tcp", "443/tcp", "6443/tcp"]));
        expect(allowed(targets, "192.0.2.9")).toEqual(every(["22/tcp", "80/tcp", "443/tcp", "6443/tcp"]));
        const row = expectedExposure(targets, "internet").find((e) => e.node === "cp-1" && e.port === 6443)!;
        expect(row.because).toEqual(["api-public from any"]);
    });

    test("every node, every probed port, in order; addresses in one spelling; reasons named", () => {
        const rows = expectedExposure(PROD, "vpn");
        expect(rows.map((r) => `${r.node} ${r.address} ${r.port}/${r.protocol}`)).toEqual(
            Object.entries(PROD.nodes).flatMap(([n, { host }]) => ALL.map((p) => `${n} ${host === "2001:DB8::13" ? "2001:db8::13" : host} ${p}`)),
        );
        expect(rows.find((r) => r.node === "cp-1" && r.port === 22)!.because).toEqual(["ssh from vpn"]);
        expect(rows.find((r) => r.node === "cp-1" && r.port === 2379)).toMatchObject({ mayAnswer: false, because: [] });
    });

    test("a position that is neither a name nor an address is refused", () => {
        expect(() => parsePosition("office")).toThrow(/--from: "office" is not one of internet, management, vpn or an IPv4\/IPv6 address/);
        expect(parsePosition("2001:DB8:0::1")).toEqual({ address: "2001:db8::1" });
    });
});

describe("nmap's XML, as captured on the lab", () => {
    test("the internet scan of the firewalled lab: 80 and 443 open, the rest filtered", () => {
        const scan = parseNmapXml(fixture("nmap-internet.xml"));
        expect([...scan.keys()]).toEqual(["10.213.0.11", "10.213.0.12", "10.213.0.13", "10.213.0.14", "10.213.0.15", "10.213.0.21"]);
        for (const ports of scan.values()) {
            expect(Object.fromEntries([...ports].map(([k, v]) => [k, `${v.state} ${v.reason}`]))).toEqual({
                "22/tcp": "filtered no-response",
                "80/tcp": "open syn-ack",
                "443/tcp": "open syn-ack",
                "2379/tcp": "filtered no-response",
                "2380/tcp": "filtered no-response",
                "6443/tcp": "filtered no-response",
                "10250/tcp": "filtered no-response",
                "8472/udp": "open|filtered no-response",
            });
        }
    });

    test("the node without a firewall: listeners open, the rest closed (reset / port unreachable)", () => {
        const worker = parseNmapXml(fixture("nmap-internet-one-node-open.xml")).get("10.213.0.21")!;
        expect(Object.fromEntries([...worker].map(([k, v]) => [k, `${v.state} ${v.reason}`]))).toEqual({
            "22/tcp": "open syn-ack",
            "80/tcp": "open syn-ack",
            "443/tcp": "open syn-ack",
            "2379/tcp": "open syn-ack",
            "2380/tcp": "closed reset",
            "6443/tcp": "open syn-ack",
            "10250/tcp": "closed reset",
            "8472/udp": "closed port-unreach",
        });
    });

    test("the scan from the nodes' own link carries hosthint elements; they are not hosts", () => {
        const xml = fixture("nmap-management.xml");
        expect(xml).toContain("<hosthint>");
        expect(parseNmapXml(xml).size).toBe(6);
    });

    test("refuses what is not a finished nmap run; leaves out hosts that timed out", () => {
        const xml = fixture("nmap-internet.xml");
        expect(() => parseNmapXml("Starting Nmap 7.93")).toThrow(/no <nmaprun> element/);
        expect(() => parseNmapXml(xml.slice(0, xml.indexOf("<runstats>")))).toThrow(/the run did not finish/);
        expect(() => parseNmapXml(xml.replace(/exit="success"/, 'exit="error" errormsg="Failed to open device zt0"'))).toThrow(/nmap XML: Failed to open device zt0/);
        const timedOut = xml.replace(/<host (starttime="\d+" endtime="\d+")>(<status[^>]*\/>\s*<address addr="10\.213\.0\.12")/, '<host $1 timedout="true">$2');
        expect([...parseNmapXml(timedOut).keys()]).not.toContain("10.213.0.12");
        expect(parseNmapXml(timedOut).size).toBe(5);
    });

    test.each([
        ["open", true],
        ["closed", true],
        ["unfiltered", true],
        ["filtered", false],
        ["open|filtered", false],
    ])("state %s answers: %s", (state, expected) => {
        expect(answers({ state, reason: "" })).toBe(expected);
    });

    test("a state this check cannot judge throws", () => {
        expect(() => answers({ state: "closed|filtered", reason: "" })).toThrow(/"closed\|filtered" .* not one this check can judge/);
    });

    test("arguments: SYN and UDP scans of the probed ports, no discovery, XML on stdout; one family per run", () => {
        expect(nmapArgs(["10.0.0.1", "10.0.0.2"], 120)).toEqual([
            ...["-Pn", "-n", "-sS", "-sU", "-p", "T:22,80,443,2379,2380,6443,10250,U:8472"],
            ...["--max-retries", "2", "--host-timeout", "120s", "-oX", "-", "10.0.0.1", "10.0.0.2"],
        ]);
        expect(nmapArgs(["2001:db8::1"], 60)[0]).toBe("-6");
        expect(() => nmapArgs(["10.0.0.1", "2001:db8::1"], 60)).toThrow(/one address family/);
    });
});

describe("the verdict on the lab's scans", () => {
    test.each([
        ["internet", "nmap-internet.xml"],
        ["vpn", "nmap-vpn.xml"],
        ["management", "nmap-management.xml"],
    ])("from %s the firewalled lab passes; nothing filtered is reported as answering", (from, file) => {
        const report = judge(expectedExposure(LAB, parsePosition(from)), parseNmapXml(fixture(file)), parsePosition(from));
        expect(failureLines(report)).toEqual([]);
        expect(report.ok).toBe(true);
        expect(report.rows).toHaveLength(LAB_NODES.length * ALL.length);
        for (const r of report.rows.filter((row) => !row.mayAnswer)) {
            expect([r.node, r.port, r.observed.state]).toEqual([r.node, r.port, r.protocol === "udp" ? "open|filtered" : "filtered"]);
        }
    });

    test("the node without a firewall fails, by name and port, from the internet and from the VPN", () => {
        const internet = judge(expectedExposure(LAB, "internet"), parseNmapXml(fixture("nmap-internet-one-node-open.xml")), "internet");
        expect(internet.ok).toBe(false);
        expect(failureLines(internet)).toEqual([
            "exposure: node lab-worker-1 (10.213.0.21): 22/tcp, 2379/tcp, 2380/tcp, 6443/tcp, 10250/tcp, 8472/udp answer from internet, where its firewall should drop them",
        ]);
        const vpn = judge(expectedExposure(LAB, "vpn"), parseNmapXml(fixture("nmap-vpn-one-node-open.xml")), "vpn");
        expect(failureLines(vpn)).toEqual([
            "exposure: node lab-worker-1 (10.213.0.21): 2379/tcp, 2380/tcp, 10250/tcp, 8472/udp answer from vpn, where its firewall should drop them",
        ]);
    });

    test("the table: one row per node and port with expected, observed and verdict", () => {
        const report = judge(expectedExposure(LAB, "internet"), parseNmapXml(fixture("nmap-internet-one-node-open.xml")), "internet");
        const lines = formatTable(report).split("\n");
        expect(lines[0]).toBe("exposure from internet:");
        expect(lines[1].split(/\s{2,}/)).toEqual(["node", "address", "port", "expected", "observed", "verdict"]);
        expect(lines).toHaveLength(2 + LAB_NODES.length * ALL.length);
        const cells = (node: string, port: string) => lines.find((l) => l.startsWith(`${node} `) && l.includes(` ${port} `))!.split(/\s{2,}/);
        expect(cells("lab-cp-1", "443/tcp")).toEqual(["lab-cp-1", "10.213.0.11", "443/tcp", "may answer (https from any)", "open (syn-ack)", "ok"]);
        expect(cells("lab-cp-1", "6443/tcp")).toEqual(["lab-cp-1", "10.213.0.11", "6443/tcp", "dropped", "filtered (no-response)", "ok"]);
        expect(cells("lab-worker-1", "10250/tcp")).toEqual(["lab-worker-1", "10.213.0.21", "10250/tcp", "dropped", "closed (reset)", "EXPOSED"]);
        expect(cells("lab-worker-1", "8472/udp")).toEqual(["lab-worker-1", "10.213.0.21", "8472/udp", "dropped", "closed (port-unreach)", "EXPOSED"]);
    });

    test("a node nothing answered on, or nmap said nothing about, is unproven, not passed", () => {
        const xml = fixture("nmap-internet.xml");
        const silent = xml.replace(/(<address addr="10\.213\.0\.13"[\s\S]*?<\/ports>)/, (block) => block.replace(/state="open" reason="syn-ack"/g, 'state="filtered" reason="no-response"'));
        const report = judge(expectedExposure(LAB, "internet"), parseNmapXml(silent), "internet");
        expect(failureLines(report)).toEqual([
            "exposure: node lab-cp-3 (10.213.0.13): unproven from internet: not one port answered, not even 80/tcp, 443/tcp that the firewall accepts from here",
        ]);
        const missing = xml.replace(/<host [^>]*><status[^>]*\/>\s*<address addr="10\.213\.0\.14"[\s\S]*?<\/host>/, "");
        expect(failureLines(judge(expectedExposure(LAB, "internet"), parseNmapXml(missing), "internet"))).toEqual([
            "exposure: node lab-cp-4 (10.213.0.14): unproven from internet: nmap reported nothing for it (host timeout?)",
        ]);
    });

    test("a probed port nmap did not report is an error naming node and port", () => {
        const xml = fixture("nmap-internet.xml").replace(/(<address addr="10\.213\.0\.15"[\s\S]*?)<port protocol="tcp" portid="2380">[\s\S]*?<\/port>/, "$1");
        expect(() => judge(expectedExposure(LAB, "internet"), parseNmapXml(xml), "internet")).toThrow("nmap reported no state for lab-cp-5 (10.213.0.15) 2380/tcp");
    });
});

describe("verify-exposure.ts", () => {
    const PLATFORM = { nodes: { "cp-1": { host: "127.0.0.1", role: "control-plane" } }, vpnCidr: "10.8.0.0/24", managementCidrs: ["198.51.100.0/28"], firewall: { podCidrs: [], extraRules: [] } };

    test("reads the platform output alone or within all outputs; names what does not fit the contract", () => {
        expect(readTargets(JSON.stringify(PLATFORM), "f").nodes["cp-1"].host).toBe("127.0.0.1");
        expect(readTargets(JSON.stringify({ platform: PLATFORM, kubeconfig: "[secret]" }), "f").vpnCidr).toBe("10.8.0.0/24");
        const old: Record<string, unknown> = { ...PLATFORM };
        delete old.firewall;
        expect(() => readTargets(JSON.stringify(old), "outputs.json")).toThrow(/^outputs.json: not the "platform" output of a zerotouch stack \(firewall: /);
    });

    itAsRoot("run for real with nmap against a loopback address nothing guards: fails naming the node and every dropped port", () => {
        const dir = mkdtempSync(path.join(os.tmpdir(), "zt-exposure-"));
        writeFileSync(path.join(dir, "outputs.json"), JSON.stringify({ platform: PLATFORM }));
        const cli = path.join(__dirname, "..", "components", "firewall", "verify-exposure.ts");
        const tsNode = path.join(__dirname, "..", "node_modules", "ts-node", "dist", "bin.js");
        const args = [tsNode, "--transpile-only", cli, "--outputs", path.join(dir, "outputs.json"), "--from", "internet", "--xml-out", path.join(dir, "scan.xml")];
        const r = spawnSync(process.execPath, args, { encoding: "utf8", timeout: 120_000 });
        console.log(`${r.stdout}${r.stderr}`);
        expect(r.status).toBe(1);
        expect(r.stderr.trim()).toBe("exposure: node cp-1 (127.0.0.1): 22/tcp, 2379/tcp, 2380/tcp, 6443/tcp, 10250/tcp, 8472/udp answer from internet, where its firewall should drop them");
        expect(parseNmapXml(readFileSync(path.join(dir, "scan.xml"), "utf8")).get("127.0.0.1")?.get("8472/udp")?.state).toBe("closed");
        const usage = spawnSync(process.execPath, [tsNode, "--transpile-only", cli, "--from", "internet"], { encoding: "utf8", timeout: 60_000 });
        expect([usage.status, usage.stderr]).toEqual([2, expect.stringMatching(/^verify-exposure: --outputs and --from are required\nusage: /)]);
    }, 180_000);
});
