import * as fs from "fs";
import * as path from "path";

import {
    COUNTER_RESET,
    ETCD_BACKEND_COMMIT,
    ETCD_WAL_FSYNC,
    evaluateLatencyGate,
    extractHistogram,
    formatBoundMs,
    formatMs2,
    Histogram,
    HistogramBucket,
    histogramDelta,
    histogramQuantile,
    LatencyGateArgs,
    parsePrometheusText,
    parseSampleValue,
    quantileLabel,
} from "../components/etcd/metrics";

/**
 * Fixtures in test/fixtures/etcd were recorded with Debian's etcd 3.4.23 on this project's build
 * machine by test/fixtures/etcd/record.sh: /metrics of a single-member etcd on loopback before
 * and after 500 sequential `etcdctl put`s,
 *   normal-*.prom  data on the machine's ext4 disk
 *   slow-*.prom    data on an ext4 loop device whose writes are throttled to 40 IOPS (blkio)
 */
const FIXTURES = path.join(__dirname, "fixtures", "etcd");
const scrape = (file: string) => parsePrometheusText(fs.readFileSync(path.join(FIXTURES, file), "utf8"));

/** Cumulative buckets from [le, count] pairs; "+Inf" for infinity. */
const buckets = (...pairs: [number | "+Inf", number][]): HistogramBucket[] =>
    pairs.map(([le, count]) => ({ le: le === "+Inf" ? Infinity : le, count }));
const hist = (b: HistogramBucket[], sum = 0): Histogram => ({ buckets: b, count: b[b.length - 1].count, sum });

/** etcd's bucket bounds (seconds): 0.001 × 2^i, i = 0..13, then +Inf. */
const ETCD_LES = Array.from({ length: 14 }, (_, i) => 0.001 * 2 ** i);
/** An etcd-shaped histogram from per-bucket (not cumulative) counts, keyed by upper bound in ms. */
function etcdHist(perBucketByMs: Partial<Record<number | "inf", number>>): Histogram {
    let total = 0;
    const b: HistogramBucket[] = ETCD_LES.map((le) => {
        total += perBucketByMs[Math.round(le * 1000)] ?? 0;
        return { le, count: total };
    });
    total += perBucketByMs.inf ?? 0;
    b.push({ le: Infinity, count: total });
    return hist(b);
}
const EMPTY = etcdHist({});

describe("parseSampleValue", () => {
    it.each<[string, number]>([
        ["0", 0],
        ["4", 4],
        ["-1.5", -1.5],
        ["+1.5", 1.5],
        ["7.1977e-05", 7.1977e-5],
        ["2.147483648e+09", 2147483648],
        ["1E3", 1000],
        [".5", 0.5],
        ["+Inf", Infinity],
        ["Inf", Infinity],
        ["-Inf", -Infinity],
        ["+infinity", Infinity],
    ])("reads %s", (text, value) => {
        expect(parseSampleValue(text)).toBe(value);
    });

    it.each(["NaN", "nan", "-NaN"])("reads %s as NaN", (text) => {
        expect(parseSampleValue(text)).toBeNaN();
    });

    it.each(["", "abc", "1,5", "0x10", "1e", "--1", "Infinite"])("refuses %j", (text) => {
        expect(() => parseSampleValue(text)).toThrow(/not a sample value/);
    });
});

