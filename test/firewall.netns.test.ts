/**
 * The firewall scripts for real, on this host, inside network namespaces created here.
 *
 * Topology (every link is a veth pair created directly inside the namespaces; the host's own
 * interfaces and ruleset are never touched):
 *
 *     zt-fw-vpn-<id>     10.213.100.10  fd00:100::10  ── vpn0   ┐
 *     zt-fw-inet-<id>    10.213.200.10  fd00:200::10  ── inet0  │  zt-fw-node-<id>: listeners on
 *     zt-fw-cp2-<id>     10.213.51.12   fd00:51::12   ── cp0    │  22, 80, 443, 2379, 6443, 10250
 *     zt-fw-wrk-<id>     10.213.52.21   fd00:52::21   ── wrk0   ┘
 *
 * The node is cp-1 (control plane, 10.213.51.1); cp-2 is another control-plane node and worker-1
 * a worker; the VPN is 10.213.100.0/24 and no management range contains any client.
 *
 * The scripts run as the remote runner runs them (same payload, same command line), in a
 * private mount namespace whose /etc and /var/lib are overlays on a temporary directory, with
 * `systemctl` and `systemd-run` replaced by small stand-ins that keep unit state in files and
 * run the rollback "timer" as a background process in the node's namespaces. PID 1 on a CI
 * host is often not systemd; the lab test (test/lab/firewall.lab.test.ts) covers real systemd.
 */
import { ChildProcess, spawn, spawnSync } from "child_process";
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "fs";
import { tmpdir } from "os";
import * as path from "path";

import { hostFirewallSteps, HostFirewallSpec } from "../components/firewall/hostFirewall";
import { NodeStep, stepPayload } from "../components/lib/nodeScript";
import { lastJsonLine, remoteRunner, ScriptAction } from "../components/lib/script";

const ID = `${process.pid % 100000}`;
const NS = {
    node: `zt-fw-node-${ID}`,
    vpn: `zt-fw-vpn-${ID}`,
    inet: `zt-fw-inet-${ID}`,
    cp2: `zt-fw-cp2-${ID}`,
    wrk: `zt-fw-wrk-${ID}`,
} as const;
type Client = "vpn" | "inet" | "cp2" | "wrk";
const CLIENTS: readonly Client[] = ["inet", "vpn", "cp2", "wrk"];

/** Per client: node-side interface, /24 and /64 prefixes, client host part, node host part. */
const LINKS: Record<Client, { dev: string; v4: string; v6: string; host: number; node: number }> = {
    vpn: { dev: "vpn0", v4: "10.213.100", v6: "fd00:100:", host: 10, node: 1 },
    inet: { dev: "inet0", v4: "10.213.200", v6: "fd00:200:", host: 10, node: 1 },
    cp2: { dev: "cp0", v4: "10.213.51", v6: "fd00:51:", host: 12, node: 1 },
    wrk: { dev: "wrk0", v4: "10.213.52", v6: "fd00:52:", host: 21, node: 1 },
};
const PORTS = [22, 80, 443, 2379, 6443, 10250] as const;
const ROLLBACK_SECONDS = 5;

const nodeAddr = (c: Client, family: 4 | 6) => (family === 4 ? `${LINKS[c].v4}.${LINKS[c].node}` : `${LINKS[c].v6}:${LINKS[c].node}`);
const clientAddr = (c: Client, family: 4 | 6) => (family === 4 ? `${LINKS[c].v4}.${LINKS[c].host}` : `${LINKS[c].v6}:${LINKS[c].host}`);

function spec(overrides: Partial<HostFirewallSpec> = {}): HostFirewallSpec {
    return {
        node: "cp-1",
        role: "control-plane",
        address: nodeAddr("cp2", 4),
        cluster: {
            "cp-1": { role: "control-plane", address: nodeAddr("cp2", 4) },
            "cp-2": { role: "control-plane", address: clientAddr("cp2", 4) },
            "worker-1": { role: "worker", address: clientAddr("wrk", 4) },
            "worker-1-v6": { role: "worker", address: clientAddr("wrk", 6) },
            "cp-2-v6": { role: "control-plane", address: clientAddr("cp2", 6) },
        },
        vpnCidr: "10.213.100.0/24",
        managementCidrs: ["10.213.99.0/24", "fd00:99::/64"],
        ...overrides,
    };
}

