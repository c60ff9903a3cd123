#!/usr/bin/env node
// Builds and tests mlmodel-operator plugins written with this SDK.
//
//   node build.mjs build <plugin.ts|.js> -o <plugin.wasm> [--wit DIR] [--modules DIR]
//       type-checks (TypeScript entries), bundles the plugin with the SDK (rolldown), and builds
//       the WebAssembly component of world `plugin-with-inputs` (componentize-js); then checks
//       with jco that the component exports the contract and imports nothing the sandbox lacks.
//   node build.mjs test <plugin.ts|.js> [--vectors DIR] [--modules DIR]
//       runs the plugin natively (node, no wasm) on every test vector (`input.json` ->
//       `expected.json`, see plugins/test-vectors/README.md) and prints a diff of each mismatch.
//
// The tools are the pinned devDependencies of package.json, in `--modules DIR` or
// `$MLMODEL_SDK_TS_MODULES` (a node_modules directory), else this directory's node_modules
// (after `npm ci` here). `--wit` defaults to the repository's wit/ (../../wit).
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, extname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { isDeepStrictEqual } from "node:util";

const SDK = dirname(fileURLToPath(import.meta.url));
const WORLD = "plugin-with-inputs";
// What the sandbox gives a plugin: stdio (stderr ends up in the error message). componentize-js
// would also import clocks, random and wasi:http; a render must not need them (same input, same
// output), so they are left out.
const DISABLED_FEATURES = ["random", "clocks", "http", "fetch-event"];
const CONTRACT_EXPORTS = ["mlmodel:plugin/renderer@0.1.1", "mlmodel:plugin/inputs@0.1.1"];
// The sandbox links WASI 0.2 without wasi:http (and grants no files, network or environment);
// any other import fails the load.
const refusedImport = (name) => !name.startsWith("wasi:") || name.startsWith("wasi:http/");

function usage(message) {
  if (message) console.error(`build.mjs: ${message}`);
  console.error(
    "usage: node build.mjs build <plugin.ts> -o <out.wasm> [--wit DIR] [--modules DIR]\n" +
      "       node build.mjs test <plugin.ts> [--vectors DIR] [--modules DIR]",
  );
  process.exit(2);
}

function parseArgs(argv) {
  const [command, ...rest] = argv;
  const opts = { command, entry: undefined };
  for (let i = 0; i < rest.length; i++) {
    const a = rest[i];
    const value = () => rest[++i] ?? usage(`${a} needs a value`);
    if (a === "-o" || a === "--out") opts.out = value();
    else if (a === "--wit") opts.wit = value();
    else if (a === "--modules") opts.modules = value();
    else if (a === "--vectors") opts.vectors = value();
    else if (a.startsWith("-")) usage(`unknown option ${a}`);
    else if (opts.entry === undefined) opts.entry = a;
    else usage(`unexpected argument ${a}`);
  }
  if (!["build", "test"].includes(command)) usage(command ? `unknown command ${command}` : "");
  if (!opts.entry) usage("no plugin entry given");
  if (command === "build" && !opts.out) usage("build needs -o <out.wasm>");
  opts.entry = resolve(opts.entry);
  opts.modules = resolve(opts.modules ?? process.env.MLMODEL_SDK_TS_MODULES ?? join(SDK, "node_modules"));
  opts.wit = resolve(opts.wit ?? join(SDK, "..", "..", "wit"));
  opts.vectors = resolve(opts.vectors ?? join(SDK, "..", "test-vectors"));
  if (!existsSync(opts.modules)) {
    usage(`no tools in ${opts.modules}: run \`npm ci\` in ${SDK}, or pass --modules`);
  }
  return opts;
}

/** Imports package `name` from the tools' node_modules (ESM resolution cannot be pointed there). */
async function load(modules, name) {
  const dir = join(modules, ...name.split("/"));
  const pkg = JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
  let entry = pkg.exports?.["."] ?? pkg.exports ?? pkg.module ?? pkg.main;
  while (entry && typeof entry === "object") entry = entry.import ?? entry.default;
  if (typeof entry !== "string") throw new Error(`cannot find the entry of ${name}`);
  return import(pathToFileURL(join(dir, entry)).href);
}

function bin(modules, pkg, script) {
  return join(modules, ...pkg.split("/"), script);
}

function run(what, cmd, args, options = {}) {
  const r = spawnSync(cmd, args, { encoding: "utf8", ...options });
  if (r.error) throw new Error(`${what}: ${r.error.message}`);
  if (r.status !== 0) {
    throw new Error(`${what} failed (exit ${r.status}):\n${r.stdout ?? ""}${r.stderr ?? ""}`);
  }
  return r.stdout;
}

