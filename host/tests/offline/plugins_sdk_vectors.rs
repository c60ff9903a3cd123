//! The TypeScript and Python SDKs against the Rust one, on the shared vectors of
//! `plugins/test-vectors/`: the template serve plugins `echo-server-ts` and `echo-server-py`
//! (plugins/echo-server-ts, plugins/echo-server-py), built by `hack/sdk-plugins.sh` (run by
//! `make setup` and `make test`) into `$MLMODEL_CACHE/sdk-plugins/`, loaded through the host's
//! own runtime (sandbox, limits, output policy, host additions), must render every vector exactly
//! as the built-in Rust `echo-server` does, and accept the same config keys and formats.
//!
//! The vectors' files are checked too, so they cannot go stale: `input.json` must be the two
//! documents the host hands a plugin for the vector's `model.yaml`, and `expected.json` what the
//! Rust plugin returns for them (`UPDATE_VECTORS=1` rewrites both). The SDKs' native runners
//! (`node plugins/sdk-ts/build.mjs test`, `python3 -m mlmodel_plugin.testing`) read those two.
//!
//! Missing or stale components fail the test (never a skip): build them with
//! `hack/sdk-plugins.sh`. `MLMODEL_SDK_PLUGINS` names another directory of them.
//!
//! The vectors of the other steps' templates (`plugins/test-vectors-download`, `-expose`: what
//! `plugins new` puts in a project's `tests/`) are checked the same way against the Rust
//! `download-job` and `service`; their TypeScript and Python ports are run on them by the
//! scaffold test (plugins_scaffold.rs).

use crate::support::workspace;
use mlmodel_operator::api::MLModel;
use mlmodel_operator::plugins::{LoadedPlugin, PluginError, Runtime, RuntimeOptions, Step};
use mlmodel_plugin_author::golden::{self, pretty, read_json};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// (plugin name, component file in the SDK plugins' directory).
const SDK_PLUGINS: &[(&str, &str)] = &[
    ("echo-server-ts", "echo_server_ts.wasm"),
    ("echo-server-py", "echo_server_py.wasm"),
];
/// The Rust plugin they reimplement.
const REFERENCE: &str = "echo-server";

/// Where `hack/sdk-plugins.sh` puts the components.
fn sdk_plugins_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("MLMODEL_SDK_PLUGINS").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let cache = std::env::var_os("MLMODEL_CACHE")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set"))
                .join(".cache/mlmodel-operator")
        });
    cache.join("sdk-plugins")
}

fn sha256_file(path: &Path) -> std::io::Result<String> {
    Ok(hex::encode(Sha256::digest(std::fs::read(path)?)))
}

/// Files under `root` as the build script lists them: regular files, skipping `node_modules`,
/// `__pycache__` and hidden entries, as paths relative to the workspace.
fn input_files(ws: &Path, root: &Path, out: &mut BTreeSet<String>) {
    let Ok(entries) = std::fs::read_dir(ws.join(root)) else {
        return;
    };
    for entry in entries.map(|e| e.unwrap()) {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.starts_with('.') || name == "node_modules" || name == "__pycache__" {
            continue;
        }
        let rel = root.join(&name);
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            input_files(ws, &rel, out);
        } else if kind.is_file() {
            out.insert(rel.to_string_lossy().to_string());
        }
    }
}

/// Whether `<file>.inputs`, the build script's record of the sources a component was built
/// from (`# roots: DIR...`, other `#` lines, then `sha256  path` lines), still matches the
/// sources.
fn check_fresh(dir: &Path, file: &str) -> Result<(), String> {
    let ws = workspace();
    let record = dir.join(format!("{file}.inputs"));
    let text =
        std::fs::read_to_string(&record).map_err(|e| format!("{}: {e}", record.display()))?;
    let mut lines = text.lines();
    let roots: Vec<&str> = lines
        .next()
        .and_then(|l| l.strip_prefix("# roots: "))
        .ok_or_else(|| format!("{}: no `# roots:` line", record.display()))?
        .split_whitespace()
        .collect();
    let mut listed = BTreeSet::new();
    let mut changed = Vec::new();
    for line in lines.filter(|l| !l.starts_with('#')) {
        let (hash, path) = line
            .split_once("  ")
            .ok_or_else(|| format!("{}: bad line {line:?}", record.display()))?;
        listed.insert(path.to_string());
        if sha256_file(&ws.join(path)).ok().as_deref() != Some(hash) {
            changed.push(path.to_string());
        }
    }
    let mut now = BTreeSet::new();
    for root in roots {
        input_files(&ws, Path::new(root), &mut now);
    }
    changed.extend(now.symmetric_difference(&listed).cloned());
    if changed.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} is stale: built before changes to {}",
            dir.join(file).display(),
            changed.join(", ")
        ))
    }
}

