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

use crate::support::workspace;
use mlmodel_operator::api::MLModel;
use mlmodel_operator::names;
use mlmodel_operator::plugins::{LoadedPlugin, PluginError, Runtime, RuntimeOptions, Step};
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

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap()
}

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// Compares `want` to the file (by value, not text), or rewrites it under `UPDATE_VECTORS`.
fn check_file(path: &Path, want: &Value, stale: &mut Vec<String>) {
    if std::env::var_os("UPDATE_VECTORS").is_some() {
        std::fs::write(path, pretty(want) + "\n").unwrap();
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

/// Reads the vectors, checks (or rewrites) their `input.json` and `expected.json`.
fn vectors(rt: &Runtime, stale: &mut Vec<String>) -> Vec<Vector> {
    let vectors_dir = workspace().join("plugins/test-vectors");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&vectors_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("model.yaml").is_file())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 6, "too few vectors: {dirs:?}");
    let parse = |s: &str| serde_json::from_str::<Value>(s).unwrap();
    dirs.iter()
        .map(|dir| {
            let name = dir.file_name().unwrap().to_string_lossy().to_string();
            let model: MLModel =
                serde_yaml::from_str(&std::fs::read_to_string(dir.join("model.yaml")).unwrap())
                    .unwrap_or_else(|e| panic!("{name}/model.yaml: {e}"));
            let revision = names::revision(&model, "download-job");
            // The documents the host hands a plugin, and the Rust plugin's own output for them.
            let mut docs = None;
            let native = rt.render_native(REFERENCE, &model, Step::Serve, &revision, |m, c| {
                docs = Some((m.to_string(), c.to_string()));
                mlmodel_plugin_sdk::render_json::<echo_server::EchoServer>(m, c)
            });
            let (m, c) =
                docs.unwrap_or_else(|| panic!("{name}: refused before the plugin: {native:?}"));
            check_file(
                &dir.join("input.json"),
                &json!({"model": parse(&m), "context": parse(&c)}),
                stale,
            );
            let raw = match mlmodel_plugin_sdk::render_json::<echo_server::EchoServer>(&m, &c) {
                Ok(manifests) => Value::Array(manifests.iter().map(|s| parse(s)).collect()),
                Err(message) => json!({ "error": message }),
            };
            check_file(&dir.join("expected.json"), &raw, stale);
            Vector {
                name,
                model,
                revision,
                native: outcome(REFERENCE, native),
            }
        })
        .collect()
}

#[test]
fn sdk_plugins_render_the_shared_vectors_as_the_rust_plugin() {
    let dir = sdk_plugins_dir();
    let t = Instant::now();
    let rt = Runtime::new(RuntimeOptions {
        plugin_dirs: vec![dir.clone()],
        operator_image: "mlmodel-operator:vectors".into(),
        cache_dir: Some(workspace().join("target").join("plugin-test-cache")),
        ..RuntimeOptions::default()
    })
    .unwrap();
    let load_time = t.elapsed();
    // The vectors' own files first: `UPDATE_VECTORS=1` needs no component.
    let mut stale = Vec::new();
    let vectors = vectors(&rt, &mut stale);

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
