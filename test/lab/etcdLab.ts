/**
 * What the etcd lab tests share: member steps as `EtcdCluster` builds them (Debian's etcd 3.4,
 * `source: preinstalled`, certificates of `EtcdPki`'s shape made by openssl), etcdctl on a node,
 * wiping a node's etcd, and a write loop that runs on one node for the whole of a test and
 * counts every failed write.
 */
import { clientUrl, EtcdMemberPem, etcdMemberStep, EtcdMemberStepArgs, LOCAL_CLIENT_URL, NODE_CLIENT_TLS } from "../../components/etcd/member";
import type { NodeStep } from "../../components/lib/nodeScript";
import { ScriptAction } from "../../components/lib/script";
import { Lab, LabNode, runStep, RunResult, sshRun } from "./harness";

export const TOKEN = "zerotouch-lab";
export const ETCDCTL = "/usr/bin/etcdctl";
/** The data directory of a member on a slow-disk node (its root filesystem, not the throttled disk). */
export const ROOT_FS_DATA = "/var/lib/etcd-lab";

/** A member's data directory: the node's etcd disk, or its root filesystem on a slow-disk node. */
export function dataDirOf(node: LabNode): string {
    return node.slowDisk ? ROOT_FS_DATA : node.etcdDataPath;
}

/** Runs a command on a node; throws with its stderr unless it exits 0. */
export function ssh(lab: Lab, node: LabNode, command: string, timeoutSec = 120): string {
    const r = sshRun(lab, node, command, undefined, timeoutSec);
    if (r.code !== 0) {
        throw new Error(`${node.name}: ${command}: exit ${r.code}: ${r.stderr}`);
    }
    return r.stdout;
}

/** etcdctl on a node with the node's client certificate. */
export function etcdctl(lab: Lab, node: LabNode, args: string, endpoints = LOCAL_CLIENT_URL): string {
    return ssh(
        lab,
        node,
        `ETCDCTL_API=3 ${ETCDCTL} --endpoints=${endpoints} --cacert=${NODE_CLIENT_TLS.caFile} --cert=${NODE_CLIENT_TLS.certFile} ` +
            `--key=${NODE_CLIENT_TLS.keyFile} --command-timeout=20s ${args}`,
    );
}

/** Throws with the end of stderr unless the run exited 0. */
export function expectOk(node: LabNode, r: RunResult): void {
    if (r.code !== 0) {
        throw new Error(`${node.name}: exit ${r.code}\n${r.stderr.slice(-3000)}`);
    }
}

/** Removes every trace of etcd from a node: unit, PKI, state, data. */
export function wipeEtcd(lab: Lab, node: LabNode): void {
    sshRun(
        lab,
        node,
        `systemctl disable --now etcd.service >/dev/null 2>&1; rm -f /etc/systemd/system/etcd.service; systemctl daemon-reload; ` +
            `rm -rf /etc/etcd /var/lib/zerotouch/etcd ${ROOT_FS_DATA} /var/tmp/zt-restore; ` +
            `find ${node.etcdDataPath} -mindepth 1 -delete`,
    );
}

/**
 * Member steps of one lab cluster, and the step each member was last created with (a delete must
 * come from it, as Pulumi runs the delete of the resource it created: see the owner guard).
 */
export class LabEtcd {
    readonly applied: Record<string, NodeStep> = {};

    constructor(
        private readonly lab: Lab,
        private readonly pem: Readonly<Record<string, EtcdMemberPem>>,
        /** The member that forms the cluster; the others join through it. */
        private readonly bootstrap: LabNode,
    ) {}

    args(node: LabNode, extra: Partial<EtcdMemberStepArgs> = {}): EtcdMemberStepArgs {
        return {
            node: node.name,
            address: node.address,
            dataDir: dataDirOf(node),
            source: "preinstalled",
            clusterToken: TOKEN,
            bootstrap: node.name === this.bootstrap.name,
            joinEndpoint: clientUrl(this.bootstrap.address),
            healthTimeoutSeconds: 120,
            quotaBackendBytes: 2 * 1024 ** 3,
            wipeDataOnDelete: false,
            pem: this.pem[node.name],
            ...extra,
        };
    }

    step(node: LabNode, extra: Partial<EtcdMemberStepArgs> = {}): NodeStep {
        return etcdMemberStep(this.args(node, extra));
    }

    /** Runs a step; a successful member create is remembered for the member's delete. */
    run(node: LabNode, step: NodeStep, action?: ScriptAction): RunResult {
        const r = runStep(this.lab, node, step, action);
        if (step.name === "member" && (action ?? "create") === "create" && r.code === 0) {
            this.applied[node.name] = step;
        }
        return r;
    }

