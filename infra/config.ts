import * as pulumi from "@pulumi/pulumi";
import { isIP } from "net";
import { parse as parseYaml } from "yaml";
import { z } from "zod";

import { hostCidr, ipv4Mapped, parseCidr } from "../components/lib/cidr";
import { DEFAULT_ETCD_VERSION } from "../components/etcd/release";
import { DEFAULT_K3S_VERSION } from "../components/k8s/k3s";
import { isReconciliationSeconds, isThresholdMs, RECONCILIATION_SECONDS, THRESHOLD_MS } from "../components/lib/ranges";
import { DNS_LABEL, HOST_NAME } from "../components/lib/names";
import { Endpoint, endpointOfUrl, LATENCY_TIMEOUT_MS, LATENCY_TRIES, LatencyTargetName, parseEndpoint } from "../components/node/latency";

/**
 * The stack configuration of zerotouch: one zod schema, validated before any resource exists.
 *
 * Every rejection names the config key (with its path), the node it concerns, the value given
 * and what is allowed. Unknown keys are rejected so that a typo never passes silently. The SSH
 * private key is checked for presence, secrecy and shape, and never echoed.
 */

/** The Pulumi project name, which is also the config namespace. */
export const PROJECT = "zerotouch";

export const ROLES = ["control-plane", "worker"] as const;
export type NodeRole = (typeof ROLES)[number];

/** Control-plane counts that keep an etcd quorum (an odd number of members, at most 5). */
export const CONTROL_PLANE_COUNTS = [1, 3, 5] as const;

/** Values `systemd-detect-virt` prints; the allowed list is checked against these. */
export const VIRTUALIZATION_TYPES = [
    "kvm",
    "qemu",
    "amazon",
    "zvm",
    "vmware",
    "microsoft",
    "oracle",
    "powervm",
    "xen",
    "bochs",
    "uml",
    "parallels",
    "bhyve",
    "qnx",
    "acrn",
    "apple",
    "sre",
    "google",
    "none",
    "systemd-nspawn",
    "lxc",
    "lxc-libvirt",
    "openvz",
    "docker",
    "podman",
    "rkt",
    "wsl",
    "proot",
    "pouch",
] as const;
export type VirtualizationType = (typeof VIRTUALIZATION_TYPES)[number];

const NODE_NAME = DNS_LABEL;
const SSH_USER = /^[a-z_][a-z0-9_-]{0,31}$/;
const HOST_KEY = /^(ssh-ed25519|ecdsa-sha2-nistp256|ecdsa-sha2-nistp384|ecdsa-sha2-nistp521|ssh-rsa) [A-Za-z0-9+/]+={0,3}$/;
const ABSOLUTE_PATH = /^\/[A-Za-z0-9._/-]*$/;
const LABEL = DNS_LABEL;

/**
 * What the schema says about a key for readers, attached with `.meta()` as the last step of the
 * key's schema. README.md's configuration table and Pulumi.yaml's `config:` block are generated
 * from it (test/support/configDocs.ts, `npm run docs:config`); the type, range and default
 * columns come from the schema itself wherever it can say them.
 */
export type KeyDoc = {
    /** What the key allows, as validation messages say it ("allowed: ..."). An object without one allows its keys. */
    allowed?: string;
    /** What the key means: the README table's last column, and Pulumi.yaml's description. Without it, no README row. */
    description?: string;
    /** The type column, where the schema cannot say it (a pattern or a refinement). */
    docType?: string;
    /** The default column, where the schema has no default of its own (or a clearer text). */
    docDefault?: string;
    /** Sibling keys documented in the same README row. */
    docAlso?: string[];
    /** The placeholder for a map's keys in key paths, e.g. `<n>`. Defaults to `<name>`. */
    docEach?: string;
    /** false: described in Pulumi.yaml only, since its keys have README rows of their own. */
    docRow?: false;
    /** The key must be set as a secret. */
    secret?: true;
};

/** A key's documentation, type-checked, for `.meta()`. */
export const doc = (d: KeyDoc): KeyDoc => d;

const THRESHOLD_TYPE = `number, 0 < ms ≤ ${THRESHOLD_MS.max}`;
const ABSOLUTE_PATH_TYPE = "absolute path";
const RELEASE_URL_TYPE = "`https://` or `file://` URL";
const DNS_NAME_TYPE = "DNS name";

/** Milliseconds, whole nanoseconds at most (the gate compares in ns). */
const thresholdMs = z.number().refine(isThresholdMs);

function cidrSchema() {
    return z.string().superRefine((value, ctx) => {
        const parsed = parseCidr(value);
        if (!parsed.ok) {
            ctx.addIssue({ code: "custom", message: `malformed CIDR: ${parsed.reason}` });
        } else if (parsed.cidr.prefix === 0) {
            ctx.addIssue({ code: "custom", message: "a CIDR of the whole address space would open the port to everyone" });
        }
    });
}

const locationSchema = z.strictObject({
    country: z.string().regex(/^[A-Z]{2}$/).meta(doc({ allowed: "an ISO 3166-1 alpha-2 country code in capitals, quoted in YAML (e.g. \"NO\")" })),
    region: z.string().regex(LABEL).meta(doc({ allowed: "a lower-case label (a-z, 0-9, '-'), e.g. oslo" })),
    datacenter: z.string().regex(LABEL).meta(doc({ allowed: "a lower-case label (a-z, 0-9, '-'), e.g. osl1" })),
    provider: z.string().regex(LABEL).meta(doc({ allowed: "a lower-case label (a-z, 0-9, '-'), e.g. the VPS provider's name" })),
});

/** A pinned SSH host key (`nodes.<n>.sshHostKey`, the off-node SFTP target's `hostKey`). */
function hostKeySchema(allowed: string, docDefault: string, description: string) {
    return z.string().trim().regex(HOST_KEY).optional().meta(doc({ allowed, docType: "`ssh-ed25519 AAAA…`", docDefault, description }));
}

const nodeSchema = z.strictObject({
    host: z
        .string()
        .refine((h) => isIP(h) !== 0)
        .meta(
            doc({
                allowed: "the node's public IPv4 or IPv6 address (firewall rules and etcd peer URLs are built from it), unique across nodes, not an IPv4-mapped IPv6 address (::ffff:a.b.c.d)",
                docType: "IPv4/IPv6 address",
                description:
                    "Public address; unique (compared in canonical form). Firewall rules and etcd peer URLs are built from it. An IPv4-mapped IPv6 address (`::ffff:203.0.113.21`) is refused: the node is reached over IPv4, so write the IPv4 address.",
            }),
        ),
    sshPort: z.number().int().min(1).max(65535).default(22).meta(doc({ allowed: "an integer from 1 to 65535 (default 22)", description: "" })),
    sshUser: z
        .string()
        .regex(SSH_USER)
        .default("root")
        .meta(
            doc({
                allowed: "a Unix user name, root or with passwordless sudo (default root)",
                docType: "Unix user",
                description: "root or a user with passwordless sudo (`sudo -n`).",
            }),
        ),
    sshHostKey: hostKeySchema("a public host key as `ssh-ed25519 AAAA…` (the key type and base64, no host name or comment)", "(recorded on first connect)", "Pinned host key."),
    role: z.enum(ROLES).meta(doc({ allowed: "control-plane or worker", description: "" })),
    location: locationSchema.meta(
        doc({
            description: '`country` is ISO 3166-1 alpha-2 in capitals; quote `"NO"` in YAML. The others are lower-case labels.',
        }),
    ),
    etcdDataPath: z
        .string()
        .regex(ABSOLUTE_PATH)
        .refine((p) => p !== "/" && !p.split("/").includes(".."))
        .default("/var/lib/etcd")
        .meta(
            doc({
                allowed: "an absolute path such as /var/lib/etcd (default /var/lib/etcd)",
                docType: ABSOLUTE_PATH_TYPE,
                description: "Measured by the fsync gate; etcd's data directory.",
            }),
        ),
    fsyncThresholdMs: thresholdMs
        .optional()
        .meta(
            doc({
                allowed: "a number of milliseconds greater than 0 and at most 1000, at most 6 decimals, overriding fsyncGate.thresholdMs for this node",
                docType: THRESHOLD_TYPE,
                docDefault: "`fsyncGate.thresholdMs`",
                description: "Per-node override of the gate.",
            }),
        ),
    maxLatencyMs: thresholdMs
        .optional()
        .meta(
            doc({
                allowed: "a number of milliseconds greater than 0 and at most 1000, at most 6 decimals, overriding preflight.maxLatencyMs for this node",
                docType: THRESHOLD_TYPE,
                docDefault: "`preflight.maxLatencyMs`",
                description: "Per-node override of the latency gate.",
            }),
        ),
}).meta(
    doc({
        allowed: "a lower-case DNS label (a-z, 0-9, '-', at most 63 characters) as node name, mapping to the keys host, sshPort, sshUser, sshHostKey, role, location, etcdDataPath, fsyncThresholdMs, maxLatencyMs",
    }),
);