function run(cmd: string, args: readonly string[], input?: string): { status: number | null; stdout: string; stderr: string } {
    const r = spawnSync(cmd, args, { input, encoding: "utf8", timeout: 60_000 });
    return { status: r.status, stdout: r.stdout ?? "", stderr: r.stderr ?? String(r.error ?? "") };
}

function must(cmd: string, ...args: string[]): string {
    const r = run(cmd, args);
    if (r.status !== 0) {
        throw new Error(`${cmd} ${args.join(" ")} failed (${r.status}): ${r.stderr}`);
    }
    return r.stdout;
}

const inNs = (ns: string, ...cmd: string[]) => must("ip", "netns", "exec", ns, ...cmd);


const LISTENER = `
import select, signal, socket, sys
signal.alarm(900)  # never outlive the test run
socks = []
for p in sys.argv[1:]:
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.bind(("::", int(p)))
    s.listen(128)
    socks.append(s)
print("ready", flush=True)
while True:
    for s in select.select(socks, [], [])[0]:
        c, _ = s.accept()
        c.close()
`;

const PROBE = `
import concurrent.futures, json, socket, struct, sys, time
def tcp(a, p):
    s = socket.socket(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(1.0)
    try:
        s.connect((a, p))
        return "open"
    except ConnectionRefusedError:
        return "refused"
    except OSError:
        return "closed"
    finally:
        s.close()
def ping(a):
    v6 = ":" in a
    s = socket.socket(socket.AF_INET6 if v6 else socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMPV6 if v6 else socket.IPPROTO_ICMP)
    s.settimeout(1.0)
    hdr = struct.pack("!BBHHH", 128 if v6 else 8, 0, 0, 0x7a7a, 1)
    if not v6:  # the kernel fills in the ICMPv6 checksum, not the ICMP one
        data = hdr + b"zerotouch!"
        total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
        total = (total >> 16) + (total & 0xffff)
        total += total >> 16
        hdr = struct.pack("!BBHHH", 8, 0, ~total & 0xffff, 0x7a7a, 1)
    s.sendto(hdr + b"zerotouch!", (a, 0))
    end = time.time() + 1.0
    try:
        while time.time() < end:
            pkt = s.recv(2048)
            t = pkt[0] if v6 else pkt[(pkt[0] & 0xf) * 4]
            if t == (129 if v6 else 0):
                return "open"
    except OSError:
        pass
    finally:
        s.close()
    return "closed"
targets = json.loads(sys.argv[1])
with concurrent.futures.ThreadPoolExecutor(64) as ex:
    print(json.dumps(list(ex.map(lambda t: ping(t[0]) if t[1] == 0 else tcp(t[0], t[1]), targets))))
`;
import { describeAsRoot } from "./support/host";

type Matrix = Record<Client, Record<string, string>>;
let probeScript = "";

/** Probes every port (and ping, as port "icmp") of the node from every client, over IPv4 and IPv6. */
function probeMatrix(): Matrix {
    for (const ns of Object.values(NS)) {
        inNs(ns, "ip", "neigh", "flush", "all"); // so that neighbour discovery must work again
    }
    const out = {} as Matrix;
    for (const c of CLIENTS) {
        const targets: [string, number][] = [];
        for (const family of [4, 6] as const) {
            for (const port of [0, ...PORTS]) {
                targets.push([nodeAddr(c, family), port]);
            }
        }
        const results = JSON.parse(inNs(NS[c], "python3", probeScript, JSON.stringify(targets))) as string[];
        out[c] = {};
        targets.forEach(([addr, port], i) => {
            out[c][`${port === 0 ? "icmp" : port}/v${addr.includes(":") ? 6 : 4}`] = results[i];
        });
    }
    return out;
}

function printMatrix(title: string, m: Matrix): void {
    const cols = Object.keys(m.inet);
    const lines = [
        `${title}`,
        ["source".padEnd(8), ...cols.map((c) => c.padStart(10))].join(" "),
        ...CLIENTS.map((c) => [c.padEnd(8), ...cols.map((k) => m[c][k].padStart(10))].join(" ")),
    ];
    console.log(lines.join("\n"));
}

/** The ports (as "22/v4" …) that answered for one client. */
const openFor = (m: Matrix, c: Client) =>
    Object.entries(m[c])
        .filter(([, v]) => v === "open")
        .map(([k]) => k)
        .sort();

const both = (...ports: (number | string)[]) => ports.flatMap((p) => [`${p}/v4`, `${p}/v6`]).sort();

