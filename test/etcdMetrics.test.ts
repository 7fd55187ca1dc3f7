import * as fs from "fs";
import * as os from "os";
import * as path from "path";

import { ETCD_BACKEND_COMMIT, ETCD_WAL_FSYNC } from "../components/etcd/walGate";
import { extractHistogram, Histogram, parsePrometheusText, parseSampleValue } from "./support/prometheus";
import { buckets, EMPTY, ETCD_LE, etcdHist, evaluateHistograms, evaluateScrapes, hist } from "./support/walEvaluate";

/**
 * Fixtures in test/fixtures/etcd were recorded with Debian's etcd 3.4.23 on this project's build
 * machine by test/fixtures/etcd/record.sh: /metrics of a single-member etcd on loopback before
 * and after 500 sequential `etcdctl put`s,
 *   normal-*.prom  data on the machine's ext4 disk
 *   slow-*.prom    data on an ext4 loop device whose writes are throttled to 40 IOPS (blkio)
 *
 * The parser (test/support/prometheus.ts) reads them independently of the gate script; the
 * gate's decision is the script's own (components/etcd/scripts/wal-fsync-gate.sh), run here on
 * saved scrapes (ZT_ACTION=evaluate, no etcd).
 */
const FIXTURES = path.join(__dirname, "fixtures", "etcd");
const fixture = (file: string): string => fs.readFileSync(path.join(FIXTURES, file), "utf8");
const scrape = (file: string) => parsePrometheusText(fixture(file));

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
        expect(wal.buckets.map((b) => b.le)).toEqual([...ETCD_LE.map(Number), Infinity]);
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

/** A scratch directory for the scrapes the script is given. */
let dir: string;
beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), "zt-etcd-metrics-"));
});
afterAll(() => {
    fs.rmSync(dir, { recursive: true, force: true });
});

/** What one metric of the gate is given: the WAL fsync unless `metric` says otherwise. */
interface MetricCase {
    readonly metric?: typeof ETCD_WAL_FSYNC | typeof ETCD_BACKEND_COMMIT;
    readonly before?: Histogram;
    readonly after: Histogram;
    readonly thresholdMs?: number;
    readonly minSamples?: number;
}

let cases = 0;
/** The script's figures, verdict and message for one metric; the other metric sees no samples. */
function gate(c: MetricCase) {
    // Without a first scrape: the same buckets, none observed yet.
    const window: [Histogram, Histogram] = [c.before ?? hist(c.after.buckets.map((b) => ({ ...b, count: 0 }))), c.after];
    const commit = c.metric === ETCD_BACKEND_COMMIT;
    const r = evaluateHistograms(dir, `case-${cases++}`, {
        wal: commit ? [EMPTY, EMPTY] : window,
        commit: commit ? window : [EMPTY, EMPTY],
        ...(c.thresholdMs === undefined ? {} : commit ? { commitThresholdMs: String(c.thresholdMs) } : { walThresholdMs: String(c.thresholdMs) }),
        ...(c.minSamples === undefined ? {} : commit ? { minCommitSamples: c.minSamples } : { minSamples: c.minSamples }),
    });
    return r.metric(c.metric ?? ETCD_WAL_FSYNC);
}

/** The first script error for a pair of scrapes: exit 1, nothing on stdout. */
function refusal(before: Histogram, after: Histogram): string {
    const r = evaluateHistograms(dir, `refused-${cases++}`, { wal: [before, after], commit: [EMPTY, EMPTY] });
    expect(r.status).toBe(1);
    expect(r.stdout).toBe("");
    return r.stderr;
}

describe("the window between two scrapes (the gate script)", () => {
    const before = hist(buckets([0.001, 4], [0.002, 5], ["+Inf", 6]), 0.5);
    const after = hist(buckets([0.001, 10], [0.002, 15], ["+Inf", 17]), 2);

    it("subtracts bucket by bucket: only the window counts", () => {
        // 6, 10 and 11 observations up to 1 ms, 2 ms and +Inf: rank 10.89 is in the +Inf bucket.
        expect(gate({ before, after, minSamples: 1 })).toMatchObject({ samples: 11, bucketMs: { lowerMs: 2, upperMs: null } });
        expect(gate({ before: after, after, minSamples: 1 })).toMatchObject({ samples: 0, p99Ms: null });
    });

    it.each<[string, Histogram, RegExp]>([
        ["a bucket lower after than before", hist(buckets([0.001, 3], [0.002, 15], ["+Inf", 17])), /le="0.001" bucket went from 4 to 3/],
        ["every count lower (a restarted etcd)", hist(buckets([0.001, 1], [0.002, 1], ["+Inf", 1])), /bucket went from 4 to 1/],
    ])("refuses %s: counters reset", (_name, later, message) => {
        const stderr = refusal(before, later);
        expect(stderr).toMatch(/node cp-1: etcd_disk_wal_fsync_duration_seconds: counters reset between scrapes \(etcd restarted\?\)/);
        expect(stderr).toMatch(message);
    });

    it("refuses scrapes whose bucket layouts differ", () => {
        expect(refusal(before, hist(buckets([0.001, 10], ["+Inf", 17])))).toMatch(
            /the two scrapes have different buckets for etcd_disk_wal_fsync_duration_seconds/,
        );
    });
});

