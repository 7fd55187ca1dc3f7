import * as pulumi from "@pulumi/pulumi";
import * as tls from "@pulumi/tls";

import { hostCidr, ipToBigInt } from "../lib/cidr";
import { DNS_LABEL } from "../lib/names";

/**
 * The etcd cluster's own PKI: a CA, per member a server and a peer certificate, and client
 * certificates for what talks to etcd (the API server, backups). All keys are ECDSA P-256,
 * which every etcd release and Go's TLS stack accept (ED25519 is avoided: etcd's tooling and
 * older clients handle it unevenly).
 */

/** Key usages of the CA certificate. */
export const CA_USES = ["cert_signing", "crl_signing", "digital_signature"] as const;
/**
 * Key usages of a member's server certificate (client port, 2379). etcd also dials its own
 * client URLs with it (e.g. the gRPC gateway), so it is a client certificate too.
 */
export const SERVER_USES = ["digital_signature", "server_auth", "client_auth"] as const;
/** Key usages of a member's peer certificate (2380): each member is server and client of the others. */
export const PEER_USES = ["digital_signature", "server_auth", "client_auth"] as const;
/** Key usages of a client certificate. */
export const CLIENT_USES = ["digital_signature", "client_auth"] as const;

/** Algorithm and curve of every key. */
export const KEY_ALGORITHM = { algorithm: "ECDSA", ecdsaCurve: "P256" } as const;

/** Subject organization written into every certificate. */
export const ORGANIZATION = "zerotouch";

const NODE_NAME = DNS_LABEL;
/** A client name is also a certificate CN and part of resource names: a DNS label. */
const CLIENT_NAME = NODE_NAME;

/** Names and addresses a member's certificates are valid for. */
export interface MemberSans {
    /** DNS names, sorted. */
    readonly dnsNames: string[];
    /** IP addresses in canonical form, IPv4 before IPv6, each family in numeric order. */
    readonly ipAddresses: string[];
}

/** Loopback names every member certificate carries, so local clients connect by any of them. */
const LOOPBACK_DNS = ["localhost"];
const LOOPBACK_IPS = ["127.0.0.1", "::1"];

/** An address in canonical text form (`2001:db8::1`, never `2001:0db8:0:0::1`). */
export function canonicalIp(address: string): string {
    return hostCidr(address).split("/")[0];
}

function compareIps(a: string, b: string): number {
    const x = ipToBigInt(a)!;
    const y = ipToBigInt(b)!;
    if (x.family !== y.family) {
        return x.family - y.family;
    }
    return x.value < y.value ? -1 : x.value > y.value ? 1 : 0;
}

/**
 * The subject alternative names of a member's server and peer certificates: the node's name, its
 * addresses, and the loopback names (`localhost`, `127.0.0.1`, `::1`). Deduplicated and sorted,
 * so the same member always yields the same certificate request. Pure.
 */
export function memberSans(member: { name: string; addresses: readonly string[] }): MemberSans {
    if (!NODE_NAME.test(member.name)) {
        throw new Error(
            `etcd PKI: member name ${JSON.stringify(member.name)} is not allowed; allowed: a lower-case DNS label (a-z, 0-9, '-', at most 63 characters)`,
        );
    }
    if (member.addresses.length === 0) {
        throw new Error(`etcd PKI: member ${member.name} has no address; allowed: one or more IPv4 or IPv6 addresses`);
    }
    for (const address of member.addresses) {
        if (ipToBigInt(address) === undefined) {
            throw new Error(
                `etcd PKI: member ${member.name} has the address ${JSON.stringify(address)}; allowed: IPv4 or IPv6 addresses`,
            );
        }
    }
    const dnsNames = [...new Set([member.name, ...LOOPBACK_DNS])].sort();
    const ipAddresses = [...new Set([...member.addresses, ...LOOPBACK_IPS].map(canonicalIp))].sort(compareIps);
    return { dnsNames, ipAddresses };
}

/** The certificates of one member. Keys are secret. */
export interface EtcdMemberCerts {
    /** Server certificate (client port), PEM. */
    readonly serverCertPem: pulumi.Output<string>;
    /** Server key, PEM; secret. */
    readonly serverKeyPem: pulumi.Output<string>;
    /** Peer certificate (peer port), PEM. */
    readonly peerCertPem: pulumi.Output<string>;
    /** Peer key, PEM; secret. */
    readonly peerKeyPem: pulumi.Output<string>;
}

/** A client's certificate. The key is secret. */
export interface EtcdClientCert {
    /** Client certificate, PEM; its CN is the client's name. */
    readonly certPem: pulumi.Output<string>;
    /** Client key, PEM; secret. */
    readonly keyPem: pulumi.Output<string>;
}

export interface EtcdPkiArgs {
    /**
     * The members, keyed by node name, with the addresses their certificates are valid for.
     * Plain: the keys decide which certificates exist, and adding a member leaves the others'
     * certificates alone.
     */
    readonly members: Readonly<Record<string, { readonly addresses: readonly string[] }>>;
    /** Lifetime of the CA and of every certificate, hours. Defaults to 87600. */
    readonly validityHours?: number;
    /** Names of the client certificates (each the certificate's CN). Defaults to ["kube-apiserver", "backup"]. */
    readonly clients?: readonly string[];
}

