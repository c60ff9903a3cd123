//! The `MLModel` API (`mlmodel.dev/v1alpha1`): spec, status and the annotations that pick plugins.
//!
//! Validation lives in the schema (OpenAPI + CEL), so a bad spec is refused by the API server at
//! `kubectl apply` time rather than discovered by the controller.
use crate::conditions::ConditionType;
use k8s_openapi::NamespaceResourceScope;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta, Time};
use kube::core::ApiResource;
use kube::{CustomResource, CustomResourceExt, KubeSchema, Resource};
use serde::de::{self, Deserializer, IgnoredAny, IntoDeserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

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
    // The generated struct only generates the CRD; `MLModel` (below) is what is decoded.
    root = "MLModelCrd",
    plural = "mlmodels",
    singular = "mlmodel",
    shortname = "mlm",
    category = "all",
    namespaced,
    status = "MLModelStatus",
    printcolumn = r#"{"name":"Phase","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Replicas","type":"string","jsonPath":".status.replicasReady"}"#,
    printcolumn = r#"{"name":"Progress","type":"string","jsonPath":".status.download.progress.summary"}"#,
    printcolumn = r#"{"name":"Endpoint","type":"string","jsonPath":".status.serviceEndpoint"}"#,
    printcolumn = r#"{"name":"Reason","type":"string","priority":1,"jsonPath":".status.reason"}"#,
    printcolumn = r#"{"name":"Inference","type":"string","priority":1,"jsonPath":".status.inference.url"}"#,
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
    /// (`tensorflow` -> `tensorflow-serving`, `echo` -> `echo-server`, `sklearn` -> `mlserver`).
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

    /// Where the serving pods read the files: `Shared` (one claim per revision, every replica
    /// mounts it: needs a `ReadWriteMany` class for replicas on several nodes) or `PerPod` (each
    /// serving pod downloads its own copy into an `emptyDir` of `storageSize` before its server
    /// starts: replicas run on any node, on any storage). Unset: the operator chooses (status
    /// `storage` says what and why).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_mode: Option<StorageMode>,

    /// A sample request every new serving pod must answer before it takes traffic: the
    /// operator sends it to the pod once its containers are ready and holds the pod's readiness
    /// gate until the answer is right, so a revision that loads but answers wrongly never
    /// replaces the one serving.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<Validation>,
}

/// A sample request and the answer expected of it (see `spec.validation`). Bodies are text,
/// so that a request of any depth never weighs on the decoding of other models.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Validation {
    /// Path on the server's `http` port; default: the inference path of the protocol the serve
    /// plugin declares (`/v2/models/<name>/infer`, `/v1/models/<name>:predict`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 1024), regex(pattern = r"^/[^\s]*$"))]
    pub path: Option<String>,
    /// The body POSTed (JSON unless `contentType` says otherwise).
    #[schemars(length(max = 65536))]
    pub request: String,
    /// `Content-Type` of the request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 255))]
    pub content_type: Option<String>,
    /// JSON the response must contain: each key given with the value given, arrays element by
    /// element (`{"outputs": [{"data": [0, 2]}]}`). Absent: any 2xx answer will do.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 65536))]
    pub expect: Option<String>,
    /// Seconds the pod has to answer (default 10).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 300))]
    pub timeout_seconds: Option<u32>,
}

impl MLModelSpec {
    /// Why `spec.plugins.config` cannot be handed to plugins, if it cannot.
    pub fn plugin_config_error(&self) -> Option<&InvalidPluginConfig> {
        self.plugins.as_ref()?.config.as_ref()?.error()
    }

    /// The part of `spec.plugins.config` meant for `step` (`config.<step>`), or an empty
    /// object. A config out of bounds reads as empty here; nothing renders a model with one
    /// (the controller fails it with `InvalidPluginConfig`, `Runtime::render` refuses it).
    pub fn step_config(&self, step: &str) -> serde_json::Value {
        self.plugins
            .as_ref()
            .and_then(|p| p.config.as_ref())
            .and_then(|c| c.value())
            .and_then(|c| c.get(step))
            .cloned()
            .unwrap_or_else(|| serde_json::json!({}))
    }
}