describe("parsePrometheusText", () => {
    const text = [
        "# A comment that is neither HELP nor TYPE",
        "# HELP http_requests_total Requests, with a \\\\ backslash and a\\nnewline.",
        "# TYPE http_requests_total counter",
        'http_requests_total{method="post",code="200"} 1027 1395066363000',
        'http_requests_total{method="post",code="400"}    3 1395066363000',
        'http_requests_total{ method = "get" , code="200", } 1.5e+3',
        "",
        "# HELP msdos_file_access_time_seconds A label value with quotes and a backslash.",
        "# TYPE msdos_file_access_time_seconds gauge",
        'msdos_file_access_time_seconds{path="C:\\\\DIR\\\\FILE.TXT",error="Cannot find file:\\n\\"FILE.TXT\\""} 1.458255915e9',
        "metric_without_timestamp_and_labels 12.47",
        "something_weird{problem=\"division by zero\"} +Inf -3982045",
        "not_a_number NaN",
        "minus_infinity -Inf",
        "# TYPE rpc_duration_seconds summary",
        'rpc_duration_seconds{quantile="0.5"} 4773',
        'rpc_duration_seconds{quantile="0.99"} 76656',
        "rpc_duration_seconds_sum 1.7560473e+07",
        "rpc_duration_seconds_count 2693",
        "# HELP http_request_duration_seconds A histogram of the request duration.",
        "# TYPE http_request_duration_seconds histogram",
        'http_request_duration_seconds_bucket{le="0.05"} 24054',
        'http_request_duration_seconds_bucket{le="0.1"} 33444',
        'http_request_duration_seconds_bucket{le="+Inf"} 144320',
        "http_request_duration_seconds_sum 53423",
        "http_request_duration_seconds_count 144320",
        "",
    ].join("\r\n");
    const families = parsePrometheusText(text);

    it("groups samples into families in the order they appear, with their type and help", () => {
        expect([...families.keys()]).toEqual([
            "http_requests_total",
            "msdos_file_access_time_seconds",
            "metric_without_timestamp_and_labels",
            "something_weird",
            "not_a_number",
            "minus_infinity",
            "rpc_duration_seconds",
            "http_request_duration_seconds",
        ]);
        expect(families.get("http_requests_total")?.type).toBe("counter");
        expect(families.get("http_requests_total")?.help).toBe("Requests, with a \\ backslash and a\nnewline.");
        expect(families.get("metric_without_timestamp_and_labels")).toEqual({
            name: "metric_without_timestamp_and_labels",
            type: "untyped",
            samples: [{ name: "metric_without_timestamp_and_labels", labels: {}, value: 12.47 }],
        });
    });

    it("reads labels (blanks and a trailing comma allowed), values and timestamps", () => {
        expect(families.get("http_requests_total")?.samples).toEqual([
            { name: "http_requests_total", labels: { method: "post", code: "200" }, value: 1027, timestampMs: 1395066363000 },
            { name: "http_requests_total", labels: { method: "post", code: "400" }, value: 3, timestampMs: 1395066363000 },
            { name: "http_requests_total", labels: { method: "get", code: "200" }, value: 1500 },
        ]);
    });

    it("unescapes label values: backslash, quote, newline", () => {
        expect(families.get("msdos_file_access_time_seconds")?.samples[0]).toEqual({
            name: "msdos_file_access_time_seconds",
            labels: { path: "C:\\DIR\\FILE.TXT", error: 'Cannot find file:\n"FILE.TXT"' },
            value: 1458255915,
        });
    });

    it("reads +Inf, -Inf and NaN, and a negative timestamp", () => {
        expect(families.get("something_weird")?.samples[0]).toMatchObject({ value: Infinity, timestampMs: -3982045 });
        expect(families.get("minus_infinity")?.samples[0].value).toBe(-Infinity);
        expect(families.get("not_a_number")?.samples[0].value).toBeNaN();
    });

    it("puts a summary's _sum and _count, and a histogram's _bucket, _sum and _count in their family", () => {
        expect(families.get("rpc_duration_seconds")?.samples.map((s) => s.name)).toEqual([
            "rpc_duration_seconds",
            "rpc_duration_seconds",
            "rpc_duration_seconds_sum",
            "rpc_duration_seconds_count",
        ]);
        expect(families.get("http_request_duration_seconds")?.samples).toHaveLength(5);
        expect(families.has("http_request_duration_seconds_bucket")).toBe(false);
    });

    it("keeps a _count of an untyped family as a family of its own", () => {
        const f = parsePrometheusText("jobs_count 3\njobs_sum 4\n");
        expect([...f.keys()]).toEqual(["jobs_count", "jobs_sum"]);
    });

    it.each<[string, string, RegExp]>([
        ["a value that is not a number", "x 1,5", /line 1: not a sample value: "1,5"/],
        ["no value", "x", /line 1: sample x has no value/],
        ["no value after labels", 'x{a="b"}', /sample x has no value/],
        ["a value and a timestamp and more", "x 1 2 3", /more than a value and a timestamp/],
        ["a fractional timestamp", "x 1 2.5", /timestamp that is not an integer/],
        ["no blank before the value", 'x{a="b"}1', /expected a blank before the value/],
        ["an unclosed label value", 'x{a="b} 1', /the value of label a is not closed/],
        ["an unclosed label set", 'x{a="b" 1', /expected ',' or '}'/],
        ["a label without a value", "x{a} 1", /expected '=' after label a/],
        ["a label value without quotes", "x{a=b} 1", /expected '"'/],
        ["an unknown escape", 'x{a="\\t"} 1', /invalid escape \\t/],
        ["a label given twice", 'x{a="1",a="2"} 1', /label a appears twice/],
        ["a line that starts with a digit", "1x 1", /must start with a metric name/],
        ["the same series twice", 'x{a="1"} 1\nx{a="1"} 2', /line 2: a second sample of the same series/],
        ["a second TYPE", "# TYPE x gauge\n# TYPE x counter", /line 2: a second TYPE for x/],
        ["a second HELP", "# HELP x a\n# HELP x b", /line 2: a second HELP for x/],
        ["a TYPE after the samples", "x 1\n# TYPE x gauge", /line 2: the TYPE of x comes after its samples/],
        ["an unknown type", "# TYPE x meter", /unknown metric type "meter"/],
        ["an invalid name in TYPE", "# TYPE 9x gauge", /invalid metric name "9x"/],
        ["a histogram sample without suffix", "# TYPE h histogram\nh 1", /a sample of histogram h without _bucket/],
        ["a bucket without le", '# TYPE h histogram\nh_bucket{a="1"} 1', /a bucket of histogram h without an le label/],
    ])("refuses %s, naming the line", (_name, input, message) => {
        expect(() => parsePrometheusText(input)).toThrow(message);
    });
});