/** Type-checks a TypeScript entry (and the SDK) with tsc, the SDK mapped as `mlmodel-plugin-sdk`. */
function typecheck(opts, work) {
  if (![".ts", ".mts"].includes(extname(opts.entry))) return;
  const tsconfig = join(work, "tsconfig.json");
  writeFileSync(
    tsconfig,
    JSON.stringify({
      compilerOptions: {
        strict: true,
        noEmit: true,
        target: "es2022",
        lib: ["es2022"],
        types: [],
        module: "esnext",
        moduleResolution: "bundler",
        allowImportingTsExtensions: true,
        skipLibCheck: true,
        paths: { "mlmodel-plugin-sdk": [join(SDK, "src", "index.ts")] },
      },
      files: [opts.entry],
    }),
  );
  run("type check (tsc)", process.execPath, [bin(opts.modules, "typescript", "bin/tsc"), "-p", tsconfig]);
}

/** One ES module holding the plugin and the SDK. */
async function bundle(opts, work) {
  const { rolldown } = await load(opts.modules, "rolldown");
  const build = await rolldown({
    input: opts.entry,
    platform: "neutral",
    resolve: { alias: { "mlmodel-plugin-sdk": join(SDK, "src", "index.ts") } },
    logLevel: "warn",
  });
  const file = join(work, "plugin.bundle.js");
  await build.write({ file, format: "esm" });
  await build.close();
  return file;
}

async function buildCommand(opts) {
  const work = mkdtempSync(join(tmpdir(), "mlmodel-plugin-ts-"));
  try {
    const t0 = Date.now();
    typecheck(opts, work);
    const source = await bundle(opts, work);
    const { componentize } = await load(opts.modules, "@bytecodealliance/componentize-js");
    const { component } = await componentize({
      sourcePath: source,
      witPath: opts.wit,
      worldName: WORLD,
      disableFeatures: DISABLED_FEATURES,
    });
    writeFileSync(opts.out, component);
    // What the host will see: the exports of the contract, no import the sandbox refuses.
    const world = run("jco wit", process.execPath, [
      bin(opts.modules, "@bytecodealliance/jco", "dist/jco.js"),
      "wit",
      opts.out,
    ]);
    const missing = CONTRACT_EXPORTS.filter((e) => !world.includes(`export ${e};`));
    const refused = [...world.matchAll(/^\s*import ([^;]+);/gm)]
      .map((m) => m[1])
      .filter(refusedImport);
    const problems = [
      ...(missing.length ? [`lacks the exports ${missing.join(", ")}`] : []),
      ...(refused.length ? [`imports ${refused.join(", ")}, which the sandbox lacks`] : []),
    ];
    if (problems.length) {
      rmSync(opts.out, { force: true });
      throw new Error(`the component ${problems.join(" and ")}:\n${world}`);
    }
    const secs = ((Date.now() - t0) / 1000).toFixed(1);
    console.error(`built ${opts.out} (${component.length} bytes, ${secs}s)`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** `expected.json` of a vector: a list of manifests, or `{"error": message}`. */
function outcome(renderer, input) {
  try {
    return renderer
      .render({ model: JSON.stringify(input.model), context: JSON.stringify(input.context) })
      .map((m) => JSON.parse(m));
  } catch (e) {
    return { error: e?.message ?? String(e) };
  }
}

async function testCommand(opts) {
  const work = mkdtempSync(join(tmpdir(), "mlmodel-plugin-ts-"));
  let passed = 0;
  const failed = [];
  try {
    const plugin = await import(pathToFileURL(await bundle(opts, work)).href);
    if (!plugin.renderer || !plugin.inputs) {
      throw new Error(`${opts.entry} exports no \`renderer\` and \`inputs\` (exportPlugin)`);
    }
    const vectors = readdirSync(opts.vectors, { withFileTypes: true })
      .filter((d) => d.isDirectory())
      .map((d) => d.name)
      .sort();
    for (const name of vectors) {
      const dir = join(opts.vectors, name);
      const input = JSON.parse(readFileSync(join(dir, "input.json"), "utf8"));
      const expected = JSON.parse(readFileSync(join(dir, "expected.json"), "utf8"));
      const got = outcome(plugin.renderer, input);
      if (isDeepStrictEqual(got, expected)) {
        passed++;
      } else {
        failed.push(name);
        console.error(
          `FAIL ${name}\n--- expected\n${JSON.stringify(expected, null, 2)}\n+++ got\n${JSON.stringify(got, null, 2)}`,
        );
      }
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  console.log(`vectors: ${passed} passed, ${failed.length} failed`);
  if (failed.length) process.exit(1);
}

const opts = parseArgs(process.argv.slice(2));
try {
  await (opts.command === "build" ? buildCommand(opts) : testCommand(opts));
} catch (e) {
  console.error(`build.mjs: ${e?.message ?? e}`);
  process.exit(1);
}
