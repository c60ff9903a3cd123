//! Small builders for the parts every plugin repeats: restricted security contexts, labels, and
//! the pod settings every default plugin takes from its config.
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

use crate::{Config, Context, Model};

/// Name of the pod volume that holds the model's PersistentVolumeClaim.
pub const MODEL_VOLUME: &str = "model";
/// Where a download pod mounts the model volume; the files go to `<this>/<revision>`.
pub const MODEL_VOLUME_ROOT: &str = "/models";

/// Pod-level part of the `restricted` Pod Security Standard; uid/gid 1000 because several
/// images we run (tensorflow/serving among them) default to root.
pub fn restricted_pod_security_context() -> Value {
    json!({
        "runAsNonRoot": true,
        "runAsUser": 1000,
        "runAsGroup": 1000,
        "fsGroup": 1000,
        "seccompProfile": {"type": "RuntimeDefault"},
    })
}

/// Container-level part of the `restricted` Pod Security Standard.
pub fn restricted_container_security_context() -> Value {
    json!({
        "allowPrivilegeEscalation": false,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": true,
    })
}

/// `base` with `extra` on top (extra wins on equal keys).
pub fn merge_labels(
    base: &BTreeMap<String, String>,
    extra: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut out = base.clone();
    out.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    out
}

/// `metadata` of a top-level object: its name and the host's labels.
pub fn object_meta(name: &str, ctx: &Context) -> Value {
    json!({"name": name, "labels": ctx.labels})
}

/// Pod settings every default plugin accepts from its config, so that tests and users can
/// steer the pod without a new plugin: `image`, `podLabels`, `podAnnotations`, `nodeSelector`,
/// `env` (a map of name -> value, or a list of Kubernetes EnvVar objects) and `resources`.
#[derive(Debug, Clone, Default)]
pub struct PodSettings {
    pub image: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub node_selector: BTreeMap<String, String>,
    pub env: Vec<Value>,
    pub resources: Option<Value>,
}

impl PodSettings {
    /// The config keys [`PodSettings::from_config`] reads: part of every default plugin's
    /// `Plugin::CONFIG_KEYS`.
    pub const KEYS: [&'static str; 6] = [
        "image",
        "podLabels",
        "podAnnotations",
        "nodeSelector",
        "env",
        "resources",
    ];

    pub fn from_config(config: &Config) -> Result<Self, String> {
        let env = match config.value("env") {
            None => Vec::new(),
            Some(Value::Object(m)) => m
                .iter()
                .map(|(k, v)| match v {
                    Value::String(s) => Ok(json!({"name": k, "value": s})),
                    _ => Err("plugin config key `env` must map names to strings".to_string()),
                })
                .collect::<Result<_, _>>()?,
            Some(_) => config.object_list("env")?,
        };
        let resources = match config.value("resources") {
            None => None,
            Some(v @ Value::Object(_)) => Some(v.clone()),
            Some(_) => return Err("plugin config key `resources` must be an object".into()),
        };
        Ok(PodSettings {
            image: config.str("image")?.map(str::to_string),
            labels: config.string_map("podLabels")?,
            annotations: config.string_map("podAnnotations")?,
            node_selector: config.string_map("nodeSelector")?,
            env,
            resources,
        })
    }

    /// The image to run: the config's, or `default`.
    pub fn image_or(&self, default: &str) -> String {
        self.image.clone().unwrap_or_else(|| default.to_string())
    }

    /// Pod template metadata: the host's labels, then `podLabels`; `annotations` then
    /// `podAnnotations`.
    pub fn template_meta(&self, ctx: &Context, annotations: &BTreeMap<String, String>) -> Value {
        let labels = merge_labels(&ctx.labels, &self.labels);
        let annotations = merge_labels(annotations, &self.annotations);
        let mut meta = Map::new();
        meta.insert("labels".into(), json!(labels));
        if !annotations.is_empty() {
            meta.insert("annotations".into(), json!(annotations));
        }
        Value::Object(meta)
    }

