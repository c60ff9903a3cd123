//! The two JSON documents of `render-input`, typed. Unknown keys are ignored so that a plugin
//! keeps working when the host adds some (minor versions of the contract may).
use serde::Deserialize;
use serde_json::Value;
use std::collections::BTreeMap;

use crate::config::Config;

/// The `MLModel` (metadata + spec, defaults filled in).
#[derive(Debug, Clone, Deserialize)]
pub struct Model {
    pub metadata: Metadata,
    pub spec: Spec,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct Metadata {
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Spec {
    #[serde(rename = "modelURL")]
    pub model_url: String,
    pub storage_size: String,
    pub framework: String,
    pub replicas: i32,
    #[serde(default)]
    pub expose: bool,
    #[serde(default)]
    pub sha256: Option<String>,
    #[serde(default)]
    pub credentials_secret_ref: Option<SecretRef>,
    /// A Kubernetes `ResourceRequirements`, passed through as is.
    #[serde(default)]
    pub resources: Option<Value>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct SecretRef {
    pub name: String,
}

/// What the host decided for this render (see `context` in `wit/plugin.wit`).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Context {
    /// `download`, `serve` or `expose`.
    pub step: String,
    pub namespace: String,
    pub revision: String,
    pub names: Names,
    /// Labels the serving pods must carry; the Deployment selector and the Service selector.
    pub selector_labels: BTreeMap<String, String>,
    /// Labels for every object and pod template; not the selector labels (a download pod must
    /// not be selected by the Service).
    pub labels: BTreeMap<String, String>,
    /// Directory of the model's files in a pod that mounts the volume at `/models`.
    pub model_mount_path: String,
    /// The operator's image (contains `mlmodel-operator fetch`).
    pub operator_image: String,
    /// This step's `spec.plugins.config.<step>`.
    #[serde(default)]
    pub config: Config,
}

/// Object names chosen by the host; always valid DNS labels.
#[derive(Debug, Clone, Deserialize)]
pub struct Names {
    pub volume: String,
    pub job: String,
    pub workload: String,
    pub service: String,
    pub config: String,
    pub model: String,
}
