import type * as pulumiType from "@pulumi/pulumi";

import { memberSans, planEtcdPki } from "../components/etcd/pki";
import { unwrapSecrets, wireSecret } from "./support/mocks";

const T = {
    key: "tls:index/privateKey:PrivateKey",
    selfSigned: "tls:index/selfSignedCert:SelfSignedCert",
    csr: "tls:index/certRequest:CertRequest",
    signed: "tls:index/locallySignedCert:LocallySignedCert",
};

/** One registration: inputs as the mock sees them, and as serialized (secrets still wrapped). */
interface Registered {
    readonly type: string;
    readonly name: string;
    readonly parent: string;
    readonly inputs: Record<string, any>;
    readonly wire: Record<string, any>;
}

/** What the tls provider would return: a fake PEM per resource, derived from its name. */
function providerState(type: string, name: string, inputs: Record<string, any>): Record<string, any> {
    switch (type) {
        case T.key:
            return { ...inputs, privateKeyPem: `-----BEGIN EC PRIVATE KEY-----\nkey of ${name}\n-----END EC PRIVATE KEY-----\n` };
        case T.csr:
            return { ...inputs, certRequestPem: `csr of ${name}` };
        case T.selfSigned:
        case T.signed:
            return { ...inputs, certPem: `-----BEGIN CERTIFICATE-----\ncert of ${name}\n-----END CERTIFICATE-----\n` };
        default:
            return { ...inputs };
    }
}

type Pki = InstanceType<typeof import("../components/etcd/pki").EtcdPki>;
type PkiArgs = import("../components/etcd/pki").EtcdPkiArgs;

const THREE: PkiArgs["members"] = {
    "cp-1": { addresses: ["203.0.113.11"] },
    "cp-2": { addresses: ["203.0.113.12"] },
    "cp-3": { addresses: ["2001:db8:0:0::13"] },
};

interface Built {
    readonly pki: Pki;
    readonly resources: Registered[];
    readonly pulumi: typeof pulumiType;
    byName(name: string): Registered;
    resolve<V>(o: pulumiType.Output<V>): Promise<V>;
    isSecret(o: pulumiType.Output<unknown>): Promise<boolean>;
}

/** Builds an EtcdPki under fresh mocks (its own module registry) and waits until it settled. */
async function build(args: PkiArgs, name = "etcd-pki"): Promise<Built> {
    let built!: Built;
    await jest.isolateModulesAsync(async () => {
        const pulumi = await import("@pulumi/pulumi");
        const resources: Registered[] = [];
        const pending = new Map<string, { parent: string; wire: Record<string, any> }>();
        await pulumi.runtime.setMocks(
            {
                newResource(a) {
                    const entry = pending.get(`${a.type}::${a.name}`) ?? { parent: "", wire: {} };
                    resources.push({ type: a.type, name: a.name, parent: entry.parent, inputs: unwrapSecrets(a.inputs), wire: entry.wire });
                    return { id: `${a.name}-id`, state: providerState(a.type, a.name, unwrapSecrets(a.inputs)) };
                },
                call: (a) => a.inputs,
            },
            "zerotouch",
            "test",
            false,
        );
        const monitor = pulumi.runtime.getMonitor() as any;
        const register = monitor.registerResource.bind(monitor);
        monitor.registerResource = (req: any, callback: any) => {
            pending.set(`${req.getType()}::${req.getName()}`, {
                parent: req.getParent(),
                wire: req.getObject()?.toJavaScript() ?? {},
            });
            return register(req, callback);
        };
        const { EtcdPki } = await import("../components/etcd/pki");
        const pki = new EtcdPki(name, args);
        const resolve = <V>(o: pulumiType.Output<V>) => new Promise<V>((res) => o.apply((v) => res(v)));
        // Every output resolves only once every child is registered.
        await resolve(pki.caCertPem);
        for (const m of Object.values(pki.members)) {
            await resolve(pulumi.all([m.serverCertPem, m.serverKeyPem, m.peerCertPem, m.peerKeyPem]));
        }
        for (const c of Object.values(pki.clients)) {
            await resolve(pulumi.all([c.certPem, c.keyPem]));
        }
        await resolve(pki.urn);
        const runtime = pulumi.runtime as unknown as { waitForRPCs?: () => Promise<void> };
        await runtime.waitForRPCs?.();
        built = {
            pki,
            resources,
            pulumi,
            byName(n) {
                const found = resources.find((r) => r.name === n);
                if (!found) {
                    throw new Error(`no resource named ${n}; have: ${resources.map((r) => r.name).join(", ")}`);
                }
                return found;
            },
            resolve,
            isSecret: (o) => (o as any).isSecret as Promise<boolean>,
        };
    });
    return built;
}