/// An `MLModel` object: metadata, spec and status.
///
/// Written out rather than generated by `#[derive(CustomResource)]` (its struct, [`MLModelCrd`],
/// is kept only to generate the CRD) so that one stored object can never fail the decoding of
/// the list or watch event that carries it (serde_json refuses a document nested more than 128
/// levels deep, and a list is one document):
/// - `metadata.managedFields` is skipped unread. The API server tracks a preserve-unknown-fields
///   map key by key, so the managed fields of a model nest as deep as its `spec.plugins.config`;
///   serde_json skips a value without recursion, and the operator never reads them.
/// - `spec.plugins.config` is read lazily and within bounds ([`PluginConfig`]).
#[derive(Clone, Debug)]
pub struct MLModel {
    pub metadata: ObjectMeta,
    pub spec: MLModelSpec,
    pub status: Option<MLModelStatus>,
}

impl Resource for MLModel {
    type DynamicType = ();
    type Scope = NamespaceResourceScope;

    fn kind(dt: &()) -> Cow<'_, str> {
        MLModelCrd::kind(dt)
    }
    fn group(dt: &()) -> Cow<'_, str> {
        MLModelCrd::group(dt)
    }
    fn version(dt: &()) -> Cow<'_, str> {
        MLModelCrd::version(dt)
    }
    fn api_version(dt: &()) -> Cow<'_, str> {
        MLModelCrd::api_version(dt)
    }
    fn plural(dt: &()) -> Cow<'_, str> {
        MLModelCrd::plural(dt)
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl CustomResourceExt for MLModel {
    fn crd() -> CustomResourceDefinition {
        let mut crd = MLModelCrd::crd();
        // The schema is titled after the generating struct; keep the kind's name.
        for version in &mut crd.spec.versions {
            if let Some(schema) = version
                .schema
                .as_mut()
                .and_then(|s| s.open_api_v3_schema.as_mut())
            {
                schema.title = Some("MLModel".into());
            }
        }
        crd
    }
    fn crd_name() -> &'static str {
        MLModelCrd::crd_name()
    }
    fn api_resource() -> ApiResource {
        ApiResource::erase::<Self>(&())
    }
    fn shortnames() -> &'static [&'static str] {
        MLModelCrd::shortnames()
    }
}

impl Serialize for MLModel {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let fields = 4 + usize::from(self.status.is_some());
        let mut obj = s.serialize_struct("MLModel", fields)?;
        obj.serialize_field("apiVersion", &MLModel::api_version(&()))?;
        obj.serialize_field("kind", &MLModel::kind(&()))?;
        obj.serialize_field("metadata", &self.metadata)?;
        obj.serialize_field("spec", &self.spec)?;
        if let Some(status) = &self.status {
            obj.serialize_field("status", status)?;
        }
        obj.end()
    }
}

impl<'de> Deserialize<'de> for MLModel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        const FIELDS: &[&str] = &["apiVersion", "kind", "metadata", "spec", "status"];
        d.deserialize_struct("MLModel", FIELDS, ModelVisitor)
    }
}

struct ModelVisitor;

impl<'de> Visitor<'de> for ModelVisitor {
    type Value = MLModel;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an MLModel object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<MLModel, A::Error> {
        let (mut metadata, mut spec, mut status) = (None, None, None);
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "metadata" if metadata.is_some() => {
                    return Err(de::Error::duplicate_field("metadata"));
                }
                "metadata" => metadata = Some(map.next_value::<MetadataSkippingManagedFields>()?.0),
                "spec" if spec.is_some() => return Err(de::Error::duplicate_field("spec")),
                "spec" => spec = Some(map.next_value()?),
                "status" => status = map.next_value()?,
                // apiVersion, kind (the type says them) and anything unknown.
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(MLModel {
            metadata: metadata.ok_or_else(|| de::Error::missing_field("metadata"))?,
            spec: spec.ok_or_else(|| de::Error::missing_field("spec"))?,
            status,
        })
    }
}

/// `ObjectMeta` read with its `managedFields` skipped unread (for `#[serde(deserialize_with)]`).
pub fn metadata_skipping_managed_fields<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<ObjectMeta, D::Error> {
    MetadataSkippingManagedFields::deserialize(d).map(|m| m.0)
}

/// `ObjectMeta` read with its `managedFields` skipped unread.
struct MetadataSkippingManagedFields(ObjectMeta);