const HTTPS_OR_FILE_URL = /^(https:\/\/[A-Za-z0-9.-]+(:[0-9]{1,5})?|file:\/\/)\/?[A-Za-z0-9._~%/+-]*$/;
const SHA256 = /^[0-9a-f]{64}$/;
const CLUSTER_TOKEN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
/** A systemd OnCalendar expression made of characters that need no quoting. */
const ON_CALENDAR = /^[A-Za-z0-9*:/.,~ -]{1,100}$/;
/** A host name (DNS) or an IP address. */
const ENDPOINT_HOST = /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;

const portNumber = z.number().int().min(1).max(65535);

const firewallSchema = z
    .strictObject({
        extraRules: z
            .array(
                z.strictObject({
                    name: z.string().regex(/^[a-z][a-z0-9-]{0,39}$/).meta(
                        doc({
                            allowed: "a lower-case name ([a-z][a-z0-9-]*), unique among the rules; it becomes the rule's comment",
                        }),
                    ),
                    protocol: z.enum(["tcp", "udp"]).meta(doc({ allowed: "tcp or udp" })),
                    ports: z.union([portNumber, z.tuple([portNumber, portNumber]).refine(([a, b]) => a <= b)]).meta(
                        doc({
                            allowed: "a port (1-65535) or a range [first, last]",
                        }),
                    ),
                    from: z
                        .union([z.literal("any"), z.array(cidrSchema().meta(doc({ allowed: "a CIDR block, host bits zero, not 0.0.0.0/0 or ::/0" }))).min(1)])
                        .meta(doc({ allowed: "any, or a non-empty list of CIDR blocks (host bits zero; 0.0.0.0/0 and ::/0 are written as any)" })),
                }),
            )
            .default([])
            .meta(
                doc({
                    allowed: "a list of {name, protocol, ports, from}: further ports every node opens (e.g. a NodePort range), each name once",
                    description:
                        "Further ports every node opens; `ports` a port or `[first, last]`; `from` is `any` or a list of CIDRs.",
                }),
            ),
    })
    .prefault({})
    .meta(doc({ docRow: false, description: "further ports every node opens." }));

/** A mirror of a project's release downloads (`etcd.releaseBaseUrl`, `kubernetes.k3s.releaseBaseUrl`). */
function releaseBaseUrl(whose: string, defaultNote: string) {
    return z
        .string()
        .regex(HTTPS_OR_FILE_URL)
        .optional()
        .meta(
            doc({
                allowed: `an https:// or file:// URL of a mirror of ${whose} release downloads${defaultNote}`,
                docType: RELEASE_URL_TYPE,
                docDefault: "GitHub releases",
                description: `A mirror with ${whose} release layout.`,
            }),
        );
}

/** Where a pinned binary comes from (`etcd.source`, `kubernetes.k3s.source`): its release, or the node. */
function releaseSource(allowed: string, description: string) {
    return z
        .enum(["release", "preinstalled"])
        .default("release")
        .meta(doc({ allowed, description }));
}

const OFFSITE_ENDPOINT = /^https:\/\/[A-Za-z0-9.-]+(:[0-9]{1,5})?\/?$/;
const OFFSITE_PATH = /^\/?[A-Za-z0-9._@+-]+(\/[A-Za-z0-9._@+-]+)*$/;

/** `etcd.snapshots.offsite`: where each verified snapshot is also copied, off the node. */
const offsiteSchema = z
    .strictObject({
        type: z.enum(["s3", "sftp"]).meta(
            doc({
                allowed: "s3 (an S3-compatible bucket) or sftp (a directory on an SSH server)",
                description: "`s3` needs `endpoint` and `bucket` and the secrets `etcdOffsiteAccessKeyId`, `etcdOffsiteSecretAccessKey`; `sftp` needs `host`, `user`, `hostKey` and the secret `etcdOffsiteSshKey`.",
            }),
        ),
        endpoint: z
            .string()
            .regex(OFFSITE_ENDPOINT)
            .optional()
            .meta(
                doc({
                    allowed: "(s3) the https:// URL of the S3 service without a path, e.g. https://s3.eu-central-1.amazonaws.com; its host must be on the endpoint-hosts-allowed policy's list",
                    docType: "`https://` URL",
                    docDefault: "(required with `s3`)",
                    description: "The S3 service; its host is checked by the `endpoint-hosts-allowed` policy.",
                }),
            ),
        region: z.string().regex(/^[a-z0-9-]{1,32}$/).optional().meta(
            doc({ allowed: "(s3) a region name such as eu-central-1 (a-z, 0-9, -)", docType: "region", docDefault: "(the service's default)", description: "" }),
        ),
        bucket: z
            .string()
            .regex(/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/)
            .optional()
            .meta(doc({ allowed: "(s3) an existing bucket's name (3-63 of a-z 0-9 . -)", docType: "bucket name", docDefault: "(required with `s3`)", description: "Not created by zerotouch." })),
        host: z
            .string()
            .refine((h) => isIP(h) !== 0 || ENDPOINT_HOST.test(h))
            .optional()
            .meta(
                doc({
                    allowed: "(sftp) the SSH server's DNS name or IP address; it must be on the endpoint-hosts-allowed policy's list",
                    docType: "DNS name or IP",
                    docDefault: "(required with `sftp`)",
                    description: "Checked by the `endpoint-hosts-allowed` policy.",
                }),
            ),
        port: portNumber.optional().meta(doc({ allowed: "(sftp) an integer from 1 to 65535 (default 22)", docDefault: "`22`", description: "" })),
        user: z.string().regex(SSH_USER).optional().meta(
            doc({ allowed: "(sftp) the SSH user the copies are written as", docType: "Unix user", docDefault: "(required with `sftp`)", description: "" }),
        ),
        hostKey: hostKeySchema("(sftp) the SSH server's public host key as `ssh-ed25519 AAAA…` (the key type and base64), checked out of band", "(required with `sftp`)", "Pinned: rclone refuses any other key."),
        path: z
            .string()
            .regex(OFFSITE_PATH)
            .refine((p) => !p.split("/").includes("..") && !p.split("/").includes("."))
            .optional()
            .meta(
                doc({
                    allowed: "a path of letters, digits and . _ @ + - without . or .. components: the key prefix in the bucket (s3) or the directory (sftp; absolute, or relative to the user's home)",
                    docType: "path",
                    docDefault: "(bucket top or home directory)",
                    description: "Each node's copies are `<node>-<UTC time>.db` with a `.sha256` next to each.",
                }),
            ),
        retain: z.number().int().min(1).max(1000).default(48).meta(
            doc({
                allowed: "an integer from 1 to 1000 (default 48): copies kept on the target per node",
                description: "Copies kept on the target per node; older ones are deleted after each verified copy.",
            }),
        ),
    })
    .meta(
        doc({
            allowed: "the keys type, endpoint, region, bucket (s3) or host, port, user, hostKey (sftp), and path, retain",
            docType: "object",
            docDefault: "(none: snapshots stay on the node)",
            description: "Each verified snapshot is also copied off the node with rclone, checked (size, sha256 read back), and the newest `retain` kept there.",
        }),
    );

type OffsiteCheckInput = {
    etcd: { snapshots: { offsite?: z.output<typeof offsiteSchema> } };
    etcdOffsiteSshKey?: string;
    etcdOffsiteAccessKeyId?: string;
    etcdOffsiteSecretAccessKey?: string;
};

/** Cross-key rules of the off-node copies: the keys and secrets of the target's type, none of the other's. */
function checkOffsite(cfg: OffsiteCheckInput, ctx: z.core.$RefinementCtx): void {
    const o = cfg.etcd.snapshots.offsite;
    const at = ["etcd", "snapshots", "offsite"];
    const secrets = { sftp: ["etcdOffsiteSshKey"], s3: ["etcdOffsiteAccessKeyId", "etcdOffsiteSecretAccessKey"] } as const;
    if (o === undefined) {
        for (const key of [...secrets.sftp, ...secrets.s3]) {
            if (cfg[key] !== undefined) {
                ctx.addIssue({ code: "custom", path: [key], message: "no etcd.snapshots.offsite is configured, which takes no such secret" });
            }
        }
        return;
    }
    const keys = { s3: ["endpoint", "bucket"], sftp: ["host", "user", "hostKey"] } as const;
    const other = o.type === "s3" ? "sftp" : "s3";
    for (const key of keys[o.type]) {
        if (o[key] === undefined) {
            ctx.addIssue({ code: "custom", path: [...at, key], message: `type ${o.type} needs it` });
        }
    }
    for (const key of [...keys[other], ...(o.type === "sftp" ? ["region"] as const : ["port"] as const)]) {
        if (o[key] !== undefined) {
            ctx.addIssue({ code: "custom", path: [...at, key], message: `type ${o.type} takes no ${key}` });
        }
    }
    for (const key of secrets[o.type]) {
        if (cfg[key] === undefined) {
            ctx.addIssue({ code: "custom", path: [key], message: `etcd.snapshots.offsite.type is ${o.type}, which needs it as a secret` });
        }
    }
    for (const key of secrets[other]) {
        if (cfg[key] !== undefined) {
            ctx.addIssue({ code: "custom", path: [key], message: `etcd.snapshots.offsite.type is ${o.type}, which takes no such secret` });
        }
    }
}