describe("memberSans", () => {
    test.each([
        [
            "one IPv4 address",
            { name: "cp-1", addresses: ["203.0.113.11"] },
            { dnsNames: ["cp-1", "localhost"], ipAddresses: ["127.0.0.1", "203.0.113.11", "::1"] },
        ],
        [
            "IPv6 in canonical form, IPv4 first",
            { name: "cp-2", addresses: ["2001:DB8:0:0:0:0:0:12", "198.51.100.7"] },
            { dnsNames: ["cp-2", "localhost"], ipAddresses: ["127.0.0.1", "198.51.100.7", "::1", "2001:db8::12"] },
        ],
        [
            "duplicates and loopback given again",
            { name: "node", addresses: ["10.0.0.2", "10.0.0.2", "127.0.0.1", "0:0:0:0:0:0:0:1"] },
            { dnsNames: ["localhost", "node"], ipAddresses: ["10.0.0.2", "127.0.0.1", "::1"] },
        ],
        [
            "numeric, not lexical, order",
            { name: "a", addresses: ["10.0.0.10", "9.0.0.1", "10.0.0.9"] },
            { dnsNames: ["a", "localhost"], ipAddresses: ["9.0.0.1", "10.0.0.9", "10.0.0.10", "127.0.0.1", "::1"] },
        ],
        [
            "the member named localhost",
            { name: "localhost", addresses: ["127.0.0.1"] },
            { dnsNames: ["localhost"], ipAddresses: ["127.0.0.1", "::1"] },
        ],
    ])("%s", (_what, member, expected) => {
        expect(memberSans(member)).toEqual(expected);
    });

    test.each([
        ["a name that is no DNS label", { name: "CP_1", addresses: ["203.0.113.11"] }, /member name "CP_1" is not allowed/],
        ["no address", { name: "cp-1", addresses: [] }, /member cp-1 has no address/],
        ["a host name as address", { name: "cp-1", addresses: ["cp-1.example"] }, /member cp-1 has the address "cp-1.example"; allowed: IPv4 or IPv6/],
    ])("refuses %s", (_what, member, message) => {
        expect(() => memberSans(member)).toThrow(message);
    });
});

describe("planEtcdPki", () => {
    test("defaults: 87600 hours, clients kube-apiserver and backup", () => {
        const plan = planEtcdPki("p", { members: THREE });
        expect(plan.validityHours).toBe(87600);
        expect(plan.clients).toEqual(["kube-apiserver", "backup"]);
        expect(Object.keys(plan.members)).toEqual(["cp-1", "cp-2", "cp-3"]);
    });

    test.each([
        ["no members", { members: {} }, /etcd PKI p: members is empty/],
        ["zero hours", { members: THREE, validityHours: 0 }, /validityHours is 0; allowed: a whole number of hours/],
        ["a client name with a space", { members: THREE, clients: ["kube apiserver"] }, /client name "kube apiserver" is not allowed/],
        ["a client twice", { members: THREE, clients: ["backup", "backup"] }, /lists a name twice/],
        ["a bad member address", { members: { "cp-1": { addresses: ["300.1.1.1"] } } }, /member cp-1 has the address "300.1.1.1"/],
    ])("refuses %s", (_what, args, message) => {
        expect(() => planEtcdPki("p", args as PkiArgs)).toThrow(message);
    });
});

