import * as path from "path";
import { z } from "zod";

import { COMMON_LIB, NodeStep } from "../lib/nodeScript";
import { parseResultLine } from "../lib/result";
import { ScriptParams } from "../lib/script";
import { ETCD_BINARY, EtcdSource } from "./render";
import { DNS_LABEL } from "../lib/names";
import { stepArgChecks } from "../lib/stepArgs";

/** The install script; also run as is by the tests. */
export const ETCD_INSTALL_SCRIPT = path.join(__dirname, "scripts", "etcd-install.sh");

/** Architectures etcd publishes Linux release tarballs for that zerotouch installs. */
export type EtcdArch = "amd64" | "arm64";
export const ETCD_ARCHES: readonly EtcdArch[] = ["amd64", "arm64"];

/**
 * sha256 of the official release tarballs `etcd-v<version>-linux-<arch>.tar.gz`, by version.
 * Each figure was found in at least two independent public pins of the same file:
 *   3.5.21  kubernetes-sigs/kubespray roles/kubespray_defaults/vars/main/checksums.yml
 *           (etcd_binary_checksums, commit 005bdce7f1867958838a2d0bb4f7e67893d98f64); amd64 also
 *           in Chromebrew's etcd package and other pins of the GitHub URL, arm64 also in a Go
 *           table pinning both tarballs of v3.5.21.
 *   3.5.12  kubespray's checksums.yml (above, and roles/kubespray-defaults/defaults/main/checksums.yml
 *           at 011b76d5c5c190101fffe57bfbd5e9346e62c0a5); KubeStellar's integration test script.
 *   3.4.13  kubernetes/kubernetes build/workspace.bzl (_ETCD_TARBALL_ARCH_SHA256, commit
 *           00a07cfd86ad9e13aa9ba84b9922a95249f699a9); kubesphere/kubekey pkg/files/file.go.
 * To pin another release, add its two checksums here from etcd's release page (SHA256SUMS),
 * or pass them as `sha256` for one deployment.
 */
export const ETCD_RELEASES: Readonly<Record<string, Readonly<Record<EtcdArch, string>>>> = {
    "3.5.21": {
        amd64: "adddda4b06718e68671ffabff2f8cee48488ba61ad82900e639d108f2148501c",
        arm64: "95bf6918623a097c0385b96f139d90248614485e781ec9bee4768dbb6c79c53f",
    },
    "3.5.12": {
        amd64: "f2ff0cb43ce119f55a85012255609b61c64263baea83aa7c8e6846c0938adca5",
        arm64: "31f30c01918771ece28d6e553e0f33be9483ced989896ecf6bbe1edb07786141",
    },
    "3.4.13": {
        amd64: "2ac029e47bab752dacdb7b30032f230f49e2f457cbc32e8f555c2210bb5ff107",
        arm64: "1934ebb9f9f6501f706111b78e5e321a7ff8d7792d3d96a76e2d01874e42a300",
    },
};

/** The release installed unless another is chosen (the etcd kubeadm defaults to for Kubernetes 1.33). */
export const DEFAULT_ETCD_VERSION = "3.5.21";
/** Where etcd's release tarballs are published: `<base>/v<version>/etcd-v<version>-linux-<arch>.tar.gz`. */
export const DEFAULT_ETCD_BASE_URL = "https://github.com/etcd-io/etcd/releases/download";
/** The system user (and group) etcd runs as. */
export const DEFAULT_ETCD_USER = "etcd";
/** Where a release's binaries go: the directory of the binary the unit runs. */
export const DEFAULT_ETCD_BIN_DIR = path.posix.dirname(ETCD_BINARY.release);