impl<'de> Deserialize<'de> for MetadataSkippingManagedFields {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct MetaVisitor;
        impl<'de> Visitor<'de> for MetaVisitor {
            type Value = ObjectMeta;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("object metadata")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ObjectMeta, A::Error> {
                ObjectMeta::deserialize(de::value::MapAccessDeserializer::new(SkipManagedFields(
                    map,
                )))
            }
        }
        d.deserialize_map(MetaVisitor)
            .map(MetadataSkippingManagedFields)
    }
}

/// The entries of a map but `managedFields`.
struct SkipManagedFields<A>(A);

impl<'de, A: MapAccess<'de>> MapAccess<'de> for SkipManagedFields<A> {
    type Error = A::Error;

    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        while let Some(key) = self.0.next_key::<String>()? {
            if key == "managedFields" {
                self.0.next_value::<IgnoredAny>()?;
                continue;
            }
            let key: de::value::StringDeserializer<A::Error> = key.into_deserializer();
            return seed.deserialize(key).map(Some);
        }
        Ok(None)
    }

    fn next_value_seed<V: de::DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, A::Error> {
        self.0.next_value_seed(seed)
    }
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
    /// (`download`, `serve`, `expose`), e.g. `{"serve": {"image": "my/server:1.2"}}`. At most
    /// 32 levels deep and 64 KiB of JSON: a model with more fails with `InvalidPluginConfig`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    pub config: Option<PluginConfig>,
}

/// At most this many levels of objects and arrays in `spec.plugins.config` (`{}` is one).
pub const MAX_PLUGIN_CONFIG_DEPTH: usize = 32;
/// At most this many bytes of JSON in `spec.plugins.config`.
pub const MAX_PLUGIN_CONFIG_BYTES: usize = 64 * 1024;

/// Why `spec.plugins.config` is not handed to plugins. The model fails with reason
/// `InvalidPluginConfig`; every other model is unaffected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidPluginConfig {
    #[error(
        "spec.plugins.config nests {depth} levels deep; at most {MAX_PLUGIN_CONFIG_DEPTH} are allowed"
    )]
    TooDeep { depth: usize },
    #[error(
        "spec.plugins.config is {bytes} bytes of JSON; at most {MAX_PLUGIN_CONFIG_BYTES} are allowed"
    )]
    TooLarge { bytes: usize },
}

/// `spec.plugins.config`, decoded lazily and within bounds.
///
/// The API server accepts any JSON object here (a CRD cannot bound the depth of
/// preserve-unknown-fields data), but serde_json refuses a document more than 128 levels deep,
/// and a list or watch event is one document: one deep config would fail the list of every
/// model. So serde_json hands this field over as its raw text (`RawValue`, which it skips
/// without recursion), and the text becomes a `serde_json::Value` only when it is at most
/// [`MAX_PLUGIN_CONFIG_DEPTH`] deep and [`MAX_PLUGIN_CONFIG_BYTES`] long. Otherwise the error is
/// kept (and the text, so that the model serialises back unchanged).
#[derive(Clone, Debug)]
pub struct PluginConfig(ConfigState);

#[derive(Clone, Debug)]
enum ConfigState {
    Valid(serde_json::Value),
    Invalid(InvalidPluginConfig, Box<RawValue>),
}

impl PluginConfig {
    /// A config from a value, held to the same bounds as a decoded one.
    pub fn new(value: serde_json::Value) -> Self {
        let raw = serde_json::value::to_raw_value(&value).expect("a JSON value serialises");
        PluginConfig(match check_config(raw.get()) {
            Ok(()) => ConfigState::Valid(value),
            Err(e) => ConfigState::Invalid(e, raw),
        })
    }

    /// A config from its JSON text.
    fn from_json(text: String) -> Result<Self, serde_json::Error> {
        Ok(PluginConfig(match check_config(&text) {
            // Within the depth bound, so well within serde_json's recursion limit.
            Ok(()) => ConfigState::Valid(serde_json::from_str(&text)?),
            Err(e) => ConfigState::Invalid(e, RawValue::from_string(text)?),
        }))
    }

    /// The config, unless it is out of bounds.
    pub fn value(&self) -> Option<&serde_json::Value> {
        match &self.0 {
            ConfigState::Valid(v) => Some(v),
            ConfigState::Invalid(..) => None,
        }
    }

