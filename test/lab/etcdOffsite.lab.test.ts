/**
 * Off-node copies of etcd snapshots on the lab: the snapshot step (`etcdSnapshotSteps` with
 * `offsite`) on a one-member TLS etcd on lab-cp-1, copying each verified snapshot with rclone
 * (Debian's package, in the node image) to lab-worker-1: over SFTP to a user of its sshd, its host
 * key pinned, and to an S3 server built from Go modules (rclone v1.76.0's `serve s3`, which checks
 * request signatures, test/lab/toolchain) on the same node. Then lab-cp-1 is lost (etcd, data and local snapshots gone), and the restore script on
 * lab-cp-2 fetches the newest off-node copy, restores it into a fresh cluster (a throwaway etcd)
 * and its keys are read back.
 *
 * Every address is a lab address (10.213.0.0/24); the credentials are a key pair made for the
 * test and throwaway S3 keys, which the S3 server is started with.
 */
import { execFileSync } from "child_process";
import { mkdtempSync, readFileSync, rmSync } from "fs";
import * as os from "os";
import * as path from "path";

import { LOCAL_CLIENT_URL, NODE_CLIENT_TLS } from "../../components/etcd/member";
import {
    EtcdOffsiteSftp,
    EtcdOffsiteTarget,
    etcdRestoreStep,
    etcdSnapshotSteps,
    OFFSITE_CREDENTIALS_DIR,
    offsiteCredentialParams,
    parseRestoreResult,
    parseSnapshotResult,
    SNAPSHOT_INSTALLED,
    SnapshotSaveResult,
} from "../../components/etcd/snapshot";
import { NodeStep, stepPayload } from "../../components/lib/nodeScript";
import { remoteRunner } from "../../components/lib/script";
import { makeEtcdPem } from "../support/etcdCerts";
import { toolchainBin } from "../support/toolchain";
import { ETCDCTL, expectOk, LabEtcd, ssh as sshOn, wipeEtcd } from "./etcdLab";
import { assertLabAddress, copyToNode, Lab, LabNode, loadLab, nodesByRole, runStep, sshRun } from "./harness";

const SFTP_USER = "zt-offsite";
const S3_PORT = 9000;
const S3_BUCKET = "zt-etcd";
const S3_UNIT = "zt-lab-s3";
const KEYS = 40;
/** Values of 256 KiB each (random, incompressible), so the snapshot has the size of a small cluster's. */
const BULK = 120;

