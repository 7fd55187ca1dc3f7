/**
 * Renamed resources keep their state: for every resource the program has renamed, the URN it had
 * before is an alias of exactly one resource of the program now, of the same type when it is a
 * custom resource (a custom resource whose type changes would be replaced). The program runs under
 * mocks with Pulumi.prod.yaml; the engine's rule for URNs is applied here (a child's type is its
 * parent's type chain, `$`, its own type; children of the stack have none).
 *
 * Renames so far: the etcd WAL gate's component type `zerotouch:etcd:WalFsyncGate` (now
 * `zerotouch:etcd:WalGate`, name `etcd-<node>-wal` unchanged) and its command
 * `etcd-<node>-wal-wal-gate` (now `etcd-<node>-wal-gate`).
 */
import { Recorded } from "./support/mocks";
import { prodStack, PROD_TEST_SECRETS, runProgram } from "./support/program";

const STACK_TYPE = "pulumi:pulumi:Stack";

/** Each recorded resource's URN by the engine's rule, keyed by the mocks' URN. */
function engineUrns(resources: readonly Recorded[], stack: string, project: string): Map<string, string> {
    const byMockUrn = new Map(resources.map((r) => [r.urn, r]));
    const out = new Map<string, string>();
    const chain = (r: Recorded): string => {
        const parent = byMockUrn.get(r.parentUrn);
        if (parent === undefined || parent.type === STACK_TYPE) {
            return r.type;
        }
        return `${chain(parent)}$${r.type}`;
    };
    for (const r of resources) {
        out.set(r.urn, `urn:pulumi:${stack}::${project}::${chain(r)}::${r.name}`);
    }
    return out;
}

/** The URNs a resource's aliases stand for, as the engine expands them. */
function aliasUrns(r: Recorded, engineUrn: Map<string, string>, resources: readonly Recorded[], stack: string, project: string): string[] {
    const parentType = (parentUrn: string | undefined): string | undefined => {
        if (parentUrn === undefined) {
            return undefined;
        }
        const types = parentUrn.split("::")[2];
        return types === STACK_TYPE ? undefined : types;
    };
    const ownParent = resources.find((p) => p.urn === r.parentUrn);
    const ownParentUrn = ownParent === undefined ? undefined : engineUrn.get(ownParent.urn);
    return r.aliases.map((a) => {
        if (a.urn !== undefined) {
            return a.urn;
        }
        const chainOfParent = a.noParent === true ? undefined : parentType(a.parentUrn ?? ownParentUrn);
        const type = `${chainOfParent === undefined ? "" : `${chainOfParent}$`}${a.type ?? r.type}`;
        return `urn:pulumi:${stack}::${project}::${type}::${a.name ?? r.name}`;
    });
}

describe("renamed resources are aliased to their former URNs", () => {
    test("the WAL gate's former component and command URNs map to today's, same custom type, nothing replaced", async () => {
        const { raw, secretKeys } = prodStack(PROD_TEST_SECRETS);
        const { recorder } = await runProgram(raw, secretKeys);
        const stack = "test";
        const project = "zerotouch";
        const engineUrn = engineUrns(recorder.resources, stack, project);
        const controlPlanes = Object.entries(raw.nodes as Record<string, { role: string }>)
            .filter(([, n]) => n.role === "control-plane")
            .map(([name]) => name);
        expect(controlPlanes.length).toBeGreaterThan(0);

        const base = `urn:pulumi:${stack}::${project}::zerotouch:etcd:EtcdCluster`;
        const renamed = controlPlanes.flatMap((node) => [
            { former: `${base}$zerotouch:etcd:WalFsyncGate::etcd-${node}-wal`, custom: false },
            { former: `${base}$zerotouch:etcd:WalFsyncGate$command:remote:Command::etcd-${node}-wal-wal-gate`, custom: true },
        ]);
        const today = new Set(engineUrn.values());
        for (const { former, custom } of renamed) {
            // The former URN is gone and exactly one resource claims it.
            expect(today.has(former)).toBe(false);
            const claimants = recorder.resources.filter((r) => aliasUrns(r, engineUrn, recorder.resources, stack, project).includes(former));
            expect({ former, claimants: claimants.map((c) => engineUrn.get(c.urn)) }).toEqual({ former, claimants: [expect.any(String)] });
            if (custom) {
                expect({ former, type: claimants[0].type }).toEqual({ former, type: former.split("::")[2].split("$").pop() });
            }
        }
        const commands = controlPlanes.map((n) => engineUrn.get(recorder.byName(`etcd-${n}-wal-gate`).urn));
        console.log(`${renamed.length} former URNs aliased, e.g. ${renamed[1].former}\n  -> ${commands[0]}`);
    });
});
