import { isIP } from "net";

/** A parsed CIDR block. Addresses are held as bigints so IPv4 and IPv6 share one code path. */
export interface Cidr {
    readonly family: 4 | 6;
    readonly network: bigint;
    readonly prefix: number;
    /** Canonical text form: `10.8.0.0/24`, `2001:db8::/32`. */
    readonly text: string;
}

export type CidrResult = { ok: true; cidr: Cidr } | { ok: false; reason: string };

function ipv4ToBigInt(address: string): bigint {
    return address.split(".").reduce((acc, octet) => (acc << 8n) | BigInt(Number(octet)), 0n);
}

function ipv6ToBigInt(address: string): bigint {
    let text = address;
    // An embedded IPv4 tail (::ffff:192.0.2.1) becomes two hextets.
    const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
    if (v4) {
        const n = ipv4ToBigInt(v4[1]);
        text = `${text.slice(0, -v4[1].length)}${(n >> 16n).toString(16)}:${(n & 0xffffn).toString(16)}`;
    }
    const [head, tail] = text.split("::");
    const headParts = head === "" ? [] : head.split(":");
    const tailParts = tail === undefined || tail === "" ? [] : tail.split(":");
    const missing = 8 - headParts.length - tailParts.length;
    const parts = tail === undefined ? headParts : [...headParts, ...Array<string>(missing).fill("0"), ...tailParts];
    return parts.reduce((acc, part) => (acc << 16n) | BigInt(parseInt(part, 16)), 0n);
}

/** Converts an IP address (either family) to its numeric value, or undefined when it is not an IP. */
export function ipToBigInt(address: string): { family: 4 | 6; value: bigint } | undefined {
    const family = isIP(address);
    if (family === 4) {
        return { family: 4, value: ipv4ToBigInt(address) };
    }
    if (family === 6) {
        return { family: 6, value: ipv6ToBigInt(address) };
    }
    return undefined;
}

function bigIntToIp(value: bigint, family: 4 | 6): string {
    if (family === 4) {
        return [24n, 16n, 8n, 0n].map((s) => String((value >> s) & 0xffn)).join(".");
    }
    const hextets = Array.from({ length: 8 }, (_, i) => (value >> BigInt((7 - i) * 16)) & 0xffffn);
    // Compress the longest run of zero hextets (RFC 5952).
    let bestStart = -1;
    let bestLen = 0;
    for (let i = 0; i < 8; ) {
        if (hextets[i] !== 0n) {
            i++;
            continue;
        }
        let j = i;
        while (j < 8 && hextets[j] === 0n) {
            j++;
        }
        if (j - i > bestLen && j - i > 1) {
            bestStart = i;
            bestLen = j - i;
        }
        i = j;
    }
    const words = hextets.map((h) => h.toString(16));
    if (bestStart < 0) {
        return words.join(":");
    }
    const left = words.slice(0, bestStart).join(":");
    const right = words.slice(bestStart + bestLen).join(":");
    return `${left}::${right}`;
}

/** Parses `a.b.c.d/n` or `x::y/n`. Host bits must be zero, so a typo cannot widen or shift a range silently. */
export function parseCidr(text: string): CidrResult {
    const slash = text.indexOf("/");
    if (slash < 0) {
        return { ok: false, reason: "missing /prefix" };
    }
    const address = text.slice(0, slash);
    const prefixText = text.slice(slash + 1);
    const ip = ipToBigInt(address);
    if (!ip) {
        return { ok: false, reason: `${JSON.stringify(address)} is not an IPv4 or IPv6 address` };
    }
    const bits = ip.family === 4 ? 32 : 128;
    if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > bits) {
        return { ok: false, reason: `prefix must be 0 to ${bits}` };
    }
    const prefix = Number(prefixText);
    const hostMask = (1n << BigInt(bits - prefix)) - 1n;
    if ((ip.value & hostMask) !== 0n) {
        const network = ip.value & ~hostMask;
        return {
            ok: false,
            reason: `host bits are set; the network is ${bigIntToIp(network, ip.family)}/${prefix}`,
        };
    }
    return {
        ok: true,
        cidr: { family: ip.family, network: ip.value, prefix, text: `${bigIntToIp(ip.value, ip.family)}/${prefix}` },
    };
}

/** Whether `address` lies inside `cidr`. */
export function cidrContains(cidr: Cidr, address: string): boolean {
    const ip = ipToBigInt(address);
    if (!ip || ip.family !== cidr.family) {
        return false;
    }
    const bits = cidr.family === 4 ? 32 : 128;
    const shift = BigInt(bits - cidr.prefix);
    return ip.value >> shift === cidr.network >> shift;
}

/**
 * The IPv4 address inside an IPv4-mapped IPv6 address (`::ffff:203.0.113.21`, `::ffff:cb00:7115`),
 * or undefined for any other address.
 */
export function ipv4Mapped(address: string): string | undefined {
    const ip = ipToBigInt(address);
    if (ip === undefined || ip.family !== 6 || ip.value >> 32n !== 0xffffn) {
        return undefined;
    }
    return bigIntToIp(ip.value & 0xffffffffn, 4);
}

/** The host route for one address: `192.0.2.1/32`, `2001:db8::1/128`. */
export function hostCidr(address: string): string {
    const ip = ipToBigInt(address);
    if (!ip) {
        throw new Error(`${JSON.stringify(address)} is not an IP address`);
    }
    return `${bigIntToIp(ip.value, ip.family)}/${ip.family === 4 ? 32 : 128}`;
}
