import { z } from "zod";

import { parseResultLine } from "../lib/result";
import { latencyResultSchema } from "./latency";

/** What the connect phase reports: who answered. */
export const connectResultSchema = z.object({
    node: z.string(),
    hostname: z.string(),
    hostKey: z.string(),
    bootState: z.string(),
});
export type ConnectResult = z.infer<typeof connectResultSchema>;

/** The facts and verdict the preflight phase reports. */
export const preflightResultSchema = z.object({
    node: z.string(),
    role: z.string(),
    passed: z.boolean(),
    problems: z.array(z.string()),
    os: z.object({ id: z.string(), versionId: z.string(), prettyName: z.string() }),
    kernel: z.string(),
    arch: z.string(),
    cpus: z.number(),
    memoryMiB: z.number(),
    virtualization: z.string(),
    ntpSynchronized: z.string(),
    etcdDisk: z.object({
        path: z.string(),
        disk: z.string(),
        source: z.string(),
        fstype: z.string(),
        mountpoint: z.string(),
        rotational: z.string(),
        transport: z.string(),
        model: z.string(),
        description: z.string(),
    }),
    /** TCP connect times to the GitLab host and the probe target, as the node measured and judged them. */
    latency: z.array(latencyResultSchema),
    tools: z.object({ present: z.array(z.string()), installable: z.array(z.string()) }),
});
export type PreflightResult = z.infer<typeof preflightResultSchema>;

export function parseConnectResult(stdout: string, node: string): ConnectResult {
    return parseResultLine(connectResultSchema, stdout, `node ${node}: connect`);
}

export function parsePreflightResult(stdout: string, node: string): PreflightResult {
    return parseResultLine(preflightResultSchema, stdout, `node ${node}: preflight`);
}
