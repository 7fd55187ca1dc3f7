import { isIP } from "net";

/**
 * IPv4/IPv6 addresses and prefixes as numbers, so that address sets can be validated,
 * de-duplicated, sorted and printed in one canonical form.
 */
export interface Prefix {
    readonly family: 4 | 6;
    /** Network address as an unsigned integer (32 or 128 bits). */
    readonly value: bigint;
    /** Prefix length: 0–32 for IPv4, 0–128 for IPv6. */
    readonly length: number;
}

function bits(family: 4 | 6): number {
    return family === 4 ? 32 : 128;
}

function parseIpv4(text: string): bigint {
    return text.split(".").reduce((acc, octet) => (acc << 8n) | BigInt(Number(octet)), 0n);
}

function parseIpv6(text: string): bigint {
    let head = text;
    let tail: bigint[] = [];
    // An embedded IPv4 tail (`::ffff:192.0.2.1`) stands for the last two groups.
    const lastColon = head.lastIndexOf(":");
    if (head.includes(".", lastColon)) {
        const v4 = parseIpv4(head.slice(lastColon + 1));
        tail = [v4 >> 16n, v4 & 0xffffn];
        head = head.slice(0, lastColon + 1) + "0";
    }
    const [left, right] = head.includes("::") ? head.split("::") : [head, undefined];
    const groups = (s: string | undefined): bigint[] =>
        s === undefined || s === "" ? [] : s.split(":").map((g) => BigInt(parseInt(g, 16)));
    let all: bigint[];
    if (right === undefined) {
        all = groups(left);
    } else {
        const l = groups(left);
        const r = groups(right);
        all = [...l, ...Array<bigint>(8 - l.length - r.length).fill(0n), ...r];
    }
    if (tail.length > 0) {
        all = [...all.slice(0, 6), ...tail];
    }
    return all.reduce((acc, g) => (acc << 16n) | g, 0n);
}

/**
 * Parses `address` or `address/length`. Returns an error message instead of throwing so that
 * callers can say which setting and node the bad value belongs to.
 */
export function parsePrefix(text: string): Prefix | string {
    const [address, length, ...rest] = text.trim().split("/");
    const family = isIP(address);
    if (family === 0 || rest.length > 0 || address.includes("%")) {
        return `"${text}" is not an IPv4 or IPv6 address or CIDR`;
    }
    const fam = family as 4 | 6;
    const max = bits(fam);
    let len = max;
    if (length !== undefined) {
        if (!/^\d{1,3}$/.test(length) || Number(length) > max) {
            return `"${text}" has an invalid prefix length (0–${max} allowed)`;
        }
        len = Number(length);
    }
    const value = fam === 4 ? parseIpv4(address) : parseIpv6(address);
    const hostMask = (1n << BigInt(max - len)) - 1n;
    if ((value & hostMask) !== 0n) {
        return `"${text}" has host bits set (the network is ${formatPrefix({ family: fam, value: value & ~hostMask, length: len })})`;
    }
    return { family: fam, value, length: len };
}

function formatIpv6(value: bigint): string {
    const groups = Array.from({ length: 8 }, (_, i) => Number((value >> BigInt(112 - 16 * i)) & 0xffffn));
    // RFC 5952: compress the longest run (leftmost on ties) of two or more zero groups.
    let bestStart = -1;
    let bestLen = 1;
    for (let i = 0; i < 8; ) {
        if (groups[i] !== 0) {
            i++;
            continue;
        }
        let j = i;
        while (j < 8 && groups[j] === 0) {
            j++;
        }
        if (j - i > bestLen) {
            bestStart = i;
            bestLen = j - i;
        }
        i = j;
    }
    const hex = groups.map((g) => g.toString(16));
    if (bestStart < 0) {
        return hex.join(":");
    }
    return `${hex.slice(0, bestStart).join(":")}::${hex.slice(bestStart + bestLen).join(":")}`;
}

/** Canonical text: a host prefix prints as the bare address, others as `network/length`. */
export function formatPrefix(p: Prefix): string {
    const address =
        p.family === 4
            ? [24n, 16n, 8n, 0n].map((s) => String((p.value >> s) & 0xffn)).join(".")
            : formatIpv6(p.value);
    return p.length === bits(p.family) ? address : `${address}/${p.length}`;
}

function contains(outer: Prefix, inner: Prefix): boolean {
    if (outer.family !== inner.family || outer.length > inner.length) {
        return false;
    }
    const shift = BigInt(bits(outer.family) - outer.length);
    return outer.value >> shift === inner.value >> shift;
}

/**
 * Sorts by address, drops duplicates and prefixes covered by another one (nftables interval
 * sets reject overlapping elements). The result depends only on the set of addresses covered
 * by the input, not on its order or spelling.
 */
export function normalizePrefixes(prefixes: readonly Prefix[]): Prefix[] {
    const sorted = [...prefixes].sort((a, b) =>
        a.family !== b.family ? a.family - b.family : a.value !== b.value ? (a.value < b.value ? -1 : 1) : a.length - b.length,
    );
    const out: Prefix[] = [];
    for (const p of sorted) {
        const last = out[out.length - 1];
        if (last === undefined || !contains(last, p)) {
            out.push(p);
        }
    }
    return out;
}