describe("off-node etcd snapshot copies on the lab", () => {
    let lab: Lab;
    let source: LabNode;
    let fresh: LabNode;
    let target: LabNode;
    let keyDir: string;
    let privateKey: string;
    let etcd: LabEtcd;
    let bulkSha = "";
    let sftp: EtcdOffsiteSftp;
    let s3: EtcdOffsiteTarget;
    const saved: Record<string, SnapshotSaveResult[]> = { sftp: [], s3: [] };
    const s3Keys = { accessKeyId: "ZTLABACCESSKEY", secretAccessKey: "zt-lab-S3-secret/0123456789" };

    const ssh = (node: LabNode, command: string, timeoutSec = 120): string => sshOn(lab, node, command, timeoutSec);
    const snapshotStep = (offsite: EtcdOffsiteTarget): NodeStep => {
        const [step] = etcdSnapshotSteps({ node: source.name, etcdctl: ETCDCTL, endpoint: LOCAL_CLIENT_URL, tls: NODE_CLIENT_TLS, retain: 3, offsite });
        const credentials = offsite.type === "sftp" ? { sshPrivateKey: privateKey } : s3Keys;
        return { ...step, params: { ...step.params, ...offsiteCredentialParams(source.name, offsite, credentials) } };
    };
    /** What the timer runs, run now; its result line from the journal. */
    const saveNow = (): SnapshotSaveResult => {
        const cursor = ssh(source, "journalctl -n 0 --show-cursor -o cat --no-pager | sed -n 's/^-- cursor: //p'").trim();
        const started = sshRun(lab, source, `timeout 300 systemctl start ${SNAPSHOT_INSTALLED.service}`, undefined, 330);
        const journal = ssh(source, `journalctl -u ${SNAPSHOT_INSTALLED.service} --after-cursor='${cursor}' -o cat --no-pager`);
        if (started.code !== 0) {
            throw new Error(`${source.name}: the snapshot service failed (exit ${started.code}):\n${journal.slice(-3000)}`);
        }
        const line = journal.split("\n").filter((l) => l.startsWith('{"action":"save"')).pop();
        const r = parseSnapshotResult(line ?? "");
        if (r.action !== "save") {
            throw new Error("not a save");
        }
        return r;
    };
    const restoreStep = (offsite: EtcdOffsiteTarget, action: string, params: Record<string, string>): { stdin: string; runner: string } => {
        const credentials = offsite.type === "sftp" ? { sshPrivateKey: privateKey } : s3Keys;
        const [snap] = etcdSnapshotSteps({ node: source.name, etcdctl: ETCDCTL, offsite });
        const offsiteParams = Object.fromEntries(Object.entries(snap.params).filter(([k]) => k.startsWith("ZT_OFFSITE_")));
        const step = etcdRestoreStep({ ...offsiteParams, ...offsiteCredentialParams(source.name, offsite, credentials), ZT_OFFSITE_NODE: source.name, ZT_ETCDCTL: ETCDCTL, ...params }, true);
        const runner = remoteRunner("root", "create").replace("ZT_ACTION=create", `ZT_ACTION=${action}`);
        return { stdin: stepPayload(step).stdin, runner };
    };

    beforeAll(() => {
        lab = loadLab();
        [source, fresh] = nodesByRole(lab, "control-plane").filter((n) => !n.slowDisk);
        [target] = nodesByRole(lab, "worker");
        expect([source, fresh, target].every((n) => n !== undefined)).toBe(true);
        assertLabAddress(target.address, "the off-node target");
        keyDir = mkdtempSync(path.join(os.tmpdir(), "zt-lab-offsite-"));
        execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "zt-lab-offsite", "-f", path.join(keyDir, "id")], { timeout: 30_000 });
        privateKey = readFileSync(path.join(keyDir, "id"), "utf8");
        const publicKey = readFileSync(path.join(keyDir, "id.pub"), "utf8").trim();

        // The SFTP target: a user of the worker's sshd that may log in with the test's key only.
        ssh(
            target,
            `id ${SFTP_USER} >/dev/null 2>&1 || useradd -m -s /bin/bash ${SFTP_USER}; h=$(getent passwd ${SFTP_USER} | cut -d: -f6); ` +
                `rm -rf "$h/etcd-snapshots"; install -d -m 0700 -o ${SFTP_USER} -g ${SFTP_USER} "$h/.ssh"; ` +
                `printf '%s\\n' '${publicKey}' >"$h/.ssh/authorized_keys"; chown ${SFTP_USER}: "$h/.ssh/authorized_keys"; chmod 0600 "$h/.ssh/authorized_keys"`,
        );
        sftp = { type: "sftp", host: target.address, user: SFTP_USER, hostKey: target.hostKey.trim(), path: "etcd-snapshots", retain: 2 };

        // The S3 server: rclone's `serve s3` from the toolchain (beside Debian's rclone, which has
        // none), on the worker's lab address, a directory per bucket, requests signed with the keys.
        copyToNode(lab, target, toolchainBin("rclone", "npm run test:lab"), "/usr/local/bin/rclone-serve");
        ssh(
            target,
            `systemctl stop ${S3_UNIT} >/dev/null 2>&1; systemctl reset-failed ${S3_UNIT} >/dev/null 2>&1; rm -rf /srv/zt-s3; mkdir -p /srv/zt-s3/${S3_BUCKET}; ` +
                `systemd-run --collect --unit ${S3_UNIT} --setenv=RCLONE_CONFIG=/notfound /usr/local/bin/rclone-serve serve s3 ` +
                `--addr ${target.address}:${S3_PORT} --auth-key '${s3Keys.accessKeyId},${s3Keys.secretAccessKey}' /srv/zt-s3; ` +
                `for i in $(seq 50); do [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 http://${target.address}:${S3_PORT}/${S3_BUCKET})" != 000 ] && exit 0; sleep 0.2; done; ` +
                `journalctl -u ${S3_UNIT} -n 20 --no-pager >&2; exit 1`,
        );
        s3 = { type: "s3", endpoint: `http://${target.address}:${S3_PORT}`, bucket: S3_BUCKET, path: "lab/etcd", retain: 2 };

        // A one-member TLS etcd on the source node, with keys to find again after the restore.
        for (const n of [source, fresh]) {
            wipeEtcd(lab, n);
            sshRun(lab, n, `rm -rf /var/backups/etcd ${OFFSITE_CREDENTIALS_DIR}`);
        }
        const pem = makeEtcdPem(path.join(keyDir, "pki"), [{ name: source.name, address: source.address }]).pem;
        etcd = new LabEtcd(lab, pem, source);
        expectOk(source, etcd.run(source, etcd.step(source)));
        const ctl = `ETCDCTL_API=3 ${ETCDCTL} --endpoints=${LOCAL_CLIENT_URL} --cacert=${NODE_CLIENT_TLS.caFile} --cert=${NODE_CLIENT_TLS.certFile} --key=${NODE_CLIENT_TLS.keyFile} --command-timeout=30s`;
        ssh(source, `for i in $(seq ${KEYS}); do ${ctl} put /lab/offsite/key-$i value-$i >/dev/null || exit 1; done`, 300);
        ssh(source, `for i in $(seq ${BULK}); do head -c 196608 /dev/urandom | base64 -w0 | ${ctl} put /lab/bulk/$(printf %03d $i) >/dev/null || exit 1; done`, 600);
        bulkSha = ssh(source, `${ctl} get /lab/bulk/ --prefix --print-value-only | sha256sum | cut -d' ' -f1`).trim();
    }, 600_000);

    afterAll(() => {
        if (lab !== undefined) {
            for (const n of [source, fresh].filter((x) => x !== undefined)) {
                wipeEtcd(lab, n);
                sshRun(lab, n, `systemctl disable --now ${SNAPSHOT_INSTALLED.timer} >/dev/null 2>&1; rm -rf /var/backups/etcd ${OFFSITE_CREDENTIALS_DIR} /var/tmp/zt-offsite-restore`);
            }
            if (target !== undefined) {
                sshRun(lab, target, `systemctl stop ${S3_UNIT} >/dev/null 2>&1; rm -rf /srv/zt-s3; userdel -r ${SFTP_USER} >/dev/null 2>&1`);
            }
        }
        rmSync(keyDir, { recursive: true, force: true });
    });

    test("sftp: create stores the credentials root-only, outside the env file and the installed script, and checks the target", () => {
        const created = runStep(lab, source, snapshotStep(sftp));
        expectOk(source, created);
        expect(parseSnapshotResult(created.stdout)).toMatchObject({ action: "create", offsite: "sftp", changed: true });
        expect(ssh(source, `stat -c '%n %a %U' ${OFFSITE_CREDENTIALS_DIR} ${OFFSITE_CREDENTIALS_DIR}/*`).trim().split("\n")).toEqual([
            `${OFFSITE_CREDENTIALS_DIR} 700 root`,
            `${OFFSITE_CREDENTIALS_DIR}/known_hosts 600 root`,
            `${OFFSITE_CREDENTIALS_DIR}/ssh-key 600 root`,
        ]);
        const keyBody = privateKey.split("\n")[1];
        expect(ssh(source, `cat ${SNAPSHOT_INSTALLED.envFile} ${SNAPSHOT_INSTALLED.script}`)).not.toContain(keyBody);
        expect(ssh(source, `cat ${SNAPSHOT_INSTALLED.envFile}`)).toContain(`ZT_OFFSITE_HOST="${target.address}"`);
        expect(created.stderr).not.toContain(keyBody);
        expect(ssh(source, `which rclone && rclone version | head -n1`)).toMatch(/rclone v1\./);
    }, 300_000);

    test("sftp: each verified snapshot is copied to the lab host, read back with the same sha256, and the newest two kept there", () => {
        for (let i = 0; i < 3; i++) {
            const r = saveNow();
            saved.sftp.push(r);
            const local = ssh(source, `sha256sum ${r.file} | cut -d' ' -f1`).trim();
            const remote = ssh(target, `cd ~${SFTP_USER}/etcd-snapshots && sha256sum ${r.offsite!.file} | cut -d' ' -f1 && cat ${r.offsite!.file}.sha256`).trim().split("\n");
            expect({ local, remote }).toEqual({ local: r.offsite!.sha256, remote: [local, `${local}  ${r.offsite!.file}`] });
            expect(r.offsite).toMatchObject({ type: "sftp", target: "etcd-snapshots", size: r.size, retain: 2, kept: Math.min(i + 1, 2) });
        }
        expect(saved.sftp[2].offsite!.removed).toEqual([saved.sftp[0].offsite!.file]);
        const listed = ssh(target, `ls -1 ~${SFTP_USER}/etcd-snapshots`).trim().split("\n");
        const newest = saved.sftp.slice(1).map((r) => r.offsite!.file);
        expect(listed).toEqual(newest.flatMap((f) => [f, `${f}.sha256`]));
        // The private key is in no log of the node.
        expect(ssh(source, `journalctl -o cat --no-pager | grep -c 'PRIVATE KEY' || true`).trim()).toBe("0");
        const last = saved.sftp[2];
        console.log(
            `sftp to ${target.name} (${target.address}): snapshot ${last.offsite!.file} of ${last.totalKeys} keys, ${last.size} bytes; ` +
                `copy ${saved.sftp.map((r) => r.offsite!.copyMs).join("/")} ms, read-back check ${saved.sftp.map((r) => r.offsite!.verifyMs).join("/")} ms; ` +
                `3 saves, 2 copies kept (${listed.join(", ")})`,
        );
    }, 600_000);

    test("sftp: a host key other than the pinned one stops create, naming the target", () => {
        const other = nodesByRole(lab, "control-plane").find((n) => n.name !== target.name)!;
        const r = runStep(lab, source, snapshotStep({ ...sftp, hostKey: other.hostKey.trim() }));
        expect(r.code).toBe(1);
        expect(r.stderr).toMatch(/the off-node target sftp etcd-snapshots does not take a file with the configured credentials: .*(key mismatch|knownhosts|host key)/i);
        expect(r.stderr).not.toContain(privateKey.split("\n")[1]);
        console.log(`pinned host key: a wrong key refused: ${r.stderr.split("\n").filter((l) => /does not take a file/.test(l))[0]?.slice(0, 300)}`);
        // Back to the right key (the S3 test replaces the step anyway).
        expectOk(source, runStep(lab, source, snapshotStep(sftp)));
    }, 300_000);

    test("s3: a wrong secret key stops create, naming the target, without showing the key", () => {
        const [step] = etcdSnapshotSteps({ node: source.name, etcdctl: ETCDCTL, endpoint: LOCAL_CLIENT_URL, tls: NODE_CLIENT_TLS, retain: 3, offsite: s3 });
        const wrong = { ...s3Keys, secretAccessKey: "zt-lab-WRONG-secret/0123456789" };
        const r = runStep(lab, source, { ...step, params: { ...step.params, ...offsiteCredentialParams(source.name, s3, wrong) } });
        expect(r.code).toBe(1);
        expect(r.stderr).toMatch(/the off-node target s3 zt-etcd\/lab\/etcd does not take a file with the configured credentials: .*(Forbidden|SignatureDoesNotMatch|AccessDenied)/);
        expect(r.stderr).not.toContain(wrong.secretAccessKey);
        console.log(`s3 signatures: a wrong secret key refused: ${r.stderr.split("\n").filter((l) => /does not take a file/.test(l))[0]?.slice(0, 300)}`);
    }, 300_000);

    test("s3: copies go to an S3 server built from Go modules, checked by reading them back, the newest two kept", () => {
        const created = runStep(lab, source, snapshotStep(s3));
        expectOk(source, created);
        expect(parseSnapshotResult(created.stdout)).toMatchObject({ action: "create", offsite: "s3" });
        expect(ssh(source, `ls -1 ${OFFSITE_CREDENTIALS_DIR}`).trim().split("\n")).toEqual(["access-key-id", "secret-access-key"]);
        expect(ssh(source, `cat ${SNAPSHOT_INSTALLED.envFile} ${SNAPSHOT_INSTALLED.script}`)).not.toContain(s3Keys.secretAccessKey);
        for (let i = 0; i < 3; i++) {
            const r = saveNow();
            saved.s3.push(r);
            expect(r.offsite).toMatchObject({ type: "s3", target: `${S3_BUCKET}/lab/etcd`, size: r.size, retain: 2, kept: Math.min(i + 1, 2) });
            expect(r.offsite!.sha256).toBe(ssh(source, `sha256sum ${r.file} | cut -d' ' -f1`).trim());
        }
        const objects = ssh(target, `find /srv/zt-s3/${S3_BUCKET}/lab/etcd -type f -printf '%f\\n' | sort`).trim();
        for (const r of saved.s3.slice(1)) {
            expect(objects).toContain(r.offsite!.file);
        }
        expect(objects).not.toContain(saved.s3[0].offsite!.file);
        expect(ssh(source, `journalctl -o cat --no-pager | grep -c -F '${s3Keys.secretAccessKey}' || true`).trim()).toBe("0");
        const last = saved.s3[2];
        console.log(
            `s3 (rclone serve s3 on ${target.name}:${S3_PORT}): ${last.size} bytes per copy; copy ${saved.s3.map((r) => r.offsite!.copyMs).join("/")} ms, ` +
                `read-back check ${saved.s3.map((r) => r.offsite!.verifyMs).join("/")} ms; 3 saves, 2 kept`,
        );
    }, 600_000);

    test("the node is lost; its cluster is restored on a fresh node from the off-node copy, and its keys read back", () => {
        // Lost: etcd, its data, the local snapshots and the credentials are gone from lab-cp-1.
        wipeEtcd(lab, source);
        sshRun(lab, source, `systemctl disable --now ${SNAPSHOT_INSTALLED.timer} >/dev/null 2>&1; rm -rf /var/backups/etcd ${OFFSITE_CREDENTIALS_DIR}`);
        expect(sshRun(lab, source, "ls /var/backups/etcd").code).not.toBe(0);

        const dataDir = "/var/tmp/zt-offsite-restore/data";
        ssh(fresh, `rm -rf /var/tmp/zt-offsite-restore /var/backups/etcd/offsite && install -d -m 0755 /var/tmp/zt-offsite-restore`);
        const started = Date.now();
        const { stdin, runner } = restoreStep(sftp, "restore", {
            ZT_SNAPSHOT: "latest",
            ZT_NAME: "restored",
            ZT_INITIAL_CLUSTER: "restored=http://127.0.0.1:23800",
            ZT_INITIAL_ADVERTISE_PEER_URLS: "http://127.0.0.1:23800",
            ZT_INITIAL_CLUSTER_TOKEN: "zt-offsite-restore",
            ZT_DATA_DIR: dataDir,
            ZT_USER: "etcd",
        });
        const restored = sshRun(lab, fresh, runner, stdin, 300);
        expectOk(fresh, restored);
        const seconds = (Date.now() - started) / 1000;
        const r = parseRestoreResult(restored.stdout);
        const newest = saved.sftp[2];
        expect(r).toMatchObject({ dataDir, name: "restored", snapshot: `/var/backups/etcd/offsite/${newest.offsite!.file}`, totalKeys: newest.totalKeys });
        expect(r.offsite).toEqual({ type: "sftp", target: "etcd-snapshots", sha256: newest.offsite!.sha256 });
        expect(restored.stderr).not.toContain(privateKey.split("\n")[1]);
        // No credential is left on the fresh node: they lived in the script's scratch directory.
        expect(sshRun(lab, fresh, `test -e ${OFFSITE_CREDENTIALS_DIR}`).code).not.toBe(0);

        // A fresh cluster on the restored directory: a throwaway etcd (plain HTTP on loopback).
        const unit = "zt-offsite-restored";
        ssh(
            fresh,
            `systemctl stop ${unit} >/dev/null 2>&1; systemctl reset-failed ${unit} >/dev/null 2>&1; ` +
                `systemd-run --collect --unit ${unit} --uid etcd --gid etcd /usr/bin/etcd --name restored --data-dir ${dataDir} ` +
                "--listen-client-urls http://127.0.0.1:23790 --advertise-client-urls http://127.0.0.1:23790 " +
                "--listen-peer-urls http://127.0.0.1:23800 --initial-advertise-peer-urls http://127.0.0.1:23800 " +
                "--initial-cluster restored=http://127.0.0.1:23800 --listen-metrics-urls http://127.0.0.1:23810",
        );
        try {
            const local = (args: string) => ssh(fresh, `ETCDCTL_API=3 ${ETCDCTL} --endpoints=http://127.0.0.1:23790 --command-timeout=10s ${args}`);
            ssh(fresh, `for i in $(seq 30); do ETCDCTL_API=3 ${ETCDCTL} --endpoints=http://127.0.0.1:23790 --dial-timeout=1s --command-timeout=2s endpoint health >/dev/null 2>&1 && exit 0; sleep 0.5; done; journalctl -u ${unit} -n 20 --no-pager >&2; exit 1`);
            const values = local("get /lab/offsite/ --prefix --print-value-only").trim().split("\n").filter((l) => l !== "");
            expect(values.sort()).toEqual(Array.from({ length: KEYS }, (_, i) => `value-${i + 1}`).sort());
            expect(local("get /lab/bulk/ --prefix --keys-only | grep -c .").trim()).toBe(String(BULK));
            expect(local("get /lab/bulk/ --prefix --print-value-only | sha256sum | cut -d' ' -f1").trim()).toBe(bulkSha);
            console.log(
                `restore on ${fresh.name} from the off-node copy of lost ${source.name}: ${newest.offsite!.file} fetched over sftp, sha256 checked against its .sha256, ` +
                    `restored (${r.size} bytes, revision ${r.revision}, ${r.totalKeys} keys) in ${seconds.toFixed(1)} s; a fresh etcd on it returns all ${values.length} keys of /lab/offsite/ ` +
                    `and the ${BULK} values of /lab/bulk/ (${(BULK * 256) / 1024} MiB) with the same sha256 as before the loss`,
            );
        } finally {
            sshRun(lab, fresh, `systemctl stop ${unit}`);
        }
    }, 600_000);

    test("the S3 copy fetches and verifies on the fresh node too", () => {
        ssh(fresh, "rm -rf /var/backups/etcd/offsite");
        const { stdin, runner } = restoreStep(s3, "fetch", { ZT_SNAPSHOT: "latest" });
        const fetched = sshRun(lab, fresh, runner, stdin, 300);
        expectOk(fresh, fetched);
        const result = JSON.parse(fetched.stdout.trim().split("\n").pop()!) as { action: string; snapshot: string; totalKeys: number; offsite: { sha256: string } };
        const newest = saved.s3[2];
        expect(result).toMatchObject({ action: "fetch", snapshot: `/var/backups/etcd/offsite/${newest.offsite!.file}`, totalKeys: newest.totalKeys, offsite: { sha256: newest.offsite!.sha256 } });
        expect(fetched.stderr).not.toContain(s3Keys.secretAccessKey);
        console.log(`fetch on ${fresh.name} from s3: ${newest.offsite!.file} (${newest.size} bytes, ${result.totalKeys} keys) verified`);
    }, 300_000);
});
