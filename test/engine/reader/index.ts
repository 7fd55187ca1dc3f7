import { platformReference, platformStackName } from "../../../stacks/reference";

const platform = platformReference(platformStackName());

/** What the reader saw, for the engine tests to compare with the platform stack's own outputs. */
export const controlPlaneNodes = platform.apply((p) => p.controlPlaneNodes);
export const etcdClientEndpoints = platform.apply((p) => p.etcd?.clientEndpoints ?? []);
export const fsyncP99Ms = platform.apply((p) => Object.fromEntries(Object.entries(p.nodes).map(([name, n]) => [name, n.fsyncP99Ms])));
