/**
 * endpoint-hosts-allowed on the off-node target of etcd snapshots: a snapshot command's declared
 * target (`triggers[1].zerotouchOffsite`) with a US endpoint, an EEA one, and one it cannot see
 * (unknown during preview: fail closed); then the whole program under mocks (Pulumi.prod.yaml with
 * an off-node target) through every policy, as CrossGuard runs the pack.
 */
import { readFileSync } from "fs";
import * as path from "path";

import type { PolicyPackConfig } from "@pulumi/policy";

import { ENDPOINT_HOSTS, endpointHostsAllowed } from "../policy/endpointHosts";
import { POLICIES } from "../policy/policies";
import { mandatory, PackResource, runPack, runPolicyProgram, UNKNOWN_OBJECT, UNKNOWN_STRING, validateResource } from "./support/policyHarness";
import { TEST_KEY } from "./support/config";
import { prodStack } from "./support/program";

const EEA = JSON.parse(readFileSync(path.join(__dirname, "..", "policy", "config.eea.json"), "utf8")) as PolicyPackConfig;
const EEA_HOST = "objects.osl.example.net";
/** The EEA configuration with the stack's EEA object storage on the allowlist, as an operator would add it. */
const WITH_STORAGE: PolicyPackConfig = {
    ...EEA,
    [ENDPOINT_HOSTS]: { allowedHosts: [...((EEA[ENDPOINT_HOSTS] as { allowedHosts: string[] }).allowedHosts), EEA_HOST] },
};
const US_ENDPOINT = "https://s3.us-east-1.amazonaws.com";
const URN = "urn:pulumi:prod::zerotouch::zerotouch:etcd:EtcdCluster$command:remote:Command::etcd-osl-cp-1-snapshots";
const HASH = "9b2c0d8a3b4f1e2d9b2c0d8a3b4f1e2d9b2c0d8a3b4f1e2d9b2c0d8a3b4f1e2d";

/** A snapshot command as the program declares it; `fact` is its zerotouchOffsite, `triggers` replaces the whole list. */
function snapshotCommand(fact: unknown, triggers?: unknown): PackResource {
    return {
        type: "command:remote:Command",
        name: "etcd-osl-cp-1-snapshots",
        urn: URN,
        props: { connection: { host: "203.0.113.11", port: 22, user: "root" }, triggers: triggers ?? (fact === undefined ? [HASH] : [HASH, { zerotouchOffsite: fact }]) },
    };
}

async function messages(r: PackResource, config: PolicyPackConfig = WITH_STORAGE): Promise<string[]> {
    return mandatory(await validateResource(endpointHostsAllowed, r, config));
}

describe("endpoint-hosts-allowed: the off-node target of etcd snapshots", () => {
    test("a US S3 endpoint is a violation naming the command and the host", async () => {
        expect(await messages(snapshotCommand({ type: "s3", host: "s3.us-east-1.amazonaws.com", endpoint: US_ENDPOINT }))).toEqual([
            `${ENDPOINT_HOSTS}: Command etcd-osl-cp-1-snapshots: triggers.zerotouchOffsite.endpoint is on host "s3.us-east-1.amazonaws.com"; allowed: gitlab.example.com, argoproj.github.io, ${EEA_HOST}`,
        ]);
    });

    test("an EEA endpoint on the allowlist passes, S3 or SFTP", async () => {
        expect(await messages(snapshotCommand({ type: "s3", host: EEA_HOST, endpoint: `https://${EEA_HOST}` }))).toEqual([]);
        expect(await messages(snapshotCommand({ type: "sftp", host: EEA_HOST, endpoint: `sftp://${EEA_HOST}:22` }))).toEqual([]);
    });

    test("the same EEA endpoint fails where the allowlist does not name it", async () => {
        expect(await messages(snapshotCommand({ type: "sftp", host: EEA_HOST, endpoint: `sftp://${EEA_HOST}:22` }), EEA)).toEqual([
            expect.stringContaining(`triggers.zerotouchOffsite.endpoint is on host "${EEA_HOST}"; allowed: gitlab.example.com, argoproj.github.io`),
        ]);
    });

    test("a snapshot command without an off-node target has no endpoint", async () => {
        expect(await messages(snapshotCommand(undefined))).toEqual([]);
    });

    test.each<[string, PackResource, string]>([
        ["the declared target unknown", snapshotCommand(UNKNOWN_OBJECT), "triggers.zerotouchOffsite is unknown during preview"],
        ["its host unknown", snapshotCommand({ type: "s3", host: UNKNOWN_STRING, endpoint: US_ENDPOINT }), "triggers.zerotouchOffsite.host is unknown during preview"],
        ["the snapshot command's triggers unknown", snapshotCommand(undefined, UNKNOWN_OBJECT), "triggers.zerotouchOffsite is unknown during preview"],
        ["a target without a host", snapshotCommand({ type: "sftp", endpoint: "sftp://x:22" }), "triggers.zerotouchOffsite.host is not set"],
        ["a host other than the endpoint's", snapshotCommand({ type: "s3", host: EEA_HOST, endpoint: US_ENDPOINT }), "triggers.zerotouchOffsite.host is not set"],
        ["a target that is not an object", snapshotCommand("s3"), "triggers.zerotouchOffsite is not set"],
    ])("fails closed: %s", async (_name, r, expected) => {
        expect((await messages(r)).join("\n")).toContain(`${ENDPOINT_HOSTS}: Command etcd-osl-cp-1-snapshots: ${expected}`);
    });
});

describe("the pack over the whole program with an off-node target (Pulumi.prod.yaml, stack prod)", () => {
    const withOffsite = async (endpoint: string) => {
        const { raw, secretKeys } = prodStack();
        raw.etcd.snapshots.offsite = { type: "s3", endpoint, bucket: "zt-etcd-prod", path: "osl" };
        raw.etcdOffsiteAccessKeyId = "AKIAPRODOFFSITE0001";
        raw.etcdOffsiteSecretAccessKey = "prod/offsite+SECRET-0123456789";
        return runPolicyProgram(raw, [...secretKeys, "etcdOffsiteAccessKeyId", "etcdOffsiteSecretAccessKey"]);
    };

    test("a US endpoint: endpoint-hosts-allowed, and only it, names each control-plane node's snapshot command; no credential in any message", async () => {
        const run = await withOffsite(US_ENDPOINT);
        const d = await runPack(POLICIES, run.resources, WITH_STORAGE);
        expect([...new Set(d.filter((x) => x.enforcementLevel === "mandatory").map((x) => x.policy))]).toEqual([ENDPOINT_HOSTS]);
        const found = mandatory(d);
        expect(found).toHaveLength(3);
        for (const node of ["osl-cp-1", "osl-cp-2", "osl-cp-3"]) {
            expect(found).toContainEqual(expect.stringContaining(`Command etcd-${node}-snapshots: triggers.zerotouchOffsite.endpoint is on host "s3.us-east-1.amazonaws.com"`));
        }
        const text = d.map((x) => x.message).join("\n");
        for (const secret of ["AKIAPRODOFFSITE0001", "prod/offsite+SECRET-0123456789", TEST_KEY.split("\n")[1]]) {
            expect(text).not.toContain(secret);
        }
    }, 120_000);

    test("an EEA endpoint on the allowlist: zero violations, zero advisories", async () => {
        const run = await withOffsite(`https://${EEA_HOST}`);
        expect(await runPack(POLICIES, run.resources, WITH_STORAGE)).toEqual([]);
    }, 120_000);
});
