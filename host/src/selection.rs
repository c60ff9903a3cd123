//! Which plugin a model gets for a step: the step's annotation on the model (`name` or
//! `name@sha256:<hex>`), else the operator's default for the step (`--default-*-plugin`), else
//! the framework's (`tensorflow` -> `tensorflow-serving`, `echo` -> `echo-server`, `sklearn` ->
//! `mlserver`, any other framework -> the plugin of that name; `download-job` and `service` for
//! the other steps). The plugin runtime then resolves the name ([`Runtime::resolve`]).
use crate::api::{MLModel, StorageMode, StorageStatus};
use crate::plugins::{LoadedPlugin, PluginError, Runtime, Step, Wanted};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The operator's choices for models that name none (its flags): the plugin per step and the
/// storage mode; none by default.
#[derive(Clone, Debug, Default)]
pub struct Selection {
    defaults: BTreeMap<Step, String>,
    storage: Option<StorageMode>,
}

impl Selection {
    /// `defaults`: the plugin per step when a model's annotation names none.
    pub fn new(defaults: BTreeMap<Step, String>) -> Selection {
        Selection {
            defaults,
            storage: None,
        }
    }

    /// The storage mode of every model whose spec names none (`--storage-mode`).
    pub fn with_storage(self, storage: Option<StorageMode>) -> Selection {
        Selection { storage, ..self }
    }

    /// Where `model`'s serving pods read its files, and why ([`crate::storage::choose`]).
    pub fn storage(&self, model: &MLModel) -> StorageStatus {
        crate::storage::choose(model, self.storage)
    }

    /// The plugin `model` wants for `step`, and what chose it.
    pub fn wanted(&self, step: Step, model: &MLModel) -> Wanted {
        let annotation = model
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(step.annotation()))
            .map(|a| a.trim())
            .filter(|a| !a.is_empty());
        if let Some(a) = annotation {
            Wanted::parse(a, format!("annotation {}", step.annotation()))
        } else if let Some(d) = self.defaults.get(&step) {
            Wanted::parse(d, format!("the operator's default for step {step}"))
        } else {
            Wanted::parse(
                &framework_default(step, &model.spec.framework),
                format!("framework {:?}", model.spec.framework),
            )
        }
    }

    /// The loaded plugin for `step` of `model`.
    pub fn select(
        &self,
        runtime: &Runtime,
        step: Step,
        model: &MLModel,
    ) -> Result<Arc<LoadedPlugin>, PluginError> {
        runtime.resolve(step, &self.wanted(step, model))
    }
}

/// The loaded plugin for `step` of `model` with no operator defaults (the CLI's `render`, tests).
pub fn select(
    runtime: &Runtime,
    step: Step,
    model: &MLModel,
) -> Result<Arc<LoadedPlugin>, PluginError> {
    Selection::default().select(runtime, step, model)
}

fn framework_default(step: Step, framework: &str) -> String {
    match (step, framework) {
        (Step::Download, _) => "download-job".into(),
        (Step::Expose, _) => "service".into(),
        (Step::Serve, "tensorflow") => "tensorflow-serving".into(),
        (Step::Serve, "echo") => "echo-server".into(),
        (Step::Serve, "sklearn") => "mlserver".into(),
        (Step::Serve, other) => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(framework: &str, annotations: &[(&str, &str)]) -> MLModel {
        let mut m: MLModel = serde_json::from_value(serde_json::json!({
            "apiVersion": "mlmodel.dev/v1alpha1", "kind": "MLModel",
            "metadata": {"name": "m"},
            "spec": {"modelURL": "https://example.com/m", "framework": framework},
        }))
        .unwrap();
        m.metadata.annotations = Some(
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        m
    }

    #[test]
    fn framework_defaults() {
        assert_eq!(
            framework_default(Step::Serve, "tensorflow"),
            "tensorflow-serving"
        );
        assert_eq!(framework_default(Step::Serve, "echo"), "echo-server");
        assert_eq!(framework_default(Step::Serve, "sklearn"), "mlserver");
        assert_eq!(framework_default(Step::Serve, "triton"), "triton");
        assert_eq!(framework_default(Step::Download, "echo"), "download-job");
        assert_eq!(framework_default(Step::Expose, "echo"), "service");
    }

    #[test]
    fn annotation_then_operator_default_then_framework() {
        let sel = Selection::new(BTreeMap::from([(Step::Serve, "echo-server".into())]));
        let w = sel.wanted(Step::Serve, &model("tensorflow", &[]));
        assert_eq!(
            (w.name.as_str(), w.chosen_by.as_str()),
            ("echo-server", "the operator's default for step serve")
        );
        let pinned = format!("mine@sha256:{}", "ab".repeat(32));
        let w = sel.wanted(
            Step::Serve,
            &model("tensorflow", &[("mlmodel.dev/serve-plugin", &pinned)]),
        );
        assert_eq!(w.name, "mine");
        assert_eq!(w.pin, Some(format!("sha256:{}", "ab".repeat(32))));
        let w = Selection::default().wanted(Step::Serve, &model("sklearn", &[("x", "y")]));
        assert_eq!(
            (w.name.as_str(), w.chosen_by.as_str()),
            ("mlserver", "framework \"sklearn\"")
        );
        let w = sel.wanted(Step::Download, &model("echo", &[]));
        assert_eq!(w.name, "download-job");
    }
}