describe("parsePrometheusText on etcd's real /metrics", () => {
    const normal = scrape("normal-after.prom");

    it("reads every family of the recorded scrape with its type", () => {
        const types = Object.fromEntries([...normal.values()].map((f) => [f.name, f.type]));
        expect(types).toMatchObject({
            [ETCD_WAL_FSYNC]: "histogram",
            [ETCD_BACKEND_COMMIT]: "histogram",
            etcd_debugging_lease_ttl_total: "histogram",
            etcd_server_has_leader: "gauge",
            etcd_server_version: "gauge",
            go_gc_duration_seconds: "summary",
            grpc_server_handled_total: "counter",
            process_start_time_seconds: "gauge",
        });
        for (const f of normal.values()) {
            expect(f.help).toEqual(expect.any(String));
            expect(f.samples.length).toBeGreaterThan(0);
        }
    });

    it("reads labels, scientific notation and a summary", () => {
        expect(normal.get("etcd_server_version")?.samples[0]).toEqual({
            name: "etcd_server_version",
            labels: { server_version: "3.4.23" },
            value: 1,
        });
        expect(normal.get("etcd_server_quota_backend_bytes")?.samples[0].value).toBe(2147483648);
        const put = normal
            .get("grpc_server_handled_total")
            ?.samples.find((s) => s.labels.grpc_method === "Put" && s.labels.grpc_code === "OK");
        expect(put?.labels).toEqual({ grpc_code: "OK", grpc_method: "Put", grpc_service: "etcdserverpb.KV", grpc_type: "unary" });
        expect(put?.value).toBeGreaterThanOrEqual(500);
        const gc = normal.get("go_gc_duration_seconds")?.samples.map((s) => s.labels.quantile ?? s.name);
        expect(gc).toEqual(["0", "0.25", "0.5", "0.75", "1", "go_gc_duration_seconds_sum", "go_gc_duration_seconds_count"]);
    });

    it("extracts the WAL fsync histogram: etcd's 14 doubling buckets from 1 ms, then +Inf", () => {
        const wal = extractHistogram(normal, ETCD_WAL_FSYNC);
        expect(wal.buckets.map((b) => b.le)).toEqual([...ETCD_LES.map((le) => Number(le.toPrecision(12))), Infinity]);
        expect(wal.count).toBe(wal.buckets[14].count);
        expect(wal.sum).toBeGreaterThan(0);
        const le = extractHistogram(normal, "etcd_debugging_lease_ttl_total").buckets.map((b) => b.le);
        expect(le).toContain(1048576);
    });
});

