import type { ResourceValidationPolicy } from "@pulumi/policy";

import { configList, get, plain, REMOTE_COMMAND, show, stackOfUrn, stringListProperty, UNKNOWN } from "./lib";

export const SSH_HOST_KEY = "ssh-host-key-pinned";

/** Stacks where every SSH connection pins its host key. Default of `stacks`. */
export const PINNED_STACKS: readonly string[] = ["prod"];

const HOST_KEY = /^(ssh-ed25519|ecdsa-sha2-nistp(256|384|521)|ssh-rsa|sk-ssh-ed25519@openssh\.com) [A-Za-z0-9+/]+={0,3}$/;

/**
 * In the listed stacks (the stack is read from the URN), every `remote.Command` connects with a
 * pinned host key (`connection.hostKey`), known at preview: a key learnt on first connect is
 * trust on first use, which a production node must not rely on. Missing or unknown keys are
 * violations. Public keys are not secret; messages still show only the key type.
 */
export const sshHostKeyPinned: ResourceValidationPolicy = {
    name: SSH_HOST_KEY,
    description: "In production stacks, every node SSH connection (remote.Command connection.hostKey) pins a host key known from config.",
    enforcementLevel: "mandatory",
    configSchema: {
        properties: {
            stacks: stringListProperty("Stack names where host keys must be pinned. Defaults to prod."),
        },
    },
    validateResource: (args, reportViolation) => {
        if (args.type !== REMOTE_COMMAND) {
            return;
        }
        const stacks = configList(args.getConfig<Record<string, unknown>>(), "stacks", PINNED_STACKS);
        const stack = stackOfUrn(args.urn);
        if (stack === undefined || !stacks.includes(stack)) {
            return;
        }
        const props = plain(args.props);
        const host = get(props, ["connection", "host"]);
        const key = get(props, ["connection", "hostKey"]);
        const what = `command ${args.name} (host ${show(host)}, stack ${stack})`;
        if (key === UNKNOWN) {
            reportViolation(`${what}: connection.hostKey is unknown during preview (learnt on first connect); allowed: a host key pinned in config (nodes.<node>.sshHostKey)`);
        } else if (typeof key !== "string" || key.trim() === "") {
            reportViolation(`${what}: connection.hostKey is ${show(key)}; allowed: a host key pinned in config (nodes.<node>.sshHostKey)`);
        } else if (!HOST_KEY.test(key.trim())) {
            reportViolation(`${what}: connection.hostKey is not a public key of a known type (starts ${JSON.stringify(key.trim().split(" ")[0].slice(0, 30))}); allowed: "<type> <base64>", e.g. ssh-ed25519 AAAA...`);
        }
    },
};
