//! `echo-server`: a small HTTP server that answers with a fixed text, for dry runs of the whole
//! flow (download, serve, expose) without a real model server. It mounts the model read-only
//! like a real server would, so a broken volume shows up the same way.
//!
//! Config (`spec.plugins.config.serve`): `image`, `text`, and the pod settings of
//! [`PodSettings`]. The model's `spec.resources` wins over config `resources`.
use mlmodel_plugin_sdk::k8s::{self, PodSettings};
use mlmodel_plugin_sdk::serde_json::{Value, json};
use mlmodel_plugin_sdk::{Context, Model, Plugin, Step};

/// Pinned; a static binary of a few MB that runs as any user.
pub const DEFAULT_IMAGE: &str = "hashicorp/http-echo:1.0";
pub const HTTP_PORT: u16 = 8080;

pub struct EchoServer;

impl Plugin for EchoServer {
    const NAME: &'static str = "echo-server";
    const DESCRIPTION: &'static str =
        "Deployment of a small HTTP echo server (port 8080) mounting the model read-only";
    const STEPS: &'static [Step] = &[Step::Serve];
    const CONFIG_KEYS: Option<&'static [&'static str]> = Some(&[
        "image",
        "podLabels",
        "podAnnotations",
        "nodeSelector",
        "env",
        "resources",
        "text",
    ]);

    fn render(model: &Model, ctx: &Context) -> Result<Vec<Value>, String> {
        let config = &ctx.config;
        let pod = PodSettings::from_config(config)?;
        let text = match config.str("text")? {
            Some(t) => t.to_string(),
            None => format!("model {} revision {}", model.metadata.name, ctx.revision),
        };
        let mut container = json!({
            "name": "server",
            "image": pod.image_or(DEFAULT_IMAGE),
            "args": [format!("-listen=:{HTTP_PORT}"), format!("-text={text}")],
            "ports": [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}],
            "readinessProbe": {
                "httpGet": {"path": "/", "port": "http"},
                "periodSeconds": 5,
                "failureThreshold": 3,
            },
            "livenessProbe": {
                "tcpSocket": {"port": "http"},
                "initialDelaySeconds": 10,
                "periodSeconds": 10,
            },
            "volumeMounts": [k8s::model_files_mount(ctx, &format!("/models/{}", ctx.names.model))],
            "securityContext": k8s::restricted_container_security_context(),
        });
        if let Some(resources) = model.spec.resources.clone().or(pod.resources.clone()) {
            container["resources"] = resources;
        }
        if !pod.env.is_empty() {
            container["env"] = json!(pod.env);
        }
        let deployment = k8s::serve_deployment(model, ctx, &pod, container);
        Ok([deployment]
            .into_iter()
            .chain(k8s::disruption_budget(model, ctx))
            .collect())
    }
}

mlmodel_plugin_sdk::export_plugin!(EchoServer);
