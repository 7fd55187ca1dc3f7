import { execFileSync } from "child_process";
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "fs";
import * as path from "path";

import type { EtcdMemberPem } from "../../components/etcd/member";
import { CA_USES, CLIENT_USES, memberSans, PEER_USES, SERVER_USES } from "../../components/etcd/pki";

/**
 * Certificates of the shape `EtcdPki` issues (ECDSA P-256, same subjects, SANs and usages), made
 * with openssl, for tests that run the member scripts without the Pulumi engine.
 */

const KEY_USAGE: Record<string, string> = {
    digital_signature: "digitalSignature",
    key_encipherment: "keyEncipherment",
    cert_signing: "keyCertSign",
    crl_signing: "cRLSign",
};
const EXT_KEY_USAGE: Record<string, string> = { server_auth: "serverAuth", client_auth: "clientAuth" };

/** The openssl extension file for a certificate with the PKI component's `uses`, CA flag and SANs. */
export function extensions(uses: readonly string[], ca: boolean, sans?: { dnsNames: string[]; ipAddresses: string[] }): string {
    const ku = uses.filter((u) => KEY_USAGE[u]).map((u) => KEY_USAGE[u]);
    const eku = uses.filter((u) => EXT_KEY_USAGE[u]).map((u) => EXT_KEY_USAGE[u]);
    if (ku.length + eku.length !== uses.length) {
        throw new Error(`unmapped key usage in ${uses.join(", ")}`);
    }
    const lines = [`basicConstraints=critical,CA:${ca ? "TRUE" : "FALSE"}`, `keyUsage=critical,${ku.join(",")}`];
    if (eku.length > 0) {
        lines.push(`extendedKeyUsage=${eku.join(",")}`);
    }
    if (sans) {
        lines.push(`subjectAltName=${[...sans.dnsNames.map((d) => `DNS:${d}`), ...sans.ipAddresses.map((i) => `IP:${i}`)].join(",")}`);
    }
    return `${lines.join("\n")}\n`;
}

function openssl(args: string[]): void {
    execFileSync("openssl", args, { timeout: 15000, stdio: ["ignore", "pipe", "pipe"] });
}

interface Pair {
    cert: string;
    key: string;
}

function read(pair: Pair): { cert: string; key: string } {
    return { cert: readFileSync(pair.cert, "utf8"), key: readFileSync(pair.key, "utf8") };
}

/** Makes a CA, per member a server and a peer certificate, and the `backup` client certificate, in `dir`. */
export function makeEtcdPem(
    dir: string,
    members: readonly { name: string; address: string }[],
): { pem: Record<string, EtcdMemberPem>; caCert: string; clients: Record<string, { cert: string; key: string }> } {
    mkdirSync(dir, { recursive: true });
    const ca: Pair = { cert: path.join(dir, "ca.crt"), key: path.join(dir, "ca.key") };
    writeFileSync(`${ca.cert}.ext`, extensions(CA_USES, true));
    openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", ca.key]);
    openssl(["req", "-new", "-key", ca.key, "-subj", "/O=zerotouch/CN=etcd-ca", "-out", `${ca.key}.csr`]);
    openssl(["x509", "-req", "-in", `${ca.key}.csr`, "-signkey", ca.key, "-days", "2", "-extfile", `${ca.cert}.ext`, "-out", ca.cert]);
    let serial = Date.now();
    const issue = (file: string, cn: string, uses: readonly string[], sans?: { dnsNames: string[]; ipAddresses: string[] }) => {
        const pair: Pair = { cert: path.join(dir, `${file}.crt`), key: path.join(dir, `${file}.key`) };
        writeFileSync(`${pair.cert}.ext`, extensions(uses, false, sans));
        openssl(["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", pair.key]);
        // PKCS#8, as @pulumi/tls writes ECDSA keys ("BEGIN PRIVATE KEY").
        openssl(["pkcs8", "-topk8", "-nocrypt", "-in", pair.key, "-out", `${pair.key}.p8`]);
        openssl(["req", "-new", "-key", pair.key, "-subj", `/O=zerotouch/CN=${cn}`, "-out", `${pair.cert}.csr`]);
        serial += 1;
        openssl(["x509", "-req", "-in", `${pair.cert}.csr`, "-CA", ca.cert, "-CAkey", ca.key, "-set_serial", String(serial), "-days", "2", "-extfile", `${pair.cert}.ext`, "-out", pair.cert]);
        return read({ cert: pair.cert, key: `${pair.key}.p8` });
    };
    const clients = { backup: issue("backup-client", "backup", CLIENT_USES), "kube-apiserver": issue("kube-apiserver-client", "kube-apiserver", CLIENT_USES) };
    const caCert = readFileSync(ca.cert, "utf8");
    const pem: Record<string, EtcdMemberPem> = {};
    for (const m of members) {
        const sans = memberSans({ name: m.name, addresses: [m.address] });
        const server = issue(`${m.name}-server`, m.name, SERVER_USES, sans);
        const peer = issue(`${m.name}-peer`, m.name, PEER_USES, sans);
        pem[m.name] = {
            caCert,
            serverCert: server.cert,
            serverKey: server.key,
            peerCert: peer.cert,
            peerKey: peer.key,
            clientCert: clients.backup.cert,
            clientKey: clients.backup.key,
        };
    }
    return { pem, caCert, clients };
}

/**
 * Like `makeEtcdPem`, but keeps the PKI in `dir` across runs (as Pulumi's state keeps the
 * certificates): an existing CA and the certificates of members it already has are reused, so a
 * second run finds nothing changed. Anything incomplete is made anew.
 */
export function loadOrMakeEtcdPem(dir: string, members: readonly { name: string; address: string }[]): ReturnType<typeof makeEtcdPem> {
    const files = ["ca.crt", "backup-client.crt", "backup-client.key.p8", "kube-apiserver-client.crt", "kube-apiserver-client.key.p8"];
    for (const m of members) {
        files.push(`${m.name}-server.crt`, `${m.name}-server.key.p8`, `${m.name}-peer.crt`, `${m.name}-peer.key.p8`);
    }
    const record = path.join(dir, "members.json");
    const wanted = JSON.stringify(members.map((m) => [m.name, m.address]));
    const complete = files.every((f) => existsSync(path.join(dir, f))) && existsSync(record) && readFileSync(record, "utf8") === wanted;
    if (!complete) {
        rmSync(dir, { recursive: true, force: true });
        const made = makeEtcdPem(dir, members);
        writeFileSync(record, wanted);
        return made;
    }
    const read = (f: string) => readFileSync(path.join(dir, f), "utf8");
    const caCert = read("ca.crt");
    const clients = {
        backup: { cert: read("backup-client.crt"), key: read("backup-client.key.p8") },
        "kube-apiserver": { cert: read("kube-apiserver-client.crt"), key: read("kube-apiserver-client.key.p8") },
    };
    const pem: Record<string, EtcdMemberPem> = {};
    for (const m of members) {
        pem[m.name] = {
            caCert,
            serverCert: read(`${m.name}-server.crt`),
            serverKey: read(`${m.name}-server.key.p8`),
            peerCert: read(`${m.name}-peer.crt`),
            peerKey: read(`${m.name}-peer.key.p8`),
            clientCert: clients.backup.cert,
            clientKey: clients.backup.key,
        };
    }
    return { pem, caCert, clients };
}