describe("the p99 (Prometheus' histogram_quantile, in the gate script)", () => {
    it.each<[string, Histogram, number, { lowerMs: number; upperMs: number }]>([
        ["all samples in the first bucket: from 0 to its upper bound", hist(buckets([0.001, 10], [0.002, 10], ["+Inf", 10])), 0.99, { lowerMs: 0, upperMs: 1 }],
        ["interpolation within a bucket", hist(buckets([1, 50], [2, 90], [4, 100], ["+Inf", 100])), 3800, { lowerMs: 2000, upperMs: 4000 }],
        ["a rank equal to a bucket's count: its upper bound", hist(buckets([1, 99], [2, 100], ["+Inf", 100])), 1000, { lowerMs: 0, upperMs: 1000 }],
        ["empty buckets before the rank's bucket", hist(buckets([1, 0], [2, 0], [4, 10], ["+Inf", 10])), 3980, { lowerMs: 2000, upperMs: 4000 }],
    ])("%s", (_name, after, p99Ms, bucketMs) => {
        const r = gate({ after, minSamples: 1 });
        expect(r.p99Ms).toBeCloseTo(p99Ms, 9);
        expect(r.bucketMs).toEqual(bucketMs);
        expect(r.samples).toBe(after.count);
    });

    it("gives the highest finite bound when the p99 falls in the +Inf bucket", () => {
        const r = gate({ after: hist(buckets([1, 10], [2, 20], ["+Inf", 100])), minSamples: 1 });
        expect(r).toMatchObject({ p99Ms: 2000, bucketMs: { lowerMs: 2000, upperMs: null } });
    });

    it("interpolates exactly as Prometheus: start + (end - start) × (rank / count)", () => {
        // etcd-shaped: 985 samples up to 8 ms, 15 in (8, 16] ms; rank 990 is the 5th of those 15.
        const r = gate({ after: etcdHist({ 1: 985, 16: 15 }) });
        expect(r.p99Ms).toBe((0.008 + (0.016 - 0.008) * ((0.99 * 1000 - 985) / 15)) * 1000);
    });

    it.each<[string, Histogram, RegExp]>([
        ["no +Inf bucket", hist(buckets([1, 5], [2, 6])), /has no \+Inf bucket in scrape 2/],
        ["counts that are not cumulative", hist(buckets([1, 5], [2, 4], ["+Inf", 6])), /buckets are not cumulative in scrape 2/],
        ["bounds out of order", hist(buckets([2, 1], [1, 2], ["+Inf", 3])), /unordered or invalid bucket bounds in scrape 2/],
        ["a negative count", hist(buckets([1, -1], ["+Inf", 3])), /has a count that is not an integer in scrape 2: -1/],
    ])("refuses buckets with %s", (_name, after, message) => {
        expect(refusal(hist(buckets([1, 0], ["+Inf", 0])), after)).toMatch(message);
    });
});

