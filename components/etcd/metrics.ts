/**
 * Reading etcd's own disk latencies from its Prometheus metrics.
 *
 * etcd serves `/metrics` in the Prometheus text exposition format. Two of its histograms say
 * whether the disk keeps up: `etcd_disk_wal_fsync_duration_seconds` (every write is appended to
 * the write-ahead log and fsynced before it is acknowledged) and
 * `etcd_disk_backend_commit_duration_seconds` (the bbolt backend's periodic commits). etcd's
 * guidance is a p99 below 10 ms and 25 ms. A histogram's counters only grow, so the latencies of
 * a given window come from two scrapes, subtracted bucket by bucket; the quantile is then
 * computed the way Prometheus' `histogram_quantile` does.
 *
 * Pure functions: the gate script computes the same figures in awk, and the TypeScript side
 * recomputes them from the raw bucket counts the script reports.
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

/** The error thrown when a histogram's counters went down between two scrapes. */
export const COUNTER_RESET = "counters reset between scrapes (etcd restarted?)";

/**
 * The observations made between two scrapes of the same histogram series: `after` minus
 * `before`, bucket by bucket. Throws when the bucket layouts differ, and when any count is
 * lower after than before (the process restarted and its counters began again).
 */
export function histogramDelta(before: Histogram, after: Histogram): Histogram {
    checkBuckets("the first scrape's histogram", before.buckets);
    checkBuckets("the second scrape's histogram", after.buckets);
    const layout = (h: Histogram): string => h.buckets.map((b) => formatLe(b.le)).join(",");
    if (layout(before) !== layout(after)) {
        throw new Error(`the two scrapes have different buckets: ${layout(before)} and ${layout(after)}`);
    }
    if (after.count < before.count) {
        throw new Error(`${COUNTER_RESET}: the count went from ${before.count} to ${after.count}`);
    }
    const buckets = after.buckets.map((b, i): HistogramBucket => {
        const was = before.buckets[i].count;
        if (b.count < was) {
            throw new Error(`${COUNTER_RESET}: the le="${formatLe(b.le)}" bucket went from ${was} to ${b.count}`);
        }
        return { le: b.le, count: b.count - was };
    });
    return { buckets, count: after.count - before.count, sum: after.sum - before.sum };
}

/** A quantile of a histogram, as Prometheus' `histogram_quantile` computes it. */
export type QuantileResult =
    | {
          readonly defined: true;
          /** The estimate, in the histogram's unit (seconds for etcd). */
          readonly value: number;
          readonly observations: number;
          /** The bucket the quantile falls in, `(lower, upper]`; `upper` is `Infinity` for `+Inf`. */
          readonly bucket: { readonly lower: number; readonly upper: number };
          /**
           * The quantile falls in the `+Inf` bucket: `value` is the highest finite bound, a lower
           * bound of the true quantile.
           */
          readonly inInfBucket: boolean;
      }
    | {
          readonly defined: false;
          /** What Prometheus returns: NaN, or -Inf/+Inf for a quantile below 0/above 1. */
          readonly value: number;
          readonly observations: number;
          readonly reason: string;
      };

/**
 * The `q`-quantile of cumulative buckets with Prometheus' `histogram_quantile` semantics: the
 * rank `q × observations` is found in the first bucket whose cumulative count reaches it, and
 * the value is interpolated linearly between that bucket's bounds (from 0 for the first bucket).
 * A quantile that falls in the `+Inf` bucket is the highest finite bound. Undefined (NaN) with
 * no observations or no finite bucket; -Inf/+Inf for `q` below 0/above 1, as Prometheus.
 * Throws on buckets no histogram exposes (see `checkBuckets`).
 */