const etcdSchema = z
    .strictObject({
        source: releaseSource(
            "release (the pinned etcd release, checked against its sha256) or preinstalled (an etcd already on the node, e.g. Debian's etcd-server; its version is checked)",
            "`release`: the official tarball of `etcd.version`, checked against its sha256 before anything is extracted (pins in `components/etcd/release.ts`). `preinstalled`: an etcd already on the node (golden image, air-gapped; e.g. Debian's `etcd-server`), whose `--version` must match `etcd.version`'s MAJOR.MINOR.",
        ),
        version: z
            .string()
            .regex(/^[0-9]+\.[0-9]+\.[0-9]+$/)
            .optional()
            .meta(
                doc({
                    allowed: "an etcd version as MAJOR.MINOR.PATCH (e.g. 3.5.21); with source release it must be pinned in components/etcd/release.ts or come with etcd.sha256; with preinstalled its MAJOR.MINOR must match the installed etcd",
                    docType: "`MAJOR.MINOR.PATCH`",
                    docDefault: `\`${DEFAULT_ETCD_VERSION}\``,
                    description: "A version without a pinned checksum needs `etcd.sha256`.",
                }),
            ),
        releaseBaseUrl: releaseBaseUrl("etcd's", " (default https://github.com/etcd-io/etcd/releases/download)"),
        sha256: z
            .strictObject({
                amd64: z.string().regex(SHA256).optional().meta(doc({ allowed: "a sha256 as 64 hex digits" })),
                arm64: z.string().regex(SHA256).optional().meta(doc({ allowed: "a sha256 as 64 hex digits" })),
            })
            .optional()
            .meta(
                doc({
                    allowed: "the keys amd64 and arm64, each the 64 hex digit sha256 of that release tarball",
                    docType: "`{amd64, arm64}` (64 hex digits)",
                    docDefault: "(the pinned table)",
                    description: "Checksums of the release tarballs.",
                }),
            ),
        clusterToken: z
            .string()
            .regex(CLUSTER_TOKEN)
            .optional()
            .meta(
                doc({
                    allowed: "1 to 128 characters: letters, digits, '.', '_', '-' (default zerotouch-<stack>)",
                    docType: "1–128 of `A-Za-z0-9._-`",
                    docDefault: `\`${PROJECT}-<stack>\``,
                    description: "Keeps members of different clusters apart.",
                }),
            ),
        bootstrapMember: z
            .string()
            .regex(NODE_NAME)
            .optional()
            .meta(
                doc({
                    allowed: "the name of a control-plane node (default: the first control-plane node by name); it forms the cluster and the others join through it, so keep it fixed once the cluster exists",
                    docType: "a control-plane node",
                    docDefault: "first by name",
                    description: "Forms the cluster; the others join through it. Keep it fixed once the cluster exists.",
                }),
            ),
        walFsyncThresholdMs: thresholdMs.default(10).meta(
            doc({
                allowed: "a number of milliseconds greater than 0 and at most 1000, at most 6 decimals (default 10): highest WAL fsync p99 etcd may show under load",
                docType: THRESHOLD_TYPE,
                description: "Largest accepted WAL fsync p99 from etcd's metrics under the gate's write load.",
            }),
        ),
        backendCommitThresholdMs: thresholdMs
            .default(25)
            .meta(
                doc({
                    allowed: "a number of milliseconds greater than 0 and at most 1000, at most 6 decimals (default 25): highest backend commit p99 etcd may show under load",
                    docType: THRESHOLD_TYPE,
                    description: "Largest accepted backend commit p99 under the same load.",
                }),
            ),
        walGateWrites: z.number().int().min(100).max(100000).default(1000).meta(
            doc({
                allowed: "an integer from 100 to 100000 (default 1000): fewest puts of the WAL gate's write load",
                description: "Fewest puts of the write load.",
            }),
        ),
        walGateMaxSeconds: z.number().int().min(10).max(1800).default(120).meta(
            doc({
                allowed: "a whole number of seconds from 10 to 1800 (default 120): longest the WAL gate's write load runs",
                description: "Bound of the write load.",
            }),
        ),
        healthTimeoutSeconds: z
            .number()
            .int()
            .min(10)
            .max(1800)
            .default(180)
            .meta(
                doc({
                    allowed: "a whole number of seconds from 10 to 1800 (default 180): longest wait for a member and the cluster to report healthy",
                    description: "Longest wait for a member and the whole cluster to be healthy (and for etcd to accept `member add`).",
                }),
            ),
        quotaBackendBytes: z
            .number()
            .int()
            .min(1024 ** 2)
            .max(8 * 1024 ** 3)
            .default(8 * 1024 ** 3)
            .meta(
                doc({
                    allowed: "an integer number of bytes from 1048576 to 8589934592 (default 8589934592)",
                    docType: "integer, 1 MiB–8 GiB",
                    docDefault: "8 GiB",
                    description: "etcd's backend quota (NOSPACE alarm above it).",
                }),
            ),
        snapshots: z
            .strictObject({
                schedule: z
                    .string()
                    .regex(ON_CALENDAR)
                    .default("hourly")
                    .meta(
                        doc({
                            allowed: "a systemd OnCalendar expression such as hourly or *-*-* 00/6:00:00 (default hourly)",
                            docType: "systemd `OnCalendar`",
                            description: "When each member saves a snapshot.",
                        }),
                    ),
                retain: z.number().int().min(1).max(1000).default(24).meta(
                    doc({
                        allowed: "an integer from 1 to 1000 (default 24): snapshots kept per node",
                        description: "Snapshots kept per member.",
                    }),
                ),
                dir: z
                    .string()
                    .regex(ABSOLUTE_PATH)
                    .refine((p) => p !== "/" && !p.split("/").includes(".."))
                    .default("/var/backups/etcd")
                    .meta(doc({ allowed: "an absolute path (default /var/backups/etcd)", docType: ABSOLUTE_PATH_TYPE, description: "" })),
                offsite: offsiteSchema.optional(),
            })
            .prefault({}),
        wipeDataOnDelete: z
            .boolean()
            .default(false)
            .meta(
                doc({
                    allowed: "true or false (default false): whether deleting a member or the stack also deletes its etcd data directory",
                    description: "Whether deleting a member or the stack deletes its etcd data.",
                }),
            ),
    })
    .prefault({})
    .meta(doc({ docRow: false, description: "the etcd cluster on the control-plane nodes." }));

const kubernetesSchema = z
    .strictObject({
        mode: z
            .enum(["k3s", "existing", "none"])
            .default("k3s")
            .meta(
                doc({
                    allowed: "k3s (zerotouch installs k3s servers on the control-plane nodes and agents on the workers), existing (use the cluster of zerotouch:kubeconfig, install nothing) or none (no Kubernetes layer)",
                    description: "`existing` uses the cluster of `kubeconfig` and installs nothing; `none` stops after etcd.",
                }),
            ),
        apiEndpoint: z
            .string()
            .refine((h) => isIP(h) !== 0 || ENDPOINT_HOST.test(h))
            .optional()
            .meta(
                doc({
                    allowed: "the DNS name or IP address clients reach the API server at (a VPN address or load balancer); default: the first control-plane node's host",
                    docType: "DNS name or IP",
                    docDefault: "first control-plane host",
                    description: "The API server's address for clients and agents: a `--tls-san` of every server and the kubeconfig's server.",
                }),
            ),
        k3s: z
            .strictObject({
                source: releaseSource(
                    "release (the pinned k3s binary, checked against its sha256) or preinstalled",
                    "`release`: the k3s binary of `version`, checked against its sha256 before it is made executable.",
                ),
                version: z
                    .string()
                    .regex(/^v[0-9]+\.[0-9]+\.[0-9]+\+k3s[0-9]+$/)
                    .optional()
                    .meta(
                        doc({
                            allowed: "a k3s version such as v1.31.4+k3s1 (default: the pinned one)",
                            docType: "`vX.Y.Z+k3sN`",
                            docDefault: `\`${DEFAULT_K3S_VERSION}\``,
                            description: "Pinned in `components/k8s/k3s.ts` with the binaries' checksums.",
                        }),
                    ),
                releaseBaseUrl: releaseBaseUrl("k3s'", ""),
            })
            .prefault({}),
    })
    .prefault({})
    .meta(doc({ docRow: false, description: "the Kubernetes layer." }));

const K8S_NAME = DNS_LABEL;
const GITLAB_PATH = /^[A-Za-z0-9_.][A-Za-z0-9_.-]*(\/[A-Za-z0-9_.][A-Za-z0-9_.-]*)+$/;
const DNS_NAME = HOST_NAME;
const RELATIVE_PATH = /^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/;
const noDotDot = (p: string) => !p.split("/").includes("..");