    /// Why the config is out of bounds, if it is.
    pub fn error(&self) -> Option<&InvalidPluginConfig> {
        match &self.0 {
            ConfigState::Valid(_) => None,
            ConfigState::Invalid(e, _) => Some(e),
        }
    }
}

impl From<serde_json::Value> for PluginConfig {
    fn from(value: serde_json::Value) -> Self {
        PluginConfig::new(value)
    }
}

impl PartialEq for PluginConfig {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            (ConfigState::Valid(a), ConfigState::Valid(b)) => a == b,
            (ConfigState::Invalid(_, a), ConfigState::Invalid(_, b)) => a.get() == b.get(),
            _ => false,
        }
    }
}

impl Serialize for PluginConfig {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            ConfigState::Valid(v) => v.serialize(s),
            ConfigState::Invalid(_, raw) => raw.serialize(s),
        }
    }
}

/// The name under which serde_json (feature `raw_value`) hands a value over as its text: asked
/// for a newtype of this name, its deserializer skips the value with `ignore_value`, which keeps
/// its own stack of brackets instead of recursing (no depth limit), and then visits a map of one
/// entry, this name -> the text. Other formats see an ordinary newtype. A test checks the name
/// against serde_json's `RawValue`.
const RAW_VALUE_TOKEN: &str = "$serde_json::private::RawValue";

impl<'de> Deserialize<'de> for PluginConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_newtype_struct(RAW_VALUE_TOKEN, ConfigVisitor)
    }
}

struct ConfigVisitor;

impl<'de> Visitor<'de> for ConfigVisitor {
    type Value = PluginConfig;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<PluginConfig, A::Error> {
        let Some(key) = map.next_key::<String>()? else {
            return Ok(PluginConfig::new(serde_json::Value::Object(
                Default::default(),
            )));
        };
        if key == RAW_VALUE_TOKEN {
            // serde_json: the config's text.
            return PluginConfig::from_json(map.next_value()?).map_err(de::Error::custom);
        }
        // A format that reads the newtype as the map itself.
        let mut object = serde_json::Map::new();
        object.insert(key, map.next_value()?);
        while let Some((k, v)) = map.next_entry()? {
            object.insert(k, v);
        }
        Ok(PluginConfig::new(serde_json::Value::Object(object)))
    }

    /// Other formats (YAML given to `render`, test fixtures): the value is read whole, under
    /// that format's own recursion limit, then held to the same bounds.
    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<PluginConfig, D::Error> {
        serde_json::Value::deserialize(d).map(PluginConfig::new)
    }
}

/// Checks JSON text (valid JSON, as serde_json produced or checked it) against the bounds.
fn check_config(text: &str) -> Result<(), InvalidPluginConfig> {
    if text.len() > MAX_PLUGIN_CONFIG_BYTES {
        return Err(InvalidPluginConfig::TooLarge { bytes: text.len() });
    }
    let depth = json_depth(text);
    if depth > MAX_PLUGIN_CONFIG_DEPTH {
        return Err(InvalidPluginConfig::TooDeep { depth });
    }
    Ok(())
}

/// How deep objects and arrays nest in JSON text: brackets counted outside strings, in one pass
/// with no recursion. (Bytes of multi-byte UTF-8 characters are never ASCII, so a byte scan
/// cannot mistake them for brackets or quotes.)
fn json_depth(text: &str) -> usize {
    let (mut depth, mut max) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for b in text.bytes() {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                max = max.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
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

/// Where the serving pods read the model's files (`spec.storageMode`).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, schemars::JsonSchema)]
pub enum StorageMode {
    /// One claim per revision, filled once by the download Job, mounted by every replica.
    Shared,
    /// Each serving pod downloads its own copy into an `emptyDir` (an init container).
    PerPod,
}

impl StorageMode {
    pub fn as_str(self) -> &'static str {
        match self {
            StorageMode::Shared => "Shared",
            StorageMode::PerPod => "PerPod",
        }
    }
}

/// The storage mode in use, and what chose it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct StorageStatus {
    pub mode: StorageMode,
    /// Why this mode: the model's `spec.storageMode`, or the operator's choice and its reason.
    pub reason: String,
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
    /// It was Ready, and fewer replicas of the same revision are ready now (a node lost or
    /// drained, a replica that cannot be scheduled): the reason says why.
    Degraded,
    Failed,
}