export function histogramQuantile(q: number, buckets: readonly HistogramBucket[]): QuantileResult {
    checkBuckets("the histogram", buckets);
    const observations = buckets[buckets.length - 1].count;
    const undefinedAs = (value: number, reason: string): QuantileResult => ({ defined: false, value, observations, reason });
    if (Number.isNaN(q)) {
        return undefinedAs(Number.NaN, "the quantile is NaN");
    }
    if (q < 0) {
        return undefinedAs(Number.NEGATIVE_INFINITY, `the quantile ${q} is below 0`);
    }
    if (q > 1) {
        return undefinedAs(Number.POSITIVE_INFINITY, `the quantile ${q} is above 1`);
    }
    if (buckets.length < 2) {
        return undefinedAs(Number.NaN, "the histogram has only the +Inf bucket");
    }
    if (observations === 0) {
        return undefinedAs(Number.NaN, "the histogram has no observations");
    }
    let rank = q * observations;
    const finite = buckets.length - 1;
    let b = buckets.findIndex((bucket, i) => i < finite && bucket.count >= rank);
    if (b === -1) {
        b = finite;
    }
    if (b === finite) {
        const highest = buckets[finite - 1].le;
        return {
            defined: true,
            value: highest,
            observations,
            bucket: { lower: highest, upper: Number.POSITIVE_INFINITY },
            inInfBucket: true,
        };
    }
    const end = buckets[b].le;
    if (b === 0 && end <= 0) {
        return { defined: true, value: end, observations, bucket: { lower: Number.NEGATIVE_INFINITY, upper: end }, inInfBucket: false };
    }
    let start = 0;
    let count = buckets[b].count;
    if (b > 0) {
        start = buckets[b - 1].le;
        count -= buckets[b - 1].count;
        rank -= buckets[b - 1].count;
    }
    if (count === 0) {
        // Only q = 0 with an empty first bucket gets here (0/0 in Prometheus).
        return undefinedAs(Number.NaN, "the quantile 0 of a histogram whose first bucket is empty");
    }
    // The same operations in the same order as Prometheus (and the gate script's awk).
    const value = start + (end - start) * (rank / count);
    return { defined: true, value, observations, bucket: { lower: start, upper: end }, inInfBucket: false };
}

/** etcd's disk latency histograms the gate decides on. */
export const ETCD_WAL_FSYNC = "etcd_disk_wal_fsync_duration_seconds";
export const ETCD_BACKEND_COMMIT = "etcd_disk_backend_commit_duration_seconds";
export type EtcdLatencyMetric = typeof ETCD_WAL_FSYNC | typeof ETCD_BACKEND_COMMIT;

export interface EtcdLatencyMetricInfo {
    /** What the histogram measures, for messages. */
    readonly label: string;
    /** The stack config key that sets its threshold. */
    readonly overrideKey: string;
    /** etcd's guidance for its p99, ms. */
    readonly defaultThresholdMs: number;
}

export const ETCD_LATENCY_METRICS: Readonly<Record<EtcdLatencyMetric, EtcdLatencyMetricInfo>> = {
    [ETCD_WAL_FSYNC]: { label: "WAL fsync", overrideKey: "zerotouch:etcd.walFsyncThresholdMs", defaultThresholdMs: 10 },
    [ETCD_BACKEND_COMMIT]: {
        label: "backend commit",
        overrideKey: "zerotouch:etcd.backendCommitThresholdMs",
        defaultThresholdMs: 25,
    },
};

/** Milliseconds with 2 decimals, rounded half up: `Math.floor(ms × 100 + 0.5)` hundredths (awk does the same). */
export function formatMs2(ms: number): string {
    if (!Number.isFinite(ms) || ms < 0) {
        throw new Error(`a latency must be a finite, non-negative number of ms, got ${ms}`);
    }
    const hundredths = Math.floor(ms * 100 + 0.5);
    return `${Math.floor(hundredths / 100)}.${String(hundredths % 100).padStart(2, "0")}`;
}

/** A bucket bound in ms, as awk's `%.12g` prints it for bounds of 0.0001 ms and more (`8.000000000000002` → `8`). */
export function formatBoundMs(ms: number): string {
    return String(Number(ms.toPrecision(12)));
}

/** "p99" for 0.99, "p99.9" for 0.999. */
export function quantileLabel(q: number): string {
    return `p${Number((q * 100).toPrecision(12))}`;
}

export interface LatencyGateArgs {
    /** Node name, for the messages. */
    readonly node: string;
    readonly metric: EtcdLatencyMetric;
    /** The histogram before the window, and after it (same series, same process). */
    readonly before: Histogram;
    readonly after: Histogram;
    /** Which quantile decides, 0 < q < 1 (the gate uses 0.99). */
    readonly quantile: number;
    /** Highest acceptable quantile, ms. */
    readonly thresholdMs: number;
    /** Fewest observations in the window that make the quantile trustworthy (at least 1). */
    readonly minSamples: number;
}