const applicationSchema = z
    .strictObject({
        environment: z.string().regex(LABEL).meta(doc({ allowed: "a lower-case label (e.g. prod): the AppProject the Application belongs to" })),
        path: z.string().regex(RELATIVE_PATH).refine(noDotDot).meta(
            doc({
                allowed: "a relative path in the manifests repository, without '..' (e.g. apps/backend-service)",
            }),
        ),
        targetRevision: z.string().regex(/^[A-Za-z0-9._/-]{1,200}$/).default("main").meta(doc({ allowed: "a branch, tag or commit (default main)" })),
        namespace: z.string().regex(K8S_NAME).meta(doc({ allowed: "the Kubernetes namespace the Application deploys to (a DNS label)" })),
        valueFiles: z
            .array(z.string().regex(RELATIVE_PATH).refine(noDotDot).meta(
                doc({
                    allowed: "a Helm value file relative to the Application's path, without '..'",
                }),
            ))
            .default([])
            .meta(doc({ allowed: "a list of Helm value files relative to path (e.g. [values-prod.yaml])" })),
        values: z.record(z.string(), z.unknown()).optional().meta(
            doc({
                allowed: "an object of Helm values given inline (spec.source.helm.valuesObject); its workloads must set DATA_RESIDENCY_MODE=strict_eea (see the policy packs)",
            }),
        ),
    })
    .meta(doc({ docDefault: "`{}`", description: "One Argo CD Application each; `environment` names its AppProject." }));

const HTTPS_BASE_URL = /^https:\/\/[A-Za-z0-9.-]+(:[0-9]{1,5})?\/?$/;
const HTTPS_URL = /^https:\/\/[A-Za-z0-9.-]+(:[0-9]{1,5})?(\/[A-Za-z0-9._~%+-]+)*\/?$/;
const CHART_REPO = /^(https|oci):\/\/[A-Za-z0-9.-]+(:[0-9]{1,5})?(\/[A-Za-z0-9._~%+-]+)*\/?$/;

const gitopsSchema = z
    .strictObject({
        gitlab: z
            .strictObject({
                baseUrl: z
                    .string()
                    .regex(HTTPS_BASE_URL)
                    .meta(
                        doc({
                            allowed: "the https:// URL of the GitLab instance, without a path (e.g. https://gitlab.example.com)",
                            docType: "`https://` URL",
                            docDefault: "(none: GitLab wired by hand)",
                            description: "The GitLab instance; with it the program wires the manifests project, tokens and webhook.",
                        }),
                    ),
            })
            .optional()
            .meta(
                doc({
                    allowed: "the key baseUrl (leave gitlab out to wire GitLab by hand: then manifests.url and manifests.username, and the secret manifestsPassword)",
                }),
            ),
        argocd: z.strictObject({
            hostname: z
                .string()
                .regex(DNS_NAME)
                .meta(
                    doc({
                        allowed: "a DNS name for Argo CD's UI and API, reached over the VPN only",
                        docType: DNS_NAME_TYPE,
                        description: "Argo CD's UI and API; reachable from `vpnCidr` only.",
                    }),
                ),
            webhookHostname: z
                .string()
                .regex(DNS_NAME)
                .meta(
                    doc({
                        allowed: "a public DNS name that serves only Argo CD's /api/webhook (GitLab's push hooks), not the same as hostname",
                        docType: DNS_NAME_TYPE,
                        description: "Public; serves only `/api/webhook`. Must differ from `hostname`.",
                    }),
                ),
            namespace: z.string().regex(K8S_NAME).default("argocd").meta(
                doc({
                    allowed: "a Kubernetes namespace name (default argocd)",
                    docType: "namespace",
                    description: "",
                }),
            ),
            reconciliationSeconds: z
                .number()
                .refine(isReconciliationSeconds)
                .default(RECONCILIATION_SECONDS.default)
                .meta(
                    doc({
                        allowed: "a whole number of seconds from 30 to 3600 (default 180): Argo CD's polling interval (webhooks make syncs start at once)",
                        docType: `integer ${RECONCILIATION_SECONDS.min}–${RECONCILIATION_SECONDS.max}`,
                        description: "Polling interval (`timeout.reconciliation`); the webhook makes syncs start at once.",
                    }),
                ),
            breakGlassGroup: z
                .string()
                .regex(/^[A-Za-z0-9:._@/-]{1,128}$/)
                .optional()
                .meta(
                    doc({
                        allowed: "the name of the SSO group that gets Argo CD's admin role (break glass; the local admin user is off), e.g. platform/argocd-admins; needs sso",
                        docType: "SSO group",
                        docDefault: "(none)",
                        description: "Gets Argo CD's `role:admin`; everyone else is read-only and the local `admin` user is off. Refused without `sso`.",
                    }),
                ),
            sso: z
                .strictObject({
                    provider: z.enum(["gitlab", "oidc"]).meta(
                        doc({
                            allowed: "gitlab (Dex in front of GitLab, which is the identity source here) or oidc (any OpenID Connect issuer)",
                        }),
                    ),
                    issuer: z.string().regex(HTTPS_URL).optional().meta(
                        doc({
                            allowed: "the https:// URL of the identity provider: for oidc the issuer, for gitlab the GitLab instance (default gitops.gitlab.baseUrl)",
                        }),
                    ),
                    clientId: z.string().regex(/^[A-Za-z0-9._:-]{1,200}$/).meta(
                        doc({
                            allowed: "the OAuth application's client id (letters, digits, '.', '_', ':', '-')",
                        }),
                    ),
                    groupsClaim: z.string().regex(/^[A-Za-z0-9_.:-]{1,64}$/).default("groups").meta(
                        doc({
                            allowed: "the ID token claim that lists the user's groups (default groups)",
                        }),
                    ),
                })
                .optional()
                .meta(
                    doc({
                        allowed: "the keys provider, issuer, clientId, groupsClaim: Argo CD's single sign-on (its client secret is the secret argocdSsoClientSecret)",
                        docDefault: "(none: no one logs in)",
                        description:
                            "`provider` `gitlab` (Dex with GitLab) or `oidc`; `issuer` https (default for gitlab: `gitops.gitlab.baseUrl`); `groupsClaim` default `groups`. Needs `argocdSsoClientSecret`.",
                    }),
                ),
            chart: z
                .strictObject({
                    repo: z.string().regex(CHART_REPO).optional().meta(
                        doc({
                            allowed: "an https:// Helm repository URL or an oci:// registry path (without the chart name) that serves the pinned argo-cd chart",
                        }),
                    ),
                    path: z
                        .string()
                        .regex(ABSOLUTE_PATH)
                        .refine((p) => p.endsWith(".tgz") && !p.split("/").includes(".."))
                        .optional().meta(doc({ allowed: "an absolute path to the pinned argo-cd chart's .tgz" })),
                })
                .optional()
                .meta(
                    doc({
                        allowed: "the key repo (an https:// Helm repository or an oci:// registry path mirroring the argo-cd chart) or path (a local argo-cd chart .tgz), one of them; default: the public argo-helm repository",
                        docType: "`{repo}` or `{path}`",
                        docDefault: "the public argo-helm repository",
                        description: "A mirror of the pinned chart: an https:// Helm repository or `oci://` registry path, or a local `.tgz`.",
                    }),
                ),
            values: z
                .record(z.string(), z.unknown())
                .default({})
                .meta(
                    doc({
                        allowed: "an object of argo-cd chart values merged over zerotouch's (the security settings cannot be overridden)",
                        description:
                            "argo-cd chart values merged over zerotouch's; security settings (admin, RBAC, secrets, repositories, exposure) are refused.",
                    }),
                ),
        }).meta(doc({ allowed: "the keys hostname, webhookHostname, breakGlassGroup, sso, namespace, reconciliationSeconds, chart, values" })),
        manifests: z.strictObject({
            project: z
                .string()
                .regex(GITLAB_PATH)
                .optional()
                .meta(
                    doc({
                        allowed: "the manifests project's path in GitLab, group/name (e.g. platform/manifests); with gitops.gitlab only",
                        docType: "`group/name`",
                        docDefault: "(required with `gitops.gitlab`)",
                        description: "The manifests repository.",
                    }),
                ),
            mode: z
                .enum(["create", "adopt"])
                .default("create")
                .meta(
                    doc({
                        allowed: "create (zerotouch creates the project) or adopt (an existing project at that path)",
                        description:
                            "`create` makes the project (private, `main` protected) in group `namespaceId`; `adopt` uses an existing one and never manages (or deletes) it.",
                    }),
                ),
            namespaceId: z
                .number()
                .int()
                .positive()
                .optional()
                .meta(
                    doc({
                        allowed: "the numeric id of the GitLab group the project is created in (needed with mode create)",
                        docDefault: "(required with `create`)",
                        description: "The GitLab group's id.",
                    }),
                ),
            url: z
                .string()
                .regex(HTTPS_URL)
                .optional()
                .meta(
                    doc({
                        allowed: "the manifests repository's https:// clone URL (without gitops.gitlab only)",
                        docAlso: ["username"],
                        docType: "https URL, user name",
                        docDefault: "(required without `gitops.gitlab`)",
                        description: "The repository Argo CD reads and its credential's user; the credential is `manifestsPassword`.",
                    }),
                ),
            username: z
                .string()
                .regex(/^[^\s:]{1,200}$/)
                .optional().meta(
                    doc({
                        allowed: "the user name of the repository's read credential (without gitops.gitlab only), e.g. gitlab+deploy-token-12",
                    }),
                ),
        }).meta(doc({ allowed: "with gitops.gitlab the keys project, mode, namespaceId; without it the keys url and username" })),
        appProjects: z
            .array(z.string().regex(GITLAB_PATH).meta(doc({ allowed: "a GitLab project path, group/name, listed once, not the manifests project" })))
            .default([])
            .meta(
                doc({
                    allowed: "a list of GitLab project paths (group/name) whose pipelines get the GITOPS_TOKEN variable, each once, not the manifests project",
                    docType: "list of `group/name`",
                    description: "Projects whose pipelines get `GITOPS_TOKEN` (masked, protected).",
                }),
            ),
        applications: z.record(z.string().regex(K8S_NAME), applicationSchema).default({}).meta(
            doc({
                allowed: "a map of Application name (a DNS label) to {environment, path, targetRevision, namespace, valueFiles}",
            }),
        ),
        accessTokenExpiryDays: z
            .number()
            .int()
            .min(1)
            .max(365)
            .default(180)
            .meta(
                doc({
                    allowed: "a whole number of days from 1 to 365 (default 180): lifetime of the GITOPS_TOKEN project access token (GitLab allows at most 365)",
                    description: "Lifetime of the `GITOPS_TOKEN` project access token (GitLab's limit is 365).",
                }),
            ),
        rotateBeforeDays: z
            .number()
            .int()
            .min(1)
            .max(180)
            .default(30)
            .meta(
                doc({
                    allowed: "a whole number of days from 1 to 180 (default 30), less than accessTokenExpiryDays: the token is replaced this long before it expires",
                    description: "The token is replaced on the first `pulumi up` this long before it expires.",
                }),
            ),
    })
    .optional()
    .meta(
        doc({
            allowed: "the keys gitlab, argocd, manifests, appProjects, applications, accessTokenExpiryDays, rotateBeforeDays (leave gitops out for no GitOps layer)",
            docType: "object",
            docDefault: "(none: no GitOps layer)",
            description:
                "Needs `kubernetes.mode` `k3s` or `existing`; with `gitops.gitlab` also `gitlabToken`, without it `manifests.url`, `manifests.username` and `manifestsPassword`.",
        }),
    );

