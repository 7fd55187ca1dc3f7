#!/usr/bin/env node
// Starts a resource plugin binary, asks it over gRPC for its version (GetPluginInfo) and its
// schema (GetSchema), and checks the named resources against the published npm SDK: the input
// and output property names and which outputs are secret. Uses the gRPC client and protobuf
// stubs that @pulumi/pulumi ships, so it needs nothing beyond the project's node_modules.
//
// With --create it also runs resources through the provider as the engine would (Configure,
// Check, Create, and at the end Delete, newest first), without a cloud or a state file.
//
// Usage: node check-plugin.js BINARY [--version V] [--sdk DIR] [--schema-out FILE]
//                             [--config JSON] [--create TOKEN=JSON]... [TOKEN...]
//   --version V     fail unless GetPluginInfo reports V (and the schema's version, if any, is V)
//   --sdk DIR       the npm SDK folder, e.g. node_modules/@pulumi/tls
//   --schema-out F  also write the schema to F
//   --config JSON   provider configuration for Configure, e.g. {"kubeconfig": "..."}
//   --create T=J    create a T from the inputs J (JSON); a string "${N.prop}" in J stands for
//                   output prop of the Nth --create (from 0). Prints output names, which are
//                   secret, and the length of each string (never a value)
//   TOKEN           a resource token (tls:index/privateKey:PrivateKey), or pulumi:providers:NAME
// Env: ZEROTOUCH_NODE_MODULES  the node_modules folder (default: the repository's)
// Exits 1 when a check fails.
"use strict";

const childProcess = require("child_process");
const fs = require("fs");
const path = require("path");
const readline = require("readline");

const nodeModules =
    process.env.ZEROTOUCH_NODE_MODULES || path.resolve(__dirname, "../../../../../node_modules");
const grpc = require(path.join(nodeModules, "@grpc/grpc-js"));
const providerGrpc = require(path.join(nodeModules, "@pulumi/pulumi/proto/provider_grpc_pb.js"));
const providerPb = require(path.join(nodeModules, "@pulumi/pulumi/proto/provider_pb.js"));
const engineGrpc = require(path.join(nodeModules, "@pulumi/pulumi/proto/engine_grpc_pb.js"));
const enginePb = require(path.join(nodeModules, "@pulumi/pulumi/proto/engine_pb.js"));
const emptyPb = require(path.join(nodeModules, "google-protobuf/google/protobuf/empty_pb.js"));
const structPb = require(path.join(nodeModules, "google-protobuf/google/protobuf/struct_pb.js"));

// The engine's marker of a secret value inside a Struct.
const SIG_KEY = "4dabf18193072939515e22adb298388d";
const SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270";
const isSecret = (v) => v !== null && typeof v === "object" && v[SIG_KEY] === SECRET_SIG;

function parseArgs(argv) {
    const opts = { tokens: [], creates: [] };
    for (let i = 0; i < argv.length; i++) {
        const a = argv[i];
        if (a === "--version") opts.version = argv[++i];
        else if (a === "--sdk") opts.sdk = argv[++i];
        else if (a === "--schema-out") opts.schemaOut = argv[++i];
        else if (a === "--config") opts.config = JSON.parse(argv[++i]);
        else if (a === "--create") {
            const spec = argv[++i];
            const eq = spec.indexOf("=");
            opts.creates.push({ token: spec.slice(0, eq), inputs: JSON.parse(spec.slice(eq + 1)) });
        }
        else if (opts.binary === undefined) opts.binary = a;
        else opts.tokens.push(a);
    }
    if (!opts.binary) {
        console.error("usage: check-plugin.js BINARY [--version V] [--sdk DIR] [--schema-out FILE] [TOKEN...]");
        process.exit(2);
    }
    return opts;
}