/// A render's result, comparable across plugins: the objects as JSON, or the error with the
/// plugin's name replaced (a plugin's own failure as `{"error": message}`).
fn outcome(plugin: &str, result: Result<Vec<kube::api::DynamicObject>, PluginError>) -> Value {
    match result {
        Ok(objects) => Value::Array(
            objects
                .iter()
                .map(|o| serde_json::to_value(o).unwrap())
                .collect(),
        ),
        Err(PluginError::Failed { message, .. }) => json!({ "error": message }),
        Err(e) => json!({ "hostError": e.to_string().replace(plugin, "<plugin>") }),
    }
}

/// Compares `want` to the file (by value, not text), or rewrites it under `UPDATE_VECTORS`.
fn check_file(path: &Path, want: &Value, stale: &mut Vec<String>) {
    if std::env::var_os("UPDATE_VECTORS").is_some() {
        golden::write_json(path, want).unwrap();
    } else if read_json(path).as_ref() != Some(want) {
        stale.push(format!("{}, should be:\n{}", path.display(), pretty(want)));
    }
}

fn render_timed(
    rt: &Runtime,
    plugin: &LoadedPlugin,
    model: &MLModel,
    revision: &str,
    spent: &mut Duration,
) -> Value {
    let t = Instant::now();
    let result = rt.render(plugin, model, Step::Serve, revision);
    *spent += t.elapsed();
    outcome(&plugin.name, result)
}

/// One vector: the model, and what the host and the Rust plugin make of it.
struct Vector {
    name: String,
    model: MLModel,
    revision: String,
    /// The Rust plugin's native render through the host's policy and additions.
    native: Value,
}

/// A Rust plugin's render from the two input documents, natively.
type NativeRender = fn(&str, &str) -> Result<Vec<String>, String>;

/// Reads the vectors of `dir` (in the workspace) for `step`, checks (or rewrites) their
/// `input.json` and `expected.json` against the host's input and the output of `native`, the
/// native build of the Rust `plugin`.
fn vectors(
    rt: &Runtime,
    dir: &str,
    step: Step,
    plugin: &str,
    native: NativeRender,
    stale: &mut Vec<String>,
) -> Vec<Vector> {
    let cases = golden::cases(&workspace().join(dir)).unwrap();
    assert!(cases.len() >= 4, "too few vectors in {dir}");
    let parse = |s: &str| serde_json::from_str::<Value>(s).unwrap();
    cases
        .into_iter()
        .map(|case| {
            let name = case.name.clone();
            // The documents the host hands a plugin, and the Rust plugin's own output for them.
            let mut docs = None;
            let checked = rt.render_native(plugin, &case.model, step, &case.revision, |m, c| {
                docs = Some((m.to_string(), c.to_string()));
                native(m, c)
            });
            let (m, c) =
                docs.unwrap_or_else(|| panic!("{name}: refused before the plugin: {checked:?}"));
            let input = json!({"model": parse(&m), "context": parse(&c)});
            assert_eq!(input, golden::input_document(rt, &case, step), "{name}");
            check_file(&case.dir.join(golden::INPUT_FILE), &input, stale);
            let raw = golden::outcome(&native(&m, &c).map_err(|message| PluginError::Failed {
                plugin: plugin.into(),
                message,
                stderr: String::new(),
            }))
            .unwrap();
            check_file(&case.dir.join(golden::EXPECTED_FILE), &raw, stale);
            Vector {
                name,
                model: case.model,
                revision: case.revision,
                native: outcome(plugin, checked),
            }
        })
        .collect()
}

fn vector_runtime(plugin_dirs: Vec<PathBuf>) -> Runtime {
    Runtime::new(RuntimeOptions {
        plugin_dirs,
        operator_image: golden::OPERATOR_IMAGE.into(),
        cache_dir: Some(workspace().join("target").join("plugin-test-cache")),
        ..RuntimeOptions::default()
    })
    .unwrap()
}

