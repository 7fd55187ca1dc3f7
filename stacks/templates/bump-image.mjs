#!/usr/bin/env node
// Sets one scalar in a YAML file (an image tag or reference in a manifests repository) and
// leaves every other byte of the file as it was.
//
//   node bump-image.mjs <file> <dotted.key> <value>
//
// The key path is dotted (`image.tag`, `backend.image.tag`; a numeric segment indexes a
// sequence). The YAML is parsed with the `yaml` package's Document API only to find the
// scalar's exact source range; the new value is spliced into the original text there, then the
// result is parsed again and must differ from the original in that one key and nowhere else.
//
// Exit codes: 0 changed or already equal; 1 refused (no such key, not a scalar, invalid value,
// invalid YAML); 2 usage.
//
// Needs Node 20 and the `yaml` package (2.x); nothing else.
import { readFileSync, realpathSync, writeFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import { isDeepStrictEqual } from "node:util";
import { isAlias, isMap, isScalar, isSeq, parse, parseDocument, Scalar } from "yaml";

/** A refusal: the file is left untouched and the message says why. */
export class BumpError extends Error {
  constructor(message) {
    super(message);
    this.name = "BumpError";
  }
}

// Image reference grammar of the distribution project (distribution/reference, regexp.go).
const alphanumeric = "[a-z0-9]+";
const separator = "(?:[._]|__|[-]+)";
const pathComponent = `${alphanumeric}(?:${separator}${alphanumeric})*`;
const domainComponent = "(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])";
const domainName = `${domainComponent}(?:\\.${domainComponent})*`;
const ipv6 = "\\[(?:[a-fA-F0-9:]+)\\]";
const domain = `(?:${domainName}|${ipv6})(?::[0-9]+)?`;
const name = `(?:${domain}/)?${pathComponent}(?:/${pathComponent})*`;
const tag = "[\\w][\\w.-]{0,127}";
const digest = "[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}";
const TAG_RE = new RegExp(`^${tag}$`);
const REFERENCE_RE = new RegExp(`^(${name})(?::(${tag}))?(?:@(${digest}))?$`);

/**
 * Whether `value` is an image tag (`1.4.2`, a commit SHA) or a full image reference that pins
 * a tag or a digest (`registry.example.com:5000/team/app:1.4.2`, `app@sha256:…`). A bare name
 * with neither (`team/app`) is refused: it would silently mean `:latest`.
 */
export function isValidImageValue(value) {
  if (typeof value !== "string" || value.length === 0) return false;
  if (!/[/:@]/.test(value)) return TAG_RE.test(value);
  const m = REFERENCE_RE.exec(value);
  if (m === null || m[1].length > 255) return false;
  return m[2] !== undefined || m[3] !== undefined;
}

function describe(node) {
  if (isMap(node)) return "a mapping";
  if (isSeq(node)) return "a sequence";
  if (isAlias(node)) return `an alias (*${node.source})`;
  if (isScalar(node)) return "a scalar";
  return "empty";
}

/** The node at `segments` under the document's root, or a refusal naming the first missing segment. */
function findNode(doc, segments) {
  let node = doc.contents;
  for (let i = 0; i < segments.length; i++) {
    const seg = segments[i];
    const at = segments.slice(0, i).join(".") || "(document root)";
    let next;
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === seg);
      next = pair?.value;
      if (pair === undefined) throw new BumpError(`key ${segments.slice(0, i + 1).join(".")} does not exist (no "${seg}" under ${at})`);
    } else if (isSeq(node) && /^(0|[1-9][0-9]*)$/.test(seg)) {
      next = node.items[Number(seg)];
      if (next === undefined) throw new BumpError(`key ${segments.slice(0, i + 1).join(".")} does not exist (${at} has ${node.items.length} items)`);
    } else {
      throw new BumpError(`key ${segments.slice(0, i + 1).join(".")} does not exist (${at} is ${describe(node)})`);
    }
    node = next;
  }
  return node;
}