/** The validated args, with their defaults applied once. */
interface PkiPlan {
    readonly members: Readonly<Record<string, MemberSans>>;
    readonly validityHours: number;
    readonly clients: readonly string[];
}

/** Validates the args and applies the defaults. Throws naming the key, what was given and what is allowed. Pure. */
export function planEtcdPki(name: string, args: EtcdPkiArgs): PkiPlan {
    const memberNames = Object.keys(args.members).sort();
    if (memberNames.length === 0) {
        throw new Error(`etcd PKI ${name}: members is empty; allowed: one or more members keyed by node name`);
    }
    const members = Object.fromEntries(memberNames.map((m) => [m, memberSans({ name: m, addresses: args.members[m].addresses })]));
    const validityHours = args.validityHours ?? 87600;
    if (!Number.isInteger(validityHours) || validityHours < 1) {
        throw new Error(`etcd PKI ${name}: validityHours is ${JSON.stringify(validityHours)}; allowed: a whole number of hours, at least 1`);
    }
    const clients = args.clients ?? ["kube-apiserver", "backup"];
    for (const client of clients) {
        if (!CLIENT_NAME.test(client)) {
            throw new Error(
                `etcd PKI ${name}: client name ${JSON.stringify(client)} is not allowed; allowed: a lower-case DNS label (a-z, 0-9, '-')`,
            );
        }
    }
    if (new Set(clients).size !== clients.length) {
        throw new Error(`etcd PKI ${name}: clients ${JSON.stringify(clients)} lists a name twice; allowed: each client once`);
    }
    return { members, validityHours, clients: [...clients] };
}

/**
 * The etcd cluster's PKI. Children are named by role and member, never by position:
 * `${name}-ca-key`, `${name}-ca`, and per member `${name}-<member>-server-key`, `-server-csr`,
 * `-server`, `-peer-key`, `-peer-csr`, `-peer`; per client `${name}-<client>-client-key`,
 * `-client-csr`, `-client`. Private keys are secret outputs.
 */
export class EtcdPki extends pulumi.ComponentResource {
    /** The CA certificate, PEM (public): etcd's and every client's trust anchor. */
    public readonly caCertPem: pulumi.Output<string>;
    /** Per member (node name): its server and peer certificates and keys. */
    public readonly members: Readonly<Record<string, EtcdMemberCerts>>;
    /** Per client name: its certificate and key. */
    public readonly clients: Readonly<Record<string, EtcdClientCert>>;

    constructor(name: string, args: EtcdPkiArgs, opts?: pulumi.ComponentResourceOptions) {
        // Validate before registering anything.
        const plan = planEtcdPki(name, args);
        super("zerotouch:etcd:EtcdPki", name, {}, opts);

        const caKey = new tls.PrivateKey(`${name}-ca-key`, { ...KEY_ALGORITHM }, { parent: this });
        const caKeyPem = pulumi.secret(caKey.privateKeyPem);
        const ca = new tls.SelfSignedCert(
            `${name}-ca`,
            {
                privateKeyPem: caKeyPem,
                subject: { commonName: "etcd-ca", organization: ORGANIZATION },
                isCaCertificate: true,
                allowedUses: [...CA_USES],
                validityPeriodHours: plan.validityHours,
            },
            { parent: this },
        );
        this.caCertPem = ca.certPem;

        const issue = (role: string, commonName: string, uses: readonly string[], sans?: MemberSans) => {
            const key = new tls.PrivateKey(`${name}-${role}-key`, { ...KEY_ALGORITHM }, { parent: this });
            const keyPem = pulumi.secret(key.privateKeyPem);
            const csr = new tls.CertRequest(
                `${name}-${role}-csr`,
                {
                    privateKeyPem: keyPem,
                    subject: { commonName, organization: ORGANIZATION },
                    ...(sans !== undefined ? { dnsNames: sans.dnsNames, ipAddresses: sans.ipAddresses } : {}),
                },
                { parent: this },
            );
            const cert = new tls.LocallySignedCert(
                `${name}-${role}`,
                {
                    certRequestPem: csr.certRequestPem,
                    caPrivateKeyPem: caKeyPem,
                    caCertPem: ca.certPem,
                    allowedUses: [...uses],
                    validityPeriodHours: plan.validityHours,
                },
                { parent: this },
            );
            return { certPem: cert.certPem, keyPem };
        };

        const members: Record<string, EtcdMemberCerts> = {};
        for (const [member, sans] of Object.entries(plan.members)) {
            const server = issue(`${member}-server`, member, SERVER_USES, sans);
            const peer = issue(`${member}-peer`, member, PEER_USES, sans);
            members[member] = {
                serverCertPem: server.certPem,
                serverKeyPem: server.keyPem,
                peerCertPem: peer.certPem,
                peerKeyPem: peer.keyPem,
            };
        }
        this.members = members;

        const clients: Record<string, EtcdClientCert> = {};
        for (const client of plan.clients) {
            clients[client] = issue(`${client}-client`, client, CLIENT_USES);
        }
        this.clients = clients;

        this.registerOutputs({ caCertPem: this.caCertPem, members: this.members, clients: this.clients });
    }
}