const NODE_NAME = DNS_LABEL;
const NUMBER = "(0|[1-9][0-9]{0,3})";
const RELEASE_VERSION = new RegExp(`^${NUMBER}\\.${NUMBER}\\.${NUMBER}$`);
const MINOR_VERSION = new RegExp(`^${NUMBER}\\.${NUMBER}(\\.${NUMBER})?$`);
const SHA256 = /^[0-9a-fA-F]{64}$/;
const BASE_URL = /^(https|file):\/\/[^\s"'\\]+$/;
const USER = /^[a-z_][a-z0-9_-]{0,31}$/;
/** The directory goes into a command line and a unit file: plain characters only. */
const SAFE_PATH = /^\/[A-Za-z0-9._/-]*$/;

/**
 * The URL of a release tarball. A mirror given as `baseUrl` must use etcd's layout; a trailing
 * `/` is ignored.
 */
export function etcdReleaseUrl(version: string, arch: EtcdArch, baseUrl: string = DEFAULT_ETCD_BASE_URL): string {
    if (!RELEASE_VERSION.test(version)) {
        throw new Error(`etcd release URL: version ${JSON.stringify(version)} is not a release version such as 3.5.21`);
    }
    if (!ETCD_ARCHES.includes(arch)) {
        throw new Error(`etcd release URL: arch ${JSON.stringify(arch)} is not one of ${ETCD_ARCHES.join(", ")}`);
    }
    return `${baseUrl.replace(/\/+$/, "")}/v${version}/etcd-v${version}-linux-${arch}.tar.gz`;
}

/** What decides one install: plain values, so the step is pure data. */
export interface EtcdInstallArgs {
    /** Node name (a DNS label); named in the result and the messages. */
    readonly node: string;
    /** `release`: the pinned upstream tarball. `preinstalled`: the distribution's package, on PATH. */
    readonly source: EtcdSource;
    /**
     * release: the exact version, e.g. 3.5.21 (see DEFAULT_ETCD_VERSION). preinstalled: the
     * major.minor the package must have (3.4 or 3.4.23; distributions patch theirs).
     */
    readonly version: string;
    /** release only: a mirror with etcd's layout (https:// or file://). Defaults to DEFAULT_ETCD_BASE_URL. */
    readonly baseUrl?: string;
    /** release only: tarball checksums by architecture; they win over ETCD_RELEASES (for versions not in it). */
    readonly sha256?: Partial<Record<EtcdArch, string>>;
    /** The system user and group etcd runs as; created when missing. Defaults to etcd. */
    readonly user?: string;
    /** release only: where the binaries go. Defaults to DEFAULT_ETCD_BIN_DIR (/usr/local/bin). */
    readonly binDir?: string;
}

const { invalid, checkNode } = stepArgChecks("etcd install");

/**
 * The install as steps (one step, `install`). Pure: a component and a lab runner both use it.
 * Throws on a value the script would refuse, naming the node, the key, the value and what is
 * allowed. It runs again when the version, a checksum, a URL, the user or the directory change.
 */
export function etcdInstallSteps(args: EtcdInstallArgs): NodeStep[] {
    const { node } = args;
    checkNode(node);
    const user = args.user ?? DEFAULT_ETCD_USER;
    if (!USER.test(user) || user === "root") {
        throw invalid(node, "user", user, "allowed: an unprivileged Unix user name (not root)");
    }
    const source: string = args.source;
    const base: ScriptParams = { ZT_NODE: node, ZT_SOURCE: source, ZT_VERSION: args.version, ZT_USER: user };
    let params: ScriptParams;
    if (source === "preinstalled") {
        if (!MINOR_VERSION.test(args.version)) {
            throw invalid(node, "version", args.version, "allowed: the major.minor a preinstalled etcd must have, such as 3.4 or 3.4.23");
        }
        for (const [key, value] of [["baseUrl", args.baseUrl], ["sha256", args.sha256], ["binDir", args.binDir]] as const) {
            if (value !== undefined) {
                throw invalid(node, key, value, "allowed: only with source release (a preinstalled etcd is found on PATH)");
            }
        }
        params = base;
    } else if (source === "release") {
        params = { ...base, ...releaseParams(node, args) };
    } else {
        throw invalid(node, "source", source, "allowed: release or preinstalled");
    }
    return [{ name: "install", script: ETCD_INSTALL_SCRIPT, params, hasDelete: false, sensitive: false, libraries: [COMMON_LIB] }];
}

function releaseParams(node: string, args: EtcdInstallArgs): ScriptParams {
    const { version } = args;
    if (!RELEASE_VERSION.test(version)) {
        throw invalid(node, "version", version, "allowed: a release version such as 3.5.21");
    }
    const baseUrl = args.baseUrl ?? DEFAULT_ETCD_BASE_URL;
    if (!BASE_URL.test(baseUrl)) {
        throw invalid(node, "baseUrl", baseUrl, "allowed: an https:// or file:// URL (plain http is refused), without blanks or quotes");
    }
    const sums: Partial<Record<EtcdArch, string>> = Object.hasOwn(ETCD_RELEASES, version) ? { ...ETCD_RELEASES[version] } : {};
    for (const [arch, sum] of Object.entries(args.sha256 ?? {})) {
        if (!(ETCD_ARCHES as readonly string[]).includes(arch)) {
            throw invalid(node, "sha256", args.sha256, `allowed: checksums keyed by ${ETCD_ARCHES.join(" or ")}, got key ${JSON.stringify(arch)}`);
        }
        if (typeof sum !== "string" || !SHA256.test(sum)) {
            throw invalid(node, `sha256.${arch}`, sum, "allowed: a sha256 of 64 hex digits");
        }
        sums[arch as EtcdArch] = sum.toLowerCase();
    }
    const arches = ETCD_ARCHES.filter((arch) => sums[arch] !== undefined);
    if (arches.length === 0) {
        throw invalid(
            node,
            "version",
            version,
            `allowed: a pinned release (${Object.keys(ETCD_RELEASES).join(", ")}), or another one with its tarballs' checksums in sha256.amd64 / sha256.arm64`,
        );
    }
    const binDir = args.binDir ?? DEFAULT_ETCD_BIN_DIR;
    if (!SAFE_PATH.test(binDir) || binDir === "/" || path.posix.normalize(binDir) !== binDir || binDir.endsWith("/")) {
        throw invalid(node, "binDir", binDir, "allowed: a normalized absolute path other than / (letters, digits, '.', '_', '-', '/')");
    }
    const params: Record<string, string> = { ZT_BIN_DIR: binDir };
    for (const arch of arches) {
        params[`ZT_URL_${arch.toUpperCase()}`] = etcdReleaseUrl(version, arch, baseUrl);
        params[`ZT_SHA256_${arch.toUpperCase()}`] = sums[arch] as string;
    }
    return params;
}

const absolutePath = z.string().regex(/^\/[^\s"\\]*$/);

const resultSchema = z.strictObject({
    node: z.string().regex(NODE_NAME),
    source: z.enum(["release", "preinstalled"]),
    version: z.string().regex(RELEASE_VERSION),
    arch: z.string().min(1),
    user: z.string().regex(USER),
    etcd: absolutePath,
    etcdctl: absolutePath,
    etcdutl: absolutePath.optional(),
    sha256: z.string().regex(/^[0-9a-f]{64}$/).optional(),
    changed: z.boolean(),
});

/** What the install did, from the script's result line. */
export interface EtcdInstallResult {
    readonly node: string;
    readonly source: EtcdSource;
    /** The exact version etcd reports (for a preinstalled etcd, the distribution's patch level). */
    readonly version: string;
    /** The node's architecture, in etcd's release names where it has one (amd64, arm64). */
    readonly arch: string;
    /** The system user etcd runs as. */
    readonly user: string;
    /** Paths of the binaries on the node. */
    readonly etcd: string;
    readonly etcdctl: string;
    /** When the release or package ships it (etcd 3.5 and later). */
    readonly etcdutl?: string;
    /** release: the sha256 of the tarball the binaries came from. */
    readonly sha256?: string;
    /** Whether anything was installed or created. */
    readonly changed: boolean;
}

/** Parses the install script's stdout (its last line is the JSON result). */
export function parseEtcdInstallResult(stdout: string): EtcdInstallResult {
    const r = parseResultLine(resultSchema, stdout, "etcd install");
    if ((r.source === "release") !== (r.sha256 !== undefined)) {
        throw new Error(`etcd install on node ${r.node}: a ${r.source} result must ${r.source === "release" ? "" : "not "}carry the tarball's sha256`);
    }
    return r;
}
