import { z } from "zod";

import { lastJsonLine } from "../lib/script";

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
    tools: z.object({ present: z.array(z.string()), installable: z.array(z.string()) }),
});
export type PreflightResult = z.infer<typeof preflightResultSchema>;

/** Parses a phase's stdout against its schema, naming the node and phase on failure. */
function parseWith<T>(schema: z.ZodType<T>, stdout: string, what: string): T {
    const parsed = schema.safeParse(lastJsonLine(stdout, what));
    if (!parsed.success) {
        throw new Error(`${what}: unexpected result: ${parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ")}`);
    }
    return parsed.data;
}

export function parseConnectResult(stdout: string, node: string): ConnectResult {
    return parseWith(connectResultSchema, stdout, `node ${node}: connect`);
}

export function parsePreflightResult(stdout: string, node: string): PreflightResult {
    return parseWith(preflightResultSchema, stdout, `node ${node}: preflight`);
}
