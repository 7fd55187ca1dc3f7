import * as command from "@pulumi/command";
import * as pulumi from "@pulumi/pulumi";

/** Where and how a node is reached over SSH. */
export interface SshTarget {
    /** Address (IP or DNS name) of the node. */
    readonly host: string;
    /** SSH port. */
    readonly port: number;
    /** SSH user; `root` or a user with passwordless sudo. */
    readonly user: string;
    /** Pinned host public key (`ssh-ed25519 AAAA…`). When absent the key is recorded on first connect. */
    readonly hostKey?: string;
}

/** Bounds on how long the SSH dial retries before the step fails. */
export interface DialBounds {
    /** Failed dials tolerated before giving up. Defaults to 30. */
    readonly dialErrorLimit?: number;
    /** Seconds per dial attempt. Defaults to 10. */
    readonly perDialTimeout?: number;
}

/**
 * Connection arguments for `@pulumi/command` remote resources. The private key stays secret.
 * `hostKey` overrides the target's pinned key, e.g. with the key recorded on first connect.
 */
export function sshConnection(
    target: SshTarget,
    privateKey: pulumi.Input<string>,
    bounds: DialBounds = {},
    hostKey: pulumi.Input<string> | undefined = target.hostKey,
): command.types.input.remote.ConnectionArgs {
    return {
        host: target.host,
        port: target.port,
        user: target.user,
        privateKey: pulumi.secret(privateKey),
        ...(hostKey !== undefined ? { hostKey } : {}),
        dialErrorLimit: bounds.dialErrorLimit ?? 30,
        perDialTimeout: bounds.perDialTimeout ?? 10,
    };
}
