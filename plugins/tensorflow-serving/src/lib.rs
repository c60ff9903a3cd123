//! `tensorflow-serving`: a Deployment of `tensorflow/serving` that loads the downloaded model.
//!
//! TF Serving looks for `<model_base_path>/<version>/saved_model.pb`. The download step leaves
//! the files in the volume's `<revision>/` directory, so that directory is mounted read-only
//! (`subPath`) at `/models/<names.model>/<modelVersion>` and the server gets
//! `--model_base_path=/models/<names.model>`. A new revision changes the pod template (subPath,
//! volume, annotation), so the Deployment rolls without downtime.
//!
//! Config (`spec.plugins.config.serve`): `image`, `modelVersion` (1), `extraArgs`, and the pod
//! settings of [`PodSettings`]. The model's `spec.resources` wins over config `resources`.
use mlmodel_plugin_sdk::k8s::{self, PodSettings};
use mlmodel_plugin_sdk::serde_json::{Value, json};
use mlmodel_plugin_sdk::{Context, Model, Plugin, Step};

/// Pinned so that a plugin render is reproducible; change it with config `image`.
pub const DEFAULT_IMAGE: &str = "tensorflow/serving:2.18.0";
pub const GRPC_PORT: u16 = 8500;
pub const HTTP_PORT: u16 = 8501;

pub struct TensorflowServing;

impl Plugin for TensorflowServing {
    const NAME: &'static str = "tensorflow-serving";
    const DESCRIPTION: &'static str =
        "Deployment of tensorflow/serving loading the model read-only (REST 8501, gRPC 8500)";
    const STEPS: &'static [Step] = &[Step::Serve];
    const CONFIG_KEYS: Option<&'static [&'static str]> = Some(&[
        "image",
        "podLabels",
        "podAnnotations",
        "nodeSelector",
        "env",
        "resources",
        "modelVersion",
        "extraArgs",
    ]);
    /// TensorFlow Serving loads a SavedModel directory only.
    const MODEL_FORMATS: &'static [&'static str] = &["saved-model"];

    fn render(model: &Model, ctx: &Context) -> Result<Vec<Value>, String> {
        let config = &ctx.config;
        let pod = PodSettings::from_config(config)?;
        let name = &ctx.names.model;
        let version = config.int("modelVersion", 1)?;
        if version < 0 {
            return Err("plugin config key `modelVersion` must be >= 0".into());
        }
        let base = format!("/models/{name}");

        let mut args = vec![
            format!("--model_name={name}"),
            format!("--model_base_path={base}"),
            format!("--port={GRPC_PORT}"),
            format!("--rest_api_port={HTTP_PORT}"),
        ];
        args.extend(config.string_list("extraArgs")?);

        let status_path = format!("/v1/models/{name}");
        let mut container = json!({
            "name": "server",
            "image": pod.image_or(DEFAULT_IMAGE),
            "args": args,
            "ports": [
                {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
                {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
            ],
            // The model status endpoint answers 200 only once the version is loaded.
            "readinessProbe": {
                "httpGet": {"path": status_path, "port": "http"},
                "initialDelaySeconds": 5,
                "periodSeconds": 5,
                "failureThreshold": 3,
            },
            "livenessProbe": {
                "tcpSocket": {"port": "grpc"},
                "initialDelaySeconds": 30,
                "periodSeconds": 10,
                "failureThreshold": 6,
            },
            "volumeMounts": [k8s::model_files_mount(ctx, &format!("{base}/{version}"))],
            "securityContext": k8s::restricted_container_security_context(),
        });
        if let Some(resources) = model.spec.resources.clone().or(pod.resources.clone()) {
            container["resources"] = resources;
        }
        if !pod.env.is_empty() {
            container["env"] = json!(pod.env);
        }
        let mut deployment = k8s::serve_deployment(model, ctx, &pod, container);
        k8s::set_inference(&mut deployment, "tfserving-rest", name);
        Ok([deployment]
            .into_iter()
            .chain(k8s::disruption_budget(model, ctx))
            .collect())
    }
}

mlmodel_plugin_sdk::export_plugin!(TensorflowServing);