describe("extractHistogram", () => {
    const two = parsePrometheusText(
        [
            "# TYPE op_seconds histogram",
            'op_seconds_bucket{op="read",le="1"} 1',
            'op_seconds_bucket{op="read",le="+Inf"} 2',
            'op_seconds_sum{op="read"} 3.5',
            'op_seconds_count{op="read"} 2',
            'op_seconds_bucket{op="write",le="+Inf"} 5',
            'op_seconds_bucket{op="write",le="1"} 4',
            'op_seconds_sum{op="write"} 4',
            'op_seconds_count{op="write"} 5',
        ].join("\n"),
    );

    it("chooses a series by its labels, buckets sorted by bound", () => {
        expect(extractHistogram(two, "op_seconds", { op: "write" })).toEqual(hist(buckets([1, 4], ["+Inf", 5]), 4));
    });

    const histogramText = (lines: string[]) => parsePrometheusText(["# TYPE h histogram", ...lines].join("\n"));
    it.each<[string, () => unknown, RegExp]>([
        ["several series and no labels to choose", () => extractHistogram(two, "op_seconds"), /has 2 series \(\{op="read"\}, \{op="write"\}\); name labels/],
        ["labels no series has", () => extractHistogram(two, "op_seconds", { op: "list" }), /no series of op_seconds with labels \{op="list"\}/],
        ["a missing metric", () => extractHistogram(two, "nope_seconds"), /the scrape has no metric nope_seconds/],
        ["a metric that is not a histogram", () => extractHistogram(parsePrometheusText("# TYPE c counter\nc 1"), "c"), /c is a counter in the scrape, not a histogram/],
        ["no +Inf bucket", () => extractHistogram(histogramText(['h_bucket{le="1"} 1', "h_sum 1", "h_count 1"]), "h"), /has no \+Inf bucket/],
        [
            "buckets that are not cumulative",
            () => extractHistogram(histogramText(['h_bucket{le="1"} 3', 'h_bucket{le="+Inf"} 2', "h_sum 1", "h_count 2"]), "h"),
            /not cumulative: le="1" has 3, le="\+Inf" has 2/,
        ],
        [
            "a _count other than the +Inf bucket",
            () => extractHistogram(histogramText(['h_bucket{le="+Inf"} 2', "h_sum 1", "h_count 3"]), "h"),
            /_count is 3 but the \+Inf bucket has 2/,
        ],
        ["no _sum", () => extractHistogram(histogramText(['h_bucket{le="+Inf"} 2', "h_count 2"]), "h"), /has no _sum/],
        ["an le that is not a number", () => extractHistogram(histogramText(['h_bucket{le="x"} 2']), "h"), /not a sample value: "x"/],
    ])("refuses %s", (_name, run, message) => {
        expect(run).toThrow(message);
    });
});

describe("histogramDelta", () => {
    const before = hist(buckets([0.001, 4], [0.002, 5], ["+Inf", 6]), 0.5);
    const after = hist(buckets([0.001, 10], [0.002, 15], ["+Inf", 17]), 2);

    it("subtracts bucket by bucket, and the count and the sum", () => {
        expect(histogramDelta(before, after)).toEqual(hist(buckets([0.001, 6], [0.002, 10], ["+Inf", 11]), 1.5));
        expect(histogramDelta(after, after)).toEqual(hist(buckets([0.001, 0], [0.002, 0], ["+Inf", 0]), 0));
    });

    it.each<[string, Histogram, RegExp]>([
        ["a bucket lower after than before", hist(buckets([0.001, 3], [0.002, 15], ["+Inf", 17])), /le="0.001" bucket went from 4 to 3/],
        ["every count lower (a restarted etcd)", hist(buckets([0.001, 1], [0.002, 1], ["+Inf", 1])), /the count went from 6 to 1/],
    ])("throws on %s: counters reset", (_name, later, message) => {
        expect(() => histogramDelta(before, later)).toThrow(COUNTER_RESET);
        expect(() => histogramDelta(before, later)).toThrow(message);
        expect(COUNTER_RESET).toBe("counters reset between scrapes (etcd restarted?)");
    });

    it("throws when the bucket layouts differ", () => {
        expect(() => histogramDelta(before, hist(buckets([0.001, 10], ["+Inf", 17])))).toThrow(
            /different buckets: 0.001,0.002,\+Inf and 0.001,\+Inf/,
        );
    });
});

