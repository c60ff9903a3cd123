//! `service`: a ClusterIP Service selecting the model's serving pods by the host's selector
//! labels.
//!
//! The Service cannot know which serve plugin runs, so it targets container ports by name: the
//! default serve plugins name their HTTP port `http` and their gRPC port `grpc`.
//!
//! Config (`spec.plugins.config.expose`): `ports` (a list of Kubernetes ServicePorts, replacing
//! the default `http` port 80 -> `http`), `grpc` (true adds port 8500 -> `grpc`),
//! `annotations` (on the Service).
use mlmodel_plugin_sdk::k8s;
use mlmodel_plugin_sdk::serde_json::{Value, json};
use mlmodel_plugin_sdk::{Context, Model, Plugin, Step};

pub struct Service;

impl Plugin for Service {
    const NAME: &'static str = "service";
    const DESCRIPTION: &'static str = "ClusterIP Service on the model's serving pods";
    const STEPS: &'static [Step] = &[Step::Expose];
    const CONFIG_KEYS: Option<&'static [&'static str]> = Some(&["ports", "grpc", "annotations"]);

    fn render(_model: &Model, ctx: &Context) -> Result<Vec<Value>, String> {
        let config = &ctx.config;
        let mut ports = config.object_list("ports")?;
        if ports.is_empty() {
            ports
                .push(json!({"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}));
        }
        if config.bool("grpc", false)? {
            ports.push(
                json!({"name": "grpc", "port": 8500, "targetPort": "grpc", "protocol": "TCP"}),
            );
        }
        let mut metadata = k8s::object_meta(&ctx.names.service, ctx);
        let annotations = config.string_map("annotations")?;
        if !annotations.is_empty() {
            metadata["annotations"] = json!(annotations);
        }
        Ok(vec![json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": metadata,
            "spec": {
                "type": "ClusterIP",
                "selector": ctx.selector_labels,
                "ports": ports,
            },
        })])
    }
}

mlmodel_plugin_sdk::export_plugin!(Service);