const PRIVATE_KEY = /^-----BEGIN ((OPENSSH|RSA|EC|DSA) )?PRIVATE KEY-----\r?\n[\s\S]+\r?\n-----END ((OPENSSH|RSA|EC|DSA) )?PRIVATE KEY-----\s*$/;

type GitopsCheckInput = {
    kubernetes: { mode: string };
    gitlabToken?: string;
    argocdSsoClientSecret?: string;
    manifestsPassword?: string;
    gitops?: z.output<typeof gitopsSchema>;
};

/** Cross-key rules of the GitOps layer. */
function checkGitops(cfg: GitopsCheckInput, ctx: z.core.$RefinementCtx): void {
    const gitops = cfg.gitops;
    if (gitops === undefined) {
        for (const key of ["gitlabToken", "argocdSsoClientSecret", "manifestsPassword"] as const) {
            if (cfg[key] !== undefined) {
                ctx.addIssue({ code: "custom", path: [key], message: "no gitops is configured, which takes no such secret" });
            }
        }
        return;
    }
    if (cfg.kubernetes.mode === "none") {
        ctx.addIssue({ code: "custom", path: ["gitops"], message: "the GitOps layer needs a cluster, but kubernetes.mode is none" });
    }
    checkGitopsSource(gitops, cfg, ctx);
    checkArgoCdAccess(gitops, cfg, ctx);
    if (gitops.rotateBeforeDays >= gitops.accessTokenExpiryDays) {
        ctx.addIssue({
            code: "custom",
            path: ["gitops", "rotateBeforeDays"],
            message: `not less than accessTokenExpiryDays (${gitops.accessTokenExpiryDays})`,
        });
    }
    if (gitops.gitlab !== undefined && gitops.manifests.mode === "create" && gitops.manifests.namespaceId === undefined) {
        ctx.addIssue({ code: "custom", path: ["gitops", "manifests", "namespaceId"], message: "mode create needs the id of the group the project goes in" });
    }
    const seen = new Set<string>();
    gitops.appProjects.forEach((p, i) => {
        if (p === gitops.manifests.project) {
            ctx.addIssue({ code: "custom", path: ["gitops", "appProjects", i], message: "the manifests project itself" });
        } else if (seen.has(p)) {
            ctx.addIssue({ code: "custom", path: ["gitops", "appProjects", i], message: "listed twice" });
        }
        seen.add(p);
    });
    if (gitops.argocd.hostname === gitops.argocd.webhookHostname) {
        ctx.addIssue({
            code: "custom",
            path: ["gitops", "argocd", "webhookHostname"],
            message: "the same as hostname: the UI stays on the VPN while the webhook is public",
        });
    }
}

/**
 * Where the manifests repository comes from: GitLab wired by the program (gitops.gitlab, the
 * project path, the GitLab token), or a repository wired by hand (its URL and a read credential).
 */
function checkGitopsSource(gitops: NonNullable<GitopsCheckInput["gitops"]>, cfg: GitopsCheckInput, ctx: z.core.$RefinementCtx): void {
    const m = gitops.manifests;
    const issue = (path: (string | number)[], message: string) => ctx.addIssue({ code: "custom", path, message });
    if (gitops.gitlab !== undefined) {
        if (m.project === undefined) {
            issue(["gitops", "manifests", "project"], "gitops.gitlab is set, so the program wires the manifests project and needs its path");
        }
        for (const key of ["url", "username"] as const) {
            if (m[key] !== undefined) {
                issue(["gitops", "manifests", key], "gitops.gitlab is set: the URL and credential come from the GitLab wiring");
            }
        }
        if (cfg.gitlabToken === undefined) {
            issue(["gitlabToken"], "gitops.gitlab is set, which needs a GitLab token");
        }
        if (cfg.manifestsPassword !== undefined) {
            issue(["manifestsPassword"], "gitops.gitlab is set: the read credential is the deploy token the program makes");
        }
        return;
    }
    const byHand = "without gitops.gitlab, the manifests repository is wired by hand";
    if (m.url === undefined) {
        issue(["gitops", "manifests", "url"], `${byHand} and its clone URL is needed`);
    }
    if (m.username === undefined) {
        issue(["gitops", "manifests", "username"], `${byHand} and the user name of its read credential is needed`);
    }
    if (cfg.manifestsPassword === undefined) {
        issue(["manifestsPassword"], `${byHand} and its read credential is needed as a secret`);
    }
    if (m.project !== undefined || m.namespaceId !== undefined) {
        issue(["gitops", "manifests", m.project !== undefined ? "project" : "namespaceId"], `${byHand}: project and namespaceId belong to the GitLab wiring`);
    }
    if (gitops.appProjects.length > 0) {
        issue(["gitops", "appProjects"], `${byHand}: GITOPS_TOKEN on app projects is part of the GitLab wiring`);
    }
    if (cfg.gitlabToken !== undefined) {
        issue(["gitlabToken"], `${byHand}, which takes no GitLab token`);
    }
}

/** Who gets into Argo CD: SSO and its break-glass group, and where the chart comes from. */
function checkArgoCdAccess(gitops: NonNullable<GitopsCheckInput["gitops"]>, cfg: GitopsCheckInput, ctx: z.core.$RefinementCtx): void {
    const a = gitops.argocd;
    const issue = (path: (string | number)[], message: string) => ctx.addIssue({ code: "custom", path, message });
    if (a.sso === undefined) {
        if (a.breakGlassGroup !== undefined) {
            issue(["gitops", "argocd", "breakGlassGroup"], "no gitops.argocd.sso is configured, so no one could ever log in as that group");
        }
        if (cfg.argocdSsoClientSecret !== undefined) {
            issue(["argocdSsoClientSecret"], "no gitops.argocd.sso is configured, which takes no client secret");
        }
    } else {
        if (cfg.argocdSsoClientSecret === undefined) {
            issue(["argocdSsoClientSecret"], "gitops.argocd.sso is set, which needs the client's secret");
        }
        if (a.sso.provider === "oidc" && a.sso.issuer === undefined) {
            issue(["gitops", "argocd", "sso", "issuer"], "provider oidc needs the issuer URL");
        }
        if (a.sso.provider === "gitlab" && a.sso.issuer === undefined && gitops.gitlab === undefined) {
            issue(["gitops", "argocd", "sso", "issuer"], "provider gitlab without gitops.gitlab needs the GitLab instance's URL");
        }
    }
    if (a.chart !== undefined && (a.chart.repo === undefined) === (a.chart.path === undefined)) {
        issue(["gitops", "argocd", "chart"], "exactly one of repo and path");
    }
}