impl Phase {
    pub const ALL: [Phase; 7] = [
        Phase::Pending,
        Phase::CreatingStorage,
        Phase::Downloading,
        Phase::Deploying,
        Phase::Ready,
        Phase::Degraded,
        Phase::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::CreatingStorage => "CreatingStorage",
            Phase::Downloading => "Downloading",
            Phase::Deploying => "Deploying",
            Phase::Ready => "Ready",
            Phase::Degraded => "Degraded",
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
    /// Plugins used by step, as `name@version`; a plugin from a registry adds the reference
    /// pinned to its digest: `name@version oci://REGISTRY/REPO@sha256:<hex>`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub plugins: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// Ready replicas of those asked, as `kubectl get` shows them: `1/2`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas_ready: Option<String>,
    /// How a client calls the served model: protocol, URL, model name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inference: Option<InferenceStatus>,
    /// Where the serving pods read the files, and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<StorageStatus>,
}

/// How a client inside the cluster calls the served model, as its serve plugin declared it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InferenceStatus {
    /// `v2` (the Open Inference Protocol), `tfserving-rest`, `http` (a plain HTTP server), or
    /// what a third-party serve plugin declares.
    pub protocol: String,
    /// Where a client posts a request (`.../v2/models/<name>/infer`), when the model is exposed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The name the server knows the model by.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_name: Option<String>,
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
    /// Model format the downloader detected from the content of the files (saved-model, keras-hdf5, onnx, safetensors, gguf, pytorch, sklearn, pickle, or files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// Regular files placed on the volume.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files: Option<u64>,
    /// The largest of them, relative to the model directory (a long path keeps its end).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub largest_file: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<i32>,
    /// While downloading: the figures of the downloader's last progress line, read from its log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<DownloadProgress>,
    /// While downloading: the attempts that failed and were retried (the last 5).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retries: Vec<DownloadRetry>,
}

/// A download attempt that failed and was retried.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DownloadRetry {
    /// 1 for the first attempt.
    pub attempt: i32,
    /// The downloader's reason (`NotFound`, `StalledTooLong`...) or the container's.
    pub reason: String,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<Time>,
}

/// A running download's figures, as the downloader last logged them.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DownloadProgress {
    pub bytes_done: u64,
    /// Unknown when a server gave no size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes_total: Option<u64>,
    /// Average rate of the current attempt.
    pub bytes_per_second: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<u8>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eta_seconds: Option<u64>,
    /// Seconds without a new byte, once that is a minute or more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stalled_seconds: Option<u64>,
    /// One line for `kubectl get`: `42% 1.2Gi/2.8Gi 35.0Mi/s`, or `stalled 1.2Gi/2.8Gi`.
    pub summary: String,
}

