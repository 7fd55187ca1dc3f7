/**
 * Off-node copies of etcd snapshots (`etcd.snapshots.offsite`), short of a target: the config's
 * keys and messages, the step's parameters, facts and secrecy (pure); the shell library for real
 * (parameter checks, credential files and their modes, the rclone environment it renders, and
 * that credentials reach rclone through its environment, never its command line); and the
 * program under mocks (a secret snapshot command per member, the target's facts readable, no
 * credential anywhere else). The copies themselves run in the lab (test/lab/etcdOffsite.lab.test.ts).
 */
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";

import {
    EtcdOffsiteS3,
    EtcdOffsiteSftp,
    EtcdSnapshotStepArgs,
    etcdSnapshotSteps,
    OFFSITE_LIB,
    offsiteCredentialParams,
    offsiteFact,
    parseRestoreResult,
    parseSnapshotResult,
} from "../components/etcd/snapshot";
import { planEtcdCluster } from "../components/etcd/cluster";
import { COMMON_LIB } from "../components/lib/nodeScript";
import { validateConfig } from "../infra/config";
import { offsiteTarget } from "../infra/program";
import { problemsOf, TEST_KEY, validRawConfig } from "./support/config";
import { ETCD_DEFAULTS } from "./support/etcdDefaults";
import { Recorder, withoutSecrets } from "./support/mocks";
import { runProgram } from "./support/program";

const HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILWvkNWpyAzs58YI0beTDhC9KCztmoxTVHtHfzNQ+1Cf";
const SFTP: EtcdOffsiteSftp = { type: "sftp", host: "backup.osl.example.net", user: "etcd-backup", hostKey: HOST_KEY, path: "zerotouch/prod", retain: 48 };
const S3: EtcdOffsiteS3 = { type: "s3", endpoint: "https://s3.eu-central-1.example.eu", region: "eu-central-1", bucket: "zt-etcd", path: "prod", retain: 48 };
const SSH_KEY = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAAOFFSITE-SECRET-BODY\n-----END OPENSSH PRIVATE KEY-----\n";
const S3_KEYS = { accessKeyId: "AKIAOFFSITEKEYID0001", secretAccessKey: "offsite/SECRET+access-key-0123456789" };
const base: EtcdSnapshotStepArgs = { node: "cp-1", etcdctl: "/usr/local/bin/etcdctl" };