export type LatencyVerdict = "passed" | "above-threshold" | "too-few-samples";

export interface LatencyGateResult {
    readonly node: string;
    readonly metric: EtcdLatencyMetric;
    readonly quantile: number;
    readonly thresholdMs: number;
    readonly minSamples: number;
    /** Observations in the window. */
    readonly samples: number;
    /** The quantile (p99 for 0.99) in ms; `null` without observations. */
    readonly quantileMs: number | null;
    /** The bucket it fell in, `(lowerMs, upperMs]` in ms; `upperMs` is `null` for `+Inf`. */
    readonly bucketMs: { readonly lowerMs: number; readonly upperMs: number | null } | null;
    /**
     * Upper bound, ms, of the bucket that holds the threshold (the first bound at or above it);
     * `null` when the threshold is above the highest finite bound.
     */
    readonly slowBoundMs: number | null;
    /** Samples slower than `slowBoundMs`: certainly above the threshold. */
    readonly slowSamples: number;
    /**
     * Fewer samples than the minimum, but more than (1 − quantile) × minimum of them slower than
     * `slowBoundMs`: however many samples would follow, the quantile over the minimum stays
     * above that bound, so the metric fails without waiting for them.
     */
    readonly decidedEarly: boolean;
    /**
     * The figure is an estimate the verdict hangs on: the bucket holds the threshold strictly
     * inside (etcd's buckets double, so for the 10 ms WAL threshold that is the (8, 16] ms bucket,
     * where the linear interpolation decides), or the quantile is in the `+Inf` bucket (the figure
     * is only a lower bound).
     */
    readonly estimate: boolean;
    /** Says why the figure is an estimate, when it is. */
    readonly note: string | null;
    readonly verdict: LatencyVerdict;
    readonly passed: boolean;
    /** One line: node, metric, figure, samples, threshold; on failure also how to override. */
    readonly message: string;
}

/** The parts of a result the messages are made of. */
export type LatencyMessageFacts = Pick<
    LatencyGateResult,
    | "node"
    | "metric"
    | "quantile"
    | "thresholdMs"
    | "minSamples"
    | "samples"
    | "quantileMs"
    | "bucketMs"
    | "slowBoundMs"
    | "slowSamples"
    | "decidedEarly"
    | "verdict"
>;

/** Why a figure is an estimate, or `null` (see `LatencyGateResult.estimate`). */
export function estimateNote(facts: Pick<LatencyMessageFacts, "quantile" | "thresholdMs" | "quantileMs" | "bucketMs">): string | null {
    const { bucketMs, quantileMs } = facts;
    if (bucketMs === null || quantileMs === null) {
        return null;
    }
    const q = quantileLabel(facts.quantile);
    if (bucketMs.upperMs === null) {
        return `This ${q} lies beyond etcd's highest bucket: the true ${q} is at least ${formatMs2(quantileMs)} ms.`;
    }
    if (bucketMs.lowerMs < facts.thresholdMs && facts.thresholdMs < bucketMs.upperMs) {
        return (
            `This ${q} lies in etcd's (${formatBoundMs(bucketMs.lowerMs)}, ${formatBoundMs(bucketMs.upperMs)}] ms bucket, ` +
            `which holds the threshold: ${formatMs2(quantileMs)} ms is a linear estimate within that bucket.`
        );
    }
    return null;
}

/**
 * The one-line message of a gate result. The gate script prints exactly this text on stderr
 * for a failed metric (the tests hold both to the same wording).
 */