function endpointSchema(what: string) {
    return z
        .string()
        .refine((t) => parseEndpoint(t) !== undefined)
        .optional()
        .meta(
            doc({
                allowed: `host:port of ${what} (a DNS name or an IPv4 address, [IPv6] in brackets; port 1-65535)`,
                docType: "`host:port`",
            }),
        );
}

const latencySchema = z
    .strictObject({
        gitlab: endpointSchema("the GitLab host").meta(
            doc({
                allowed: "host:port of the GitLab host (a DNS name or an IPv4 address, [IPv6] in brackets; port 1-65535); default: the host and port of gitops.gitlab.baseUrl or gitops.manifests.url",
                docType: "`host:port`",
                docDefault: "host and port of `gitops.gitlab.baseUrl` (or `gitops.manifests.url`), 443 if it names none",
                description: "Where each node times TCP connects to GitLab; none without it and without `gitops`.",
            }),
        ),
        probe: endpointSchema("a probe target").meta(
            doc({
                allowed: "host:port of a probe target, e.g. a host at the local internet exchange (a DNS name or an IPv4 address, [IPv6] in brackets; port 1-65535)",
                docType: "`host:port`",
                docDefault: "(none)",
                description: "A further target each node times, e.g. a host at the local internet exchange.",
            }),
        ),
        tries: z
            .number()
            .int()
            .min(LATENCY_TRIES.min)
            .max(LATENCY_TRIES.max)
            .default(LATENCY_TRIES.default)
            .meta(
                doc({
                    allowed: `an integer from ${LATENCY_TRIES.min} to ${LATENCY_TRIES.max} (default ${LATENCY_TRIES.default}): TCP connects per target; the median and the worst are reported`,
                    description: "TCP connects per target; median and worst are reported.",
                }),
            ),
        timeoutMs: z
            .number()
            .int()
            .min(LATENCY_TIMEOUT_MS.min)
            .max(LATENCY_TIMEOUT_MS.max)
            .default(LATENCY_TIMEOUT_MS.default)
            .meta(
                doc({
                    allowed: `a whole number of milliseconds from ${LATENCY_TIMEOUT_MS.min} to ${LATENCY_TIMEOUT_MS.max} (default ${LATENCY_TIMEOUT_MS.default}): bound of one connect`,
                    description: "Bound of one connect; a connect that takes longer counts as failed.",
                }),
            ),
    })
    .prefault({})
    .meta(doc({ docRow: false, description: "TCP connect times from each node, measured at preflight." }));

/**
 * What each node's latency preflight measures: `preflight.latency.gitlab`, else the GitLab host
 * of the GitOps layer (`gitops.gitlab.baseUrl`, or the manifests repository's URL when GitLab
 * is wired by hand); and `preflight.latency.probe`.
 */
export function latencyTargets(cfg: {
    preflight: { latency: { gitlab?: string; probe?: string } };
    gitops?: { gitlab?: { baseUrl: string }; manifests: { url?: string } };
}): Partial<Record<LatencyTargetName, Endpoint>> {
    const l = cfg.preflight.latency;
    const gitopsUrl = cfg.gitops?.gitlab?.baseUrl ?? cfg.gitops?.manifests.url;
    const gitlab = l.gitlab !== undefined ? parseEndpoint(l.gitlab) : gitopsUrl !== undefined ? urlEndpoint(gitopsUrl) : undefined;
    const probe = l.probe !== undefined ? parseEndpoint(l.probe) : undefined;
    return { ...(gitlab !== undefined ? { gitlab } : {}), ...(probe !== undefined ? { probe } : {}) };
}

type LatencyCheckInput = Parameters<typeof latencyTargets>[0] & {
    preflight: { maxLatencyMs?: number };
    nodes: Record<string, { maxLatencyMs?: number }>;
};

/** The endpoint of a URL; undefined for one that is not valid (its own check reports it). */
function urlEndpoint(url: string): Endpoint | undefined {
    try {
        return endpointOfUrl(url);
    } catch {
        return undefined;
    }
}

/** A latency gate needs something to measure. */
function checkLatencyGate(cfg: LatencyCheckInput, ctx: z.core.$RefinementCtx): void {
    if (Object.keys(latencyTargets(cfg)).length > 0) {
        return;
    }
    const message =
        "a latency threshold, but nothing to measure: set preflight.latency.gitlab or preflight.latency.probe (host:port), or gitops.gitlab.baseUrl";
    if (cfg.preflight.maxLatencyMs !== undefined) {
        ctx.addIssue({ code: "custom", path: ["preflight", "maxLatencyMs"], message });
    }
    for (const [name, node] of Object.entries(cfg.nodes)) {
        if (node.maxLatencyMs !== undefined) {
            ctx.addIssue({ code: "custom", path: ["nodes", name, "maxLatencyMs"], message });
        }
    }
}