describe("etcdSnapshotSteps with an off-node target", () => {
    test("sftp: the target's parameters, a sensitive step, and its facts for the residency policy", () => {
        const [step] = etcdSnapshotSteps({ ...base, offsite: SFTP });
        expect(step.params).toEqual({
            ZT_NODE: "cp-1",
            ZT_ETCDCTL: "/usr/local/bin/etcdctl",
            ZT_OFFSITE_TYPE: "sftp",
            ZT_OFFSITE_HOST: "backup.osl.example.net",
            ZT_OFFSITE_PORT: 22,
            ZT_OFFSITE_USER: "etcd-backup",
            ZT_OFFSITE_HOST_KEY: HOST_KEY,
            ZT_OFFSITE_PATH: "zerotouch/prod",
            ZT_OFFSITE_RETAIN: 48,
        });
        expect(step).toMatchObject({ sensitive: true, hasDelete: true, libraries: [COMMON_LIB, OFFSITE_LIB] });
        expect(step.meta).toEqual({ zerotouchOffsite: { type: "sftp", host: "backup.osl.example.net", endpoint: "sftp://backup.osl.example.net:22" } });
    });

    test("s3: the endpoint, bucket, region and prefix; the host of the endpoint in the facts", () => {
        const [step] = etcdSnapshotSteps({ ...base, offsite: S3 });
        expect(step.params).toMatchObject({
            ZT_OFFSITE_TYPE: "s3",
            ZT_OFFSITE_ENDPOINT: "https://s3.eu-central-1.example.eu",
            ZT_OFFSITE_REGION: "eu-central-1",
            ZT_OFFSITE_BUCKET: "zt-etcd",
            ZT_OFFSITE_PATH: "prod",
            ZT_OFFSITE_RETAIN: 48,
        });
        expect(Object.keys(step.params).filter((k) => /HOST|USER|PORT/.test(k))).toEqual([]);
        expect(step.meta).toEqual({ zerotouchOffsite: { type: "s3", host: "s3.eu-central-1.example.eu", endpoint: "https://s3.eu-central-1.example.eu" } });
    });

    test("an IPv6 SFTP host on another port", () => {
        expect(offsiteFact({ ...SFTP, host: "2001:db8::10", port: 2222 })).toEqual({ type: "sftp", host: "2001:db8::10", endpoint: "sftp://[2001:db8::10]:2222" });
    });

    test.each<[string, Partial<EtcdOffsiteS3> | Partial<EtcdOffsiteSftp>, "s3" | "sftp", RegExp]>([
        ["an endpoint with a path", { endpoint: "https://s3.example.eu/bucket" }, "s3", /^etcd snapshots for node cp-1: offsite\.endpoint is "https:\/\/s3\.example\.eu\/bucket"; allowed: the S3 service's URL/],
        ["a bucket with capitals", { bucket: "Backups" }, "s3", /offsite\.bucket is "Backups"; allowed: an S3 bucket name/],
        ["a region with a space", { region: "eu central" }, "s3", /offsite\.region is "eu central"; allowed: a region name/],
        ["a path with ..", { path: "a/../b" }, "s3", /offsite\.path is "a\/\.\.\/b"; allowed: a path of letters/],
        ["retain 0", { retain: 0 }, "sftp", /offsite\.retain is 0; allowed: an integer from 1 to 1000/],
        ["a host with a space", { host: "backup host" }, "sftp", /offsite\.host is "backup host"; allowed: a host name or IP address/],
        ["port 0", { port: 0 }, "sftp", /offsite\.port is 0; allowed: an integer from 1 to 65535/],
        ["a user with capitals", { user: "Backup" }, "sftp", /offsite\.user is "Backup"; allowed: a user name/],
        ["a host key with a comment", { hostKey: `${HOST_KEY} root@backup` }, "sftp", /offsite\.hostKey is .*; allowed: the target's public host key/],
    ])("refuses %s, naming node, key, value and what is allowed", (_name, change, type, message) => {
        const offsite = { ...(type === "s3" ? S3 : SFTP), ...change } as EtcdOffsiteS3 | EtcdOffsiteSftp;
        expect(() => etcdSnapshotSteps({ ...base, offsite })).toThrow(message);
    });
});

describe("planEtcdCluster with an off-node target", () => {
    test("every member's snapshot step copies to the same target, under its own node name; without a target, no member's does", () => {
        const members = [1, 2, 3].map((n) => ({ name: `cp-${n}`, target: { host: `203.0.113.1${n}`, port: 22, user: "root" }, address: `203.0.113.1${n}`, dataDir: "/var/lib/etcd" }));
        const plan = planEtcdCluster({ ...ETCD_DEFAULTS, clusterToken: "t", members, snapshots: { ...ETCD_DEFAULTS.snapshots, offsite: S3 } });
        for (const m of plan.members) {
            expect([m.node.name, m.snapshots.sensitive, m.snapshots.params.ZT_NODE, m.snapshots.params.ZT_OFFSITE_BUCKET, m.snapshots.meta]).toEqual([
                m.node.name,
                true,
                m.node.name,
                "zt-etcd",
                { zerotouchOffsite: offsiteFact(S3) },
            ]);
        }
        const plain = planEtcdCluster({ ...ETCD_DEFAULTS, clusterToken: "t", members });
        expect(plain.members.every((m) => !m.snapshots.sensitive && m.snapshots.meta === undefined && m.snapshots.params.ZT_OFFSITE_TYPE === undefined)).toBe(true);
    });
});

describe("offsiteCredentialParams", () => {
    test("sftp takes the private key, s3 the key pair", () => {
        expect(offsiteCredentialParams("cp-1", SFTP, { sshPrivateKey: SSH_KEY })).toEqual({ ZT_OFFSITE_SSH_KEY: SSH_KEY });
        expect(offsiteCredentialParams("cp-1", S3, S3_KEYS)).toEqual({ ZT_OFFSITE_ACCESS_KEY_ID: S3_KEYS.accessKeyId, ZT_OFFSITE_SECRET_ACCESS_KEY: S3_KEYS.secretAccessKey });
    });

    test.each<[string, EtcdOffsiteS3 | EtcdOffsiteSftp, object, RegExp]>([
        ["sftp without a key", SFTP, {}, /offsite type sftp needs the SFTP user's private key \(OpenSSH or PEM\) \(not shown\)/],
        ["sftp with something that is no key", SFTP, { sshPrivateKey: "hunter2-not-a-key" }, /needs the SFTP user's private key/],
        ["sftp with S3 keys too", SFTP, { sshPrivateKey: SSH_KEY, ...S3_KEYS }, /offsite type sftp takes no S3 keys/],
        ["s3 without the secret key", S3, { accessKeyId: S3_KEYS.accessKeyId }, /offsite type s3 needs the S3 access key id and secret access key/],
        ["s3 with a space in the secret", S3, { ...S3_KEYS, secretAccessKey: "a b" }, /needs the S3 access key id and secret access key/],
        ["s3 with an SSH key too", S3, { ...S3_KEYS, sshPrivateKey: SSH_KEY }, /offsite type s3 takes no SSH private key/],
    ])("refuses %s, without showing a value", (_name, target, credentials, message) => {
        let error = "";
        try {
            offsiteCredentialParams("cp-1", target, credentials);
        } catch (err) {
            error = String(err);
        }
        expect(error).toMatch(message);
        for (const secret of ["hunter2", "OFFSITE-SECRET-BODY", S3_KEYS.accessKeyId, S3_KEYS.secretAccessKey]) {
            expect(error).not.toContain(secret);
        }
    });
});

describe("result lines with an off-node copy", () => {
    const file = "/var/backups/etcd/cp-1-20250101T000000.000Z.db";
    const copy = {
        type: "sftp",
        target: "zerotouch/prod",
        file: "cp-1-20250101T000000.000Z.db",
        size: 20512,
        sha256: "a".repeat(64),
        copyMs: 120,
        verifyMs: 80,
        retain: 2,
        kept: 2,
        removed: ["cp-1-20241231T230000.000Z.db"],
    };
    const save = { action: "save", node: "cp-1", file, size: 20512, hash: 1, revision: 2, totalKeys: 3, retain: 24, kept: 1, removed: [], offsite: copy };
    const line = (r: object): string => `${JSON.stringify(r)}\n`;

    test("a save with its verified copy", () => {
        expect(parseSnapshotResult(line(save))).toEqual(save);
    });

    test.each<[string, object, RegExp]>([
        ["a copy of another file", { offsite: { ...copy, file: "cp-1-20240101T000000.000Z.db" } }, /the off-node copy cp-1-20240101T000000\.000Z\.db .* is not the new snapshot's/],
        ["a copy of another size", { offsite: { ...copy, size: 1 } }, /is not the new snapshot's/],
        ["more copies kept than retained", { offsite: { ...copy, kept: 3 } }, /3 kept of 2/],
        ["the new copy among the removed", { offsite: { ...copy, removed: [copy.file] } }, /or was removed/],
        ["a sha256 that is not one", { offsite: { ...copy, sha256: "abc" } }, /unexpected result line: offsite\.sha256/],
    ])("refuses %s", (_name, change, message) => {
        expect(() => parseSnapshotResult(line({ ...save, ...change }))).toThrow(message);
    });

    test("a restore from an off-node copy says which", () => {
        const restore = {
            action: "restore",
            snapshot: "/var/backups/etcd/offsite/cp-1-20250101T000000.000Z.db",
            size: 20512,
            hash: 1,
            revision: 2,
            totalKeys: 3,
            offsite: { type: "s3", target: "zt-etcd/prod", sha256: "b".repeat(64) },
            name: "cp-1",
            initialCluster: "cp-1=https://10.0.0.1:2380",
            initialAdvertisePeerUrls: "https://10.0.0.1:2380",
            initialClusterToken: "t",
            dataDir: "/var/lib/etcd",
            user: "etcd",
            tool: "etcdutl",
        };
        expect(parseRestoreResult(line(restore))).toEqual(restore);
    });
});

describe("etcd.snapshots.offsite in the stack config", () => {
    const secretKeys = new Set(["sshPrivateKey", "etcdOffsiteSshKey", "etcdOffsiteAccessKeyId", "etcdOffsiteSecretAccessKey"]);
    const sftpConfig = { type: "sftp", host: "backup.osl.example.net", user: "etcd-backup", hostKey: HOST_KEY, path: "zerotouch/prod" };
    const s3Config = { type: "s3", endpoint: "https://s3.eu-central-1.example.eu", bucket: "zt-etcd" };
    const raw = (offsite: object | undefined, secrets: Record<string, string>): Record<string, any> => {
        const r = validRawConfig(1);
        r.etcd = { snapshots: offsite === undefined ? {} : { offsite } };
        return { ...r, ...secrets };
    };
    const problems = (r: Record<string, any>, secret: ReadonlySet<string> = secretKeys): string[] => problemsOf(r, secret);

    test("sftp and s3 targets with their secrets; retain defaults to 48; the program's target has the type's keys only", () => {
        const sftp = validateConfig(raw(sftpConfig, { etcdOffsiteSshKey: TEST_KEY }), secretKeys);
        expect(sftp.etcd.snapshots.offsite).toEqual({ ...sftpConfig, retain: 48 });
        expect(offsiteTarget(sftp.etcd.snapshots.offsite!)).toEqual({ ...sftpConfig, retain: 48 });
        const s3 = validateConfig(raw({ ...s3Config, region: "eu-central-1", retain: 7 }, { etcdOffsiteAccessKeyId: S3_KEYS.accessKeyId, etcdOffsiteSecretAccessKey: S3_KEYS.secretAccessKey }), secretKeys);
        expect(offsiteTarget(s3.etcd.snapshots.offsite!)).toEqual({ ...s3Config, region: "eu-central-1", retain: 7 });
        expect(validateConfig(raw(undefined, {}), secretKeys).etcd.snapshots.offsite).toBeUndefined();
    });

    test.each<[string, object | undefined, Record<string, string>, RegExp[]]>([
        [
            "s3 without a bucket",
            { type: "s3", endpoint: "https://s3.eu-central-1.example.eu" },
            { etcdOffsiteAccessKeyId: "a", etcdOffsiteSecretAccessKey: "b" },
            [/^zerotouch:etcd\.snapshots\.offsite\.bucket: type s3 needs it; given nothing \(missing\); allowed: \(s3\) an existing bucket's name/],
        ],
        [
            "an S3 endpoint over plain HTTP",
            { ...s3Config, endpoint: "http://s3.eu-central-1.example.eu" },
            { etcdOffsiteAccessKeyId: "a", etcdOffsiteSecretAccessKey: "b" },
            [/^zerotouch:etcd\.snapshots\.offsite\.endpoint: given "http:\/\/s3\.eu-central-1\.example\.eu"; allowed: \(s3\) the https:\/\/ URL of the S3 service/],
        ],
        [
            "sftp with a bucket and without a host key",
            { type: "sftp", host: "backup.osl.example.net", user: "etcd-backup", bucket: "zt-etcd" },
            { etcdOffsiteSshKey: TEST_KEY },
            [/^zerotouch:etcd\.snapshots\.offsite\.hostKey: type sftp needs it; given nothing \(missing\)/, /^zerotouch:etcd\.snapshots\.offsite\.bucket: type sftp takes no bucket; given "zt-etcd"/],
        ],
        ["an unknown type", { type: "ftp", host: "h" }, {}, [/^zerotouch:etcd\.snapshots\.offsite\.type: given "ftp"; allowed: s3 \(an S3-compatible bucket\) or sftp/]],
        ["retain 1001", { ...sftpConfig, retain: 1001 }, { etcdOffsiteSshKey: TEST_KEY }, [/^zerotouch:etcd\.snapshots\.offsite\.retain: given 1001; allowed: an integer from 1 to 1000 \(default 48\)/]],
        ["sftp without its key", sftpConfig, {}, [/^zerotouch:etcdOffsiteSshKey: etcd\.snapshots\.offsite\.type is sftp, which needs it as a secret; given nothing \(missing\)/]],
        [
            "s3 given the SSH key instead of its key pair",
            s3Config,
            { etcdOffsiteSshKey: TEST_KEY },
            [
                /^zerotouch:etcdOffsiteAccessKeyId: etcd\.snapshots\.offsite\.type is s3, which needs it as a secret/,
                /^zerotouch:etcdOffsiteSecretAccessKey: etcd\.snapshots\.offsite\.type is s3, which needs it as a secret/,
                /^zerotouch:etcdOffsiteSshKey: etcd\.snapshots\.offsite\.type is s3, which takes no such secret; given a value that is not a private key \(not shown\)/,
            ],
        ],
        ["an off-node secret without a target", undefined, { etcdOffsiteSecretAccessKey: "x" }, [/^zerotouch:etcdOffsiteSecretAccessKey: no etcd\.snapshots\.offsite is configured, which takes no such secret; given a value that is not a secret access key \(not shown\)/]],
        ["a private key that is not one", sftpConfig, { etcdOffsiteSshKey: "hunter2" }, [/^zerotouch:etcdOffsiteSshKey: given a value that is not a private key \(not shown\); allowed: the SFTP user's OpenSSH or PEM private key/]],
    ])("refuses %s, naming the key and what is allowed", (_name, offsite, secrets, expected) => {
        const found = problems(raw(offsite, secrets));
        expect(found).toHaveLength(expected.length);
        for (const e of expected) {
            expect(found).toContainEqual(expect.stringMatching(e));
        }
        expect(found.join("\n")).not.toContain("hunter2");
        expect(found.join("\n")).not.toContain(TEST_KEY.split("\n")[1]);
    });

    test("a key set as plain text is refused without being shown", () => {
        const found = problems(raw(s3Config, { etcdOffsiteAccessKeyId: S3_KEYS.accessKeyId, etcdOffsiteSecretAccessKey: S3_KEYS.secretAccessKey }), new Set(["sshPrivateKey", "etcdOffsiteAccessKeyId"]));
        expect(found).toEqual([expect.stringMatching(/^zerotouch:etcdOffsiteSecretAccessKey: given as plain text \(not shown\); allowed: the S3 secret access key, set as a secret/)]);
        expect(found.join("\n")).not.toContain(S3_KEYS.secretAccessKey);
    });
});

/** Runs bash with common.sh and offsite.sh loaded, then `body`; only `env` (and PATH) in its environment. */
function library(body: string, env: Record<string, string>, bin?: string): { status: number | null; stdout: string; stderr: string } {
    const script = `set -euo pipefail\n. ${JSON.stringify(COMMON_LIB)}\n. ${JSON.stringify(OFFSITE_LIB)}\n${body}\n`;
    const PATH = `${bin !== undefined ? `${bin}:` : ""}/usr/local/bin:/usr/bin:/bin`;
    const r = spawnSync("bash", ["-c", script], { env: { PATH, ...env }, encoding: "utf8", timeout: 30_000, stdio: ["ignore", "pipe", "pipe"] });
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe("the off-node shell library (offsite.sh)", () => {
    let root = "";
    const sftpEnv = {
        ZT_OFFSITE_TYPE: "sftp",
        ZT_OFFSITE_HOST: "10.213.0.21",
        ZT_OFFSITE_PORT: "2222",
        ZT_OFFSITE_USER: "zt-offsite",
        ZT_OFFSITE_HOST_KEY: HOST_KEY,
        ZT_OFFSITE_PATH: "etcd-snapshots",
        ZT_OFFSITE_RETAIN: "2",
    };
    const s3Env = {
        ZT_OFFSITE_TYPE: "s3",
        ZT_OFFSITE_ENDPOINT: "https://s3.eu-central-1.example.eu",
        ZT_OFFSITE_REGION: "eu-central-1",
        ZT_OFFSITE_BUCKET: "zt-etcd",
        ZT_OFFSITE_PATH: "prod/etcd",
    };

    beforeAll(() => {
        root = fs.mkdtempSync(path.join(os.tmpdir(), "zt-offsite-lib-"));
    });
    afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

    test.each<[string, Record<string, string>, RegExp]>([
        ["an unknown type", { ZT_OFFSITE_TYPE: "ftp" }, /ZT_OFFSITE_TYPE must be empty, s3 or sftp, got 'ftp' \(node cp-1\)/],
        ["an endpoint with a path", { ...s3Env, ZT_OFFSITE_ENDPOINT: "https://s3.example.eu/x" }, /ZT_OFFSITE_ENDPOINT must be the S3 service's URL/],
        ["a bucket with capitals", { ...s3Env, ZT_OFFSITE_BUCKET: "Zt" }, /ZT_OFFSITE_BUCKET must be an S3 bucket name/],
        ["a host with a space", { ...sftpEnv, ZT_OFFSITE_HOST: "a b" }, /ZT_OFFSITE_HOST must be a host name or IP address, got 'a b'/],
        ["port 70000", { ...sftpEnv, ZT_OFFSITE_PORT: "70000" }, /ZT_OFFSITE_PORT must be a port from 1 to 65535/],
        ["a host key with a comment", { ...sftpEnv, ZT_OFFSITE_HOST_KEY: `${HOST_KEY} x` }, /ZT_OFFSITE_HOST_KEY must be the target's public host key/],
        ["a path with ..", { ...sftpEnv, ZT_OFFSITE_PATH: "a/../b" }, /ZT_OFFSITE_PATH must be a path of letters/],
        ["retain 0", { ...sftpEnv, ZT_OFFSITE_RETAIN: "0" }, /ZT_OFFSITE_RETAIN must be an integer from 1 to 1000, got '0'/],
    ])("offsite_params refuses %s with exit 2", (_name, env, message) => {
        const r = library("offsite_params cp-1", env);
        expect(r.stderr).toMatch(message);
        expect(r.status).toBe(2);
    });

    test("sftp: the key and the pinned host key as root-only files; the secret is unset afterwards", () => {
        const dir = path.join(root, "sftp-credentials");
        const r = library(
            `offsite_params cp-1; offsite_store_credentials cp-1 ${dir}; echo "changed=$offsite_stored_changed"; ` +
                `if declare -p ZT_OFFSITE_SSH_KEY >/dev/null 2>&1; then echo still-set; else echo unset; fi`,
            { ...sftpEnv, ZT_OFFSITE_SSH_KEY: SSH_KEY },
        );
        expect(r.stderr).toBe("");
        expect(r.stdout.trim().split("\n")).toEqual(["changed=true", "unset"]);
        expect((fs.statSync(dir).mode & 0o777).toString(8)).toBe("700");
        expect(fs.readdirSync(dir).sort()).toEqual(["known_hosts", "ssh-key"]);
        for (const f of fs.readdirSync(dir)) {
            expect([f, (fs.statSync(path.join(dir, f)).mode & 0o777).toString(8)]).toEqual([f, "600"]);
        }
        expect(fs.readFileSync(path.join(dir, "ssh-key"), "utf8")).toBe(SSH_KEY);
        expect(fs.readFileSync(path.join(dir, "known_hosts"), "utf8")).toBe(`[10.213.0.21]:2222 ${HOST_KEY}\n`);
    });

    test("the same credentials again change nothing; another type replaces the files; no type removes the directory", () => {
        const dir = path.join(root, "switch-credentials");
        const store = (env: Record<string, string>) => library(`offsite_params cp-1; offsite_store_credentials cp-1 ${dir}; echo "$offsite_stored_changed"`, env).stdout.trim();
        expect(store({ ...sftpEnv, ZT_OFFSITE_PORT: "22", ZT_OFFSITE_SSH_KEY: SSH_KEY })).toBe("true");
        expect(fs.readFileSync(path.join(dir, "known_hosts"), "utf8")).toBe(`10.213.0.21 ${HOST_KEY}\n`);
        expect(store({ ...sftpEnv, ZT_OFFSITE_PORT: "22", ZT_OFFSITE_SSH_KEY: SSH_KEY })).toBe("false");
        expect(store({ ...s3Env, ZT_OFFSITE_ACCESS_KEY_ID: S3_KEYS.accessKeyId, ZT_OFFSITE_SECRET_ACCESS_KEY: S3_KEYS.secretAccessKey })).toBe("true");
        expect(fs.readdirSync(dir).sort()).toEqual(["access-key-id", "secret-access-key"]);
        expect(fs.readFileSync(path.join(dir, "secret-access-key"), "utf8")).toBe(S3_KEYS.secretAccessKey);
        expect(store({})).toBe("true");
        expect(fs.existsSync(dir)).toBe(false);
    });

    test("a missing or malformed secret is refused without showing it", () => {
        const dir = path.join(root, "bad-credentials");
        const noKey = library(`offsite_params cp-1; offsite_store_credentials cp-1 ${dir}`, { ...sftpEnv, ZT_OFFSITE_SSH_KEY: "hunter2" });
        expect(noKey.status).toBe(2);
        expect(noKey.stderr).toMatch(/ZT_OFFSITE_SSH_KEY must be the SFTP user's private key \(OpenSSH or PEM; not shown\) \(node cp-1\)/);
        const space = library(`offsite_params cp-1; offsite_store_credentials cp-1 ${dir}`, { ...s3Env, ZT_OFFSITE_ACCESS_KEY_ID: "AKIA", ZT_OFFSITE_SECRET_ACCESS_KEY: "hunter2 x" });
        expect(space.status).toBe(2);
        expect(space.stderr).toMatch(/ZT_OFFSITE_SECRET_ACCESS_KEY must be the S3 secret access key/);
        expect(noKey.stderr + space.stderr).not.toContain("hunter2");
        expect(fs.existsSync(path.join(dir, "secret-access-key"))).toBe(false);
    });

    test.each<[string, Record<string, string>, Record<string, string>, string]>([
        [
            "s3",
            { ...s3Env, ZT_OFFSITE_ACCESS_KEY_ID: S3_KEYS.accessKeyId, ZT_OFFSITE_SECRET_ACCESS_KEY: S3_KEYS.secretAccessKey },
            {
                RCLONE_CONFIG: "/notfound",
                RCLONE_CONFIG_ZTOFFSITE_ACCESS_KEY_ID: S3_KEYS.accessKeyId,
                RCLONE_CONFIG_ZTOFFSITE_ENDPOINT: "https://s3.eu-central-1.example.eu",
                RCLONE_CONFIG_ZTOFFSITE_ENV_AUTH: "false",
                RCLONE_CONFIG_ZTOFFSITE_FORCE_PATH_STYLE: "true",
                RCLONE_CONFIG_ZTOFFSITE_NO_CHECK_BUCKET: "true",
                RCLONE_CONFIG_ZTOFFSITE_PROVIDER: "Other",
                RCLONE_CONFIG_ZTOFFSITE_REGION: "eu-central-1",
                RCLONE_CONFIG_ZTOFFSITE_SECRET_ACCESS_KEY: S3_KEYS.secretAccessKey,
                RCLONE_CONFIG_ZTOFFSITE_TYPE: "s3",
            },
            "ztoffsite:zt-etcd/prod/etcd",
        ],
        [
            "sftp",
            { ...sftpEnv, ZT_OFFSITE_SSH_KEY: SSH_KEY },
            {
                RCLONE_CONFIG: "/notfound",
                RCLONE_CONFIG_ZTOFFSITE_DISABLE_HASHCHECK: "true",
                RCLONE_CONFIG_ZTOFFSITE_HOST: "10.213.0.21",
                RCLONE_CONFIG_ZTOFFSITE_KEY_FILE: "<dir>/ssh-key",
                RCLONE_CONFIG_ZTOFFSITE_KEY_USE_AGENT: "false",
                RCLONE_CONFIG_ZTOFFSITE_KNOWN_HOSTS_FILE: "<dir>/known_hosts",
                RCLONE_CONFIG_ZTOFFSITE_PORT: "2222",
                RCLONE_CONFIG_ZTOFFSITE_TYPE: "sftp",
                RCLONE_CONFIG_ZTOFFSITE_USER: "zt-offsite",
            },
            "ztoffsite:etcd-snapshots",
        ],
    ])("%s: the rclone remote is rendered from the parameters alone (no rclone.conf, no AWS_* or RCLONE_* of the caller)", (type, env, expected, base) => {
        const dir = path.join(root, `env-${type}`);
        const r = library(
            `offsite_params cp-1; offsite_store_credentials cp-1 ${dir}; offsite_env ${dir}; echo "base=$offsite_base"; env | grep -E '^(RCLONE|AWS)_' | sort`,
            { ...env, AWS_CA_BUNDLE: "/etc/ssl/other.pem", AWS_ACCESS_KEY_ID: "caller-key", RCLONE_CONFIG_ZTOFFSITE_BUCKET_ACL: "public-read" },
        );
        expect(r.stderr).toBe("");
        const lines = r.stdout.trim().split("\n");
        expect(lines[0]).toBe(`base=${base}`);
        const rendered = Object.fromEntries(lines.slice(1).map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1).replace(dir, "<dir>")]));
        expect(rendered).toEqual(expected);
    });

    test("credentials reach rclone through its environment; its command line holds none", () => {
        const dir = path.join(root, "argv-credentials");
        const bin = path.join(root, "bin");
        const record = path.join(root, "rclone-calls");
        fs.mkdirSync(bin, { recursive: true });
        // rclone stood in for: records its arguments and the credentials it was given.
        fs.writeFileSync(
            path.join(bin, "rclone"),
            `#!/bin/bash\nprintf 'argv: %s\\n' "$*" >>${record}\nprintf 'env: %s\\n' "$RCLONE_CONFIG_ZTOFFSITE_SECRET_ACCESS_KEY" >>${record}\nprintf 'cp-1-20250101T000000.000Z.db\\n'\n`,
            { mode: 0o755 },
        );
        const r = library(
            `offsite_params cp-1; offsite_store_credentials cp-1 ${dir}; offsite_env ${dir}; offsite_list ${root} '^cp-1-'`,
            { ...s3Env, ZT_OFFSITE_ACCESS_KEY_ID: S3_KEYS.accessKeyId, ZT_OFFSITE_SECRET_ACCESS_KEY: S3_KEYS.secretAccessKey },
            bin,
        );
        expect(r.stderr).toBe("");
        expect(r.stdout.trim()).toBe("cp-1-20250101T000000.000Z.db");
        const calls = fs.readFileSync(record, "utf8").trim().split("\n");
        expect(calls).toEqual([
            "argv: --contimeout 30s --timeout 300s --retries 3 --low-level-retries 10 --stats 0 lsf --files-only ztoffsite:zt-etcd/prod/etcd",
            `env: ${S3_KEYS.secretAccessKey}`,
        ]);
        const argv = calls[0];
        for (const secret of [S3_KEYS.accessKeyId, S3_KEYS.secretAccessKey]) {
            expect(argv).not.toContain(secret);
        }
    });
});

describe("the program under mocks with off-node copies", () => {
    const COMMAND = "command:remote:Command";
    let sftp: { recorder: Recorder; exports: Record<string, any> };
    let s3: { recorder: Recorder; exports: Record<string, any> };

    const config = (offsite: object, secrets: Record<string, string>): Record<string, any> => {
        const raw = validRawConfig(1);
        raw.etcd = { snapshots: { offsite } };
        return { ...raw, ...secrets };
    };

    beforeAll(async () => {
        sftp = await runProgram(
            config({ type: "sftp", host: "backup.osl.example.net", user: "etcd-backup", hostKey: HOST_KEY, path: "zerotouch/prod" }, { etcdOffsiteSshKey: SSH_KEY }),
            ["sshPrivateKey", "etcdOffsiteSshKey"],
        );
        s3 = await runProgram(
            config({ type: "s3", endpoint: "https://s3.eu-central-1.example.eu", bucket: "zt-etcd" }, { etcdOffsiteAccessKeyId: S3_KEYS.accessKeyId, etcdOffsiteSecretAccessKey: S3_KEYS.secretAccessKey }),
            ["sshPrivateKey", "etcdOffsiteAccessKeyId", "etcdOffsiteSecretAccessKey"],
        );
    }, 120_000);

    test("each member's snapshot command is secret and unlogged, carries the credentials, and shows the target's facts", () => {
        for (const [run, secret, fact] of [
            [sftp, "OFFSITE-SECRET-BODY", { type: "sftp", host: "backup.osl.example.net", endpoint: "sftp://backup.osl.example.net:22" }],
            [s3, S3_KEYS.secretAccessKey, { type: "s3", host: "s3.eu-central-1.example.eu", endpoint: "https://s3.eu-central-1.example.eu" }],
        ] as const) {
            const snapshots = run.recorder.ofType(COMMAND).filter((c) => c.name.endsWith("-snapshots"));
            expect(snapshots.map((c) => c.name).sort()).toEqual(["etcd-cp-1-snapshots", "etcd-cp-2-snapshots", "etcd-cp-3-snapshots"]);
            for (const c of snapshots) {
                const wire = c.wire;
                expect({ name: c.name, logging: c.inputs.logging, stdinSecret: withoutSecrets(wire).stdin, hash: withoutSecrets(wire).triggers[0] }).toEqual({
                    name: c.name,
                    logging: "none",
                    stdinSecret: "[secret]",
                    hash: "[secret]",
                });
                expect(withoutSecrets(wire).triggers[1]).toEqual({ zerotouchOffsite: fact });
                expect(String(c.inputs.stdin)).toContain(secret);
                expect(String(c.inputs.stdin)).toContain(`export ZT_NODE='${c.name.split("-").slice(1, 3).join("-")}'`);
            }
        }
    });

    test("no credential in any other input of any resource, nor in the outputs", () => {
        for (const [run, secrets] of [
            [sftp, ["OFFSITE-SECRET-BODY"]],
            [s3, [S3_KEYS.accessKeyId, S3_KEYS.secretAccessKey]],
        ] as const) {
            const resources = run.recorder.resources;
            expect(resources.length).toBeGreaterThan(20);
            const visible = JSON.stringify(resources.map((r) => withoutSecrets(r.wire)));
            const outputs = JSON.stringify(run.exports.platform ?? null);
            for (const secret of secrets) {
                expect(visible).not.toContain(secret);
                expect(outputs).not.toContain(secret);
            }
        }
    });
});
