/**
 * planEtcdCluster (pure): member order, the bootstrap member, what each member's steps carry,
 * validation; and that adding a fourth member leaves the other members' steps as they were.
 */
import { EtcdClusterPlanArgs, planEtcdCluster } from "../components/etcd/cluster";
import { etcdMemberStep } from "../components/etcd/member";
import { stepPayload } from "../components/lib/nodeScript";
import { ETCD_DEFAULTS } from "./support/etcdDefaults";

const PEM = {
    caCert: "-----BEGIN CERTIFICATE-----\nca\n-----END CERTIFICATE-----\n",
    serverCert: "-----BEGIN CERTIFICATE-----\ns\n-----END CERTIFICATE-----\n",
    serverKey: "-----BEGIN PRIVATE KEY-----\nsk\n-----END PRIVATE KEY-----\n",
    peerCert: "-----BEGIN CERTIFICATE-----\np\n-----END CERTIFICATE-----\n",
    peerKey: "-----BEGIN PRIVATE KEY-----\npk\n-----END PRIVATE KEY-----\n",
    clientCert: "-----BEGIN CERTIFICATE-----\nc\n-----END CERTIFICATE-----\n",
    clientKey: "-----BEGIN PRIVATE KEY-----\nck\n-----END PRIVATE KEY-----\n",
};

function member(n: number) {
    return { name: `cp-${n}`, target: { host: `203.0.113.1${n}`, port: 22, user: "root" }, address: `203.0.113.1${n}`, dataDir: "/var/lib/etcd" };
}

function args(count: number, extra: Partial<EtcdClusterPlanArgs> = {}): EtcdClusterPlanArgs {
    return {
        ...ETCD_DEFAULTS,
        clusterToken: "zerotouch-prod",
        members: [3, 1, 2, 4, 5].slice(0, count).map(member),
        ...extra,
    };
}

/** Every payload of a member: install, member (with fixed PEM texts), WAL gate and snapshots. */
function payloads(plan: ReturnType<typeof planEtcdCluster>): Record<string, string[]> {
    return Object.fromEntries(
        plan.members.map((m) => [
            m.node.name,
            [m.install, etcdMemberStep({ ...m.member, pem: PEM }), m.snapshots].map((s) => stepPayload(s).hash).concat(JSON.stringify(m.walGate)),
        ]),
    );
}

describe("planEtcdCluster", () => {
    test("the bootstrap member first, then the others by name; the others join through it", () => {
        const plan = planEtcdCluster(args(3));
        expect(plan.members.map((m) => [m.node.name, m.bootstrap, m.member.joinEndpoint])).toEqual([
            ["cp-1", true, undefined],
            ["cp-2", false, "https://203.0.113.11:2379"],
            ["cp-3", false, "https://203.0.113.11:2379"],
        ]);
        expect(plan.clientEndpoints).toEqual(["https://203.0.113.11:2379", "https://203.0.113.12:2379", "https://203.0.113.13:2379"]);
        expect(plan.version).toBe("3.5.21");
        const second = planEtcdCluster(args(3, { bootstrapMember: "cp-2" }));
        expect(second.members.map((m) => m.node.name)).toEqual(["cp-2", "cp-1", "cp-3"]);
    });

    test("adding a fourth member leaves every step of the others as it was", () => {
        const three = payloads(planEtcdCluster(args(3)));
        const four = payloads(planEtcdCluster(args(4)));
        expect(Object.keys(four)).toEqual(["cp-1", "cp-2", "cp-3", "cp-4"]);
        for (const name of Object.keys(three)) {
            expect([name, four[name]]).toEqual([name, three[name]]);
        }
    });

    test("settings reach the steps: thresholds, load bound, snapshot schedule, wipe", () => {
        const plan = planEtcdCluster(args(1, { walFsyncThresholdMs: 8, walGateMaxSeconds: 30, wipeDataOnDelete: true, snapshots: { schedule: "*-*-* 00/6:00:00", retain: 48, dir: "/srv/etcd-snapshots" } }));
        const [m] = plan.members;
        expect(m.walGate).toMatchObject({ walThresholdMs: 8, loadSeconds: 30, endpoint: "https://127.0.0.1:2379" });
        expect(m.member.wipeDataOnDelete).toBe(true);
        expect(m.snapshots.params).toMatchObject({ ZT_SCHEDULE: "*-*-* 00/6:00:00", ZT_RETAIN: 48, ZT_SNAPSHOT_DIR: "/srv/etcd-snapshots" });
    });

    test.each([
        ["no members", args(0), /etcd cluster: no members; allowed: 1, 3 or 5 control-plane nodes/],
        ["a member twice", { ...args(1), members: [member(1), member(1)] }, /a member is listed twice/],
        ["an unknown bootstrap member", args(3, { bootstrapMember: "cp-9" }), /bootstrapMember is "cp-9"; allowed: one of the members \(cp-1, cp-2, cp-3\)/],
        ["a WAL threshold of 0", args(1, { walFsyncThresholdMs: 0 }), /walThresholdMs is 0/],
    ])("refuses %s", (_what, a, message) => {
        expect(() => planEtcdCluster(a)).toThrow(message);
    });
});
