import { readFileSync } from "fs";
import * as path from "path";

import { parseStackFile, projectConfig, secretConfigKeys, validateConfig } from "../infra/config";
import { location, problemsOf, TEST_KEY, TEST_SECRET_KEYS, validRawConfig } from "./support/config";
import { ETCD_DEFAULTS } from "./support/etcdDefaults";

const SECRET = TEST_SECRET_KEYS;

/** A valid config: 3 control-plane nodes and 2 workers. Each case changes one thing. */
function valid(): Record<string, any> {
    return validRawConfig(2);
}


describe("validateConfig accepts", () => {
    test("a valid config and applies each default once", () => {
        const cfg = validateConfig(valid(), SECRET);
        expect(cfg.fsyncGate).toEqual({ thresholdMs: 10, runs: 2, maxSecondsPerRun: 120 });
        expect(cfg.preflight).toEqual({ allowedVirtualization: ["kvm"], requireNvme: true, latency: { tries: 5, timeoutMs: 2000 } });
        expect(cfg.nodes["cp-1"]).toMatchObject({ sshPort: 22, sshUser: "root", etcdDataPath: "/var/lib/etcd" });
        expect(cfg.nodes["cp-1"].sshHostKey).toBeUndefined();
        expect(cfg.etcd).toEqual(ETCD_DEFAULTS);
        expect(cfg.kubernetes).toEqual({ mode: "k3s", k3s: { source: "release" } });
        expect(cfg.kubeconfig).toBeUndefined();
    });

    test("a GitOps layer with its defaults", () => {
        const raw = { ...valid(), gitops: gitops(), gitlabToken: "glpat-0123456789" };
        const cfg = validateConfig(raw, new Set([...SECRET, "gitlabToken"]));
        expect(cfg.gitops).toMatchObject({
            argocd: { namespace: "argocd", reconciliationSeconds: 180, values: {} },
            accessTokenExpiryDays: 180,
            rotateBeforeDays: 30,
            applications: { "api-prod": { targetRevision: "main" } },
        });
    });

    test("single sign-on with a break-glass group, and a chart mirror", () => {
        const raw = {
            ...valid(),
            gitops: gitops({
                argocd: {
                    hostname: "argocd.vpn.example.net",
                    webhookHostname: "argocd-hooks.example.net",
                    sso: { provider: "gitlab", clientId: "argocd-osl" },
                    breakGlassGroup: "platform/argocd-admins",
                    chart: { repo: "oci://registry.example.eu/charts" },
                },
            }),
            gitlabToken: "glpat-0123456789",
            argocdSsoClientSecret: "gloas-0123456789",
        };
        const cfg = validateConfig(raw, new Set([...SECRET, "argocdSsoClientSecret"]));
        expect(cfg.gitops?.argocd).toMatchObject({ sso: { provider: "gitlab", clientId: "argocd-osl", groupsClaim: "groups" }, chart: { repo: "oci://registry.example.eu/charts" } });
    });

    test("GitOps without GitLab wiring: the repository's URL and a read credential", () => {
        const raw = {
            ...valid(),
            gitops: {
                argocd: { hostname: "argocd.vpn.example.net", webhookHostname: "argocd-hooks.example.net", chart: { path: "/srv/charts/argo-cd-10.1.1.tgz" } },
                manifests: { url: "https://git.example.eu/platform/manifests.git", username: "argocd-reader" },
                applications: { "api-prod": { environment: "prod", path: "apps/api", namespace: "api" } },
            },
            manifestsPassword: "read-0123456789",
        };
        const cfg = validateConfig(raw, new Set([...SECRET, "manifestsPassword"]));
        expect(cfg.gitops?.gitlab).toBeUndefined();
        expect(cfg.gitops?.manifests).toMatchObject({ url: "https://git.example.eu/platform/manifests.git", username: "argocd-reader" });
    });

    test("a GitLab token set as plain text is refused without showing it", () => {
        const raw = { ...valid(), gitops: gitops(), gitlabToken: "glpat-SECRETVALUE" };
        const problems = problemsOf(raw, new Set(["sshPrivateKey"]));
        expect(problems).toEqual([expect.stringMatching(/^zerotouch:gitlabToken: given as plain text \(not shown\)/)]);
        expect(problems.join("\n")).not.toContain("SECRETVALUE");
    });

    test("kubernetes mode existing with a secret kubeconfig; etcd from a file:// mirror", () => {
        const raw = { ...valid(), kubernetes: { mode: "existing" }, kubeconfig: "apiVersion: v1", etcd: { source: "release", version: "3.5.99", releaseBaseUrl: "file:///srv/mirror/etcd", sha256: { amd64: "a".repeat(64) }, bootstrapMember: "cp-2" } };
        const cfg = validateConfig(raw, new Set([...SECRET, "kubeconfig"]));
        expect(cfg.kubernetes.mode).toBe("existing");
        expect(cfg.etcd.bootstrapMember).toBe("cp-2");
    });

    test.each([1, 5])("%i control-plane node(s)", (count) => {
        const raw = valid();
        raw.nodes = {};
        for (let i = 1; i <= count; i++) {
            raw.nodes[`cp-${i}`] = { host: `203.0.113.${10 + i}`, role: "control-plane", location: location() };
        }
        expect(Object.keys(validateConfig(raw, SECRET).nodes)).toHaveLength(count);
    });

    test("IPv6 CIDRs and hosts, pinned host keys, per-node thresholds", () => {
        const raw = valid();
        raw.vpnCidr = "fd00:8::/64";
        raw.managementCidrs = ["2001:db8:100::/48", "198.51.100.0/28"];
        raw.nodes["cp-1"].host = "2001:db8::11";
        raw.nodes["cp-3"].sshHostKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAILWvkNWpyAzs58YI0beTDhC9KCztmoxTVHtHfzNQ+1Cf";
        raw.nodes["cp-3"].fsyncThresholdMs = 15;
        const cfg = validateConfig(raw, SECRET);
        expect(cfg.nodes["cp-3"].fsyncThresholdMs).toBe(15);
    });
});

