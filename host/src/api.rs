//! The `MLModel` API (`mlmodel.dev/v1alpha1`): spec, status and the annotations that pick plugins.
//!
//! Validation lives in the schema (OpenAPI + CEL), so a bad spec is refused by the API server at
//! `kubectl apply` time rather than discovered by the controller.
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const GROUP: &str = "mlmodel.dev";
pub const VERSION: &str = "v1alpha1";

/// Annotations that select a plugin per step (`name` or `name@sha256:<hex>`).
pub const ANNOTATION_DOWNLOAD_PLUGIN: &str = "mlmodel.dev/download-plugin";
pub const ANNOTATION_SERVE_PLUGIN: &str = "mlmodel.dev/serve-plugin";
pub const ANNOTATION_EXPOSE_PLUGIN: &str = "mlmodel.dev/expose-plugin";

/// Labels the host puts on every object it applies.
pub const LABEL_MODEL: &str = "mlmodel.dev/model";
pub const LABEL_STEP: &str = "mlmodel.dev/step";
pub const LABEL_REVISION: &str = "mlmodel.dev/revision";
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGER: &str = "mlmodel-operator";

/// Desired state of a model: where it comes from, how much room it needs, how it is served.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "mlmodel.dev",
    version = "v1alpha1",
    kind = "MLModel",
    plural = "mlmodels",
    singular = "mlmodel",
    shortname = "mlm",
    category = "all",
    namespaced,
    status = "MLModelStatus",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Replicas","type":"string","jsonPath":".status.replicas"}"#,
    printcolumn = r#"{"name":"Endpoint","type":"string","jsonPath":".status.serviceEndpoint"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","priority":1,"jsonPath":".status.reason"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct MLModelSpec {
    /// Where the model comes from: `https://`, `http://`, `s3://bucket/key`, `gs://bucket/key`
    /// or `hf://org/repo[@revision][/path]`.
    #[x_kube(validation = Rule::new("self.matches('^(https?|s3|gs|hf)://[^\\\\s]+$')").message("modelURL must start with https://, http://, s3://, gs:// or hf:// and contain no spaces"))]
    #[schemars(length(min = 1, max = 2048))]
    #[serde(rename = "modelURL")]
    pub model_url: String,

    /// Size of the volume the model is downloaded into (a Kubernetes quantity, e.g. `1Gi`).
    #[serde(default = "default_storage_size")]
    #[x_kube(validation = Rule::new("isQuantity(self) && quantity(self).isGreaterThan(quantity('0'))").message("storageSize must be a positive quantity such as 1Gi or 500Mi"))]
    #[schemars(length(max = 64))]
    pub storage_size: String,

    /// The model's framework; picks the serve plugin when no annotation or flag does
    /// (`tensorflow` -> `tensorflow-serving`, `echo` -> `echo-server`).
    #[serde(default = "default_framework")]
    #[schemars(
        length(min = 1, max = 63),
        regex(pattern = r"^[a-z0-9]([-a-z0-9._]*[a-z0-9])?$")
    )]
    pub framework: String,

    /// Number of serving pods.
    #[serde(default = "default_replicas")]
    #[schemars(range(min = 0, max = 1000))]
    pub replicas: i32,

    /// Create a Service for the model.
    #[serde(default)]
    pub expose: bool,

    /// Expected SHA-256 of the downloaded file (64 hex characters), verified after download.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[a-fA-F0-9]{64}$"))]
    pub sha256: Option<String>,

    /// A Secret in the model's namespace whose keys become the downloader's environment
    /// (e.g. `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `HF_TOKEN`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretRef>,

    /// Resources of each serving container.
    #[schemars(schema_with = "resources_schema")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<k8s_openapi::api::core::v1::ResourceRequirements>,

    /// Settings handed to the plugins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugins: Option<PluginsSpec>,
}

/// A reference to a Secret in the model's own namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SecretRef {
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,
}

/// Per-model plugin settings.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
pub struct PluginsSpec {
    /// Free-form JSON object handed to every plugin as `config`; by convention keyed by step
    /// (`download`, `serve`, `expose`), e.g. `{"serve": {"image": "my/server:1.2"}}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    pub config: Option<serde_json::Value>,
}

fn free_form_object(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
    })
}

/// `ResourceRequirements` with its quantities checked by pattern (a CEL rule over these maps
/// costs more than the API server allows) and its maps bounded.
fn resources_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let quantities = serde_json::json!({
        "type": "object",
        "maxProperties": 16,
        "additionalProperties": {
            // The pattern applies to the string form; plain integers are quantities too.
            "x-kubernetes-int-or-string": true,
            "maxLength": 32,
            "pattern": r"^(\d+(\.\d*)?|\.\d+)([KMGTPE]i|[numkMGTPE]|[eE][+-]?\d+)?$"
        }
    });
    schemars::json_schema!({
        "type": "object",
        "description": "Compute resources of each serving container (requests and limits).",
        "properties": {"limits": quantities, "requests": quantities}
    })
}

fn default_storage_size() -> String {
    "1Gi".into()
}
fn default_framework() -> String {
    "tensorflow".into()
}
fn default_replicas() -> i32 {
    1
}

/// One word for `kubectl get`.
#[derive(
    Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default, schemars::JsonSchema,
)]
pub enum Phase {
    #[default]
    Pending,
    CreatingStorage,
    Downloading,
    Deploying,
    Ready,
    Failed,
}

impl Phase {
    pub const ALL: [Phase; 6] = [
        Phase::Pending,
        Phase::CreatingStorage,
        Phase::Downloading,
        Phase::Deploying,
        Phase::Ready,
        Phase::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::CreatingStorage => "CreatingStorage",
            Phase::Downloading => "Downloading",
            Phase::Deploying => "Deploying",
            Phase::Ready => "Ready",
            Phase::Failed => "Failed",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// Observed state, written only by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MLModelStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<Phase>,
    /// CamelCase reason of the current phase (machine-readable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Human-readable sentence about the current phase.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `Downloaded`, `Serving`, `Exposed`, `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `name.namespace.svc.cluster.local:port` of the Service, when exposed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_endpoint: Option<String>,
    /// URL a client inside the cluster uses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Revision being served now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The latest download.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub download: Option<DownloadStatus>,
    /// Plugins used by step, as `name@version`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub plugins: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
}

/// What the downloader reported for a revision.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DownloadStatus {
    pub revision: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<i32>,
}

impl MLModelStatus {
    pub fn condition(&self, type_: &str) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn crd_has_cel_rules_and_printer_columns() {
        let crd = serde_json::to_string(&MLModel::crd()).unwrap();
        assert!(crd.contains("isQuantity(self)"));
        assert!(crd.contains("modelURL must start with"));
        assert!(crd.contains("\"name\":\"Phase\""));
    }

    #[test]
    fn seed_manifest_parses_with_defaults() {
        let m: MLModel = serde_yaml::from_str(
            "apiVersion: mlmodel.dev/v1alpha1\nkind: MLModel\nmetadata: {name: m}\nspec:\n  modelURL: https://example.com/m.tar.gz\n",
        )
        .unwrap();
        assert_eq!(m.spec.replicas, 1);
        assert_eq!(m.spec.storage_size, "1Gi");
        assert!(!m.spec.expose);
    }
}