    /** Deletes a member with the step it was created with. */
    delete(node: LabNode): RunResult {
        const step = this.applied[node.name];
        if (step === undefined) {
            throw new Error(`${node.name}: no member step was created here`);
        }
        return this.run(node, step, "delete");
    }
}

/**
 * A write loop on one node: one `etcdctl put` per process, to the endpoints of a file the test
 * sets (clients go to the members that stay, as a load balancer in front of etcd would), bounded
 * in time and stopped by a file.
 *
 * A put that etcd answers with a transient error of a leadership change (`request timed out`,
 * `leader changed`, `raft proposal dropped`, `no leader`: a proposal forwarded to a leader that
 * is handing over is dropped, and its sender waits out the request timeout) is sent once more,
 * as etcd clients such as the API server do; the put is idempotent (same key, same value). It is
 * counted as retried. A write that fails again, or fails any other way, is counted as failed,
 * with its errors kept: a cluster without quorum for longer than one request timeout fails it.
 */
export class WriteLoop {
    private static readonly DIR = "/run/zt-writes";

    constructor(
        private readonly lab: Lab,
        readonly node: LabNode,
        private readonly prefix: string,
    ) {}

    start(endpoints: readonly string[], maxSeconds: number): void {
        const d = WriteLoop.DIR;
        const put =
            `ETCDCTL_API=3 ${ETCDCTL} --endpoints=$eps --cacert=${NODE_CLIENT_TLS.caFile} --cert=${NODE_CLIENT_TLS.certFile} --key=${NODE_CLIENT_TLS.keyFile} ` +
            `--dial-timeout=3s --command-timeout=10s put ${this.prefix}$i $i >/dev/null`;
        const transient = "request timed out|leader changed|raft proposal dropped|no leader";
        const loop =
            `rm -rf ${d}; mkdir -p ${d}; echo ${endpoints.join(",")} >${d}/endpoints; ( end=$(( $(date +%s) + ${maxSeconds} )); i=0; ok=0; failed=0; retried=0; ` +
            `while [ ! -e ${d}/stop ] && [ "$(date +%s)" -lt "$end" ]; do i=$((i+1)); eps=$(cat ${d}/endpoints); ` +
            `if ${put} 2>${d}/last; then ok=$((ok+1)); ` +
            `elif grep -qE "${transient}" ${d}/last && { sleep 1; eps=$(cat ${d}/endpoints); ${put} 2>>${d}/last; }; then ok=$((ok+1)); retried=$((retried+1)); ` +
            `echo "write $i retried at $(date +%T): $(grep -oE "${transient}" ${d}/last | head -n1)" >>${d}/retries; ` +
            `else failed=$((failed+1)); cat ${d}/last >>${d}/err; echo "write $i to $eps failed at $(date +%T)" >>${d}/err; fi; ` +
            `echo "$ok $failed $retried" >${d}/count; done; echo done >${d}/done ) >/dev/null 2>&1 </dev/null & disown`;
        ssh(this.lab, this.node, `nohup bash -c '${loop.replace(/'/g, "'\\''")}' >/dev/null 2>&1 &`);
        ssh(this.lab, this.node, `for i in $(seq 100); do [ -s ${d}/count ] && exit 0; sleep 0.2; done; echo 'the write loop made no write' >&2; cat ${d}/err ${d}/last >&2; exit 1`);
    }

    /** Points the loop at other endpoints from its next write on. */
    setEndpoints(endpoints: readonly string[]): void {
        ssh(this.lab, this.node, `echo ${endpoints.join(",")} >${WriteLoop.DIR}/endpoints.new && mv ${WriteLoop.DIR}/endpoints.new ${WriteLoop.DIR}/endpoints`);
    }

    /** Succeeded, failed and retried writes so far, the last errors and retries. */
    count(): { ok: number; failed: number; retried: number; errors: string; retries: string } {
        const [ok, failed, retried] = ssh(this.lab, this.node, `cat ${WriteLoop.DIR}/count`).trim().split(" ").map(Number);
        const errors = ssh(this.lab, this.node, `tail -n 8 ${WriteLoop.DIR}/err 2>/dev/null || true`);
        const retries = ssh(this.lab, this.node, `tail -n 8 ${WriteLoop.DIR}/retries 2>/dev/null || true`);
        return { ok, failed, retried, errors, retries };
    }

    /** Stops the loop (bounded wait) and returns its final count. */
    stop(): { ok: number; failed: number; retried: number; errors: string; retries: string } {
        ssh(this.lab, this.node, `touch ${WriteLoop.DIR}/stop; for i in $(seq 100); do [ -e ${WriteLoop.DIR}/done ] && break; sleep 0.2; done`);
        return this.count();
    }
}