describe("histogramQuantile (Prometheus' histogram_quantile)", () => {
    it.each<[string, number, HistogramBucket[], number, { lower: number; upper: number }]>([
        ["all samples in the first bucket: from 0 to its upper bound", 0.99, buckets([0.001, 10], [0.002, 10], ["+Inf", 10]), 0.00099, { lower: 0, upper: 0.001 }],
        ["interpolation within a bucket", 0.99, buckets([1, 50], [2, 90], [4, 100], ["+Inf", 100]), 3.8, { lower: 2, upper: 4 }],
        ["the median", 0.5, buckets([1, 50], [2, 90], [4, 100], ["+Inf", 100]), 1, { lower: 0, upper: 1 }],
        ["a rank equal to a bucket's count: its upper bound", 0.99, buckets([1, 99], [2, 100], ["+Inf", 100]), 1, { lower: 0, upper: 1 }],
        ["q = 1: the upper bound of the last bucket with samples", 1, buckets([1, 5], [2, 10], [4, 10], ["+Inf", 10]), 2, { lower: 1, upper: 2 }],
        ["q = 0 with samples in the first bucket", 0, buckets([1, 5], ["+Inf", 10]), 0, { lower: 0, upper: 1 }],
        ["empty buckets before the rank's bucket", 0.9, buckets([1, 0], [2, 0], [4, 10], ["+Inf", 10]), 3.8, { lower: 2, upper: 4 }],
        ["a first bucket with a bound of 0 or less", 0.3, buckets([0, 5], [1, 10], ["+Inf", 10]), 0, { lower: -Infinity, upper: 0 }],
    ])("%s", (_name, q, b, value, bucket) => {
        const r = histogramQuantile(q, b);
        expect(r.defined).toBe(true);
        if (r.defined) {
            expect(r.value).toBeCloseTo(value, 12);
            expect(r.bucket).toEqual(bucket);
            expect(r.inInfBucket).toBe(false);
            expect(r.observations).toBe(b[b.length - 1].count);
        }
    });

    it("gives the highest finite bound when the quantile falls in the +Inf bucket", () => {
        const r = histogramQuantile(0.99, buckets([1, 10], [2, 20], ["+Inf", 100]));
        expect(r).toEqual({ defined: true, value: 2, observations: 100, bucket: { lower: 2, upper: Infinity }, inInfBucket: true });
    });

    it("interpolates exactly as Prometheus: start + (end - start) × (rank / count)", () => {
        // etcd-shaped: 985 samples up to 8 ms, 15 in (8, 16] ms; rank 990 is the 5th of those 15.
        const r = histogramQuantile(0.99, etcdHist({ 1: 985, 16: 15 }).buckets);
        expect(r.defined && r.value).toBe(0.008 + (0.016 - 0.008) * ((0.99 * 1000 - 985) / 15));
    });

    it.each<[string, number, HistogramBucket[], number, RegExp]>([
        ["no observations", 0.99, buckets([1, 0], ["+Inf", 0]), NaN, /no observations/],
        ["only the +Inf bucket", 0.99, buckets(["+Inf", 5]), NaN, /only the \+Inf bucket/],
        ["q below 0", -0.1, buckets([1, 5], ["+Inf", 5]), -Infinity, /below 0/],
        ["q above 1", 1.5, buckets([1, 5], ["+Inf", 5]), Infinity, /above 1/],
        ["q NaN", NaN, buckets([1, 5], ["+Inf", 5]), NaN, /NaN/],
        ["q = 0 with an empty first bucket", 0, buckets([1, 0], ["+Inf", 5]), NaN, /first bucket is empty/],
    ])("is undefined with %s, as Prometheus", (_name, q, b, value, reason) => {
        const r = histogramQuantile(q, b);
        expect(r.defined).toBe(false);
        expect(Object.is(r.value, value) || (Number.isNaN(value) && Number.isNaN(r.value))).toBe(true);
        if (!r.defined) {
            expect(r.reason).toMatch(reason);
        }
    });

    it.each<[string, HistogramBucket[], RegExp]>([
        ["no +Inf bucket", buckets([1, 5], [2, 6]), /no \+Inf bucket/],
        ["counts that are not cumulative", buckets([1, 5], [2, 4], ["+Inf", 6]), /not cumulative/],
        ["bounds out of order", buckets([2, 1], [1, 2], ["+Inf", 3]), /bounds must increase/],
        ["a negative count", buckets([1, -1], ["+Inf", 3]), /counts are finite and not negative/],
        ["no buckets", [], /has no buckets/],
    ])("throws on buckets with %s", (_name, b, message) => {
        expect(() => histogramQuantile(0.99, b)).toThrow(message);
    });
});