describeAsRoot("firewall scripts in network namespaces", () => {
    let dir: string;
    let listener: ChildProcess | undefined;
    let fakeSystemd: string;

    beforeAll(async () => {
        dir = mkdtempSync(path.join(tmpdir(), "zt-fwtest-"));
        for (const sub of ["etc.upper", "etc.work", "lib.upper", "lib.work", "bin", "systemd"]) {
            mkdirSync(path.join(dir, sub));
        }
        fakeSystemd = path.join(dir, "systemd");
        probeScript = path.join(dir, "probe.py");
        writeFileSync(probeScript, PROBE);
        writeFileSync(path.join(dir, "listener.py"), LISTENER);
        writeFakeSystemd(dir, fakeSystemd);

        for (const ns of Object.values(NS)) {
            must("ip", "netns", "add", ns);
            inNs(ns, "ip", "link", "set", "lo", "up");
        }
        for (const c of CLIENTS) {
            const l = LINKS[c];
            must("ip", "-n", NS.node, "link", "add", l.dev, "type", "veth", "peer", "name", "eth0", "netns", NS[c]);
            inNs(NS.node, "ip", "addr", "add", `${nodeAddr(c, 4)}/24`, "dev", l.dev);
            inNs(NS.node, "ip", "addr", "add", `${nodeAddr(c, 6)}/64`, "dev", l.dev, "nodad");
            inNs(NS.node, "ip", "link", "set", l.dev, "up");
            inNs(NS[c], "ip", "addr", "add", `${clientAddr(c, 4)}/24`, "dev", "eth0");
            inNs(NS[c], "ip", "addr", "add", `${clientAddr(c, 6)}/64`, "dev", "eth0", "nodad");
            inNs(NS[c], "ip", "link", "set", "eth0", "up");
        }
        // Another table on the node, as a CNI would have: it must survive everything below.
        must("ip", "netns", "exec", NS.node, "nft", "add table inet cni_sim; add chain inet cni_sim forward { type filter hook forward priority 0; policy accept; }");

        listener = spawn("ip", ["netns", "exec", NS.node, "python3", path.join(dir, "listener.py"), ...PORTS.map(String)], { stdio: ["ignore", "pipe", "inherit"] });
        await new Promise<void>((resolve, reject) => {
            const timer = setTimeout(() => reject(new Error("listeners did not start within 10s")), 10_000);
            listener!.stdout!.on("data", (d: Buffer) => {
                if (d.toString().includes("ready")) {
                    clearTimeout(timer);
                    resolve();
                }
            });
            listener!.on("exit", (code) => reject(new Error(`listener exited with ${code}`)));
        });
    }, 60_000);

    afterAll(() => {
        killTimers(fakeSystemd);
        listener?.kill("SIGKILL");
        for (const ns of Object.values(NS)) {
            run("ip", ["netns", "del", ns]);
        }
        rmSync(dir, { recursive: true, force: true });
    });

    /** Runs a step on the node as the remote runner would, in the node's namespaces. */
    function runStep(step: NodeStep, action: ScriptAction = "create") {
        const payload = stepPayload(step);
        const setup = [
            `mount -t overlay overlay -o lowerdir=/etc,upperdir=${dir}/etc.upper,workdir=${dir}/etc.work /etc`,
            `mount -t overlay overlay -o lowerdir=/var/lib,upperdir=${dir}/lib.upper,workdir=${dir}/lib.work /var/lib`,
            `export PATH=${dir}/bin:$PATH`,
        ].join(" && ");
        const r = run("ip", ["netns", "exec", NS.node, "unshare", "-m", "--propagation", "private", "bash", "-c", `${setup} && ${remoteRunner("root", action)}`], payload.stdin);
        const json = r.status === 0 ? (lastJsonLine(r.stdout, `${step.name} ${action}`) as Record<string, unknown>) : undefined;
        return { ...r, json };
    }

    const liveTable = () => run("ip", ["netns", "exec", NS.node, "nft", "-s", "list", "table", "inet", "zerotouch"]);
    const calls = () => (existsSync(path.join(fakeSystemd, "calls.log")) ? readFileSync(path.join(fakeSystemd, "calls.log"), "utf8") : "");
    const timerArmed = () => existsSync(path.join(fakeSystemd, "zerotouch-firewall-rollback.timer.pid"));
    const upper = (p: string) => path.join(dir, p);

    const [apply, confirm] = hostFirewallSteps({ ...spec(), rollbackSeconds: ROLLBACK_SECONDS });

    test("before the firewall, every port answers from everywhere", () => {
        const m = probeMatrix();
        printMatrix("probe matrix without the firewall", m);
        for (const c of CLIENTS) {
            expect(openFor(m, c)).toEqual(both("icmp", ...PORTS));
        }
    });

    test("a ruleset nft rejects fails with nft's message and changes nothing", () => {
        const bad = { ...apply, params: { ...apply.params, ZT_RULESET: "table inet zerotouch {\n\tchain input { type filter hook input priority filter; policy drop;\n\t\ttcp dport 99999 accept\n\t}\n}\n" } };
        const r = runStep(bad);
        expect(r.status).not.toBe(0);
        expect(r.stderr).toMatch(/nft rejects the ruleset:[\s\S]*Error/);
        expect(liveTable().status).not.toBe(0);
        expect(timerArmed()).toBe(false);
    });

    test("apply loads the ruleset behind a rollback timer; confirm cancels it and persists it", () => {
        const a = runStep(apply);
        expect(a.status).toBe(0);
        expect(a.json).toMatchObject({ node: "cp-1", changed: true, rollbackArmed: true, rollbackSeconds: ROLLBACK_SECONDS, hash: confirm.params.ZT_RULESET_HASH });
        expect(timerArmed()).toBe(true);
        // Timers fire up to a minute late unless their accuracy is set.
        expect(calls()).toMatch(/systemd-run .*--unit=zerotouch-firewall-rollback --on-active=5s --timer-property=AccuracySec=1s .* \/usr\/sbin\/nft -f \/var\/lib\/zerotouch\/firewall\/rollback\.nft/);
        expect(existsSync(upper("etc.upper/zerotouch/firewall.nft"))).toBe(false); // not persistent yet
        expect(liveTable().stdout).toContain("policy drop");

        const c = runStep(confirm);
        expect(c.status).toBe(0);
        expect(c.json).toEqual({ node: "cp-1", action: "create", confirmed: true, hash: confirm.params.ZT_RULESET_HASH, changed: true });
        expect(timerArmed()).toBe(false);
        expect(readFileSync(upper("etc.upper/zerotouch/firewall.nft"), "utf8")).toBe(apply.params.ZT_RULESET);
        const unit = readFileSync(upper("etc.upper/systemd/system/zerotouch-firewall.service"), "utf8");
        expect(unit).toMatch(/^ExecStart=\/usr\/sbin\/nft -f \/etc\/zerotouch\/firewall\.nft$/m);
        expect(unit).toMatch(/^After=nftables\.service$/m);
        expect(unit).toMatch(/^Type=oneshot$/m);
        expect(unit).toMatch(/^RemainAfterExit=yes$/m);
        expect(unit).toMatch(/^WantedBy=multi-user\.target$/m);
        expect(existsSync(path.join(fakeSystemd, "zerotouch-firewall.service.enabled"))).toBe(true);
    });

    test("probe matrix: internet gets 80/443, the VPN also 22/6443, nodes what the cluster needs", () => {
        const m = probeMatrix();
        printMatrix("probe matrix with the firewall (node cp-1, control plane)", m);
        expect(openFor(m, "inet")).toEqual(both("icmp", 80, 443));
        // The VPN range is IPv4 only: its members reach SSH and the API server over IPv4.
        expect(openFor(m, "vpn")).toEqual([...both("icmp", 80, 443), "22/v4", "6443/v4"].sort());
        expect(openFor(m, "cp2")).toEqual(both("icmp", 80, 443, 2379, 6443, 10250));
        expect(openFor(m, "wrk")).toEqual(both("icmp", 80, 443, 6443, 10250));
        // Filtered ports are dropped silently, not refused.
        expect(m.inet["22/v4"]).toBe("closed");
    });

    test("applying (and confirming) again changes nothing and arms no timer", () => {
        const before = liveTable().stdout;
        const callsBefore = calls().length;
        const a = runStep(apply);
        expect(a.json).toEqual({ node: "cp-1", action: "create", changed: false, hash: confirm.params.ZT_RULESET_HASH, rollbackArmed: false });
        const c = runStep(confirm);
        expect(c.json).toMatchObject({ confirmed: true, changed: false });
        expect(calls().slice(callsBefore)).not.toMatch(/systemd-run/);
        expect(timerArmed()).toBe(false);
        expect(liveTable().stdout).toBe(before);
    });

    test("a ruleset that cuts SSH is rolled back within the bound, and its confirm fails", async () => {
        const confirmed = liveTable().stdout;
        const [cut, cutConfirm] = hostFirewallSteps({ ...spec({ vpnCidr: "10.213.101.0/24" }), rollbackSeconds: ROLLBACK_SECONDS });
        const started = Date.now();
        expect(runStep(cut).json).toMatchObject({ changed: true, rollbackArmed: true });
        expect(probeMatrix().vpn["22/v4"]).toBe("closed");
        // Bounded wait: the rollback must happen within ROLLBACK_SECONDS (plus slack).
        let restoredAfter: number | undefined;
        while (Date.now() - started < (ROLLBACK_SECONDS + 10) * 1000) {
            if (liveTable().stdout === confirmed) {
                restoredAfter = (Date.now() - started) / 1000;
                break;
            }
            await new Promise((r) => setTimeout(r, 250));
        }
        console.log(`lockout rolled back after ${restoredAfter ?? "never"}s (bound ${ROLLBACK_SECONDS}s)`);
        expect(restoredAfter).toBeDefined();
        expect(restoredAfter!).toBeGreaterThanOrEqual(ROLLBACK_SECONDS - 1);
        expect(probeMatrix().vpn["22/v4"]).toBe("open");

        const c = runStep(cutConfirm);
        expect(c.status).not.toBe(0);
        expect(c.stderr).toMatch(/was rolled back before it was confirmed/);
        // Still the confirmed ruleset on disk; applying it again is a no-op that clears the leftovers.
        expect(readFileSync(upper("etc.upper/zerotouch/firewall.nft"), "utf8")).toBe(apply.params.ZT_RULESET);
        expect(runStep(apply).json).toMatchObject({ changed: false, rollbackArmed: false });
        expect(existsSync(upper("lib.upper/zerotouch/firewall/pending.nft"))).toBe(false);
    }, 60_000);

    test("a second unconfirmed apply keeps the first one's rollback state", async () => {
        const confirmed = liveTable().stdout;
        const [one] = hostFirewallSteps({ ...spec({ vpnCidr: "10.213.101.0/24" }), rollbackSeconds: 30 });
        const [two] = hostFirewallSteps({ ...spec({ vpnCidr: "10.213.102.0/24" }), rollbackSeconds: ROLLBACK_SECONDS });
        expect(runStep(one).json).toMatchObject({ changed: true });
        expect(runStep(two).json).toMatchObject({ changed: true });
        const started = Date.now();
        while (Date.now() - started < (ROLLBACK_SECONDS + 10) * 1000 && liveTable().stdout !== confirmed) {
            await new Promise((r) => setTimeout(r, 250));
        }
        expect(liveTable().stdout).toBe(confirmed); // back to the confirmed table, not to `one`
        expect(runStep(apply).json).toMatchObject({ changed: false });
    }, 60_000);

    test("the delete of a replaced apply leaves its successor's firewall alone", () => {
        const [next, nextConfirm] = hostFirewallSteps({ ...spec(), rollbackSeconds: 30 }); // same rules, new payload
        expect(runStep(next).json).toMatchObject({ changed: false });
        expect(runStep(nextConfirm).json).toMatchObject({ confirmed: true, changed: false });
        const old = runStep(apply, "delete");
        expect(old.json).toEqual({ node: "cp-1", action: "delete", changed: false, superseded: true });
        expect(liveTable().status).toBe(0);
        // Ownership back to `apply`, for the delete test below.
        expect(runStep(apply).json).toMatchObject({ changed: false });
    });

    test("delete removes table, unit and files, leaves other tables, and is idempotent", () => {
        const d = runStep(apply, "delete");
        expect(d.json).toEqual({ node: "cp-1", action: "delete", changed: true });
        expect(liveTable().status).not.toBe(0);
        expect(inNs(NS.node, "nft", "list", "tables")).toContain("table inet cni_sim");
        for (const p of ["etc.upper/zerotouch", "etc.upper/systemd/system/zerotouch-firewall.service", "lib.upper/zerotouch"]) {
            expect(existsSync(upper(p))).toBe(false);
        }
        expect(existsSync(path.join(fakeSystemd, "zerotouch-firewall.service.enabled"))).toBe(false);
        const again = runStep(apply, "delete");
        expect(again.status).toBe(0);
        expect(again.json).toEqual({ node: "cp-1", action: "delete", changed: false });
        expect(runStep(confirm, "delete").status).toBe(0);
        const m = probeMatrix();
        for (const c of CLIENTS) {
            expect(openFor(m, c)).toEqual(both("icmp", ...PORTS));
        }
    });

    test("confirm without an apply fails and says why", () => {
        const r = runStep(confirm);
        expect(r.status).not.toBe(0);
        expect(r.stderr).toMatch(/run the apply step first/);
    });
});

