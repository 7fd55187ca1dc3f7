/**
 * The lab's etcd release mirror, so that `etcd.source: release` runs for real: etcd, etcdctl and
 * etcdutl of one release (built from etcd's Go modules into the toolchain cache) packed as etcd
 * publishes them (`v<version>/etcd-v<version>-linux-amd64.tar.gz`, the binaries under
 * `etcd-v<version>-linux-amd64/`), served over HTTPS from the lab host's bridge address with a
 * certificate of the lab's own CA, which the nodes are made to trust. The program is given the
 * mirror as `etcd.releaseBaseUrl` and the tarball's sha256 as `etcd.sha256`, as a user with a
 * private mirror would.
 *
 * The server is Node's own `https` (bounded by `timeout`, its own process group), and only
 * listens on the lab's bridge.
 */
import { ChildProcess, execFileSync, spawn, spawnSync } from "child_process";
import { createHash } from "crypto";
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "fs";
import * as path from "path";

import { Lab, LabNode, sshRun } from "./harness";

const PORT = 8443;
const CA_ON_NODE = "/usr/local/share/ca-certificates/zerotouch-lab-mirror.crt";

/** A static HTTPS file server: argv root, cert, key, host, port. Logs one line per request. */
const SERVER = `
const https = require("https"), fs = require("fs"), path = require("path");
const [root, cert, key, host, port] = process.argv.slice(1);
https.createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key) }, (req, res) => {
    const file = path.join(root, path.normalize(decodeURIComponent(req.url.split("?")[0])));
    if (!file.startsWith(root + path.sep) || !fs.existsSync(file) || !fs.statSync(file).isFile()) {
        res.writeHead(404); res.end(); console.log(req.method, req.url, 404); return;
    }
    res.writeHead(200, { "content-length": fs.statSync(file).size });
    fs.createReadStream(file).pipe(res); console.log(req.method, req.url, 200);
}).listen(Number(port), host, () => console.log("listening"));
`;

function openssl(args: string[]): void {
    execFileSync("openssl", args, { timeout: 15000, stdio: ["ignore", "pipe", "pipe"] });
}

export interface EtcdRelease {
    readonly version: string;
    /** sha256 of the tarball, as `etcd.sha256.amd64`. */
    readonly sha256: string;
    /** Path of the tarball on the host. */
    readonly tarball: string;
}

/** Packs the binaries of one release as etcd publishes them, under `root`. */
export function packEtcdRelease(binDir: string, version: string, root: string): EtcdRelease {
    const name = `etcd-v${version}-linux-amd64`;
    const stage = path.join(root, "stage", name);
    mkdirSync(stage, { recursive: true });
    for (const bin of ["etcd", "etcdctl", "etcdutl"]) {
        copyFileSync(path.join(binDir, bin), path.join(stage, bin));
    }
    writeFileSync(path.join(stage, "README.md"), `etcd ${version}, built from its Go modules for the zerotouch lab.\n`);
    const dir = path.join(root, "www", `v${version}`);
    mkdirSync(dir, { recursive: true });
    const tarball = path.join(dir, `${name}.tar.gz`);
    execFileSync("tar", ["-C", path.dirname(stage), "--owner=0", "--group=0", "-czf", tarball, name], { timeout: 120_000 });
    return { version, sha256: createHash("sha256").update(new Uint8Array(readFileSync(tarball))).digest("hex"), tarball };
}

export class LabEtcdMirror {
    /** `etcd.releaseBaseUrl` for the lab. */
    readonly baseUrl: string;
    private child: ChildProcess | undefined;
    private readonly caCert: string;
    /** What the server printed: one line per request. */
    readonly requests: string[] = [];

    constructor(
        private readonly lab: Lab,
        /** The folder that holds `www/` (see packEtcdRelease). */
        private readonly root: string,
    ) {
        const host = lab.managementCidr.split("/")[0];
        this.baseUrl = `https://${host}:${PORT}`;
        this.caCert = path.join(root, "ca.crt");
    }

    /** Makes the CA and the server's certificate, starts the server, waits (bounded) until it listens. */
    async start(): Promise<void> {
        const host = this.lab.managementCidr.split("/")[0];
        const f = (n: string) => path.join(this.root, n);
        openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f("ca.key")]);
        openssl(["req", "-x509", "-new", "-key", f("ca.key"), "-subj", "/CN=zerotouch-lab-mirror-ca", "-days", "2", "-out", this.caCert]);
        writeFileSync(f("server.ext"), `subjectAltName=IP:${host}\nextendedKeyUsage=serverAuth\n`);
        openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f("server.key")]);
        openssl(["req", "-new", "-key", f("server.key"), "-subj", `/CN=${host}`, "-out", f("server.csr")]);
        openssl(["x509", "-req", "-in", f("server.csr"), "-CA", this.caCert, "-CAkey", f("ca.key"), "-CAcreateserial", "-days", "2", "-extfile", f("server.ext"), "-out", f("server.crt")]);
        const log = this.requests;
        this.child = spawn("timeout", ["3600", process.execPath, "-e", SERVER, f("www"), f("server.crt"), f("server.key"), host, String(PORT)], {
            stdio: ["ignore", "pipe", "pipe"],
            detached: true,
        });
        this.child.stdout!.on("data", (d: Buffer) => log.push(d.toString()));
        this.child.stderr!.on("data", (d: Buffer) => log.push(d.toString()));
        const deadline = Date.now() + 15_000;
        while (!log.join("").includes("listening")) {
            if (Date.now() > deadline || this.child.exitCode !== null) {
                this.stop();
                throw new Error(`the lab's etcd mirror did not start: ${log.join("")}`);
            }
            await new Promise((r) => setTimeout(r, 100));
        }
    }

    /** Makes the node trust the mirror's CA (the system store curl reads). */
    trust(node: LabNode): void {
        const r = sshRun(this.lab, node, `cat >${CA_ON_NODE} && update-ca-certificates >/dev/null 2>&1`, readFileSync(this.caCert, "utf8"));
        if (r.code !== 0) {
            throw new Error(`${node.name}: trusting the mirror's CA: exit ${r.code}: ${r.stderr}`);
        }
    }

    /** Removes the CA from the node's store. */
    untrust(node: LabNode): void {
        sshRun(this.lab, node, `rm -f ${CA_ON_NODE} && update-ca-certificates --fresh >/dev/null 2>&1`);
    }

    /** Stops the server (its whole process group). */
    stop(): void {
        const pid = this.child?.pid;
        if (pid === undefined) {
            return;
        }
        for (const signal of ["SIGTERM", "SIGKILL"] as const) {
            try {
                process.kill(-pid, signal);
            } catch {
                return;
            }
            spawnSync("sleep", ["0.5"]);
        }
        this.child = undefined;
    }
}