export const configSchema = z
    .strictObject({
        nodes: z
            .record(z.string().regex(NODE_NAME), nodeSchema)
            .meta(
                doc({
                    allowed: "a map of node name to node settings, with 1, 3 or 5 control-plane nodes",
                    docEach: "<n>",
                    docType: "map: node name → node",
                    description: "Node names are lower-case DNS labels. 1, 3 or 5 `control-plane` nodes.",
                }),
            ),
        sshPrivateKey: z
            .string()
            .regex(PRIVATE_KEY)
            .meta(
                doc({
                    allowed: "an OpenSSH or PEM private key, set as a secret: pulumi config set --secret zerotouch:sshPrivateKey < ~/.ssh/zerotouch_ed25519",
                    secret: true,
                    description: "OpenSSH or PEM private key; must be set with `--secret`. Never printed.",
                }),
            ),
        vpnCidr: cidrSchema().meta(
            doc({
                allowed: "one CIDR block of the VPN's client range (e.g. 10.8.0.0/24), host bits zero, not 0.0.0.0/0 or ::/0",
                docType: "CIDR",
                description: "The VPN's client range: may reach the API server (6443) and SSH. Not `0.0.0.0/0` or `::/0`; host bits must be zero.",
            }),
        ),
        managementCidrs: z
            .array(cidrSchema().meta(doc({ allowed: "a CIDR block (e.g. 198.51.100.0/28), host bits zero, not 0.0.0.0/0 or ::/0" })))
            .min(1)
            .meta(
                doc({
                    allowed: "a non-empty list of CIDR blocks (e.g. 198.51.100.0/28), host bits zero, none of them 0.0.0.0/0 or ::/0",
                    docType: "list of CIDRs",
                    docDefault: "(required, ≥ 1)",
                    description: "May reach SSH (22). Same rules as `vpnCidr`.",
                }),
            ),
        fsyncGate: z
            .strictObject({
                thresholdMs: thresholdMs
                    .default(10)
                    .meta(
                        doc({
                            allowed: "a number of milliseconds greater than 0 and at most 1000, at most 6 decimals (default 10)",
                            docType: `${THRESHOLD_TYPE}, ≤ ${THRESHOLD_MS.decimals} decimals`,
                            description: "Largest accepted fio fdatasync p99.",
                        }),
                    ),
                runs: z.number().int().min(1).max(10).default(2).meta(
                    doc({
                        allowed: "an integer from 1 to 10 (default 2); the gate uses the worst run",
                        description: "fio runs per node; the worst p99 counts.",
                    }),
                ),
                maxSecondsPerRun: z
                    .number()
                    .int()
                    .min(10)
                    .max(1800)
                    .default(120)
                    .meta(
                        doc({
                            allowed: "a whole number of seconds from 10 to 1800 (default 120): a fio run stops writing after this long, which bounds the wait on a slow disk",
                            description:
                                "A fio run stops writing after this long (`--runtime`), which bounds the wait on a slow disk; by then it has thousands of samples.",
                        }),
                    ),
            })
            .prefault({})
            .meta(doc({ docRow: false, description: "fio fdatasync p99 gate on each node's etcd data path; the worst run counts." })),
        preflight: z
            .strictObject({
                allowedVirtualization: z
                    .array(z.enum(VIRTUALIZATION_TYPES).meta(doc({ allowed: `a systemd-detect-virt name: ${VIRTUALIZATION_TYPES.join(", ")}` })))
                    .min(1)
                    .default(["kvm"])
                    .meta(
                        doc({
                            allowed: `a non-empty list of systemd-detect-virt names (default [kvm]); known: ${VIRTUALIZATION_TYPES.join(", ")}`,
                            docType: "list of `systemd-detect-virt` names",
                            description: "",
                        }),
                    ),
                requireNvme: z
                    .boolean()
                    .default(true)
                    .meta(
                        doc({ allowed: "true or false (default true): whether a control-plane node's etcd data path must be on an NVMe disk", description: "A control-plane node's etcd disk must be NVMe (a rotational disk is always refused there)." }),
                    ),
                latency: latencySchema,
                maxLatencyMs: thresholdMs
                    .optional()
                    .meta(
                        doc({
                            allowed: "a number of milliseconds greater than 0 and at most 1000, at most 6 decimals: largest median TCP connect time a node may show to each latency target (none: figures reported, nothing refused)",
                            docType: THRESHOLD_TYPE,
                            docDefault: "(none: not gated)",
                            description:
                                "Largest accepted median TCP connect time from a node to each latency target; a node above it is refused at preflight. Needs a target (`preflight.latency.gitlab`, the GitLab host of `gitops`, or `preflight.latency.probe`).",
                        }),
                    ),
            })
            .prefault({})
            .meta(doc({ docRow: false, description: "what a node must be before anything is installed on it." })),
        firewall: firewallSchema,
        etcd: etcdSchema,
        kubernetes: kubernetesSchema,
        kubeconfig: z
            .string()
            .min(1)
            .optional()
            .meta(
                doc({
                    allowed: "a kubeconfig (YAML) set as a secret, required with kubernetes.mode existing: pulumi config set --secret zerotouch:kubeconfig < kubeconfig.yaml",
                    secret: true,
                    description: "Required with `kubernetes.mode: existing`, refused otherwise; must be set with `--secret`.",
                }),
            ),
        gitops: gitopsSchema,
        gitlabToken: z
            .string()
            .min(1)
            .optional()
            .meta(
                doc({
                    allowed: "a GitLab token with api scope, set as a secret, required with gitops.gitlab: pulumi config set --secret zerotouch:gitlabToken",
                    secret: true,
                    description:
                        "GitLab token (api scope, Maintainer on the projects) for the GitLab provider; required with `gitops.gitlab`, set with `--secret`.",
                }),
            ),
        argocdSsoClientSecret: z
            .string()
            .min(1)
            .optional()
            .meta(
                doc({
                    allowed: "the SSO client's secret, set as a secret, required with gitops.argocd.sso: pulumi config set --secret zerotouch:argocdSsoClientSecret",
                    secret: true,
                    description: "The SSO client's secret; required with `gitops.argocd.sso`, set with `--secret`.",
                }),
            ),
        etcdOffsiteSshKey: z
            .string()
            .regex(PRIVATE_KEY)
            .optional()
            .meta(
                doc({
                    allowed: "the SFTP user's OpenSSH or PEM private key (without passphrase), set as a secret, required with etcd.snapshots.offsite.type sftp: pulumi config set --secret zerotouch:etcdOffsiteSshKey < key",
                    secret: true,
                    description: "Required with `etcd.snapshots.offsite.type: sftp`, set with `--secret`; stored on the control-plane nodes as a 0600 file of root.",
                }),
            ),
        etcdOffsiteAccessKeyId: z
            .string()
            .regex(/^[!-~]{1,256}$/)
            .optional()
            .meta(
                doc({
                    allowed: "the S3 access key id, set as a secret, required with etcd.snapshots.offsite.type s3: pulumi config set --secret zerotouch:etcdOffsiteAccessKeyId",
                    secret: true,
                    docAlso: ["etcdOffsiteSecretAccessKey"],
                    description: "The S3 key pair, required with `etcd.snapshots.offsite.type: s3`, each set with `--secret`; stored on the control-plane nodes as 0600 files of root. Give it access to the bucket only.",
                }),
            ),
        etcdOffsiteSecretAccessKey: z
            .string()
            .regex(/^[!-~]{1,256}$/)
            .optional()
            .meta(
                doc({
                    allowed: "the S3 secret access key, set as a secret, required with etcd.snapshots.offsite.type s3: pulumi config set --secret zerotouch:etcdOffsiteSecretAccessKey",
                    secret: true,
                }),
            ),
        manifestsPassword: z
            .string()
            .min(1)
            .optional()
            .meta(
                doc({
                    allowed: "the manifests repository's read credential (a deploy token or password), set as a secret, required with gitops but without gitops.gitlab: pulumi config set --secret zerotouch:manifestsPassword",
                    secret: true,
                    description:
                        "The manifests repository's read credential; required with `gitops` without `gitops.gitlab`, set with `--secret`.",
                }),
            ),
    })
    .superRefine((cfg, ctx) => {
        const names = Object.keys(cfg.nodes);
        if (names.length === 0) {
            ctx.addIssue({ code: "custom", path: ["nodes"], message: "no nodes are configured" });
            return;
        }
        const byHost = new Map<string, string>();
        for (const name of names) {
            if (isIP(cfg.nodes[name].host) === 0) {
                continue; // reported by the host's own check
            }
            const mapped = ipv4Mapped(cfg.nodes[name].host);
            if (mapped !== undefined) {
                ctx.addIssue({
                    code: "custom",
                    path: ["nodes", name, "host"],
                    message: `an IPv4-mapped IPv6 address: the node is reached over IPv4, and firewall rules and etcd URLs must name it as such; write it as ${mapped}`,
                });
            }
            // Compared in canonical form, a mapped address as the IPv4 address it stands for.
            const host = hostCidr(mapped ?? cfg.nodes[name].host);
            const other = byHost.get(host);
            if (other !== undefined) {
                ctx.addIssue({
                    code: "custom",
                    path: ["nodes", name, "host"],
                    message: `duplicate host: node ${other} has the same host`,
                });
            } else {
                byHost.set(host, name);
            }
        }
        const controlPlanes = names.filter((n) => cfg.nodes[n].role === "control-plane");
        if (!(CONTROL_PLANE_COUNTS as readonly number[]).includes(controlPlanes.length)) {
            ctx.addIssue({
                code: "custom",
                path: ["nodes"],
                message: `${controlPlanes.length} control-plane nodes (${controlPlanes.join(", ") || "none"}); etcd needs 1, 3 or 5 for a quorum`,
            });
        }
        const bootstrap = cfg.etcd.bootstrapMember;
        if (bootstrap !== undefined && !controlPlanes.includes(bootstrap)) {
            ctx.addIssue({
                code: "custom",
                path: ["etcd", "bootstrapMember"],
                message: `not a control-plane node (control-plane nodes: ${controlPlanes.join(", ") || "none"})`,
            });
        }
        if (cfg.kubernetes.mode === "existing" && cfg.kubeconfig === undefined) {
            ctx.addIssue({ code: "custom", path: ["kubeconfig"], message: "kubernetes.mode is existing, which needs a kubeconfig" });
        }
        if (cfg.kubernetes.mode !== "existing" && cfg.kubeconfig !== undefined) {
            ctx.addIssue({ code: "custom", path: ["kubeconfig"], message: `kubernetes.mode is ${cfg.kubernetes.mode}, which takes no kubeconfig` });
        }
        checkGitops(cfg, ctx);
        checkLatencyGate(cfg, ctx);
        checkOffsite(cfg, ctx);
        const ruleNames = new Set<string>();
        cfg.firewall.extraRules.forEach((r, i) => {
            if (ruleNames.has(r.name)) {
                ctx.addIssue({ code: "custom", path: ["firewall", "extraRules", i, "name"], message: "listed twice" });
            }
            ruleNames.add(r.name);
        });
        const seen = new Map<string, number>();
        cfg.managementCidrs.forEach((c, i) => {
            const canonical = parseCidr(c);
            const key = canonical.ok ? canonical.cidr.text : c;
            const first = seen.get(key);
            if (first !== undefined) {
                ctx.addIssue({
                    code: "custom",
                    path: ["managementCidrs", i],
                    message: `duplicate CIDR: the same as managementCidrs[${first}]`,
                });
            } else {
                seen.set(key, i);
            }
        });
    });

/** The `allowed` text of a schema, on it or on the schema it wraps. */
function allowedText(schema: z.ZodType): string | undefined {
    return (z.globalRegistry.get(schema) as KeyDoc | undefined)?.allowed;
}

/** Key paths and what they allow: each schema's `allowed` text, and for an object without one, its keys. */
function allowedByPath(root: z.ZodType): Record<string, string> {
    const out: Record<string, string> = {};
    const visit = (schema: z.ZodType, path: string): void => {
        let s = schema;
        let text = allowedText(s);
        while (s instanceof z.ZodOptional || s instanceof z.ZodDefault || s instanceof z.ZodPrefault) {
            s = s.def.innerType as z.ZodType;
            text ??= allowedText(s);
        }
        const join = (key: string) => (path === "" ? key : `${path}.${key}`);
        if (s instanceof z.ZodObject) {
            const keys = Object.keys(s.shape);
            text ??= `the ${keys.length === 1 ? "key" : "keys"} ${keys.join(", ")}`;
        }
        if (text !== undefined && out[path] === undefined) {
            out[path] = text;
        }
        if (s instanceof z.ZodObject) {
            for (const key of Object.keys(s.shape)) {
                visit(s.shape[key] as z.ZodType, join(key));
            }
        } else if (s instanceof z.ZodRecord) {
            visit(s.def.valueType as z.ZodType, join("*"));
        } else if (s instanceof z.ZodArray) {
            visit(s.def.element as z.ZodType, join("*"));
        } else if (s instanceof z.ZodUnion) {
            for (const option of s.def.options as z.ZodType[]) {
                visit(option, path);
            }
        }
    };
    visit(root, "");
    return out;
}