describe("EtcdPki", () => {
    let three: Built;
    beforeAll(async () => {
        three = await build({ members: THREE });
    });

    test("registers under its token with children named by role and member, all its own", () => {
        const component = three.byName("etcd-pki");
        expect(component.type).toBe("zerotouch:etcd:EtcdPki");
        const children = three.resources.filter((r) => r.name !== "etcd-pki");
        const expected: [string, string][] = [
            [T.key, "etcd-pki-ca-key"],
            [T.selfSigned, "etcd-pki-ca"],
        ];
        for (const role of ["cp-1-server", "cp-1-peer", "cp-2-server", "cp-2-peer", "cp-3-server", "cp-3-peer", "kube-apiserver-client", "backup-client"]) {
            expected.push([T.key, `etcd-pki-${role}-key`], [T.csr, `etcd-pki-${role}-csr`], [T.signed, `etcd-pki-${role}`]);
        }
        expect(children.map((r) => [r.type, r.name]).sort()).toEqual(expected.sort());
        for (const child of children) {
            expect(child.parent).toMatch(/::zerotouch:etcd:EtcdPki::etcd-pki$/);
        }
    });

    test("every key is ECDSA P-256", () => {
        for (const key of three.resources.filter((r) => r.type === T.key)) {
            expect(key.inputs).toEqual({ algorithm: "ECDSA", ecdsaCurve: "P256" });
        }
    });

    test("the CA is a CA certificate that signs certificates and CRLs, valid 87600 hours by default", () => {
        const ca = three.byName("etcd-pki-ca").inputs;
        expect(ca.isCaCertificate).toBe(true);
        expect(ca.allowedUses).toEqual(expect.arrayContaining(["cert_signing", "crl_signing"]));
        expect(ca.allowedUses).not.toContain("server_auth");
        expect(ca.subject).toEqual({ commonName: "etcd-ca", organization: "zerotouch" });
        expect(ca.privateKeyPem).toContain("key of etcd-pki-ca-key");
        for (const r of three.resources.filter((x) => x.type === T.selfSigned || x.type === T.signed)) {
            expect(r.inputs.validityPeriodHours).toBe(87600);
        }
    });

    test.each(["cp-1", "cp-2", "cp-3"])("member %s: server and peer requests carry memberSans; both serve and dial", (member) => {
        const address = THREE[member].addresses;
        const sans = memberSans({ name: member, addresses: address });
        for (const role of ["server", "peer"]) {
            const csr = three.byName(`etcd-pki-${member}-${role}-csr`).inputs;
            expect(csr.dnsNames).toEqual(sans.dnsNames);
            expect(csr.ipAddresses).toEqual(sans.ipAddresses);
            expect(csr.subject).toEqual({ commonName: member, organization: "zerotouch" });
            expect(csr.privateKeyPem).toContain(`key of etcd-pki-${member}-${role}-key`);
            const cert = three.byName(`etcd-pki-${member}-${role}`).inputs;
            expect([...cert.allowedUses].sort()).toEqual(["client_auth", "digital_signature", "server_auth"]);
            expect(cert.isCaCertificate).toBeUndefined();
            expect(cert.certRequestPem).toBe(`csr of etcd-pki-${member}-${role}-csr`);
            expect(cert.caCertPem).toContain("cert of etcd-pki-ca");
            expect(cert.caPrivateKeyPem).toContain("key of etcd-pki-ca-key");
        }
        expect(three.byName(`etcd-pki-cp-3-server-csr`).inputs.ipAddresses).toEqual(["127.0.0.1", "::1", "2001:db8::13"]);
    });

    test("clients: CN is the client's name, client_auth only, no SANs", () => {
        for (const client of ["kube-apiserver", "backup"]) {
            const csr = three.byName(`etcd-pki-${client}-client-csr`).inputs;
            expect(csr.subject).toEqual({ commonName: client, organization: "zerotouch" });
            expect(csr.dnsNames).toBeUndefined();
            expect(csr.ipAddresses).toBeUndefined();
            expect([...three.byName(`etcd-pki-${client}-client`).inputs.allowedUses].sort()).toEqual(["client_auth", "digital_signature"]);
        }
    });

    test("private keys are secret outputs and secret inputs; certificates are not secret", async () => {
        const { pki, isSecret, resolve } = three;
        expect(await isSecret(pki.caCertPem)).toBe(false);
        expect(await resolve(pki.caCertPem)).toContain("cert of etcd-pki-ca");
        for (const [member, certs] of Object.entries(pki.members)) {
            expect(await isSecret(certs.serverKeyPem)).toBe(true);
            expect(await isSecret(certs.peerKeyPem)).toBe(true);
            expect(await isSecret(certs.serverCertPem)).toBe(false);
            expect(await isSecret(certs.peerCertPem)).toBe(false);
            expect(await resolve(certs.serverKeyPem)).toContain(`key of etcd-pki-${member}-server-key`);
            expect(await resolve(certs.peerKeyPem)).toContain(`key of etcd-pki-${member}-peer-key`);
            expect(await resolve(certs.serverCertPem)).toContain(`cert of etcd-pki-${member}-server`);
        }
        expect(Object.keys(pki.clients).sort()).toEqual(["backup", "kube-apiserver"]);
        for (const [client, cert] of Object.entries(pki.clients)) {
            expect(await isSecret(cert.keyPem)).toBe(true);
            expect(await isSecret(cert.certPem)).toBe(false);
            expect(await resolve(cert.keyPem)).toContain(`key of etcd-pki-${client}-client-key`);
        }
        // On the wire, every private key the provider receives is wrapped as a secret.
        expect(wireSecret(three.byName("etcd-pki-ca").wire, ["privateKeyPem"])).toBe(true);
        for (const r of three.resources.filter((x) => x.type === T.csr)) {
            expect(wireSecret(r.wire, ["privateKeyPem"])).toBe(true);
        }
        for (const r of three.resources.filter((x) => x.type === T.signed)) {
            expect(wireSecret(r.wire, ["caPrivateKeyPem"])).toBe(true);
            expect(wireSecret(r.wire, ["caCertPem"])).toBe(false);
        }
    });

    test("adding a fourth member leaves every existing resource's inputs as they were", async () => {
        const four = await build({ members: { ...THREE, "cp-4": { addresses: ["203.0.113.14"] } } });
        for (const before of three.resources) {
            const after = four.byName(before.name);
            expect({ name: after.name, type: after.type, inputs: after.inputs }).toEqual({
                name: before.name,
                type: before.type,
                inputs: before.inputs,
            });
        }
        const added = four.resources.map((r) => r.name).filter((n) => !three.resources.some((r) => r.name === n));
        expect(added.sort()).toEqual(
            ["server", "peer"].flatMap((role) => [`etcd-pki-cp-4-${role}-key`, `etcd-pki-cp-4-${role}-csr`, `etcd-pki-cp-4-${role}`]).sort(),
        );
    });

    test("validityHours and clients apply to every certificate", async () => {
        const custom = await build({ members: { solo: { addresses: ["192.0.2.1"] } }, validityHours: 720, clients: ["backup"] }, "p");
        const signed = custom.resources.filter((r) => r.type === T.selfSigned || r.type === T.signed);
        expect(signed.map((r) => r.name).sort()).toEqual(["p-backup-client", "p-ca", "p-solo-peer", "p-solo-server"]);
        for (const r of signed) {
            expect(r.inputs.validityPeriodHours).toBe(720);
        }
        expect(Object.keys(custom.pki.clients)).toEqual(["backup"]);
    });

    test("invalid args throw before the component registers", async () => {
        await expect(build({ members: { "cp-1": { addresses: [] } } }, "bad")).rejects.toThrow(/member cp-1 has no address/);
    });
});