    /// Adds `nodeSelector` to a pod spec when set.
    pub fn apply_to_pod(&self, pod_spec: &mut Value) {
        if !self.node_selector.is_empty() {
            pod_spec["nodeSelector"] = json!(self.node_selector);
        }
    }
}

/// The volume entry pointing at the model's PersistentVolumeClaim.
pub fn model_volume(ctx: &Context, read_only: bool) -> Value {
    json!({
        "name": MODEL_VOLUME,
        "persistentVolumeClaim": {"claimName": ctx.names.volume, "readOnly": read_only},
    })
}

/// A read-only mount of this revision's files (the `<revision>` directory of the volume) at
/// `mount_path`.
pub fn model_files_mount(ctx: &Context, mount_path: &str) -> Value {
    json!({
        "name": MODEL_VOLUME,
        "mountPath": mount_path,
        "subPath": ctx.revision,
        "readOnly": true,
    })
}

/// A Deployment of one `container` with the model volume, the shape both default serve plugins
/// share: selector = the host's selector labels; pod labels = selector + host labels +
/// `podLabels`; the `mlmodel.dev/revision` pod annotation so that a new revision rolls the pods.
pub fn serve_deployment(
    model: &Model,
    ctx: &Context,
    pod: &PodSettings,
    container: Value,
) -> Value {
    let mut pod_spec = json!({
        "automountServiceAccountToken": false,
        "enableServiceLinks": false,
        "securityContext": restricted_pod_security_context(),
        "containers": [container],
        "volumes": [model_volume(ctx, true)],
    });
    pod.apply_to_pod(&mut pod_spec);
    let mut template_meta = pod.template_meta(
        ctx,
        &BTreeMap::from([("mlmodel.dev/revision".to_string(), ctx.revision.clone())]),
    );
    template_meta["labels"] = json!(merge_labels(
        &merge_labels(&ctx.selector_labels, &ctx.labels),
        &pod.labels
    ));
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": object_meta(&ctx.names.workload, ctx),
        "spec": {
            "replicas": model.spec.replicas,
            "selector": {"matchLabels": ctx.selector_labels},
            // Never below the wanted count during a revision change.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {"metadata": template_meta, "spec": pod_spec},
        },
    })
}

/// The disruption budget of a model of two replicas or more: one serving pod at a time may be
/// evicted (a drain waits for the replacement to be ready before it takes the next), and a pod
/// that is not ready may always be (a crash-looping server must not hold up a drain). `None`
/// for one replica: a budget would then either block every drain or allow the only pod to go.
pub fn disruption_budget(model: &Model, ctx: &Context) -> Option<Value> {
    (model.spec.replicas >= 2).then(|| {
        json!({
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": object_meta(&ctx.names.workload, ctx),
            "spec": {
                "maxUnavailable": 1,
                "selector": {"matchLabels": ctx.selector_labels},
                "unhealthyPodEvictionPolicy": "AlwaysAllow",
            },
        })
    })
}

/// Annotation on a serve plugin's workload: the protocol clients speak to the server, `v2` (the
/// Open Inference Protocol), `tfserving-rest` or `http`. The host shows it in `status.inference`
/// with the URL a client posts to.
pub const INFERENCE_PROTOCOL: &str = "mlmodel.dev/inference-protocol";
/// Annotation on a serve plugin's workload: the name the server knows the model by.
pub const INFERENCE_MODEL: &str = "mlmodel.dev/inference-model";

/// Tells the host how clients call the served model (see [`INFERENCE_PROTOCOL`]): sets both
/// annotations on `workload` (a Deployment as built by [`serve_deployment`]).
pub fn set_inference(workload: &mut Value, protocol: &str, model: &str) {
    let annotations = &mut workload["metadata"]["annotations"];
    annotations[INFERENCE_PROTOCOL] = json!(protocol);
    annotations[INFERENCE_MODEL] = json!(model);
}
