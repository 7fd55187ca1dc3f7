/** The etcd settings a valid config gets when it leaves every etcd key out. */
export const ETCD_DEFAULTS = {
    source: "release" as const,
    walFsyncThresholdMs: 10,
    backendCommitThresholdMs: 25,
    walGateWrites: 1000,
    walGateMaxSeconds: 120,
    healthTimeoutSeconds: 180,
    quotaBackendBytes: 8 * 1024 ** 3,
    snapshots: { schedule: "hourly", retain: 24, dir: "/var/backups/etcd" },
    wipeDataOnDelete: false,
};