impl MLModelStatus {
    pub fn condition(&self, type_: ConditionType) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.type_ == type_.as_str())
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
        // The Ready column reads the condition the operator writes.
        assert!(crd.contains(&format!(r#"@.type==\"{}\""#, ConditionType::Ready)));
    }

    /// `{"a":{"a":...{"a":1}}}`, `depth` objects deep.
    fn nested(depth: usize) -> String {
        format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth))
    }

    /// A model as the API server sends it: with the managed fields of whoever wrote it, which
    /// mirror every key of `spec.plugins.config` (preserve-unknown-fields maps are tracked key
    /// by key), so they nest as deep as the config does.
    fn model_json(name: &str, config: &str) -> String {
        let depth = config.matches('{').count();
        let fields = format!(
            r#"{{"f:spec":{{".":{{}},"f:modelURL":{{}},"f:plugins":{{".":{{}},"f:config":{}{{}}{}}}}}}}"#,
            r#"{".":{},"f:a":"#.repeat(depth),
            "}".repeat(depth)
        );
        format!(
            r#"{{"apiVersion":"mlmodel.dev/v1alpha1","kind":"MLModel","metadata":{{"name":"{name}","namespace":"ns","uid":"uid-{name}","resourceVersion":"7","generation":1,"managedFields":[{{"apiVersion":"mlmodel.dev/v1alpha1","fieldsType":"FieldsV1","fieldsV1":{fields},"manager":"kubectl-create","operation":"Update","time":"2025-01-01T00:00:00Z"}}]}},"spec":{{"modelURL":"https://e.x/m","plugins":{{"config":{config}}}}}}}"#
        )
    }

    #[test]
    fn a_list_with_a_deeply_nested_config_still_decodes() {
        let list = format!(
            r#"{{"apiVersion":"mlmodel.dev/v1alpha1","kind":"MLModelList","metadata":{{"resourceVersion":"9"}},"items":[{},{}]}}"#,
            model_json("deep", &nested(130)),
            model_json("normal", r#"{"serve":{"text":"hi"}}"#),
        );
        let list: kube::core::ObjectList<MLModel> =
            serde_json::from_str(&list).expect("the list decodes");
        let [deep, normal] = &list.items[..] else {
            panic!("two models: {:?}", list.items)
        };
        assert_eq!(deep.metadata.name.as_deref(), Some("deep"));
        assert_eq!(deep.metadata.resource_version.as_deref(), Some("7"));
        assert_eq!(deep.metadata.managed_fields, None, "skipped unread");
        assert_eq!(
            deep.spec.plugin_config_error(),
            Some(&InvalidPluginConfig::TooDeep { depth: 130 })
        );
        assert_eq!(
            deep.spec.plugin_config_error().unwrap().to_string(),
            "spec.plugins.config nests 130 levels deep; at most 32 are allowed"
        );
        assert_eq!(normal.spec.plugin_config_error(), None);
        let config = normal.spec.plugins.as_ref().unwrap().config.as_ref();
        assert_eq!(
            config.and_then(PluginConfig::value),
            Some(&serde_json::json!({"serve": {"text": "hi"}}))
        );
    }

    #[test]
    fn a_watch_event_with_a_deeply_nested_config_still_decodes() {
        let event = format!(
            r#"{{"type":"ADDED","object":{}}}"#,
            model_json("deep", &nested(130))
        );
        let event: kube::core::WatchEvent<MLModel> =
            serde_json::from_str(&event).expect("the event decodes");
        let kube::core::WatchEvent::Added(m) = event else {
            panic!("{event:?}")
        };
        assert_eq!(m.metadata.uid.as_deref(), Some("uid-deep"));
        assert!(m.spec.plugin_config_error().is_some());
    }

    #[test]
    fn a_deep_config_alone_decodes_too() {
        // Without managed fields, so only the config is deep; also through a reader and a Value.
        let text = format!(
            r#"{{"metadata":{{"name":"m"}},"spec":{{"modelURL":"https://e.x/m","plugins":{{"config":{}}}}}}}"#,
            nested(200)
        );
        let from_str: MLModel = serde_json::from_str(&text).unwrap();
        let from_reader: MLModel = serde_json::from_reader(text.as_bytes()).unwrap();
        for m in [&from_str, &from_reader] {
            assert_eq!(
                m.spec.plugin_config_error(),
                Some(&InvalidPluginConfig::TooDeep { depth: 200 })
            );
        }
        let shallow = text.replace(&nested(200), &nested(100));
        let value: serde_json::Value = serde_json::from_str(&shallow).unwrap();
        let from_value: MLModel = serde_json::from_value(value).unwrap();
        assert_eq!(
            from_value.spec.plugin_config_error(),
            Some(&InvalidPluginConfig::TooDeep { depth: 100 })
        );
    }

    #[test]
    fn config_bounds_are_inclusive() {
        let at = PluginConfig::new(serde_json::from_str(&nested(MAX_PLUGIN_CONFIG_DEPTH)).unwrap());
        assert_eq!(at.error(), None);
        let over = serde_json::from_str(&nested(MAX_PLUGIN_CONFIG_DEPTH + 1)).unwrap();
        assert_eq!(
            PluginConfig::new(over).error(),
            Some(&InvalidPluginConfig::TooDeep { depth: 33 })
        );
        // `{"s":"…"}` is 8 bytes around the string.
        let fits = serde_json::json!({"s": "x".repeat(MAX_PLUGIN_CONFIG_BYTES - 8)});
        assert_eq!(PluginConfig::new(fits).error(), None);
        let big = format!(r#"{{"s":"{}"}}"#, "x".repeat(MAX_PLUGIN_CONFIG_BYTES));
        let m: MLModel = serde_json::from_str(&format!(
            r#"{{"metadata":{{}},"spec":{{"modelURL":"https://e.x/m","plugins":{{"config":{big}}}}}}}"#
        ))
        .unwrap();
        let e = m.spec.plugin_config_error().unwrap();
        assert_eq!(e, &InvalidPluginConfig::TooLarge { bytes: 65544 });
        assert_eq!(
            e.to_string(),
            "spec.plugins.config is 65544 bytes of JSON; at most 65536 are allowed"
        );
    }

    #[test]
    fn depth_counts_brackets_outside_strings() {
        assert_eq!(json_depth("1"), 0);
        assert_eq!(json_depth("{}"), 1);
        assert_eq!(json_depth(r#"{"a":[1,{"b":[]}],"c":{}}"#), 4);
        assert_eq!(json_depth(r#"{"[[[{{{":"]]]\"[[[","é{":"\\"}"#), 1);
        assert_eq!(json_depth(r#"[{"a":"\"{"},[[]]]"#), 3);
    }

    #[test]
    fn an_invalid_config_serialises_back_unchanged() {
        let text = format!(
            r#"{{"apiVersion":"mlmodel.dev/v1alpha1","kind":"MLModel","metadata":{{"name":"m"}},"spec":{{"modelURL":"https://e.x/m","storageSize":"1Gi","framework":"echo","replicas":1,"expose":false,"plugins":{{"config":{}}}}}}}"#,
            nested(40)
        );
        let m: MLModel = serde_json::from_str(&text).unwrap();
        assert!(m.spec.plugin_config_error().is_some());
        assert_eq!(serde_json::to_string(&m).unwrap(), text);
        let again: MLModel = serde_json::from_str(&text).unwrap();
        assert_eq!(m.spec, again.spec);
    }

    #[test]
    fn yaml_configs_are_read_and_bounded_too() {
        let yaml = |config: &str| {
            format!(
                "apiVersion: mlmodel.dev/v1alpha1\nkind: MLModel\nmetadata: {{name: m}}\nspec:\n  modelURL: https://e.x/m\n  plugins:\n    config: {config}\n"
            )
        };
        let m: MLModel = serde_yaml::from_str(&yaml("{serve: {image: x}}")).unwrap();
        let config = m.spec.plugins.as_ref().unwrap().config.as_ref().unwrap();
        assert_eq!(
            config.value(),
            Some(&serde_json::json!({"serve": {"image": "x"}}))
        );
        let value: serde_yaml::Value = serde_yaml::from_str(&yaml(&nested(40))).unwrap();
        let m: MLModel = serde_yaml::from_value(value).unwrap();
        assert_eq!(
            m.spec.plugin_config_error(),
            Some(&InvalidPluginConfig::TooDeep { depth: 40 })
        );
    }

    /// A deserializer that only records the name of the newtype it is asked for.
    struct NewtypeName;

    #[derive(Debug)]
    struct Named(Option<&'static str>);

    impl std::fmt::Display for Named {
        fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            write!(f, "{:?}", self.0)
        }
    }
    impl std::error::Error for Named {}
    impl de::Error for Named {
        fn custom<T: std::fmt::Display>(_: T) -> Self {
            Named(None)
        }
    }

    impl<'de> Deserializer<'de> for NewtypeName {
        type Error = Named;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Named> {
            Err(Named(None))
        }
        fn deserialize_newtype_struct<V: Visitor<'de>>(
            self,
            name: &'static str,
            _: V,
        ) -> Result<V::Value, Named> {
            Err(Named(Some(name)))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
            option unit unit_struct seq tuple tuple_struct map struct enum identifier ignored_any
        }
    }

    #[test]
    fn the_raw_value_token_is_serde_jsons() {
        let asked = Box::<RawValue>::deserialize(NewtypeName).unwrap_err().0;
        assert_eq!(asked, Some(RAW_VALUE_TOKEN));
        let asked = PluginConfig::deserialize(NewtypeName).unwrap_err().0;
        assert_eq!(asked, Some(RAW_VALUE_TOKEN));
    }

    #[test]
    fn the_crd_is_the_generated_one_titled_by_kind() {
        let ours = serde_json::to_value(MLModel::crd()).unwrap();
        let mut generated = serde_json::to_value(MLModelCrd::crd()).unwrap();
        generated["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["title"] = "MLModel".into();
        assert_eq!(ours, generated);
        assert_eq!(MLModel::api_resource(), MLModelCrd::api_resource());
        assert_eq!(MLModel::crd_name(), "mlmodels.mlmodel.dev");
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
