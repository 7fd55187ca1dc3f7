#!/usr/bin/env node
/**
 * Helm post-renderer for the charts zerotouch deploys: every container of every workload the
 * chart renders (init and ephemeral containers, Jobs and CronJobs included) gets the variables
 * given as NAME=value arguments. Chart values reach most containers (`global.env`), but not all:
 * the argo-cd chart has no values key for the `copyutil` and dex init containers. A container
 * that already sets one of the variables to another value is an error (fail closed), never
 * silently overwritten.
 *
 * Usage: node post-render.mjs NAME=value [NAME=value ...] <rendered.yaml >rendered.yaml
 * (the way `helm template --post-renderer` and Pulumi's `helm.v4.Chart` `postRenderer` call it).
 */
import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";

const NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** The NAME=value arguments, in order. */
export function parseVariables(args) {
    if (args.length === 0) {
        throw new Error("post-render: no variables given; usage: post-render.mjs NAME=value [NAME=value ...]");
    }
    return args.map((arg) => {
        const eq = arg.indexOf("=");
        const name = eq < 0 ? arg : arg.slice(0, eq);
        if (eq < 0 || !NAME.test(name)) {
            throw new Error(`post-render: argument ${JSON.stringify(arg)} is not NAME=value`);
        }
        return { name, value: arg.slice(eq + 1) };
    });
}

/** The pod spec of a workload object, or undefined for anything that runs no pods. */
export function podSpecOf(object) {
    switch (object?.kind) {
        case "Pod":
            return object.spec;
        case "Deployment":
        case "StatefulSet":
        case "DaemonSet":
        case "ReplicaSet":
        case "Job":
        case "ReplicationController":
            return object.spec?.template?.spec;
        case "CronJob":
            return object.spec?.jobTemplate?.spec?.template?.spec;
        default:
            return undefined;
    }
}

/** Adds the variables to every container of the object; returns how many containers it saw. */
export function addVariables(object, variables) {
    const spec = podSpecOf(object);
    if (spec === undefined) {
        return 0;
    }
    let count = 0;
    for (const list of ["initContainers", "containers", "ephemeralContainers"]) {
        for (const container of spec[list] ?? []) {
            count++;
            container.env = container.env ?? [];
            for (const v of variables) {
                const found = container.env.find((e) => e.name === v.name);
                if (found === undefined) {
                    container.env.push({ name: v.name, value: v.value });
                } else if (found.value !== v.value || found.valueFrom !== undefined) {
                    throw new Error(
                        `post-render: ${object.kind} ${object.metadata?.name} container ${container.name} sets ${v.name} to ` +
                            `${JSON.stringify(found.value ?? found.valueFrom)}; the platform requires ${JSON.stringify(v.value)}`,
                    );
                }
            }
        }
    }
    return count;
}

/**
 * Renders the stream with the variables added. The chart's YAML is read as Kubernetes reads it
 * (YAML 1.1: an unquoted `no` is false), and each object is written back as JSON, which YAML
 * readers take as it is: a string such as "no" stays a string (written as YAML 1.2 it would lose
 * its quotes and reach the API server as a boolean).
 */
export function postRender(text, variables) {
    const out = [];
    for (const doc of parseAllDocuments(text, { version: "1.1" })) {
        if (doc.errors.length > 0) {
            throw new Error(`post-render: the chart's output does not parse: ${doc.errors[0].message}`);
        }
        const object = doc.toJSON();
        if (object === null || object === undefined) {
            continue;
        }
        addVariables(object, variables);
        out.push(JSON.stringify(object));
    }
    return out.map((d) => `---\n${d}\n`).join("");
}

if (import.meta.url === `file://${process.argv[1]}`) {
    try {
        const variables = parseVariables(process.argv.slice(2));
        process.stdout.write(postRender(readFileSync(0, "utf8"), variables));
    } catch (err) {
        process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
        process.exit(1);
    }
}