describe("the gate's verdict and message on one metric", () => {
    it("passes a fast disk, the p99 in ms with its bucket", () => {
        const r = gate({ after: etcdHist({ 1: 990, 2: 10 }) });
        expect(r).toMatchObject({ samples: 1000, verdict: "passed", passed: true, estimate: false });
        expect(r.p99Ms).toBeCloseTo(1, 12);
        expect(r.bucketMs).toEqual({ lowerMs: 0, upperMs: 1 });
        expect(r.message).toBe(
            "etcd disk gate passed on node cp-1: etcd_disk_wal_fsync_duration_seconds gives a WAL fsync p99 of 1.00 ms " +
                "over 1000 samples, within the threshold of 10 ms.",
        );
        expect(r.stderrLine).toBe(`wal-fsync-gate: ${r.message}`);
    });

    it("subtracts the first scrape: only the window counts", () => {
        const before = etcdHist({ 1: 100, 64: 50 });
        const after = etcdHist({ 1: 1100, 64: 50 });
        expect(gate({ before, after })).toMatchObject({ samples: 1000, passed: true, bucketMs: { lowerMs: 0, upperMs: 1 } });
    });

    it("fails above the threshold: node, metric, p99, samples, threshold and the override in the message", () => {
        const r = gate({ after: etcdHist({ 1: 500, 128: 480, 256: 20 }) });
        expect(r).toMatchObject({ verdict: "above-threshold", passed: false, estimate: false, bucketMs: { lowerMs: 128, upperMs: 256 } });
        expect(r.p99Ms).toBeCloseTo(192, 9);
        expect(r.message).toBe(
            "etcd disk gate failed on node cp-1: etcd_disk_wal_fsync_duration_seconds gives a WAL fsync p99 of 192.00 ms " +
                "over 1000 samples, above the threshold of 10 ms. etcd needs fast, durable writes; the better fix is to " +
                "put the etcd data on a faster NVMe disk. To accept this disk anyway, raise the threshold: " +
                "pulumi config set --path 'zerotouch:etcd.walFsyncThresholdMs' <ms>",
        );
        // A failed metric's message stands on stderr as is: it is what stops the deployment.
        expect(r.stderrLine).toBe(r.message);
    });

    it("names the backend commit override for the backend commit metric", () => {
        const r = gate({ metric: ETCD_BACKEND_COMMIT, thresholdMs: 25, after: etcdHist({ 64: 1000 }) });
        expect(r.passed).toBe(false);
        expect(r.message).toContain("gives a backend commit p99 of 63.68 ms over 1000 samples, above the threshold of 25 ms.");
        expect(r.message).toContain("pulumi config set --path 'zerotouch:etcd.backendCommitThresholdMs' <ms>");
    });

    describe("the (8, 16] ms bucket, which holds the 10 ms threshold", () => {
        const note = (ms: string) =>
            `This p99 lies in etcd's (8, 16] ms bucket, which holds the threshold: ${ms} ms is a linear estimate within that bucket.`;

        it("fails at 10.67 ms, saying the figure is a linear estimate within that bucket", () => {
            const r = gate({ after: etcdHist({ 8: 985, 16: 15 }) });
            expect(r).toMatchObject({ verdict: "above-threshold", estimate: true, bucketMs: { lowerMs: 8, upperMs: 16 } });
            expect(r.message).toContain(`p99 of 10.67 ms over 1000 samples, above the threshold of 10 ms. ${note("10.67")} etcd needs fast`);
        });

        it("passes at 8.73 ms, with the same note", () => {
            const r = gate({ after: etcdHist({ 8: 989, 16: 11 }) });
            expect(r).toMatchObject({ verdict: "passed", estimate: true });
            expect(r.message).toBe(
                "etcd disk gate passed on node cp-1: etcd_disk_wal_fsync_duration_seconds gives a WAL fsync p99 of 8.73 ms " +
                    `over 1000 samples, within the threshold of 10 ms. ${note("8.73")}`,
            );
        });

        it.each<[string, MetricCase]>([
            ["a p99 in (4, 8] ms", { after: etcdHist({ 4: 985, 8: 15 }) }],
            ["a p99 in (16, 32] ms", { after: etcdHist({ 16: 985, 32: 15 }) }],
            ["a threshold on the bucket's upper bound", { after: etcdHist({ 8: 985, 16: 15 }), thresholdMs: 16 }],
            ["a threshold on the bucket's lower bound", { after: etcdHist({ 8: 985, 16: 15 }), thresholdMs: 8 }],
        ])("is no estimate the verdict hangs on with %s", (_name, c) => {
            const r = gate(c);
            expect(r.estimate).toBe(false);
            expect(r.message).not.toContain("This p99 lies");
        });

        it("is the (16, 32] ms bucket for the backend commit's 25 ms threshold", () => {
            const r = gate({ metric: ETCD_BACKEND_COMMIT, thresholdMs: 25, after: etcdHist({ 16: 985, 32: 15 }) });
            expect(r.estimate).toBe(true);
            expect(r.message).toContain(" This p99 lies in etcd's (16, 32] ms bucket");
        });
    });

    it("in the +Inf bucket: the highest bound, 8192 ms, as a lower bound of the p99", () => {
        const r = gate({ after: etcdHist({ 1: 900, inf: 100 }) });
        expect(r).toMatchObject({ p99Ms: 8192, bucketMs: { lowerMs: 8192, upperMs: null }, estimate: true, passed: false });
        expect(r.message).toContain(" This p99 lies beyond etcd's highest bucket: the true p99 is at least 8192.00 ms. ");
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
            // Rank 75.24 of 76: the 5.24th of the 6 samples in (64, 128] ms.
            expect(r.p99Ms).toBeCloseTo(64 + 64 * (5.24 / 6), 9);
            expect(r.message).toBe(
                "etcd disk gate failed on node cp-1: etcd_disk_wal_fsync_duration_seconds gives a WAL fsync p99 of 119.89 ms " +
                    "over 76 samples, above the threshold of 10 ms. 6 of them took over 16 ms, more than 1% of the 500 samples " +
                    "the gate needs: the p99 stays above the threshold however many samples follow. etcd needs fast, durable " +
                    "writes; the better fix is to put the etcd data on a faster NVMe disk. To accept this disk anyway, raise " +
                    "the threshold: pulumi config set --path 'zerotouch:etcd.walFsyncThresholdMs' <ms>",
            );
        });

        it.each<[string, MetricCase]>([
            ["exactly 1% of the minimum above the bucket", { after: etcdHist({ 1: 40, 128: 5 }) }],
            ["slow samples only inside the threshold's bucket", { after: etcdHist({ 1: 40, 16: 30 }) }],
            ["a threshold above etcd's highest finite bound", { after: etcdHist({ 1: 40, inf: 30 }), thresholdMs: 9000 }],
        ])("waits for more samples with %s", (_name, c) => {
            expect(gate(c)).toMatchObject({ decidedEarly: false, verdict: "too-few-samples" });
        });

        it("decides on the p99 itself once there are enough samples", () => {
            expect(gate({ after: etcdHist({ 1: 994, 128: 6 }) })).toMatchObject({ slowSamples: 6, decidedEarly: false, verdict: "passed" });
        });
    });

    it("fails with no samples at all, and has no p99", () => {
        const r = gate({ after: EMPTY });
        expect(r).toMatchObject({ samples: 0, p99Ms: null, bucketMs: null, verdict: "too-few-samples", estimate: false });
        expect(r.message).toContain("only 0 samples of etcd_disk_wal_fsync_duration_seconds (WAL fsync) were seen, 500 are needed for a p99.");
    });
});