/** The source text of `value` written in the style the old scalar was written in, when that style can hold it. */
function render(value, oldType) {
  const plainIsString = (() => {
    try {
      return parse(value) === value;
    } catch {
      return false;
    }
  })();
  if (oldType === Scalar.QUOTE_SINGLE) return `'${value}'`;
  if (oldType === Scalar.PLAIN && plainIsString) return value;
  // Valid image values hold no quote or backslash, so double quotes need no escaping. A value
  // that YAML would read as a number (a tag like `1.10`) ends up here and stays a string.
  return `"${value}"`;
}

/**
 * Sets `keyPath` (dotted) to `value` in the YAML `source`.
 * Returns `{ text, previous, changed }`; `text === source` when the value was already equal.
 * Throws BumpError when the key does not exist, is not a plain or quoted scalar, or when
 * `value` is not an image tag or reference.
 */
export function bumpImage(source, keyPath, value) {
  if (!isValidImageValue(value)) {
    throw new BumpError(`"${value}" is not a valid image tag or reference (a tag is [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}; a reference needs a tag or a digest)`);
  }
  const segments = keyPath.split(".");
  if (segments.some((s) => s === "")) throw new BumpError(`key path "${keyPath}" has an empty segment`);

  const doc = parseDocument(source);
  if (doc.errors.length > 0) throw new BumpError(`not valid YAML: ${doc.errors[0].message.split("\n")[0]}`);
  const node = findNode(doc, segments);
  if (!isScalar(node)) throw new BumpError(`key ${keyPath} is ${describe(node)}, not a scalar`);
  if (node.anchor) throw new BumpError(`key ${keyPath} carries the anchor &${node.anchor}; changing it would change every alias of it too`);
  if (node.type === Scalar.BLOCK_LITERAL || node.type === Scalar.BLOCK_FOLDED) {
    throw new BumpError(`key ${keyPath} is a block scalar; write it as a plain or quoted scalar`);
  }
  if (node.value !== null && typeof node.value === "object") throw new BumpError(`key ${keyPath} is not a scalar`);
  const [start, end] = node.range;
  // As written in the file (`1.10` stays `1.10`, not the number 1.1), without its quotes.
  const previous = node.value === null ? null : source.slice(start, end).replace(/^(["'])(.*)\1$/s, "$2");
  if (node.value === value) return { text: source, previous, changed: false };

  let replacement = render(value, node.type);
  if (start === end && start > 0 && !/\s/.test(source[start - 1])) replacement = ` ${replacement}`;
  const text = source.slice(0, start) + replacement + source.slice(end);

  // The splice must change that key and nothing else.
  const after = parseDocument(text);
  const expected = doc.toJS();
  let cursor = expected;
  for (const seg of segments.slice(0, -1)) cursor = cursor[Array.isArray(cursor) ? Number(seg) : seg];
  cursor[Array.isArray(cursor) ? Number(segments.at(-1)) : segments.at(-1)] = value;
  if (after.errors.length > 0 || !isDeepStrictEqual(after.toJS(), expected)) {
    throw new BumpError(`writing ${keyPath} in place would change more than that key; edit the file by hand`);
  }
  return { text, previous, changed: true };
}

/** The command line: prints what changed; refusals go to stderr with a non-zero exit. */
export function main(argv) {
  if (argv.length !== 3) {
    process.stderr.write("usage: bump-image.mjs <file> <dotted.key> <value>\n");
    return 2;
  }
  const [file, keyPath, value] = argv;
  let source;
  try {
    source = readFileSync(file, "utf8");
  } catch (err) {
    process.stderr.write(`bump-image: ${file}: cannot read: ${err.code ?? err.message}\n`);
    return 1;
  }
  try {
    const { text, previous, changed } = bumpImage(source, keyPath, value);
    if (!changed) {
      process.stdout.write(`${file}: ${keyPath} is already ${value}; nothing to change\n`);
      return 0;
    }
    writeFileSync(file, text);
    process.stdout.write(`${file}: ${keyPath}: ${previous ?? "(empty)"} → ${value}\n`);
    return 0;
  } catch (err) {
    if (!(err instanceof BumpError)) throw err;
    process.stderr.write(`bump-image: ${file}: ${err.message}; file left unchanged\n`);
    return 1;
  }
}

const invokedDirectly = process.argv[1] !== undefined && import.meta.url === pathToFileURL(realpathSync(process.argv[1])).href;
if (invokedDirectly) process.exitCode = main(process.argv.slice(2));
