/**
 * A Kubernetes control plane's own PKI and flags, as the test API servers run it (on loopback in
 * `cluster.ts`, on lab nodes in `test/lab/kubeApi.ts`): one CA for the API server's serving
 * certificate and the admin's client certificate, a service-account key pair, and the flags of
 * kube-apiserver and kube-controller-manager on etcd over TLS with a client certificate, as k3s
 * runs them on zerotouch's etcd. Made with openssl; ECDSA P-256 except the RSA service-account key.
 */
import { execFileSync } from "child_process";
import { mkdirSync, readFileSync, writeFileSync } from "fs";
import * as path from "path";

/** The Service range k3s uses by default; the API server takes its first address. */
export const SERVICE_CIDR = "10.43.0.0/16";
const SERVICE_IP = "10.43.0.1";

export interface KubePki {
    readonly dir: string;
    readonly ca: string;
    readonly apiserverCert: string;
    readonly apiserverKey: string;
    readonly adminCert: string;
    readonly adminKey: string;
    readonly saKey: string;
    readonly saPub: string;
}

function openssl(args: string[]): void {
    execFileSync("openssl", args, { timeout: 15000, stdio: ["ignore", "pipe", "pipe"] });
}

/** Makes the PKI in `dir`; the serving certificate names `ips` (and loopback, the Service address, the Service names). */
export function makeKubePki(dir: string, ips: readonly string[]): KubePki {
    mkdirSync(dir, { recursive: true });
    const f = (n: string) => path.join(dir, n);
    openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f("ca.key")]);
    openssl(["req", "-x509", "-new", "-key", f("ca.key"), "-subj", "/CN=zt-test-cluster-ca", "-days", "2", "-out", f("ca.crt")]);
    const issue = (name: string, subject: string, ext: string) => {
        writeFileSync(f(`${name}.ext`), ext);
        openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", f(`${name}.key`)]);
        openssl(["req", "-new", "-key", f(`${name}.key`), "-subj", subject, "-out", f(`${name}.csr`)]);
        openssl(["x509", "-req", "-in", f(`${name}.csr`), "-CA", f("ca.crt"), "-CAkey", f("ca.key"), "-CAcreateserial", "-days", "2", "-extfile", f(`${name}.ext`), "-out", f(`${name}.crt`)]);
    };
    const sans = [...new Set(["127.0.0.1", SERVICE_IP, ...ips])].map((ip) => `IP:${ip}`);
    const names = ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"].map((d) => `DNS:${d}`);
    issue("apiserver", "/CN=kube-apiserver", `subjectAltName=${[...sans, ...names].join(",")}\nextendedKeyUsage=serverAuth\n`);
    issue("admin", "/O=system:masters/CN=zt-admin", "extendedKeyUsage=clientAuth\n");
    openssl(["genrsa", "-out", f("sa.key"), "2048"]);
    openssl(["rsa", "-in", f("sa.key"), "-pubout", "-out", f("sa.pub")]);
    return {
        dir,
        ca: f("ca.crt"),
        apiserverCert: f("apiserver.crt"),
        apiserverKey: f("apiserver.key"),
        adminCert: f("admin.crt"),
        adminKey: f("admin.key"),
        saKey: f("sa.key"),
        saPub: f("sa.pub"),
    };
}

/** An admin kubeconfig with the certificates inline, so that it stands alone (e.g. as `zerotouch:kubeconfig`). */
export function adminKubeconfig(pki: KubePki, server: string, name = "zt-test"): string {
    const b64 = (file: string) => readFileSync(file).toString("base64");
    return [
        "apiVersion: v1",
        "kind: Config",
        "clusters:",
        `- name: ${name}\n  cluster:\n    server: ${server}\n    certificate-authority-data: ${b64(pki.ca)}`,
        "users:",
        `- name: zt-admin\n  user:\n    client-certificate-data: ${b64(pki.adminCert)}\n    client-key-data: ${b64(pki.adminKey)}`,
        "contexts:",
        `- name: ${name}\n  context:\n    cluster: ${name}\n    user: zt-admin`,
        `current-context: ${name}`,
        "",
    ].join("\n");
}

/** Where the API server finds its files (paths on the machine it runs on). */
export interface ApiServerFiles {
    readonly ca: string;
    readonly cert: string;
    readonly key: string;
    readonly saKey: string;
    readonly saPub: string;
    readonly etcdCa: string;
    readonly etcdCert: string;
    readonly etcdKey: string;
}

/** kube-apiserver's flags: RBAC, client certificates, etcd over TLS with its client certificate. */
export function apiServerArgs(o: { etcdServers: readonly string[]; files: ApiServerFiles; bindAddress: string; port: number; advertiseAddress?: string }): string[] {
    return [
        `--etcd-servers=${o.etcdServers.join(",")}`,
        `--etcd-cafile=${o.files.etcdCa}`,
        `--etcd-certfile=${o.files.etcdCert}`,
        `--etcd-keyfile=${o.files.etcdKey}`,
        `--bind-address=${o.bindAddress}`,
        ...(o.advertiseAddress === undefined ? [] : [`--advertise-address=${o.advertiseAddress}`]),
        `--secure-port=${o.port}`,
        `--tls-cert-file=${o.files.cert}`,
        `--tls-private-key-file=${o.files.key}`,
        `--client-ca-file=${o.files.ca}`,
        "--authorization-mode=Node,RBAC",
        "--service-account-issuer=https://kubernetes.default.svc",
        `--service-account-key-file=${o.files.saPub}`,
        `--service-account-signing-key-file=${o.files.saKey}`,
        `--service-cluster-ip-range=${SERVICE_CIDR}`,
    ];
}

/**
 * kube-controller-manager's flags. Without it nothing removes namespaces' finalizers or collects
 * garbage, so a namespace delete (and a destroy) would hang.
 */
export function controllerManagerArgs(o: { kubeconfig: string; files: Pick<ApiServerFiles, "ca" | "saKey">; bindAddress: string; port: number; leaderElect: boolean }): string[] {
    return [
        `--kubeconfig=${o.kubeconfig}`,
        `--authentication-kubeconfig=${o.kubeconfig}`,
        `--authorization-kubeconfig=${o.kubeconfig}`,
        `--bind-address=${o.bindAddress}`,
        `--secure-port=${o.port}`,
        `--leader-elect=${o.leaderElect}`,
        `--service-account-private-key-file=${o.files.saKey}`,
        `--root-ca-file=${o.files.ca}`,
        "--use-service-account-credentials=false",
    ];
}
