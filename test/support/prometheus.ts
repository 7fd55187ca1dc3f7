/**
 * Reading Prometheus' text exposition format, for the tests: they check the etcd disk gate's
 * recorded scrapes and what the gate script (components/etcd/scripts/wal-fsync-gate.sh, which
 * decides) reports of them against an independent reading.
 */

/** Metric types of the text format. */
export type MetricType = "counter" | "gauge" | "histogram" | "summary" | "untyped";

export type Labels = Readonly<Record<string, string>>;

/** One sample line. */
export interface Sample {
    /** The sample's own name, e.g. `x_bucket` for a sample of histogram `x`. */
    readonly name: string;
    readonly labels: Labels;
    /** May be NaN or ±Infinity. */
    readonly value: number;
    /** Milliseconds since the epoch, when the line carries one. */
    readonly timestampMs?: number;
}

export interface MetricFamily {
    readonly name: string;
    /** `untyped` when no `# TYPE` line names the family. */
    readonly type: MetricType;
    /** The `# HELP` text, unescaped. */
    readonly help?: string;
    readonly samples: readonly Sample[];
}

/** A parsed scrape: families by name, in the order they first appear. */
export type Exposition = ReadonlyMap<string, MetricFamily>;

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const METRIC_NAME_AT = /[a-zA-Z_:][a-zA-Z0-9_:]*/y;
const LABEL_NAME_AT = /[a-zA-Z_][a-zA-Z0-9_]*/y;
const DECIMAL = /^[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?$/;
const TIMESTAMP = /^-?[0-9]+$/;
const TYPES: readonly MetricType[] = ["counter", "gauge", "histogram", "summary", "untyped"];

/**
 * A sample value as the text format writes it (Go's float syntax): decimal or scientific
 * notation, `NaN`, `+Inf`, `-Inf` (also `Inf`, `infinity`, any case). Throws on anything else.
 */
export function parseSampleValue(text: string): number {
    const lower = text.toLowerCase();
    if (/^[+-]?nan$/.test(lower)) {
        return Number.NaN;
    }
    if (/^\+?inf(inity)?$/.test(lower)) {
        return Number.POSITIVE_INFINITY;
    }
    if (/^-inf(inity)?$/.test(lower)) {
        return Number.NEGATIVE_INFINITY;
    }
    if (!DECIMAL.test(text)) {
        throw new Error(`not a sample value: ${JSON.stringify(text)}`);
    }
    return Number(text);
}

interface FamilyBuilder {
    name: string;
    type: MetricType;
    typed: boolean;
    help?: string;
    samples: Sample[];
}

function unescapeHelp(text: string): string {
    return text.replace(/\\(\\|n)/g, (_m, c: string) => (c === "n" ? "\n" : "\\"));
}

function isBlank(c: string | undefined): boolean {
    return c === " " || c === "\t";
}

/** A position in a sample line being parsed. */
interface Cursor {
    readonly line: string;
    i: number;
}

function skipBlanks(c: Cursor): void {
    while (isBlank(c.line[c.i])) {
        c.i++;
    }
}

/** A label value from its opening quote (at `c.i`) through its closing one, escapes resolved. */
function parseLabelValue(c: Cursor, label: string): string {
    if (c.line[c.i] !== '"') {
        throw new Error(`expected '"' to open the value of label ${label}`);
    }
    c.i++;
    let value = "";
    for (;;) {
        const ch = c.line[c.i];
        if (ch === undefined) {
            throw new Error(`the value of label ${label} is not closed`);
        }
        c.i++;
        if (ch === '"') {
            return value;
        }
        if (ch !== "\\") {
            value += ch;
            continue;
        }
        const e = c.line[c.i];
        c.i++;
        if (e === "\\" || e === '"') {
            value += e;
        } else if (e === "n") {
            value += "\n";
        } else {
            throw new Error(`invalid escape \\${e ?? ""} in the value of label ${label}`);
        }
    }
}

/** The label set from its opening brace (at `c.i`) through its closing one. */
function parseLabels(c: Cursor): Record<string, string> {
    const labels: Record<string, string> = {};
    c.i++;
    for (;;) {
        skipBlanks(c);
        if (c.line[c.i] === "}") {
            c.i++;
            return labels;
        }
        LABEL_NAME_AT.lastIndex = c.i;
        const label = LABEL_NAME_AT.exec(c.line)?.[0];
        if (label === undefined) {
            throw new Error(`expected a label name at column ${c.i + 1}`);
        }
        c.i += label.length;
        skipBlanks(c);
        if (c.line[c.i] !== "=") {
            throw new Error(`expected '=' after label ${label}`);
        }
        c.i++;
        skipBlanks(c);
        const value = parseLabelValue(c, label);
        if (Object.prototype.hasOwnProperty.call(labels, label)) {
            throw new Error(`label ${label} appears twice`);
        }
        labels[label] = value;
        skipBlanks(c);
        if (c.line[c.i] === ",") {
            c.i++;
        } else if (c.line[c.i] !== "}") {
            throw new Error(`expected ',' or '}' after the value of label ${label}`);
        }
    }
}

/** Parses one sample line; throws a message without the line number (the caller adds it). */
function parseSampleLine(line: string): Sample {
    METRIC_NAME_AT.lastIndex = 0;
    const name = METRIC_NAME_AT.exec(line)?.[0];
    if (name === undefined) {
        throw new Error("a sample line must start with a metric name");
    }
    const c: Cursor = { line, i: name.length };
    skipBlanks(c);
    let labels: Record<string, string> = {};
    if (line[c.i] !== "{") {
        c.i = name.length;
    } else {
        labels = parseLabels(c);
    }
    const i = c.i;
    const rest = line.slice(i).trim().split(/[ \t]+/);
    if (rest.length === 0 || rest[0] === "") {
        throw new Error(`sample ${name} has no value`);
    }
    if (rest.length > 2) {
        throw new Error(`sample ${name} has more than a value and a timestamp`);
    }
    if (i < line.length && !isBlank(line[i])) {
        throw new Error(`expected a blank before the value of sample ${name}`);
    }
    const value = parseSampleValue(rest[0]);
    const ts = rest[1];
    if (ts === undefined) {
        return { name, labels, value };
    }
    if (!TIMESTAMP.test(ts)) {
        throw new Error(`sample ${name} has a timestamp that is not an integer of ms: ${JSON.stringify(ts)}`);
    }
    return { name, labels, value, timestampMs: Number(ts) };
}

function seriesKey(name: string, labels: Labels): string {
    return JSON.stringify([name, ...Object.keys(labels).sort().map((k) => [k, labels[k]])]);
}

/** The family a sample belongs to: its own, or the histogram/summary its suffix points to. */
function familyName(sample: string, families: ReadonlyMap<string, FamilyBuilder>): string {
    if (families.get(sample)?.typed === true) {
        return sample;
    }
    for (const suffix of ["_bucket", "_sum", "_count"]) {
        if (sample.endsWith(suffix)) {
            const base = families.get(sample.slice(0, -suffix.length));
            if (base?.type === "histogram" || (base?.type === "summary" && suffix !== "_bucket")) {
                return base.name;
            }
        }
    }
    return sample;
}

/**
 * Parses a scrape in the Prometheus text exposition format (version 0.0.4): `# HELP` and
 * `# TYPE` lines, other comments (ignored), samples with labels (escaped `\\`, `\"`, `\n`),
 * values in Go's float syntax (`NaN`, `+Inf`, scientific notation) and optional timestamps.
 * A histogram's `_bucket`, `_sum` and `_count` samples (a summary's `_sum` and `_count`) join
 * its family; a sample of no declared family forms an `untyped` one. Throws naming the line on
 * a malformed line, a second TYPE or HELP for a family, a TYPE after the family's samples, or a
 * duplicate series.
 */
export function parsePrometheusText(text: string): Exposition {
    const families = new Map<string, FamilyBuilder>();
    const seen = new Set<string>();
    const family = (name: string): FamilyBuilder => {
        let f = families.get(name);
        if (f === undefined) {
            f = { name, type: "untyped", typed: false, samples: [] };
            families.set(name, f);
        }
        return f;
    };
    text.split("\n").forEach((raw, index) => {
        const line = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
        const fail = (why: string): Error => new Error(`metrics line ${index + 1}: ${why}: ${JSON.stringify(line.slice(0, 200))}`);
        if (line.trim() === "") {
            return;
        }
        if (line.trimStart().startsWith("#")) {
            const m = /^\s*#[ \t]+(HELP|TYPE)[ \t]+(\S+)(?:[ \t]+(.*))?$/.exec(line);
            if (m === null) {
                return; // a plain comment
            }
            const [, keyword, name, rest = ""] = m;
            if (!METRIC_NAME.test(name)) {
                throw fail(`invalid metric name ${JSON.stringify(name)}`);
            }
            const f = family(name);
            if (keyword === "HELP") {
                if (f.help !== undefined) {
                    throw fail(`a second HELP for ${name}`);
                }
                f.help = unescapeHelp(rest);
                return;
            }
            const type = rest.trim() as MetricType;
            if (!TYPES.includes(type)) {
                throw fail(`unknown metric type ${JSON.stringify(rest.trim())}`);
            }
            if (f.typed) {
                throw fail(`a second TYPE for ${name}`);
            }
            if (f.samples.length > 0) {
                throw fail(`the TYPE of ${name} comes after its samples`);
            }
            f.type = type;
            f.typed = true;
            return;
        }
        let sample: Sample;
        try {
            sample = parseSampleLine(line);
        } catch (e) {
            throw fail((e as Error).message);
        }
        const key = seriesKey(sample.name, sample.labels);
        if (seen.has(key)) {
            throw fail(`a second sample of the same series`);
        }
        seen.add(key);
        const f = family(familyName(sample.name, families));
        if (f.type === "histogram" && sample.name === f.name) {
            throw fail(`a sample of histogram ${f.name} without _bucket, _sum or _count`);
        }
        if (f.type === "histogram" && sample.name.endsWith("_bucket") && sample.labels.le === undefined) {
            throw fail(`a bucket of histogram ${f.name} without an le label`);
        }
        f.samples.push(sample);
    });
    const out = new Map<string, MetricFamily>();
    for (const f of families.values()) {
        out.set(f.name, {
            name: f.name,
            type: f.type,
            ...(f.help !== undefined ? { help: f.help } : {}),
            samples: f.samples,
        });
    }
    return out;
}

/** One cumulative bucket: how many observations were at most `le` (seconds for etcd). */
export interface HistogramBucket {
    /** Upper bound; `Infinity` for the `+Inf` bucket. */
    readonly le: number;
    readonly count: number;
}

/** One series of a histogram: cumulative buckets sorted by bound, the last one `+Inf`. */
export interface Histogram {
    readonly buckets: readonly HistogramBucket[];
    /** Number of observations (equals the `+Inf` bucket). */
    readonly count: number;
    /** Sum of the observations. */
    readonly sum: number;
}

/** A bound as the text format writes it (`+Inf` for infinity). */
export function formatLe(le: number): string {
    return le === Number.POSITIVE_INFINITY ? "+Inf" : String(le);
}

function describeLabels(labels: Labels): string {
    const keys = Object.keys(labels).sort();
    return `{${keys.map((k) => `${k}=${JSON.stringify(labels[k])}`).join(",")}}`;
}

/**
 * Checks that buckets are what a histogram exposes: bounds strictly increasing, the last one
 * `+Inf`, counts finite, non-negative and cumulative. Throws naming `what` otherwise.
 */
export function checkBuckets(what: string, buckets: readonly HistogramBucket[]): void {
    if (buckets.length === 0) {
        throw new Error(`${what} has no buckets`);
    }
    buckets.forEach((b, i) => {
        if (Number.isNaN(b.le)) {
            throw new Error(`${what} has a bucket whose le is NaN`);
        }
        if (!Number.isFinite(b.count) || b.count < 0) {
            throw new Error(`${what}: the le="${formatLe(b.le)}" bucket has count ${b.count}; counts are finite and not negative`);
        }
        const prev = buckets[i - 1];
        if (prev !== undefined) {
            if (b.le <= prev.le) {
                throw new Error(`${what}: bucket bounds must increase, le="${formatLe(prev.le)}" comes before le="${formatLe(b.le)}"`);
            }
            if (b.count < prev.count) {
                throw new Error(
                    `${what}: bucket counts are not cumulative: le="${formatLe(prev.le)}" has ${prev.count}, ` +
                        `le="${formatLe(b.le)}" has ${b.count}`,
                );
            }
        }
    });
    const last = buckets[buckets.length - 1];
    if (last.le !== Number.POSITIVE_INFINITY) {
        throw new Error(`${what} has no +Inf bucket`);
    }
}

/**
 * One series of histogram `name` from a scrape: the series whose labels include `labels` (the
 * `le` label aside). Throws when the family is missing or not a histogram, when no series or
 * more than one matches, or when the series is inconsistent (missing `_sum`/`_count`, `_count`
 * not equal to the `+Inf` bucket, buckets not cumulative, no `+Inf` bucket).
 */
export function extractHistogram(exposition: Exposition, name: string, labels: Labels = {}): Histogram {
    const family = exposition.get(name);
    if (family === undefined) {
        throw new Error(`the scrape has no metric ${name}`);
    }
    if (family.type !== "histogram") {
        throw new Error(`${name} is a ${family.type} in the scrape, not a histogram`);
    }
    interface Series {
        labels: Labels;
        buckets: HistogramBucket[];
        sum?: number;
        count?: number;
    }
    const series = new Map<string, Series>();
    for (const s of family.samples) {
        const { le, ...rest } = s.labels;
        if (Object.keys(labels).some((k) => rest[k] !== labels[k])) {
            continue;
        }
        const key = seriesKey(name, rest);
        let entry = series.get(key);
        if (entry === undefined) {
            entry = { labels: rest, buckets: [] };
            series.set(key, entry);
        }
        if (s.name === `${name}_bucket`) {
            entry.buckets.push({ le: parseSampleValue(le ?? ""), count: s.value });
        } else if (s.name === `${name}_sum`) {
            entry.sum = s.value;
        } else if (s.name === `${name}_count`) {
            entry.count = s.value;
        }
    }
    const wanted = Object.keys(labels).length > 0 ? ` with labels ${describeLabels(labels)}` : "";
    const [only, ...others] = [...series.values()];
    if (only === undefined) {
        throw new Error(`the scrape has no series of ${name}${wanted}`);
    }
    if (others.length > 0) {
        const all = [only, ...others].map((s) => describeLabels(s.labels)).join(", ");
        throw new Error(`${name}${wanted} has ${others.length + 1} series (${all}); name labels to choose one`);
    }
    const what = `histogram ${name}${describeLabels(only.labels)}`;
    const buckets = [...only.buckets].sort((a, b) => a.le - b.le);
    checkBuckets(what, buckets);
    if (only.count === undefined || only.sum === undefined) {
        throw new Error(`${what} has no ${only.count === undefined ? "_count" : "_sum"}`);
    }
    const inf = buckets[buckets.length - 1].count;
    if (only.count !== inf) {
        throw new Error(`${what}: _count is ${only.count} but the +Inf bucket has ${inf}`);
    }
    return { buckets, count: only.count, sum: only.sum };
}

