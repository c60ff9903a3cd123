//! The render input the host hands a plugin (see `context` in `wit/plugin.wit`), built from the
//! model, the step, the revision and the operator's image with the names of `names.rs`.
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

use super::Step;
use crate::api::{LABEL_REVISION, LABEL_STEP, MLModel};
use crate::names::{self, Names};

/// Namespace of a model that has none (a file given to `render`).
pub const DEFAULT_NAMESPACE: &str = "default";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Context<'a> {
    step: Step,
    namespace: &'a str,
    revision: &'a str,
    names: Names,
    selector_labels: BTreeMap<String, String>,
    labels: BTreeMap<String, String>,
    model_mount_path: String,
    operator_image: &'a str,
    config: Value,
}

pub(crate) fn namespace(model: &MLModel) -> &str {
    model
        .metadata
        .namespace
        .as_deref()
        .unwrap_or(DEFAULT_NAMESPACE)
}

/// Labels the host puts on every object of `step` (and tells plugins to put on pod templates).
pub(crate) fn labels(model: &MLModel, step: Step, revision: &str) -> BTreeMap<String, String> {
    let mut labels = names::owned_labels(model_name(model));
    labels.insert(LABEL_STEP.into(), step.as_str().into());
    labels.insert(LABEL_REVISION.into(), revision.into());
    labels
}

fn model_name(model: &MLModel) -> &str {
    model.metadata.name.as_deref().unwrap_or_default()
}

/// The `model` document: metadata and spec, no status (plugins render desired state only).
pub(crate) fn model_json(model: &MLModel) -> String {
    let m = &model.metadata;
    let mut metadata = serde_json::Map::new();
    metadata.insert("name".into(), json!(model_name(model)));
    metadata.insert("namespace".into(), json!(namespace(model)));
    for (key, value) in [
        ("uid", m.uid.as_ref().map(|v| json!(v))),
        ("generation", m.generation.map(|v| json!(v))),
        ("labels", m.labels.as_ref().map(|v| json!(v))),
        ("annotations", m.annotations.as_ref().map(|v| json!(v))),
    ] {
        if let Some(value) = value {
            metadata.insert(key.into(), value);
        }
    }
    json!({
        "apiVersion": format!("{}/{}", crate::api::GROUP, crate::api::VERSION),
        "kind": "MLModel",
        "metadata": metadata,
        "spec": model.spec,
    })
    .to_string()
}

/// The `context` document.
pub(crate) fn context_json(
    model: &MLModel,
    step: Step,
    revision: &str,
    operator_image: &str,
) -> String {
    let name = model_name(model);
    let context = Context {
        step,
        namespace: namespace(model),
        revision,
        names: Names::new(name, revision),
        selector_labels: names::selector_labels(name),
        labels: labels(model, step, revision),
        model_mount_path: format!("/models/{revision}"),
        operator_image,
        config: model.spec.step_config(step.as_str()),
    };
    serde_json::to_string(&context).expect("render context serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_carries_every_documented_field() {
        let model: MLModel = serde_yaml::from_str(
            "apiVersion: mlmodel.dev/v1alpha1\nkind: MLModel\nmetadata: {name: m, namespace: ns}\nspec:\n  modelURL: https://e.x/m\n  plugins: {config: {serve: {image: x}}}\n",
        )
        .unwrap();
        let ctx: Value =
            serde_json::from_str(&context_json(&model, Step::Serve, "r1", "op:1")).unwrap();
        for key in [
            "step",
            "namespace",
            "revision",
            "names",
            "selectorLabels",
            "labels",
            "modelMountPath",
            "operatorImage",
            "config",
        ] {
            assert!(ctx.get(key).is_some(), "missing {key}");
        }
        assert_eq!(ctx["step"], "serve");
        assert_eq!(ctx["config"], json!({"image": "x"}));
        assert_eq!(ctx["modelMountPath"], "/models/r1");
        assert_eq!(ctx["labels"]["mlmodel.dev/step"], "serve");
        assert!(
            ctx["labels"].get("app.kubernetes.io/name").is_none(),
            "selector labels stay apart"
        );
        let m: Value = serde_json::from_str(&model_json(&model)).unwrap();
        assert_eq!(m["spec"]["modelURL"], "https://e.x/m");
        assert_eq!(m["metadata"]["namespace"], "ns");
        assert!(m.get("status").is_none());
    }
}