/** Stand-ins for systemctl and systemd-run that keep unit state as files under `state`. */
function writeFakeSystemd(dir: string, state: string): void {
    const systemdRun = `#!/usr/bin/env bash
set -euo pipefail
d=${state}
echo "systemd-run $*" >>"$d/calls.log"
unit="" secs=""
while [ $# -gt 0 ]; do
  case "$1" in
  --unit=*) unit="\${1#--unit=}" ;;
  --on-active=*) secs="\${1#--on-active=}"; secs="\${secs%s}" ;;
  --*) ;;
  *) break ;;
  esac
  shift
done
if [ -e "$d/$unit.timer.pid" ]; then echo "Unit $unit.timer was already loaded" >&2; exit 1; fi
setsid bash -c 'sleep "$1"; shift; "$@" >>"'"$d"'/rollback.log" 2>&1; rm -f "'"$d/$unit"'.timer.pid"' _ "$secs" "$@" </dev/null >/dev/null 2>&1 &
echo $! >"$d/$unit.timer.pid"
`;
    const systemctl = `#!/usr/bin/env bash
set -uo pipefail
d=${state}
echo "systemctl $*" >>"$d/calls.log"
quiet=false now=false args=()
for a in "$@"; do
  case "$a" in
  -q | --quiet) quiet=true ;;
  --now) now=true ;;
  -*) ;;
  *) args+=("$a") ;;
  esac
done
cmd="\${args[0]}"
units=("\${args[@]:1}")
start() {
  local exec
  exec=$(sed -n 's/^ExecStart=//p' "/etc/systemd/system/$1")
  # shellcheck disable=SC2086
  $exec && touch "$d/$1.active"
}
case "$cmd" in
is-system-running) echo running ;;
daemon-reload | reset-failed) ;;
stop)
  for u in "\${units[@]}"; do
    if [ -f "$d/$u.pid" ]; then kill -- "-$(cat "$d/$u.pid")" 2>/dev/null || true; rm -f "$d/$u.pid"; fi
    rm -f "$d/$u.active"
  done ;;
is-active)
  u="\${units[0]}"
  if { [ -f "$d/$u.pid" ] && kill -0 "$(cat "$d/$u.pid")" 2>/dev/null; } || [ -f "$d/$u.active" ]; then
    $quiet || echo active; exit 0
  fi
  $quiet || echo inactive; exit 3 ;;
is-enabled) [ -f "$d/\${units[0]}.enabled" ] ;;
enable) for u in "\${units[@]}"; do touch "$d/$u.enabled"; if $now; then start "$u"; fi; done ;;
disable) for u in "\${units[@]}"; do rm -f "$d/$u.enabled"; if $now; then rm -f "$d/$u.active"; fi; done ;;
start) for u in "\${units[@]}"; do start "$u"; done ;;
*) echo "fake systemctl: $cmd not supported" >&2; exit 1 ;;
esac
`;
    writeFileSync(path.join(dir, "bin", "systemd-run"), systemdRun);
    writeFileSync(path.join(dir, "bin", "systemctl"), systemctl);
    chmodSync(path.join(dir, "bin", "systemd-run"), 0o755);
    chmodSync(path.join(dir, "bin", "systemctl"), 0o755);
}

/** Ends any rollback "timer" still sleeping (each runs in its own process group). */
function killTimers(state: string | undefined): void {
    if (!state) {
        return;
    }
    const pidFile = path.join(state, "zerotouch-firewall-rollback.timer.pid");
    if (existsSync(pidFile)) {
        const pid = Number(readFileSync(pidFile, "utf8").trim());
        if (Number.isInteger(pid) && pid > 1) {
            try {
                process.kill(-pid, "SIGKILL");
            } catch {
                // already gone
            }
        }
    }
}