type Case = [string, (raw: Record<string, any>) => void, RegExp[]];

/** A valid gitops block; `over` replaces top-level keys. */
function gitops(over: Record<string, unknown> = {}): Record<string, unknown> {
    return {
        gitlab: { baseUrl: "https://gitlab.example.com" },
        argocd: { hostname: "argocd.vpn.example.net", webhookHostname: "argocd-hooks.example.net" },
        manifests: { project: "platform/manifests", mode: "create", namespaceId: 42 },
        appProjects: ["team/api"],
        applications: { "api-prod": { environment: "prod", path: "apps/api", namespace: "api", valueFiles: ["values-prod.yaml"] } },
        ...over,
    };
}

const rejections: Case[] = [
    [
        "duplicate hosts",
        (r) => (r.nodes["cp-2"].host = "203.0.113.11"),
        [/^zerotouch:nodes\.cp-2\.host \(node cp-2\): duplicate host: node cp-1 has the same host; given "203\.0\.113\.11"; allowed: the node's public IPv4 or IPv6 address \(firewall rules and etcd peer URLs are built from it\), unique across nodes, not an IPv4-mapped IPv6 address \(::ffff:a\.b\.c\.d\)$/],
    ],
    [
        "duplicate IPv6 hosts written differently",
        (r) => {
            r.nodes["cp-1"].host = "2001:db8::11";
            r.nodes["cp-2"].host = "2001:DB8:0:0::11";
        },
        [/zerotouch:nodes\.cp-2\.host \(node cp-2\): duplicate host: node cp-1/],
    ],
    [
        "an IPv4-mapped IPv6 host next to the same IPv4 address on another node",
        (r) => (r.nodes["cp-2"].host = "::ffff:203.0.113.11"),
        [
            /^zerotouch:nodes\.cp-2\.host \(node cp-2\): an IPv4-mapped IPv6 address: the node is reached over IPv4, and firewall rules and etcd URLs must name it as such; write it as 203\.0\.113\.11; given "::ffff:203\.0\.113\.11"/,
            /^zerotouch:nodes\.cp-2\.host \(node cp-2\): duplicate host: node cp-1 has the same host; given "::ffff:203\.0\.113\.11"/,
        ],
    ],
    [
        "an IPv4-mapped IPv6 host in hex form",
        (r) => (r.nodes["cp-2"].host = "::ffff:cb00:7163"),
        [/^zerotouch:nodes\.cp-2\.host \(node cp-2\): an IPv4-mapped IPv6 address: .*; write it as 203\.0\.113\.99; given "::ffff:cb00:7163"/],
    ],
    [
        "two control-plane nodes",
        (r) => delete r.nodes["cp-3"],
        [/^zerotouch:nodes: 2 control-plane nodes \(cp-1, cp-2\); etcd needs 1, 3 or 5 for a quorum; given .*; allowed: a map of node name to node settings, with 1, 3 or 5 control-plane nodes$/],
    ],
    [
        "no control-plane node",
        (r) => {
            for (const n of ["cp-1", "cp-2", "cp-3"]) r.nodes[n].role = "worker";
        },
        [/^zerotouch:nodes: 0 control-plane nodes \(none\); etcd needs 1, 3 or 5/],
    ],
    [
        "four control-plane nodes",
        (r) => (r.nodes["worker-1"].role = "control-plane"),
        [/^zerotouch:nodes: 4 control-plane nodes \(cp-1, cp-2, cp-3, worker-1\)/],
    ],
    [
        "no nodes",
        (r) => (r.nodes = {}),
        [/^zerotouch:nodes: no nodes are configured; given \{\}; allowed: a map of node name/],
    ],
    [
        "malformed vpnCidr",
        (r) => (r.vpnCidr = "10.8.0/24"),
        [/^zerotouch:vpnCidr: malformed CIDR: "10\.8\.0" is not an IPv4 or IPv6 address; given "10\.8\.0\/24"; allowed: one CIDR block of the VPN's client range/],
    ],
    [
        "vpnCidr with host bits",
        (r) => (r.vpnCidr = "10.8.0.1/24"),
        [/^zerotouch:vpnCidr: malformed CIDR: host bits are set; the network is 10\.8\.0\.0\/24; given "10\.8\.0\.1\/24"/],
    ],
    [
        "vpnCidr prefix out of range",
        (r) => (r.vpnCidr = "10.8.0.0/33"),
        [/^zerotouch:vpnCidr: malformed CIDR: prefix must be 0 to 32; given "10\.8\.0\.0\/33"/],
    ],
    [
        "vpnCidr without prefix",
        (r) => (r.vpnCidr = "10.8.0.0"),
        [/^zerotouch:vpnCidr: malformed CIDR: missing \/prefix; given "10\.8\.0\.0"/],
    ],
    [
        "vpnCidr of 0.0.0.0/0",
        (r) => (r.vpnCidr = "0.0.0.0/0"),
        [/^zerotouch:vpnCidr: a CIDR of the whole address space would open the port to everyone; given "0\.0\.0\.0\/0"; allowed: .*not 0\.0\.0\.0\/0 or ::\/0$/],
    ],
    [
        "vpnCidr of ::/0",
        (r) => (r.vpnCidr = "::/0"),
        [/^zerotouch:vpnCidr: a CIDR of the whole address space would open the port to everyone; given "::\/0"/],
    ],
    [
        "a management CIDR of 0.0.0.0/0",
        (r) => (r.managementCidrs = ["198.51.100.0/28", "0.0.0.0/0"]),
        [/^zerotouch:managementCidrs\[1\]: a CIDR of the whole address space would open the port to everyone; given "0\.0\.0\.0\/0"; allowed: a CIDR block/],
    ],
    [
        "a management CIDR of ::/0",
        (r) => (r.managementCidrs = ["::/0"]),
        [/^zerotouch:managementCidrs\[0\]: a CIDR of the whole address space .*; given "::\/0"/],
    ],
    [
        "a malformed management CIDR",
        (r) => (r.managementCidrs = ["198.51.100.300/28"]),
        [/^zerotouch:managementCidrs\[0\]: malformed CIDR: "198\.51\.100\.300" is not an IPv4 or IPv6 address; given "198\.51\.100\.300\/28"/],
    ],
    [
        "no management CIDR",
        (r) => (r.managementCidrs = []),
        [/^zerotouch:managementCidrs: given \[\]; allowed: a non-empty list of CIDR blocks/],
    ],
    [
        "duplicate management CIDRs",
        (r) => (r.managementCidrs = ["198.51.100.0/28", "198.51.100.0/28"]),
        [/^zerotouch:managementCidrs\[1\]: duplicate CIDR: the same as managementCidrs\[0\]/],
    ],
    [
        "threshold of 0",
        (r) => (r.fsyncGate = { thresholdMs: 0 }),
        [/^zerotouch:fsyncGate\.thresholdMs: given 0; allowed: a number of milliseconds greater than 0 and at most 1000, at most 6 decimals \(default 10\)$/],
    ],
    [
        "negative threshold",
        (r) => (r.fsyncGate = { thresholdMs: -5 }),
        [/^zerotouch:fsyncGate\.thresholdMs: given -5; allowed: a number of milliseconds greater than 0/],
    ],
    [
        "threshold above 1000 ms",
        (r) => (r.fsyncGate = { thresholdMs: 1000.5 }),
        [/^zerotouch:fsyncGate\.thresholdMs: given 1000\.5; allowed: a number of milliseconds greater than 0 and at most 1000/],
    ],
    [
        "a per-node threshold above 1000 ms",
        (r) => (r.nodes["cp-2"].fsyncThresholdMs = 5000),
        [/^zerotouch:nodes\.cp-2\.fsyncThresholdMs \(node cp-2\): given 5000; allowed: a number of milliseconds greater than 0 and at most 1000, at most 6 decimals, overriding/],
    ],
    [
        "threshold given as text",
        (r) => (r.fsyncGate = { thresholdMs: "ten" }),
        [/^zerotouch:fsyncGate\.thresholdMs: given "ten"; allowed: a number of milliseconds/],
    ],
    [
        "a threshold finer than a nanosecond",
        (r) => (r.fsyncGate = { thresholdMs: 10.1234567 }),
        [/^zerotouch:fsyncGate\.thresholdMs: given 10\.1234567; allowed: a number of milliseconds greater than 0 and at most 1000, at most 6 decimals/],
    ],
    [
        "a fio run bound below 10 s",
        (r) => (r.fsyncGate = { maxSecondsPerRun: 5 }),
        [/^zerotouch:fsyncGate\.maxSecondsPerRun: given 5; allowed: a whole number of seconds from 10 to 1800/],
    ],
    [
        "zero fio runs",
        (r) => (r.fsyncGate = { runs: 0 }),
        [/^zerotouch:fsyncGate\.runs: given 0; allowed: an integer from 1 to 10 \(default 2\)/],
    ],
    [
        "a typo at the top level",
        (r) => (r.vpnCIDR = "10.8.0.0/24"),
        [/^zerotouch:vpnCIDR: unknown key \(given "10\.8\.0\.0\/24"\); allowed: the keys nodes, sshPrivateKey, vpnCidr, managementCidrs, fsyncGate, preflight, firewall, etcd, kubernetes, kubeconfig, gitops, gitlabToken, argocdSsoClientSecret, etcdOffsiteSshKey, etcdOffsiteAccessKeyId, etcdOffsiteSecretAccessKey, manifestsPassword$/],
    ],
    [
        "a typo in a node",
        (r) => (r.nodes["cp-1"].sshPrt = 2222),
        [/^zerotouch:nodes\.cp-1\.sshPrt \(node cp-1\): unknown key \(given 2222\); allowed: a lower-case DNS label .* mapping to the keys host, sshPort, sshUser, sshHostKey, role, location, etcdDataPath, fsyncThresholdMs, maxLatencyMs$/],
    ],
    [
        "a typo in a location",
        (r) => (r.nodes["worker-2"].location.dataCenter = "x"),
        [/^zerotouch:nodes\.worker-2\.location\.dataCenter \(node worker-2\): unknown key \(given "x"\); allowed: the keys country, region, datacenter, provider$/],
    ],
    [
        "a typo in fsyncGate",
        (r) => (r.fsyncGate = { threshold: 10 }),
        [/^zerotouch:fsyncGate\.threshold: unknown key \(given 10\); allowed: the keys thresholdMs, runs, maxSecondsPerRun$/],
    ],
    [
        "missing SSH key",
        (r) => delete r.sshPrivateKey,
        [/^zerotouch:sshPrivateKey: given nothing \(missing\); allowed: an OpenSSH or PEM private key, set as a secret: pulumi config set --secret zerotouch:sshPrivateKey/],
    ],
    [
        "an SSH key that is not a private key",
        (r) => (r.sshPrivateKey = "ssh-ed25519 AAAAC3Nz public-not-private"),
        [/^zerotouch:sshPrivateKey: given a value that is not a private key \(not shown\); allowed: an OpenSSH or PEM private key/],
    ],
    [
        "a bad SSH port",
        (r) => (r.nodes["cp-3"].sshPort = 70000),
        [/^zerotouch:nodes\.cp-3\.sshPort \(node cp-3\): given 70000; allowed: an integer from 1 to 65535 \(default 22\)$/],
    ],
    [
        "an unknown role",
        (r) => (r.nodes["worker-1"].role = "master"),
        [/^zerotouch:nodes\.worker-1\.role \(node worker-1\): given "master"; allowed: control-plane or worker$/],
    ],
    [
        "a node name that is not a DNS label",
        (r) => (r.nodes["CP_4"] = { host: "203.0.113.40", role: "worker", location: location() }),
        [/^zerotouch:nodes\.CP_4: invalid node name "CP_4"; allowed: a lower-case DNS label/],
    ],
    [
        "a bad host",
        (r) => (r.nodes["cp-1"].host = "203.0.113.11:22"),
        [/^zerotouch:nodes\.cp-1\.host \(node cp-1\): given "203\.0\.113\.11:22"; allowed: the node's public IPv4 or IPv6 address/],
    ],
    [
        "a DNS name as host",
        (r) => (r.nodes["cp-1"].host = "cp-1.example.net"),
        [/^zerotouch:nodes\.cp-1\.host \(node cp-1\): given "cp-1\.example\.net"; allowed: the node's public IPv4 or IPv6 address/],
    ],
    [
        "an unquoted NO read as false",
        (r) => (r.nodes["cp-1"].location.country = false),
        [/^zerotouch:nodes\.cp-1\.location\.country \(node cp-1\): given false \(an unquoted NO is read as false by YAML 1\.1 tools; quote the code\); allowed: an ISO 3166-1 alpha-2/],
    ],
    [
        "a relative etcd data path",
        (r) => (r.nodes["cp-1"].etcdDataPath = "var/lib/etcd"),
        [/^zerotouch:nodes\.cp-1\.etcdDataPath \(node cp-1\): given "var\/lib\/etcd"; allowed: an absolute path/],
    ],
    [
        "an etcd data path of /",
        (r) => (r.nodes["cp-1"].etcdDataPath = "/"),
        [/^zerotouch:nodes\.cp-1\.etcdDataPath \(node cp-1\): given "\/"; allowed: an absolute path/],
    ],
    [
        "a malformed host key",
        (r) => (r.nodes["cp-1"].sshHostKey = "203.0.113.11 ssh-ed25519 AAAA"),
        [/^zerotouch:nodes\.cp-1\.sshHostKey \(node cp-1\): given "203\.0\.113\.11 ssh-ed25519 AAAA"; allowed: a public host key/],
    ],
    [
        "an unknown virtualization type",
        (r) => (r.preflight = { allowedVirtualization: ["kvm", "vbox"] }),
        [/^zerotouch:preflight\.allowedVirtualization\[1\]: given "vbox"; allowed: a systemd-detect-virt name: kvm, qemu/],
    ],
    [
        "an empty virtualization list",
        (r) => (r.preflight = { allowedVirtualization: [] }),
        [/^zerotouch:preflight\.allowedVirtualization: given \[\]; allowed: a non-empty list/],
    ],
    [
        "an etcd source that is not release or preinstalled",
        (r) => (r.etcd = { source: "docker" }),
        [/^zerotouch:etcd\.source: given "docker"; allowed: release \(the pinned etcd release/],
    ],
    [
        "an etcd version that is not MAJOR.MINOR.PATCH",
        (r) => (r.etcd = { version: "v3.5" }),
        [/^zerotouch:etcd\.version: given "v3\.5"; allowed: an etcd version as MAJOR\.MINOR\.PATCH/],
    ],
    [
        "an http:// release mirror",
        (r) => (r.etcd = { releaseBaseUrl: "http://mirror.example.net/etcd" }),
        [/^zerotouch:etcd\.releaseBaseUrl: given "http:\/\/mirror\.example\.net\/etcd"; allowed: an https:\/\/ or file:\/\/ URL/],
    ],
    [
        "a short sha256",
        (r) => (r.etcd = { sha256: { amd64: "abc123" } }),
        [/^zerotouch:etcd\.sha256\.amd64: given "abc123"; allowed: a sha256 as 64 hex digits$/],
    ],
    [
        "a WAL fsync threshold of 0",
        (r) => (r.etcd = { walFsyncThresholdMs: 0 }),
        [/^zerotouch:etcd\.walFsyncThresholdMs: given 0; allowed: a number of milliseconds greater than 0/],
    ],
    [
        "a bootstrap member that is a worker",
        (r) => (r.etcd = { bootstrapMember: "worker-1" }),
        [/^zerotouch:etcd\.bootstrapMember: not a control-plane node \(control-plane nodes: cp-1, cp-2, cp-3\); given "worker-1"; allowed: the name of a control-plane node/],
    ],
    [
        "a snapshot retention of 0",
        (r) => (r.etcd = { snapshots: { retain: 0 } }),
        [/^zerotouch:etcd\.snapshots\.retain: given 0; allowed: an integer from 1 to 1000/],
    ],
    [
        "a typo in etcd",
        (r) => (r.etcd = { wipeDataOnDeletion: true }),
        [/^zerotouch:etcd\.wipeDataOnDeletion: unknown key \(given true\); allowed: the keys source, version/],
    ],
    [
        "wipeDataOnDelete as a string",
        (r) => (r.etcd = { wipeDataOnDelete: "yes" }),
        [/^zerotouch:etcd\.wipeDataOnDelete: given "yes"; allowed: true or false \(default false\)/],
    ],
    [
        "an unknown Kubernetes mode",
        (r) => (r.kubernetes = { mode: "kubeadm" }),
        [/^zerotouch:kubernetes\.mode: given "kubeadm"; allowed: k3s \(zerotouch installs k3s/],
    ],
    [
        "an API endpoint with a scheme",
        (r) => (r.kubernetes = { apiEndpoint: "https://api.example.net" }),
        [/^zerotouch:kubernetes\.apiEndpoint: given "https:\/\/api\.example\.net"; allowed: the DNS name or IP address/],
    ],
    [
        "a k3s version without its +k3s suffix",
        (r) => (r.kubernetes = { k3s: { version: "v1.31.4" } }),
        [/^zerotouch:kubernetes\.k3s\.version: given "v1\.31\.4"; allowed: a k3s version such as/],
    ],
    [
        "an extra firewall rule open to the whole address space",
        (r) => (r.firewall = { extraRules: [{ name: "nodeports", protocol: "tcp", ports: [30000, 32767], from: ["0.0.0.0/0"] }] }),
        [/^zerotouch:firewall\.extraRules\[0\]\.from\[0\]: a CIDR of the whole address space would open the port to everyone; given "0\.0\.0\.0\/0"; allowed: a CIDR block/],
    ],
    [
        "an extra firewall rule listed twice",
        (r) => (r.firewall = { extraRules: [1, 2].map(() => ({ name: "metrics", protocol: "tcp", ports: 9100, from: ["10.8.0.0/24"] })) }),
        [/^zerotouch:firewall\.extraRules\[1\]\.name: listed twice; given "metrics"; allowed: a lower-case name/],
    ],
    [
        "a port range upside down",
        (r) => (r.firewall = { extraRules: [{ name: "nodeports", protocol: "tcp", ports: [32767, 30000], from: "any" }] }),
        [/^zerotouch:firewall\.extraRules\[0\]\.ports: given \[32767,30000\]; allowed: a port \(1-65535\) or a range \[first, last\]/],
    ],
    [
        "gitops without a GitLab token",
        (r) => (r.gitops = gitops()),
        [/^zerotouch:gitlabToken: gitops.gitlab is set, which needs a GitLab token; given nothing \(missing\); allowed: a GitLab token with api scope/],
    ],
    [
        "gitops on kubernetes.mode none",
        (r) => {
            r.gitops = gitops();
            r.gitlabToken = "glpat-0123456789";
            r.kubernetes = { mode: "none" };
        },
        [/^zerotouch:gitops: the GitOps layer needs a cluster, but kubernetes\.mode is none; given \{/],
    ],
    [
        "a webhook hostname equal to the UI's",
        (r) => {
            r.gitops = gitops({ argocd: { hostname: "argocd.example.net", webhookHostname: "argocd.example.net" } });
            r.gitlabToken = "glpat-0123456789";
        },
        [/^zerotouch:gitops\.argocd\.webhookHostname: the same as hostname: the UI stays on the VPN while the webhook is public; given "argocd\.example\.net"/],
    ],
    [
        "an access token living longer than GitLab allows",
        (r) => {
            r.gitops = gitops({ accessTokenExpiryDays: 400 });
            r.gitlabToken = "glpat-0123456789";
        },
        [/^zerotouch:gitops\.accessTokenExpiryDays: given 400; allowed: a whole number of days from 1 to 365/],
    ],
    [
        "rotation not before expiry",
        (r) => {
            r.gitops = gitops({ accessTokenExpiryDays: 30, rotateBeforeDays: 30 });
            r.gitlabToken = "glpat-0123456789";
        },
        [/^zerotouch:gitops\.rotateBeforeDays: not less than accessTokenExpiryDays \(30\); given 30/],
    ],
    [
        "an app project listed twice and the manifests project as app project",
        (r) => {
            r.gitops = gitops({ appProjects: ["team/api", "team/api", "platform/manifests"] });
            r.gitlabToken = "glpat-0123456789";
        },
        [/^zerotouch:gitops\.appProjects\[1\]: listed twice; given "team\/api"/, /^zerotouch:gitops\.appProjects\[2\]: the manifests project itself; given "platform\/manifests"/],
    ],
    [
        "an Application path with ..",
        (r) => {
            r.gitops = gitops({ applications: { "api-prod": { environment: "prod", path: "apps/../secrets", namespace: "api" } } });
            r.gitlabToken = "glpat-0123456789";
        },
        [/^zerotouch:gitops\.applications\.api-prod\.path: given "apps\/\.\.\/secrets"; allowed: a relative path in the manifests repository, without '\.\.'/],
    ],
    [
        "a break-glass group without single sign-on",
        (r) => {
            r.gitops = gitops({ argocd: { hostname: "argocd.vpn.example.net", webhookHostname: "argocd-hooks.example.net", breakGlassGroup: "platform/argocd-admins" } });
            r.gitlabToken = "glpat-0123456789";
        },
        [/^zerotouch:gitops\.argocd\.breakGlassGroup: no gitops\.argocd\.sso is configured, so no one could ever log in as that group; given "platform\/argocd-admins"/],
    ],
    [
        "single sign-on without its client secret, and OIDC without an issuer",
        (r) => {
            r.gitops = gitops({ argocd: { hostname: "argocd.vpn.example.net", webhookHostname: "argocd-hooks.example.net", sso: { provider: "oidc", clientId: "argocd" } } });
            r.gitlabToken = "glpat-0123456789";
        },
        [
            /^zerotouch:argocdSsoClientSecret: gitops\.argocd\.sso is set, which needs the client's secret; given nothing \(missing\)/,
            /^zerotouch:gitops\.argocd\.sso\.issuer: provider oidc needs the issuer URL; given nothing \(missing\)/,
        ],
    ],
    [
        "a chart source with both repo and path",
        (r) => {
            r.gitops = gitops({
                argocd: { hostname: "argocd.vpn.example.net", webhookHostname: "argocd-hooks.example.net", chart: { repo: "https://charts.example.eu", path: "/srv/argo-cd.tgz" } },
            });
            r.gitlabToken = "glpat-0123456789";
        },
        [/^zerotouch:gitops\.argocd\.chart: exactly one of repo and path; given \{"repo":"https:\/\/charts\.example\.eu","path":"\/srv\/argo-cd\.tgz"\}/],
    ],
    [
        "no GitLab wiring and no repository: URL, credential and app projects",
        (r) => {
            r.gitops = { ...gitops(), gitlab: undefined, manifests: {} };
        },
        [
            /^zerotouch:gitops\.manifests\.url: without gitops\.gitlab, the manifests repository is wired by hand and its clone URL is needed; given nothing \(missing\)/,
            /^zerotouch:gitops\.manifests\.username: without gitops\.gitlab, .* user name of its read credential is needed/,
            /^zerotouch:manifestsPassword: without gitops\.gitlab, .* its read credential is needed as a secret; given nothing \(missing\)/,
            /^zerotouch:gitops\.appProjects: without gitops\.gitlab, .*: GITOPS_TOKEN on app projects is part of the GitLab wiring/,
        ],
    ],
    [
        "create mode without the group id",
        (r) => {
            r.gitops = gitops({ manifests: { project: "platform/manifests" } });
            r.gitlabToken = "glpat-0123456789";
        },
        [/^zerotouch:gitops\.manifests\.namespaceId: mode create needs the id of the group the project goes in; given nothing \(missing\)/],
    ],
    [
        "an http GitLab",
        (r) => {
            r.gitops = gitops({ gitlab: { baseUrl: "http://gitlab.example.com" } });
            r.gitlabToken = "glpat-0123456789";
        },
        [/^zerotouch:gitops\.gitlab\.baseUrl: given "http:\/\/gitlab\.example\.com"; allowed: the https:\/\/ URL of the GitLab instance/],
    ],
    [
        "mode existing without a kubeconfig",
        (r) => (r.kubernetes = { mode: "existing" }),
        [/^zerotouch:kubeconfig: kubernetes\.mode is existing, which needs a kubeconfig; given nothing \(missing\); allowed: a kubeconfig/],
    ],
];

describe("validateConfig rejects", () => {
    test.each(rejections)("%s", (_name, mutate, expected) => {
        const raw = valid();
        mutate(raw);
        const problems = problemsOf(raw);
        expect(problems).toHaveLength(expected.length);
        expected.forEach((re, i) => expect(problems[i]).toMatch(re));
    });

    test("an SSH key set as plain text, without showing it", () => {
        const problems = problemsOf(valid(), new Set());
        expect(problems).toEqual([expect.stringMatching(/^zerotouch:sshPrivateKey: given as plain text \(not shown\); allowed: .*--secret/)]);
    });

    test("a kubeconfig set as plain text, without showing it", () => {
        const raw = { ...valid(), kubernetes: { mode: "existing" }, kubeconfig: "apiVersion: v1\nusers: [{name: admin, user: {token: s3cr3t-token}}]" };
        const problems = problemsOf(raw);
        expect(problems).toEqual([expect.stringMatching(/^zerotouch:kubeconfig: given as plain text \(not shown\); allowed: a kubeconfig/)]);
        expect(problems.join("\n")).not.toContain("s3cr3t-token");
    });

    test("a kubeconfig with mode k3s is refused, without showing it", () => {
        const raw = { ...valid(), kubeconfig: "apiVersion: v1 # s3cr3t-token" };
        const problems = problemsOf(raw, new Set([...SECRET, "kubeconfig"]));
        expect(problems).toEqual([expect.stringMatching(/^zerotouch:kubeconfig: kubernetes\.mode is k3s, which takes no kubeconfig; given a value that is not a kubeconfig \(not shown\)/)]);
        expect(problems.join("\n")).not.toContain("s3cr3t-token");
    });

    test("no message ever contains the private key", () => {
        const raw = valid();
        raw.sshPrivateKey = `${TEST_KEY}trailing`;
        raw.typo = TEST_KEY;
        const err = (() => {
            try {
                validateConfig({ ...raw, sshPrivateKey: "-----BEGIN OPENSSH PRIVATE KEY-----\nsecretbody" }, new Set());
            } catch (e) {
                return e as Error;
            }
            throw new Error("accepted");
        })();
        expect(err.message).not.toContain("secretbody");
        expect(err.message).toContain("zerotouch:sshPrivateKey");
    });

    test("reports every problem at once, in one error", () => {
        const raw = valid();
        raw.vpnCidr = "0.0.0.0/0";
        raw.nodes["cp-2"].host = "203.0.113.11";
        raw.fsyncGate = { thresholdMs: 0 };
        const problems = problemsOf(raw);
        expect(problems).toHaveLength(3);
        expect(() => validateConfig(raw, SECRET)).toThrow(/^zerotouch: invalid stack configuration; nothing was created\.\n {2}- /);
    });
});

describe("stack files", () => {
    const prod = readFileSync(path.join(__dirname, "..", "Pulumi.prod.yaml"), "utf8");

    test("Pulumi.prod.yaml is valid: 3 control-plane nodes and 2 workers in Oslo, key as a secure value", () => {
        const { raw, secretKeys } = parseStackFile(prod, { sshPrivateKey: TEST_KEY, gitlabToken: "glpat-test", argocdSsoClientSecret: "sso-client-secret" });
        expect(secretKeys.has("sshPrivateKey")).toBe(true);
        expect(secretKeys.has("gitlabToken")).toBe(true);
        const cfg = validateConfig(raw, secretKeys);
        const nodes = Object.values(cfg.nodes);
        expect(nodes.filter((n) => n.role === "control-plane")).toHaveLength(3);
        expect(nodes.filter((n) => n.role === "worker")).toHaveLength(2);
        expect(new Set(nodes.map((n) => n.location.country))).toEqual(new Set(["NO"]));
        for (const n of nodes) {
            expect(n.host).toMatch(/^203\.0\.113\./);
        }
        expect(prod).toMatch(/zerotouch:sshPrivateKey:\n\s+secure: /);
        expect(prod).toMatch(/zerotouch:gitlabToken:\n\s+secure: /);
        expect(cfg.gitops?.applications["backend-service-prod"]).toMatchObject({ environment: "prod", namespace: "backend" });
    });

    test("without the key, Pulumi.prod.yaml is rejected naming the key", () => {
        const { raw, secretKeys } = parseStackFile(prod);
        expect(() => validateConfig(raw, secretKeys)).toThrow(/zerotouch:sshPrivateKey: given nothing \(missing\)/);
    });

    test("a node listed twice is rejected", () => {
        const text = [
            "config:",
            "  zerotouch:nodes:",
            "    cp-1: {host: 203.0.113.11, role: control-plane, location: {country: 'NO', region: oslo, datacenter: osl1, provider: x}}",
            "    cp-1: {host: 203.0.113.12, role: control-plane, location: {country: 'NO', region: oslo, datacenter: osl1, provider: x}}",
        ].join("\n");
        expect(() => parseStackFile(text)).toThrow(/zerotouch: a key is listed twice, such as a node name \(Map keys must be unique.*allowed: each key and each node name once/);
    });

    test("Pulumi's flat config map is decoded, and only this project's keys are read", () => {
        const raw = projectConfig({
            "zerotouch:vpnCidr": "10.8.0.0/24",
            "zerotouch:fsyncGate": '{"thresholdMs":12}',
            "kubernetes:context": "other",
        });
        expect(raw).toEqual({ vpnCidr: "10.8.0.0/24", fsyncGate: { thresholdMs: 12 } });
    });

    test("secret keys come from PULUMI_CONFIG_SECRET_KEYS", () => {
        expect(secretConfigKeys({ PULUMI_CONFIG_SECRET_KEYS: '["zerotouch:sshPrivateKey","aws:secretKey"]' })).toEqual(new Set(["sshPrivateKey"]));
        expect(secretConfigKeys({})).toEqual(new Set());
    });
});