describe("the recorded scrapes around 500 puts", () => {
    const evaluate = (kind: "normal" | "slow", minCommitSamples: number) =>
        evaluateScrapes(dir, `recorded-${kind}`, {
            node: kind === "normal" ? "cp-1" : "cp-2",
            before: fixture(`${kind}-before.prom`),
            after: fixture(`${kind}-after.prom`),
            minCommitSamples,
        });

    it("normal disk: about one WAL fsync per put, p99 within 10 ms; backend commits within 25 ms", () => {
        const r = evaluate("normal", 50);
        expect(r.status).toBe(0);
        const wal = r.metric(ETCD_WAL_FSYNC);
        expect(wal.samples).toBeGreaterThanOrEqual(500);
        expect(wal.samples).toBeLessThan(510);
        expect(wal.passed).toBe(true);
        expect(wal.p99Ms).toBeLessThanOrEqual(4);
        const commit = r.metric(ETCD_BACKEND_COMMIT);
        expect(commit.passed).toBe(true);
        expect(commit.samples).toBeLessThan(wal.samples);
    });

    it("throttled disk (40 write IOPS): WAL fsync p99 far above 10 ms, and the gate says so", () => {
        const r = evaluate("slow", 50);
        expect(r.status).toBe(3);
        const wal = r.metric(ETCD_WAL_FSYNC);
        expect(wal.samples).toBeGreaterThanOrEqual(500);
        expect(wal.verdict).toBe("above-threshold");
        expect(wal.p99Ms).toBeGreaterThan(50);
        expect(wal.message).toMatch(/^etcd disk gate failed on node cp-2: etcd_disk_wal_fsync_duration_seconds gives a WAL fsync p99 of \d+\.\d\d ms over \d+ samples, above the threshold of 10 ms\./);
        expect(r.metric(ETCD_BACKEND_COMMIT).verdict).toBe("above-threshold");
    });

    it.each(["normal", "slow"] as const)("%s: the script reads both histograms among etcd's other families as the parser does", (kind) => {
        const raw = evaluate(kind, 50).line?.metrics as { metric: string; before: unknown; after: unknown }[];
        for (const m of raw) {
            for (const when of ["before", "after"] as const) {
                const h = extractHistogram(scrape(`${kind}-${when}.prom`), m.metric);
                const reported = m[when] as { buckets: { le: string; count: number }[]; sum: string; count: number };
                expect({
                    buckets: reported.buckets.map((b) => ({ le: parseSampleValue(b.le), count: b.count })),
                    count: reported.count,
                    sum: parseSampleValue(reported.sum),
                }).toEqual(h);
            }
        }
    });

    it("refuses a pair of scrapes in the wrong order: counters reset", () => {
        const r = evaluateScrapes(dir, "recorded-reversed", { before: fixture("normal-after.prom"), after: fixture("normal-before.prom"), minSamples: 1 });
        expect(r.status).toBe(1);
        expect(r.stderr).toMatch(/node cp-1: etcd_disk_wal_fsync_duration_seconds: counters reset between scrapes \(etcd restarted\?\)/);
        expect(r.stdout).toBe("");
    });
});