// A minimal engine for the plugin to log to (as the CLI gives every plugin): keeps the messages.
async function startEngine() {
    const logs = [];
    const server = new grpc.Server();
    server.addService(engineGrpc.EngineService, {
        log: (call, cb) => {
            logs.push(`${call.request.getSeverity()} ${call.request.getMessage()}`);
            cb(null, new emptyPb.Empty());
        },
        getRootResource: (_call, cb) => cb(null, new enginePb.GetRootResourceResponse()),
        setRootResource: (_call, cb) => cb(null, new enginePb.SetRootResourceResponse()),
    });
    const port = await new Promise((resolve, reject) =>
        server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    return { server, address: `127.0.0.1:${port}`, logs };
}

// Starts the plugin with the engine's address and resolves with its gRPC port (the first line
// it prints).
function startPlugin(binary, engineAddress) {
    const child = childProcess.spawn(binary, [engineAddress], { stdio: ["ignore", "pipe", "pipe"] });
    const out = { stderr: "" };
    child.stderr.on("data", (d) => (out.stderr += d));
    const port = new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no port from ${binary} in 60s; stderr: ${out.stderr}`)), 60000);
        readline.createInterface({ input: child.stdout }).once("line", (line) => {
            clearTimeout(timer);
            resolve(line.trim());
        });
        child.once("exit", (code) => reject(new Error(`${binary} exited with ${code}; stderr: ${out.stderr}`)));
    });
    return { child, port, out };
}

function call(client, method, req) {
    return new Promise((resolve, reject) =>
        client[method](req, { deadline: Date.now() + 300000 }, (err, res) => (err ? reject(err) : resolve(res))),
    );
}

// The SDK file of a token: tls:index/privateKey:PrivateKey -> privateKey;
// kubernetes:networking.k8s.io/v1:Ingress -> networking/v1/ingress; pulumi:providers:x -> provider.
function sdkFile(sdk, token) {
    if (token.startsWith("pulumi:providers:")) return path.join(sdk, "provider");
    const [, mod, type] = token.split(":");
    const lower = type[0].toLowerCase() + type.slice(1);
    const parts = mod.split("/");
    if (parts[0] === "index") return path.join(sdk, lower);
    return path.join(sdk, parts[0].split(".")[0], ...parts.slice(1), lower);
}

// Output property names of the class and input names of its Args interface, from the .d.ts;
// secret outputs from the .js (additionalSecretOutputs).
function sdkShape(file, type) {
    const dts = fs.readFileSync(file + ".d.ts", "utf8");
    const js = fs.readFileSync(file + ".js", "utf8");
    const cls = dts.slice(dts.indexOf(`export declare class ${type} `));
    const classBody = cls.slice(0, cls.indexOf("\n}"));
    const outputs = [...classBody.matchAll(/^ {4}readonly (\w+): pulumi\.Output</gm)].map((m) => m[1]);
    const argsAt = dts.indexOf(`export interface ${type}Args {`);
    const argsBody = argsAt < 0 ? "" : dts.slice(argsAt, dts.indexOf("\n}", argsAt));
    const inputs = [...argsBody.matchAll(/^ {4}(\w+)\??: /gm)].map((m) => m[1]);
    const secretMatch = js.match(/additionalSecretOutputs: \[([^\]]*)\]/);
    const secrets = secretMatch ? [...secretMatch[1].matchAll(/"(\w+)"/g)].map((m) => m[1]) : [];
    return { outputs, inputs, secrets };
}

function diff(label, schemaNames, sdkNames) {
    const s = new Set(schemaNames);
    const k = new Set(sdkNames);
    const onlySchema = [...s].filter((n) => !k.has(n)).sort();
    const onlySdk = [...k].filter((n) => !s.has(n)).sort();
    const ok = onlySchema.length === 0 && onlySdk.length === 0;
    let line = `    ${label}: ${ok ? "same" : "DIFFERENT"} (${s.size} in schema, ${k.size} in SDK)`;
    if (onlySchema.length) line += `; only in schema: ${onlySchema.join(", ")}`;
    if (onlySdk.length) line += `; only in SDK: ${onlySdk.join(", ")}`;
    console.log(line);
    return ok;
}

// Replaces "${N.prop}" strings by that output of the Nth created resource (secrets unwrapped).
function resolveRefs(value, created) {
    if (typeof value === "string") {
        const m = value.match(/^\$\{(\d+)\.(\w+)\}$/);
        if (!m) return value;
        const out = created[Number(m[1])].outputs[m[2]];
        return isSecret(out) ? out.value : out;
    }
    if (Array.isArray(value)) return value.map((v) => resolveRefs(v, created));
    if (value !== null && typeof value === "object") {
        return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, resolveRefs(v, created)]));
    }
    return value;
}

function describe(outputs) {
    return Object.keys(outputs)
        .sort()
        .map((k) => {
            const v = outputs[k];
            const plain = isSecret(v) ? v.value : v;
            const shape = typeof plain === "string" ? `${plain.length} chars` : Array.isArray(plain)
                      ? `${plain.length} items`
                      : plain !== null && typeof plain === "object"
                        ? "{...}"
                        : JSON.stringify(plain);
            return `${k}${isSecret(v) ? " [secret]" : ""}=${shape}`;
        })
        .join(", ");
}

async function createAll(client, creates, pkg, config) {
    const configure = new providerPb.ConfigureRequest();
    configure.setArgs(structPb.Struct.fromJavaScript(config || {}));
    // Also as the engine's flat config variables (<pkg>:config:<key>), which some providers read.
    for (const [k, v] of Object.entries(config || {})) {
        configure.getVariablesMap().set(`${pkg}:config:${k}`, typeof v === "string" ? v : JSON.stringify(v));
    }
    configure.setAcceptsecrets(true);
    configure.setAcceptresources(true);
    await call(client, "configure", configure);
    const created = [];
    let ok = true;
    try {
        for (const [i, c] of creates.entries()) {
            const type = c.token;
            const urn = `urn:pulumi:check::check::${type}::r${i}`;
            const check = new providerPb.CheckRequest();
            check.setUrn(urn);
            check.setOlds(structPb.Struct.fromJavaScript({}));
            check.setNews(structPb.Struct.fromJavaScript(resolveRefs(c.inputs, created)));
            check.setRandomseed(require("crypto").randomBytes(32));
            const checked = await call(client, "check", check);
            if (checked.getFailuresList().length > 0) {
                const why = checked.getFailuresList().map((f) => `${f.getProperty()}: ${f.getReason()}`);
                console.log(`  create ${i} ${type}: CHECK FAILED: ${why.join("; ")}`);
                ok = false;
                break;
            }
            const create = new providerPb.CreateRequest();
            create.setUrn(urn);
            create.setProperties(checked.getInputs());
            create.setTimeout(120);
            const res = await call(client, "create", create);
            const outputs = res.getProperties().toJavaScript();
            created.push({ urn, id: res.getId(), outputs, properties: res.getProperties() });
            console.log(`  create ${i} ${type}: id ${res.getId().length} chars; ${describe(outputs)}`);
        }
    } catch (err) {
        console.log(`  create: FAILED: ${err.message}`);
        ok = false;
    }
    let deleted = 0;
    for (const r of created.reverse()) {
        const del = new providerPb.DeleteRequest();
        del.setUrn(r.urn);
        del.setId(r.id);
        del.setProperties(r.properties);
        try {
            await call(client, "delete", del);
            deleted++;
        } catch (err) {
            console.log(`  delete ${r.urn}: FAILED: ${err.message}`);
            ok = false;
        }
    }
    if (created.length > 0) console.log(`  deleted ${deleted} of ${created.length} resources`);
    return ok;
}

async function main() {
    const opts = parseArgs(process.argv.slice(2));
    const started = Date.now();
    const engine = await startEngine();
    const { child, port, out } = startPlugin(opts.binary, engine.address);
    let failed = false;
    try {
        const address = `127.0.0.1:${await port}`;
        const client = new providerGrpc.ResourceProviderClient(address, grpc.credentials.createInsecure(), {
            "grpc.max_receive_message_length": 256 * 1024 * 1024,
        });
        const info = await call(client, "getPluginInfo", new emptyPb.Empty());
        const req = new providerPb.GetSchemaRequest();
        req.setVersion(0);
        const res = await call(client, "getSchema", req);
        const text = res.getSchema();
        const schema = JSON.parse(text);
        if (opts.schemaOut) fs.writeFileSync(opts.schemaOut, text);
        const resources = schema.resources || {};
        console.log(`plugin:   ${opts.binary}`);
        console.log(`version:  GetPluginInfo ${info.getVersion()}, schema ${schema.version ?? "(none)"}`);
        console.log(
            `schema:   name ${schema.name}, ${text.length} bytes, ${Object.keys(resources).length} resources, ` +
                `${Object.keys(schema.functions || {}).length} functions (${Date.now() - started} ms)`,
        );
        if (opts.version !== undefined) {
            const ok = info.getVersion() === opts.version && (schema.version ?? opts.version) === opts.version;
            console.log(`  version ${opts.version}: ${ok ? "ok" : "WRONG"}`);
            failed ||= !ok;
        }
        for (const token of opts.tokens) {
            const spec = token.startsWith("pulumi:providers:") ? schema.provider : resources[token];
            if (!spec) {
                console.log(`  ${token}: MISSING from the schema`);
                failed = true;
                continue;
            }
            const props = spec.properties || {};
            const secret = Object.keys(props).filter((n) => props[n].secret);
            console.log(
                `  ${token}${spec.isComponent ? " (component)" : ""}: inputs ${Object.keys(spec.inputProperties || {}).sort().join(", ")}`,
            );
            console.log(`    outputs ${Object.keys(props).sort().join(", ")}`);
            console.log(`    secret outputs ${secret.sort().join(", ") || "(none)"}`);
            if (opts.sdk) {
                const type = token.startsWith("pulumi:providers:") ? "Provider" : token.split(":")[2];
                const shape = sdkShape(sdkFile(opts.sdk, token), type);
                failed = !diff("inputs vs SDK Args", Object.keys(spec.inputProperties || {}), shape.inputs) || failed;
                if (!token.startsWith("pulumi:providers:") && !spec.isComponent) {
                    failed = !diff("outputs vs SDK class", Object.keys(props), shape.outputs) || failed;
                    failed = !diff("secret outputs vs SDK", secret, shape.secrets) || failed;
                }
            }
        }
        if (opts.creates.length > 0) failed = !(await createAll(client, opts.creates, schema.name, opts.config)) || failed;
        client.close();
    } finally {
        child.kill();
        engine.server.forceShutdown();
    }
    if (failed && engine.logs.length > 0) {
        console.log(`engine log (last lines):\n${engine.logs.slice(-20).join("\n")}`);
    }
    if (failed && out.stderr !== "") {
        console.log(`plugin stderr (last lines):\n${out.stderr.trimEnd().split("\n").slice(-60).join("\n")}`);
    }
    console.log(failed ? "check: FAILED" : "check: ok");
    process.exit(failed ? 1 : 0);
}

main().catch((err) => {
    console.error(`check-plugin: ${err.stack || err}`);
    process.exit(1);
});
