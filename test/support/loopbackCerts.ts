import { spawnSync } from "child_process";
import * as fs from "fs";

/**
 * Makes in `pki` with openssl a CA (ca.crt), a server certificate for 127.0.0.1 that also
 * authenticates clients (server.crt, as components/etcd/pki.ts issues it) and one client
 * certificate `<client.file>.crt` with the common name `client.cn`.
 */
export function makeLoopbackCertificates(pki: string, client: { file: string; cn: string }): void {
    fs.mkdirSync(pki, { recursive: true });
    const script = `set -euo pipefail
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
key ca.key
openssl req -x509 -new -key ca.key -out ca.crt -days 1 -subj /CN=zt-test-ca \\
  -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
sign() {
  key "$1.key"
  openssl req -new -key "$1.key" -out "$1.csr" -subj "/CN=$2"
  printf '%s\\n' "$3" >"$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -set_serial "$4" -days 1 -out "$1.crt" -extfile "$1.ext" 2>/dev/null
}
sign server 127.0.0.1 'subjectAltName=IP:127.0.0.1
extendedKeyUsage=serverAuth,clientAuth' 2
sign "$ZT_CLIENT_FILE" "$ZT_CLIENT_CN" 'extendedKeyUsage=clientAuth' 3
`;
    const env = { ...process.env, ZT_CLIENT_FILE: client.file, ZT_CLIENT_CN: client.cn };
    const r = spawnSync("bash", ["-c", script], { cwd: pki, env, encoding: "utf8", timeout: 30_000 });
    if (r.status !== 0) {
        throw new Error(`openssl failed: ${r.stderr}`);
    }
}