/// The vectors of the download and expose templates are what the Rust built-ins render, and the
/// built-in components in the sandbox render them as their native builds do.
#[test]
fn template_vectors_are_what_the_rust_builtins_render() {
    let rt = vector_runtime(Vec::new());
    let mut stale = Vec::new();
    let mut differ = Vec::new();
    let sets: [(&str, Step, &str, NativeRender); 2] = [
        (
            "plugins/test-vectors-download",
            Step::Download,
            "download-job",
            mlmodel_plugin_sdk::render_json::<download_job::DownloadJob>,
        ),
        (
            "plugins/test-vectors-expose",
            Step::Expose,
            "service",
            mlmodel_plugin_sdk::render_json::<service::Service>,
        ),
    ];
    for (dir, step, builtin, native) in sets {
        let plugin = rt.get(builtin).unwrap();
        for v in vectors(&rt, dir, step, builtin, native, &mut stale) {
            let wasm = outcome(builtin, rt.render(&plugin, &v.model, step, &v.revision));
            if wasm != v.native {
                differ.push(format!(
                    "{dir}/{}: {builtin} differs from its native build:\n{}\n{}",
                    v.name,
                    pretty(&wasm),
                    pretty(&v.native)
                ));
            }
        }
    }
    assert!(
        stale.is_empty(),
        "vector files out of date (UPDATE_VECTORS=1 rewrites them):\n{}",
        stale.join("\n")
    );
    assert!(differ.is_empty(), "{}", differ.join("\n\n"));
}

#[test]
fn sdk_plugins_render_the_shared_vectors_as_the_rust_plugin() {
    let dir = sdk_plugins_dir();
    let t = Instant::now();
    let rt = vector_runtime(vec![dir.clone()]);
    let load_time = t.elapsed();
    // The vectors' own files first: `UPDATE_VECTORS=1` needs no component.
    let mut stale = Vec::new();
    let vectors = vectors(
        &rt,
        "plugins/test-vectors",
        Step::Serve,
        REFERENCE,
        mlmodel_plugin_sdk::render_json::<echo_server::EchoServer>,
        &mut stale,
    );
    assert!(vectors.len() >= 6, "too few vectors");

    let mut problems = Vec::new();
    for (_, file) in SDK_PLUGINS {
        let path = dir.join(file);
        if !path.is_file() {
            problems.push(format!("{} is missing", path.display()));
        } else if let Err(e) = check_fresh(&dir, file) {
            problems.push(e);
        }
    }
    assert!(
        problems.is_empty(),
        "{}\nbuild the SDK plugins with `hack/sdk-plugins.sh` (`make setup` runs it)",
        problems.join("\n")
    );
    assert!(
        rt.load_errors().is_empty(),
        "plugins not loaded: {:?}",
        rt.load_errors()
    );
    let reference = rt.get(REFERENCE).expect("the built-in echo-server");
    let sdk: Vec<_> = SDK_PLUGINS
        .iter()
        .map(|(name, file)| {
            let p = rt
                .get(name)
                .unwrap_or_else(|| panic!("{file} did not load as plugin {name}"));
            assert_eq!(p.steps, reference.steps, "{name}: steps");
            assert_eq!(p.accepts, reference.accepts, "{name}: config keys, formats");
            assert_eq!(p.description, reference.description, "{name}: description");
            p
        })
        .collect();

    let mut differ = Vec::new();
    let mut spent = vec![Duration::ZERO; sdk.len() + 1];
    for v in &vectors {
        let name = &v.name;
        // The built-in component in the sandbox renders what its native build renders...
        let rust = render_timed(&rt, &reference, &v.model, &v.revision, &mut spent[0]);
        if rust != v.native {
            differ.push(format!(
                "{name}: the wasm {REFERENCE} differs from its native build:\n{}\n{}",
                pretty(&rust),
                pretty(&v.native)
            ));
        }
        // ... and so do the TypeScript and Python ones.
        for (i, plugin) in sdk.iter().enumerate() {
            let got = render_timed(&rt, plugin, &v.model, &v.revision, &mut spent[i + 1]);
            if got != rust {
                differ.push(format!(
                    "{name}: {} renders\n{}\nwhere {REFERENCE} renders\n{}",
                    plugin.name,
                    pretty(&got),
                    pretty(&rust)
                ));
            }
        }
    }
    let n = vectors.len() as u32;
    eprintln!(
        "sdk vectors: runtime loaded in {load_time:?}; mean render {REFERENCE} {:?}, {}",
        spent[0] / n,
        sdk.iter()
            .zip(&spent[1..])
            .map(|(p, d)| format!("{} {:?}", p.name, *d / n))
            .collect::<Vec<_>>()
            .join(", ")
    );
    assert!(
        stale.is_empty(),
        "vector files out of date (UPDATE_VECTORS=1 rewrites them):\n{}",
        stale.join("\n")
    );
    assert!(differ.is_empty(), "{}", differ.join("\n\n"));
}