describe("formatting", () => {
    it.each<[number, string]>([
        [0, "0.00"],
        [0.004, "0.00"],
        [0.005, "0.01"],
        [1.975, "1.98"],
        [9.996, "10.00"],
        [9.994, "9.99"],
        [10, "10.00"],
        [192, "192.00"],
        [8192, "8192.00"],
    ])("%d ms is %s", (ms, text) => {
        expect(formatMs2(ms)).toBe(text);
    });

    it.each([-1, NaN, Infinity])("refuses %d ms", (ms) => {
        expect(() => formatMs2(ms)).toThrow(/finite, non-negative/);
    });

    it("writes bucket bounds as awk's %.12g does, and quantiles as pNN", () => {
        expect(formatBoundMs(0.008 * 1000)).toBe("8");
        expect(formatBoundMs(0.016 * 1000)).toBe("16");
        expect(formatBoundMs(0)).toBe("0");
        expect(formatBoundMs(0.5)).toBe("0.5");
        expect(quantileLabel(0.99)).toBe("p99");
        expect(quantileLabel(0.999)).toBe("p99.9");
        expect(quantileLabel(0.5)).toBe("p50");
    });
});

describe("evaluateLatencyGate", () => {
    const base: LatencyGateArgs = {
        node: "cp-1",
        metric: ETCD_WAL_FSYNC,
        before: EMPTY,
        after: etcdHist({ 1: 990, 2: 10 }),
        quantile: 0.99,
        thresholdMs: 10,
        minSamples: 500,
    };
    const gate = (change: Partial<LatencyGateArgs>) => evaluateLatencyGate({ ...base, ...change });

    it("passes a fast disk, the p99 in ms with its bucket", () => {
        const r = gate({});
        expect(r).toMatchObject({ samples: 1000, verdict: "passed", passed: true, estimate: false, note: null });
        expect(r.quantileMs).toBeCloseTo(1, 12);
        expect(r.bucketMs).toEqual({ lowerMs: 0, upperMs: 1 });
        expect(r.message).toBe(
            "etcd disk gate passed on node cp-1: etcd_disk_wal_fsync_duration_seconds gives a WAL fsync p99 of 1.00 ms " +
                "over 1000 samples, within the threshold of 10 ms.",
        );
    });

    it("subtracts the first scrape: only the window counts", () => {
        const before = etcdHist({ 1: 100, 64: 50 });
        const after = etcdHist({ 1: 1100, 64: 50 });
        expect(gate({ before, after })).toMatchObject({ samples: 1000, passed: true, bucketMs: { lowerMs: 0, upperMs: 1 } });
    });

    it("fails above the threshold: node, metric, p99, samples, threshold and the override in the message", () => {
        const r = gate({ after: etcdHist({ 1: 500, 128: 480, 256: 20 }) });
        expect(r).toMatchObject({ verdict: "above-threshold", passed: false, estimate: false, bucketMs: { lowerMs: 128, upperMs: 256 } });
        expect(r.quantileMs).toBeCloseTo(192, 9);
        expect(r.message).toBe(
            "etcd disk gate failed on node cp-1: etcd_disk_wal_fsync_duration_seconds gives a WAL fsync p99 of 192.00 ms " +
                "over 1000 samples, above the threshold of 10 ms. etcd needs fast, durable writes; the better fix is to " +
                "put the etcd data on a faster NVMe disk. To accept this disk anyway, raise the threshold: " +
                "pulumi config set --path 'zerotouch:etcd.walFsyncThresholdMs' <ms>",
        );
    });

    it("names the backend commit override for the backend commit metric", () => {
        const r = gate({ metric: ETCD_BACKEND_COMMIT, thresholdMs: 25, after: etcdHist({ 64: 1000 }) });
        expect(r.passed).toBe(false);
        expect(r.message).toContain("gives a backend commit p99 of 63.68 ms over 1000 samples, above the threshold of 25 ms.");
        expect(r.message).toContain("pulumi config set --path 'zerotouch:etcd.backendCommitThresholdMs' <ms>");
    });

    describe("the (8, 16] ms bucket, which holds the 10 ms threshold", () => {
        it("fails at 10.67 ms, saying the figure is a linear estimate within that bucket", () => {
            const r = gate({ after: etcdHist({ 8: 985, 16: 15 }) });
            expect(r).toMatchObject({ verdict: "above-threshold", estimate: true, bucketMs: { lowerMs: 8, upperMs: 16 } });
            expect(formatMs2(r.quantileMs ?? NaN)).toBe("10.67");
            expect(r.note).toBe(
                "This p99 lies in etcd's (8, 16] ms bucket, which holds the threshold: 10.67 ms is a linear estimate within that bucket.",
            );
            expect(r.message).toContain(`above the threshold of 10 ms. ${r.note ?? ""} etcd needs fast`);
        });

        it("passes at 8.73 ms, with the same note", () => {
            const r = gate({ after: etcdHist({ 8: 989, 16: 11 }) });
            expect(r).toMatchObject({ verdict: "passed", estimate: true });
            expect(r.message).toBe(
                "etcd disk gate passed on node cp-1: etcd_disk_wal_fsync_duration_seconds gives a WAL fsync p99 of 8.73 ms " +
                    "over 1000 samples, within the threshold of 10 ms. This p99 lies in etcd's (8, 16] ms bucket, which holds " +
                    "the threshold: 8.73 ms is a linear estimate within that bucket.",
            );
        });

        it.each<[string, Partial<LatencyGateArgs>]>([
            ["a p99 in (4, 8] ms", { after: etcdHist({ 4: 985, 8: 15 }) }],
            ["a p99 in (16, 32] ms", { after: etcdHist({ 16: 985, 32: 15 }) }],
            ["a threshold on the bucket's upper bound", { after: etcdHist({ 8: 985, 16: 15 }), thresholdMs: 16 }],
            ["a threshold on the bucket's lower bound", { after: etcdHist({ 8: 985, 16: 15 }), thresholdMs: 8 }],
        ])("is no estimate the verdict hangs on with %s", (_name, change) => {
            const r = gate(change);
            expect(r.estimate).toBe(false);
            expect(r.note).toBeNull();
        });

        it("is the (16, 32] ms bucket for the backend commit's 25 ms threshold", () => {
            const r = gate({ metric: ETCD_BACKEND_COMMIT, thresholdMs: 25, after: etcdHist({ 16: 985, 32: 15 }) });
            expect(r.estimate).toBe(true);
            expect(r.note).toMatch(/^This p99 lies in etcd's \(16, 32\] ms bucket/);
        });
    });

    it("in the +Inf bucket: the highest bound, 8192 ms, as a lower bound of the p99", () => {
        const r = gate({ after: etcdHist({ 1: 900, inf: 100 }) });
        expect(r).toMatchObject({ quantileMs: 8192, bucketMs: { lowerMs: 8192, upperMs: null }, estimate: true, passed: false });
        expect(r.note).toBe("This p99 lies beyond etcd's highest bucket: the true p99 is at least 8192.00 ms.");
    });

    it("fails with too few samples, saying how many were seen and how many are needed", () => {
        const r = gate({ after: etcdHist({ 1: 120 }) });
        expect(r).toMatchObject({ samples: 120, verdict: "too-few-samples", passed: false });
        expect(r.message).toBe(
            "etcd disk gate failed on node cp-1: only 120 samples of etcd_disk_wal_fsync_duration_seconds (WAL fsync) were " +
                "seen, 500 are needed for a p99 (the p99 of those is 0.99 ms). A slow disk lets few writes through in the " +
                "time the write load is given.",
        );
    });

    describe("with fewer samples than needed, but already certainly above the threshold", () => {
        it("fails once more than 1% of the minimum took longer than the threshold's bucket (16 ms for 10 ms)", () => {
            const r = gate({ after: etcdHist({ 1: 40, 16: 30, 128: 6 }) });
            expect(r).toMatchObject({
                samples: 76,
                slowBoundMs: 16,
                slowSamples: 6,
                decidedEarly: true,
                verdict: "above-threshold",
                passed: false,
            });
            expect(r.quantileMs).toBeGreaterThan(16);
            expect(r.message).toBe(
                `etcd disk gate failed on node cp-1: etcd_disk_wal_fsync_duration_seconds gives a WAL fsync p99 of ${formatMs2(r.quantileMs ?? NaN)} ms ` +
                    "over 76 samples, above the threshold of 10 ms. 6 of them took over 16 ms, more than 1% of the 500 samples " +
                    "the gate needs: the p99 stays above the threshold however many samples follow. etcd needs fast, durable " +
                    "writes; the better fix is to put the etcd data on a faster NVMe disk. To accept this disk anyway, raise " +
                    "the threshold: pulumi config set --path 'zerotouch:etcd.walFsyncThresholdMs' <ms>",
            );
        });

        it.each<[string, Partial<LatencyGateArgs>]>([
            ["exactly 1% of the minimum above the bucket", { after: etcdHist({ 1: 40, 128: 5 }) }],
            ["slow samples only inside the threshold's bucket", { after: etcdHist({ 1: 40, 16: 30 }) }],
            ["a threshold above etcd's highest finite bound", { after: etcdHist({ 1: 40, inf: 30 }), thresholdMs: 9000 }],
        ])("waits for more samples with %s", (_name, change) => {
            const r = gate(change);
            expect(r).toMatchObject({ decidedEarly: false, verdict: "too-few-samples" });
        });

        it("decides on the p99 itself once there are enough samples", () => {
            const r = gate({ after: etcdHist({ 1: 994, 128: 6 }) });
            expect(r).toMatchObject({ slowSamples: 6, decidedEarly: false, verdict: "passed" });
        });
    });

    it("fails with no samples at all, and has no p99", () => {
        const r = gate({ after: EMPTY });
        expect(r).toMatchObject({ samples: 0, quantileMs: null, bucketMs: null, verdict: "too-few-samples", estimate: false });
        expect(r.message).toContain("only 0 samples of etcd_disk_wal_fsync_duration_seconds (WAL fsync) were seen, 500 are needed for a p99.");
    });

    it("throws when the counters reset between the scrapes, naming the node and the metric", () => {
        expect(() => gate({ before: etcdHist({ 1: 2000 }) })).toThrow(
            /^etcd disk gate on node cp-1, etcd_disk_wal_fsync_duration_seconds: counters reset between scrapes \(etcd restarted\?\)/,
        );
    });

    it.each<[string, Partial<LatencyGateArgs>, RegExp]>([
        ["a quantile of 1", { quantile: 1 }, /quantile must be above 0 and below 1/],
        ["a quantile of 0", { quantile: 0 }, /quantile must be above 0 and below 1/],
        ["a zero threshold", { thresholdMs: 0 }, /threshold must be a positive number/],
        ["a minimum of 0 samples", { minSamples: 0 }, /minimum sample count must be a positive integer/],
    ])("refuses %s", (_name, change, message) => {
        expect(() => gate(change)).toThrow(message);
    });
});

describe("the recorded scrapes around 500 puts", () => {
    const evaluate = (kind: "normal" | "slow", metric: typeof ETCD_WAL_FSYNC | typeof ETCD_BACKEND_COMMIT, thresholdMs: number, minSamples: number) =>
        evaluateLatencyGate({
            node: kind === "normal" ? "cp-1" : "cp-2",
            metric,
            before: extractHistogram(scrape(`${kind}-before.prom`), metric),
            after: extractHistogram(scrape(`${kind}-after.prom`), metric),
            quantile: 0.99,
            thresholdMs,
            minSamples,
        });

    it("normal disk: about one WAL fsync per put, p99 within 10 ms; backend commits within 25 ms", () => {
        const wal = evaluate("normal", ETCD_WAL_FSYNC, 10, 500);
        expect(wal.samples).toBeGreaterThanOrEqual(500);
        expect(wal.samples).toBeLessThan(510);
        expect(wal.passed).toBe(true);
        expect(wal.quantileMs).toBeLessThanOrEqual(4);
        const commit = evaluate("normal", ETCD_BACKEND_COMMIT, 25, 50);
        expect(commit.passed).toBe(true);
        expect(commit.samples).toBeLessThan(wal.samples);
    });

    it("throttled disk (40 write IOPS): WAL fsync p99 far above 10 ms, and the gate says so", () => {
        const wal = evaluate("slow", ETCD_WAL_FSYNC, 10, 500);
        expect(wal.samples).toBeGreaterThanOrEqual(500);
        expect(wal.verdict).toBe("above-threshold");
        expect(wal.quantileMs).toBeGreaterThan(50);
        expect(wal.message).toMatch(/^etcd disk gate failed on node cp-2: etcd_disk_wal_fsync_duration_seconds gives a WAL fsync p99 of \d+\.\d\d ms over \d+ samples, above the threshold of 10 ms\./);
        const commit = evaluate("slow", ETCD_BACKEND_COMMIT, 25, 50);
        expect(commit.verdict).toBe("above-threshold");
    });

    it("refuses a pair of scrapes in the wrong order: counters reset", () => {
        expect(() =>
            evaluateLatencyGate({
                node: "cp-1",
                metric: ETCD_WAL_FSYNC,
                before: extractHistogram(scrape("normal-after.prom"), ETCD_WAL_FSYNC),
                after: extractHistogram(scrape("normal-before.prom"), ETCD_WAL_FSYNC),
                quantile: 0.99,
                thresholdMs: 10,
                minSamples: 1,
            }),
        ).toThrow(/counters reset between scrapes \(etcd restarted\?\)/);
    });
});