/**
 * What each key allows, by key path (`*` stands for a node name, a map entry or a list item),
 * as every message says it: from the schema's `allowed` texts.
 */
export const ALLOWED: Readonly<Record<string, string>> = allowedByPath(configSchema);

export type PlatformConfig = z.output<typeof configSchema>;
export type NodeConfig = PlatformConfig["nodes"][string];
export type Location = NodeConfig["location"];

/**
 * A rejected configuration. `problems` holds one line per rejected key. A `RunError`, so Pulumi
 * prints the message alone, without a stack trace.
 */
export class ConfigError extends pulumi.RunError {
    constructor(readonly problems: readonly string[]) {
        super(
            `${PROJECT}: invalid stack configuration; nothing was created.\n` +
                problems.map((p) => `  - ${p}`).join("\n"),
        );
        this.name = "ConfigError";
    }
}

/** Keys whose values must never appear in a message: those the schema documents as secret. */
const SECRET_KEYS: ReadonlySet<string> = new Set(
    Object.entries(configSchema.shape)
        .filter(([, schema]) => (z.globalRegistry.get(schema) as KeyDoc | undefined)?.secret === true)
        .map(([key]) => key),
);
/** What a secret key must hold, for messages that never show the value. */
const SECRET_WHAT: Readonly<Record<string, string>> = {
    sshPrivateKey: "a private key",
    kubeconfig: "a kubeconfig",
    gitlabToken: "a GitLab token",
    argocdSsoClientSecret: "a client secret",
    manifestsPassword: "a credential",
    etcdOffsiteSshKey: "a private key",
    etcdOffsiteAccessKeyId: "an access key id",
    etcdOffsiteSecretAccessKey: "a secret access key",
};

function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
    let cur: unknown = root;
    for (const key of path) {
        if (cur === null || typeof cur !== "object") {
            return undefined;
        }
        cur = (cur as Record<PropertyKey, unknown>)[key];
    }
    return cur;
}

function describeValue(value: unknown): string {
    if (value === undefined) {
        return "nothing (missing)";
    }
    const text = JSON.stringify(value);
    return text.length > 120 ? `${text.slice(0, 117)}...` : text;
}

function keyText(path: readonly PropertyKey[]): string {
    const parts: string[] = [];
    for (const p of path) {
        if (typeof p === "number") {
            parts.push(`[${p}]`);
        } else {
            parts.push(`${parts.length > 0 ? "." : ""}${String(p)}`);
        }
    }
    return `${PROJECT}:${parts.join("")}`;
}

function allowedFor(path: readonly PropertyKey[]): string {
    const pattern = path
        .map((p, i) => {
            if ((path[0] === "nodes" && i === 1) || (path[0] === "gitops" && path[1] === "applications" && i === 2) || typeof p === "number") {
                return "*";
            }
            return String(p);
        })
        .join(".");
    return ALLOWED[pattern] ?? "see the configuration reference in README.md";
}

function nodeOf(path: readonly PropertyKey[]): string | undefined {
    return path[0] === "nodes" && typeof path[1] === "string" ? path[1] : undefined;
}

function describeIssue(issue: z.core.$ZodIssue, raw: unknown): string {
    const path = issue.path;
    const node = nodeOf(path);
    const where = node !== undefined ? ` (node ${node})` : "";
    if (issue.code === "unrecognized_keys") {
        return issue.keys
            .map((k) => {
                const keyPath = [...path, k];
                const given = SECRET_KEYS.has(k) ? "a value" : describeValue(valueAt(raw, keyPath));
                return `${keyText(keyPath)}${where}: unknown key (given ${given}); allowed: ${allowedFor(path)}`;
            })
            .join("\n  - ");
    }
    const secret = path.some((p) => typeof p === "string" && SECRET_KEYS.has(p));
    const value = valueAt(raw, path);
    let given = secret ? (value === undefined ? "nothing (missing)" : `a value that is not ${SECRET_WHAT[String(path[0])] ?? "a secret"} (not shown)`) : describeValue(value);
    if (issue.code === "invalid_key") {
        given = describeValue(path[path.length - 1]);
        return `${keyText(path)}: invalid node name ${given}; allowed: ${allowedFor(path)}`;
    }
    if (value === false && path[path.length - 1] === "country") {
        given += " (an unquoted NO is read as false by YAML 1.1 tools; quote the code)";
    }
    const detail = issue.code === "custom" && issue.message !== "Invalid input" ? `${issue.message}; ` : "";
    return `${keyText(path)}${where}: ${detail}given ${given}; allowed: ${allowedFor(path)}`;
}

/**
 * Validates raw configuration (the `zerotouch:` keys without their namespace).
 * `secretKeys` lists the keys that were set as secrets.
 */
export function validateConfig(raw: Record<string, unknown>, secretKeys: ReadonlySet<string>): PlatformConfig {
    const problems: string[] = [];
    for (const key of SECRET_KEYS) {
        if (raw[key] !== undefined && !secretKeys.has(key)) {
            problems.push(`${keyText([key])}: given as plain text (not shown); allowed: ${ALLOWED[key]}`);
        }
    }
    const result = configSchema.safeParse(raw);
    if (!result.success) {
        problems.push(...result.error.issues.map((i) => describeIssue(i, raw)));
    }
    if (problems.length > 0 || !result.success) {
        throw new ConfigError(problems);
    }
    return result.data;
}

function decodeConfigValue(value: string): unknown {
    try {
        return JSON.parse(value) as unknown;
    } catch {
        return value;
    }
}

/**
 * Collects this project's keys from a flat Pulumi config map (`zerotouch:nodes` → `nodes`).
 * Pulumi hands structured values over as JSON text.
 */
export function projectConfig(all: Readonly<Record<string, string>>): Record<string, unknown> {
    const raw: Record<string, unknown> = {};
    const prefix = `${PROJECT}:`;
    for (const [key, value] of Object.entries(all)) {
        if (key.startsWith(prefix)) {
            raw[key.slice(prefix.length)] = decodeConfigValue(value);
        }
    }
    return raw;
}

/**
 * The config keys Pulumi marks as secret, without namespace. Uses the SDK's own record of them
 * (the engine passes it to the program next to the config); `env` is the fallback.
 */
export function secretConfigKeys(env: NodeJS.ProcessEnv = process.env): Set<string> {
    const sdk = (pulumi.runtime as unknown as { isConfigSecret?: (key: string) => boolean }).isConfigSecret;
    const fromEnv = new Set<string>(env.PULUMI_CONFIG_SECRET_KEYS ? (JSON.parse(env.PULUMI_CONFIG_SECRET_KEYS) as string[]) : []);
    const keys = Object.keys(pulumi.runtime.allConfig());
    const secret = [...fromEnv, ...keys.filter((k) => sdk?.(k) ?? false)];
    return new Set(secret.filter((k) => k.startsWith(`${PROJECT}:`)).map((k) => k.slice(PROJECT.length + 1)));
}

/**
 * Reads a `Pulumi.<stack>.yaml` file's text into raw project config. Duplicate keys (such as
 * a node listed twice) are rejected here, since a map cannot hold them. `secure:` values cannot
 * be decrypted without the stack's secrets provider: they count as secrets, and their plain
 * value is taken from `secrets` (e.g. the lab's own key) or left out.
 */
export function parseStackFile(
    text: string,
    secrets: Readonly<Record<string, string>> = {},
): { raw: Record<string, unknown>; secretKeys: Set<string> } {
    let doc: unknown;
    try {
        doc = parseYaml(text, { uniqueKeys: true });
    } catch (err) {
        const message = err instanceof Error ? err.message.split("\n")[0] : String(err);
        const dup = /Map keys must be unique/.test(message);
        throw new ConfigError([
            dup
                ? `${PROJECT}: a key is listed twice, such as a node name (${message}); allowed: each key and each node name once`
                : `stack file: not valid YAML (${message})`,
        ]);
    }
    const config = (doc as { config?: Record<string, unknown> } | null)?.config ?? {};
    const flat: Record<string, string> = {};
    const secretKeys = new Set<string>();
    const prefix = `${PROJECT}:`;
    for (const [key, value] of Object.entries(config)) {
        const name = key.startsWith(prefix) ? key.slice(prefix.length) : key;
        if (value !== null && typeof value === "object" && "secure" in value) {
            secretKeys.add(name);
            if (secrets[name] !== undefined) {
                flat[key] = secrets[name];
            }
            continue;
        }
        flat[key] = typeof value === "string" ? value : JSON.stringify(value);
    }
    for (const [name, value] of Object.entries(secrets)) {
        if (flat[`${prefix}${name}`] === undefined) {
            flat[`${prefix}${name}`] = value;
            secretKeys.add(name);
        }
    }
    return { raw: projectConfig(flat), secretKeys };
}
