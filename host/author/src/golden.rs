//! Golden cases of a plugin, in the format of `plugins/test-vectors/`: a folder per case with
//!
//! - `model.yaml`: the `MLModel` as the cluster hands it over (namespace and uid set);
//! - `input.json`: `{"model": {...}, "context": {...}}`, the render input the host builds from
//!   it (operator image [`OPERATOR_IMAGE`]), which the SDKs' native runners read;
//! - `expected.json`: what the plugin itself returns, before the output policy and the host's
//!   additions: a list of manifests, or `{"error": "<message>"}` when it fails.
//!
//! `mlmodel-operator plugins test`, the SDK vector test and the scaffold check share this: the
//! case's render goes through the real runtime, its raw output is compared with `expected.json`
//! by value (a unified diff of canonical JSON when it differs), then the output policy runs on
//! it.
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

use mlmodel_api::api::MLModel;
use mlmodel_api::names;
use mlmodel_plugin_runtime::{LoadedPlugin, PluginError, Runtime, Step};

/// The operator image of every case's input (the download Job's image, when it uses it).
pub const OPERATOR_IMAGE: &str = "mlmodel-operator:vectors";
/// Download plugin whose name goes into a case's revision unless the model's annotation names
/// another: the revision the operator computes by default, whatever plugin is under test.
const DEFAULT_DOWNLOAD_PLUGIN: &str = "download-job";

pub const MODEL_FILE: &str = "model.yaml";
pub const INPUT_FILE: &str = "input.json";
pub const EXPECTED_FILE: &str = "expected.json";

#[derive(Debug, thiserror::Error)]
pub enum GoldenError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not an MLModel: {source}")]
    Model {
        path: PathBuf,
        source: serde_yaml::Error,
    },
    #[error("no cases in {0}: each case is a folder holding a model.yaml")]
    NoCases(PathBuf),
}

/// One case: its folder and the model in it.
pub struct Case {
    pub name: String,
    pub dir: PathBuf,
    pub model: MLModel,
    /// The revision the operator would render the model at.
    pub revision: String,
}

/// The cases under `dir` (its subfolders holding a `model.yaml`), by name.
pub fn cases(dir: &Path) -> Result<Vec<Case>, GoldenError> {
    let read_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| GoldenError::Read { path, source }
    };
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(read_err(dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join(MODEL_FILE).is_file())
        .collect();
    dirs.sort();
    if dirs.is_empty() {
        return Err(GoldenError::NoCases(dir.to_path_buf()));
    }
    dirs.into_iter()
        .map(|dir| {
            let path = dir.join(MODEL_FILE);
            let text = std::fs::read_to_string(&path).map_err(read_err(&path))?;
            let model: MLModel = serde_yaml::from_str(&text)
                .map_err(|source| GoldenError::Model { path, source })?;
            Ok(Case {
                name: dir.file_name().unwrap_or_default().to_string_lossy().into(),
                revision: revision(&model),
                model,
                dir,
            })
        })
        .collect()
}

/// The revision the operator computes for `model`: with the download plugin its annotation
/// names, else the default one.
pub fn revision(model: &MLModel) -> String {
    let download = model
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(Step::Download.annotation()))
        .map(|a| a.trim())
        .filter(|a| !a.is_empty())
        .unwrap_or(DEFAULT_DOWNLOAD_PLUGIN);
    // A plugin renders the same for both storage modes; the shared revision is the stable one.
    names::revision(model, download, mlmodel_api::api::StorageMode::Shared)
}

/// `input.json` of a case: the two documents the host hands the plugin.
pub fn input_document(rt: &Runtime, case: &Case, step: Step) -> Value {
    let (model, context) = rt.render_input(&case.model, step, &case.revision);
    let parse = |s: &str| serde_json::from_str::<Value>(s).unwrap_or(Value::String(s.into()));
    json!({"model": parse(&model), "context": parse(&context)})
}

/// What `expected.json` holds for a plugin's own result: the manifests (a manifest that is not
/// JSON as a string, so that the diff shows it), or `{"error": message}`. `None` for a failure
/// of the host's making (sandbox limits, a refused config), which no golden file records.
pub fn outcome(result: &Result<Vec<String>, PluginError>) -> Option<Value> {
    match result {
        Ok(manifests) => Some(Value::Array(
            manifests
                .iter()
                .map(|m| serde_json::from_str(m).unwrap_or_else(|_| Value::String(m.clone())))
                .collect(),
        )),
        Err(PluginError::Failed { message, .. }) => Some(json!({ "error": message })),
        Err(_) => None,
    }
}

/// Pretty JSON with every object's keys sorted, ending in a newline: the golden files' text
/// and the diffs' (stable whatever order a plugin wrote its keys in).
pub fn pretty(value: &Value) -> String {
    let mut value = value.clone();
    value.sort_all_objects();
    let mut text = serde_json::to_string_pretty(&value).expect("a Value always serializes");
    text.push('\n');
    text
}