export function formatLatencyMessage(facts: LatencyMessageFacts): string {
    const info = ETCD_LATENCY_METRICS[facts.metric];
    const q = quantileLabel(facts.quantile);
    const figure = facts.quantileMs === null ? "" : formatMs2(facts.quantileMs);
    const note = estimateNote(facts);
    const noteText = note === null ? "" : ` ${note}`;
    const head = `etcd disk gate ${facts.verdict === "passed" ? "passed" : "failed"} on node ${facts.node}:`;
    const threshold = String(facts.thresholdMs);
    switch (facts.verdict) {
        case "passed":
            return (
                `${head} ${facts.metric} gives a ${info.label} ${q} of ${figure} ms over ${facts.samples} samples, ` +
                `within the threshold of ${threshold} ms.${noteText}`
            );
        case "above-threshold":
            return (
                `${head} ${facts.metric} gives a ${info.label} ${q} of ${figure} ms over ${facts.samples} samples, ` +
                `above the threshold of ${threshold} ms.` +
                (facts.decidedEarly
                    ? ` ${facts.slowSamples} of them took over ${formatBoundMs(facts.slowBoundMs ?? NaN)} ms, ` +
                      `more than ${Number(((1 - facts.quantile) * 100).toPrecision(12))}% of the ${facts.minSamples} samples ` +
                      `the gate needs: the ${q} stays above the threshold however many samples follow.`
                    : "") +
                `${noteText} ` +
                "etcd needs fast, durable writes; the better fix is to put the etcd data on a faster NVMe disk. " +
                `To accept this disk anyway, raise the threshold: pulumi config set --path '${info.overrideKey}' <ms>`
            );
        case "too-few-samples":
            return (
                `${head} only ${facts.samples} samples of ${facts.metric} (${info.label}) were seen, ` +
                `${facts.minSamples} are needed for a ${q}` +
                (facts.quantileMs === null ? "" : ` (the ${q} of those is ${figure} ms)`) +
                ". A slow disk lets few writes through in the time the write load is given."
            );
    }
}

/**
 * Decides one latency metric over the window between two scrapes: subtracts the scrapes,
 * computes the quantile with Prometheus' method and compares it in ms with the threshold (at
 * most the threshold passes). With fewer than `minSamples` observations the metric fails as
 * "too-few-samples", unless it is already certainly above the threshold (see `decidedEarly`).
 * Throws on invalid arguments and on counters that went down (see `histogramDelta`).
 */
export function evaluateLatencyGate(args: LatencyGateArgs): LatencyGateResult {
    const { node, metric, quantile, thresholdMs, minSamples } = args;
    if (!(quantile > 0 && quantile < 1)) {
        throw new Error(`the quantile must be above 0 and below 1, got ${quantile}`);
    }
    if (!Number.isFinite(thresholdMs) || thresholdMs <= 0) {
        throw new Error(`the threshold must be a positive number of ms, got ${thresholdMs}`);
    }
    if (!Number.isSafeInteger(minSamples) || minSamples < 1) {
        throw new Error(`the minimum sample count must be a positive integer, got ${minSamples}`);
    }
    let delta: Histogram;
    try {
        delta = histogramDelta(args.before, args.after);
    } catch (e) {
        throw new Error(`etcd disk gate on node ${node}, ${metric}: ${(e as Error).message}`);
    }
    const q = histogramQuantile(quantile, delta.buckets);
    const samples = delta.count;
    const quantileMs = q.defined ? q.value * 1000 : null;
    const bucketMs = q.defined
        ? { lowerMs: q.bucket.lower * 1000, upperMs: q.inInfBucket ? null : q.bucket.upper * 1000 }
        : null;
    // The bucket that holds the threshold, and the samples above it (the gate script does the same).
    const holder = delta.buckets.find((b) => b.le !== Number.POSITIVE_INFINITY && b.le * 1000 >= thresholdMs);
    const slowBoundMs = holder === undefined ? null : holder.le * 1000;
    const slowSamples = holder === undefined ? 0 : samples - holder.count;
    const decidedEarly = samples < minSamples && slowSamples > (1 - quantile) * minSamples;
    let verdict: LatencyVerdict;
    if (samples >= minSamples && quantileMs !== null) {
        verdict = quantileMs <= thresholdMs ? "passed" : "above-threshold";
    } else {
        verdict = decidedEarly ? "above-threshold" : "too-few-samples";
    }
    const facts: LatencyMessageFacts = {
        node,
        metric,
        quantile,
        thresholdMs,
        minSamples,
        samples,
        quantileMs,
        bucketMs,
        slowBoundMs,
        slowSamples,
        decidedEarly,
        verdict,
    };
    const note = estimateNote(facts);
    return {
        ...facts,
        estimate: note !== null,
        note,
        passed: verdict === "passed",
        message: formatLatencyMessage(facts),
    };
}