/// The JSON in `path`, `None` when it is missing or not JSON.
pub fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// Writes `value` to `path` as [`pretty`] JSON.
pub fn write_json(path: &Path, value: &Value) -> std::io::Result<()> {
    std::fs::write(path, pretty(value))
}

/// A unified diff from `expected` to `actual`, both as [`pretty`] JSON (`from`/`to` name them).
pub fn diff(expected: Option<&Value>, actual: &Value, from: &str, to: &str) -> String {
    let old = expected.map(pretty).unwrap_or_default();
    let new = pretty(actual);
    similar::TextDiff::from_lines(&old, &new)
        .unified_diff()
        .context_radius(4)
        .header(from, to)
        .to_string()
}

/// How a case went.
#[derive(Debug, Default)]
pub struct CaseReport {
    pub name: String,
    /// Why it failed, one text each (may span lines: diffs); empty when it passed.
    pub failures: Vec<String>,
    /// Files (re)written by `update`.
    pub written: Vec<PathBuf>,
}

impl CaseReport {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// Renders `case` with `plugin` for `step` through `rt` and checks its `input.json`, its
/// `expected.json` and the output policy; with `update`, the two files are written from what
/// the host and the plugin give now instead of compared (a policy refusal or a host error still
/// fails the case).
pub fn run_case(
    rt: &Runtime,
    plugin: &LoadedPlugin,
    step: Step,
    case: &Case,
    update: bool,
) -> std::io::Result<CaseReport> {
    let mut report = CaseReport {
        name: case.name.clone(),
        ..CaseReport::default()
    };
    let check = |file: &str, want: &Value, what: &str, report: &mut CaseReport| {
        let path = case.dir.join(file);
        let have = read_json(&path);
        if have.as_ref() == Some(want) {
            return Ok(());
        }
        if update {
            write_json(&path, want)?;
            report.written.push(path);
            return Ok(());
        }
        let problem = if have.is_none() {
            format!("{file} is missing or not JSON (--update writes it)")
        } else {
            format!("{what} (--update rewrites {file})")
        };
        let to = format!("{file} (now)");
        report.failures.push(format!(
            "{problem}\n{}",
            diff(have.as_ref(), want, file, &to)
        ));
        Ok::<_, std::io::Error>(())
    };

    let input = input_document(rt, case, step);
    check(
        INPUT_FILE,
        &input,
        "the host builds another input from model.yaml now",
        &mut report,
    )?;

    let result = rt.render_manifests(plugin, &case.model, step, &case.revision);
    match (outcome(&result), &result) {
        (Some(actual), _) => check(
            EXPECTED_FILE,
            &actual,
            "the plugin's output differs from expected.json",
            &mut report,
        )?,
        (None, Err(e)) => report
            .failures
            .push(format!("the host stopped the render: {e}")),
        (None, Ok(_)) => unreachable!("every successful render has an outcome"),
    }
    if let Ok(manifests) = &result
        && let Err(e) =
            rt.check_manifests(&plugin.name, &case.model, step, &case.revision, manifests)
    {
        report
            .failures
            .push(format!("the output policy refuses the output: {e}"));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcomes_are_manifests_or_the_plugins_own_error() {
        let ok: Result<Vec<String>, PluginError> =
            Ok(vec![r#"{"kind":"Service"}"#.into(), "not json".into()]);
        assert_eq!(outcome(&ok), Some(json!([{"kind": "Service"}, "not json"])));
        let failed = Err(PluginError::Failed {
            plugin: "p".into(),
            message: "plugin config key `text` must be a non-empty string".into(),
            stderr: "ignored".into(),
        });
        assert_eq!(
            outcome(&failed),
            Some(json!({"error": "plugin config key `text` must be a non-empty string"}))
        );
        let host = Err(PluginError::Timeout {
            plugin: "p".into(),
            limit: std::time::Duration::from_secs(1),
            stderr: String::new(),
        });
        assert_eq!(outcome(&host), None);
    }

    #[test]
    fn pretty_sorts_keys_and_diff_is_unified() {
        let a = json!({"b": 1, "a": {"d": [1, 2], "c": true}});
        assert_eq!(
            pretty(&a),
            "{\n  \"a\": {\n    \"c\": true,\n    \"d\": [\n      1,\n      2\n    ]\n  },\n  \"b\": 1\n}\n"
        );
        let b = json!({"a": {"c": true, "d": [1, 3]}, "b": 1});
        let d = diff(Some(&a), &b, "expected.json", "actual");
        assert!(d.starts_with("--- expected.json\n+++ actual\n@@"), "{d}");
        assert!(d.contains("\n-      2\n+      3\n"), "{d}");
        assert_eq!(diff(Some(&a), &a, "x", "y"), "");
        let missing = diff(None, &json!([]), "expected.json", "actual");
        assert!(missing.contains("+[]"), "{missing}");
    }
}
