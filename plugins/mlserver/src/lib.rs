//! `mlserver`: a Deployment of Seldon MLServer serving the model over the Open Inference
//! Protocol (V2): REST on 8080, gRPC on 8081, metrics on 8082.
//!
//! The revision's files are mounted read-only at `/mnt/models` and the server is started as the
//! upstream image starts it (`mlserver start /mnt/models`), with one model described by
//! MLServer's environment variables: its name (the host's model name), its runtime (config
//! `implementation`, scikit-learn by default) and its URI (config `modelFile`, else the
//! directory, where the scikit-learn runtime loads `model.joblib`, `model.pickle` or
//! `model.pkl`). A `model-settings.json` shipped with the files takes precedence, as in MLServer.
//!
//! The pod is Ready only when the model is: readiness asks `/v2/models/<name>/ready`, which
//! answers 200 once the model is loaded; liveness asks the server's `/v2/health/live`. A model
//! that fails to load makes MLServer log the error and exit (with status 0, so the kubelet keeps
//! no termination message): the container crash-loops, and the operator quotes the error from
//! its log.
//!
//! Config (`spec.plugins.config.serve`): `image`, `implementation`, `modelFile`,
//! `parallelWorkers` (0: inference in the server process) and the pod settings of
//! [`PodSettings`]. The model's `spec.resources` wins over config `resources`.
use mlmodel_plugin_sdk::k8s::{self, PodSettings};
use mlmodel_plugin_sdk::serde_json::{Value, json};
use mlmodel_plugin_sdk::{Context, Model, Plugin, Step};

/// Pinned, and the upstream name: on the local cluster it is the image `hack/runtime-image.sh`
/// builds; on any other cluster, Seldon's.
pub const DEFAULT_IMAGE: &str = "seldonio/mlserver:1.7.1-sklearn";
pub const DEFAULT_IMPLEMENTATION: &str = "mlserver_sklearn.SKLearnModel";
pub const HTTP_PORT: u16 = 8080;
pub const GRPC_PORT: u16 = 8081;
pub const METRICS_PORT: u16 = 8082;
/// Where the model's files are mounted (KServe's and Seldon's convention).
pub const MODEL_DIR: &str = "/mnt/models";

pub struct MlServer;

/// `modelFile` as a path under [`MODEL_DIR`]: relative, no `..`, no empty or `.` parts.
fn model_uri(file: Option<&str>) -> Result<String, String> {
    let Some(file) = file.map(|f| f.trim_matches('/')).filter(|f| !f.is_empty()) else {
        return Ok(MODEL_DIR.to_string());
    };
    if file.split('/').any(|part| matches!(part, "" | "." | "..")) {
        return Err(format!(
            "config modelFile {file:?} must be a relative path inside the model (no '.', '..' or empty parts)"
        ));
    }
    Ok(format!("{MODEL_DIR}/{file}"))
}

/// A Python import path (`package.module.Class`), so that nothing else reaches MLServer's
/// loader through the environment.
fn implementation(config: Option<&str>) -> Result<String, String> {
    let imp = config.unwrap_or(DEFAULT_IMPLEMENTATION);
    let valid = imp.len() <= 200
        && imp.contains('.')
        && imp.split('.').all(|part| {
            part.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        });
    if !valid {
        return Err(format!(
            "config implementation {imp:?} must be a Python import path such as {DEFAULT_IMPLEMENTATION}"
        ));
    }
    Ok(imp.to_string())
}

impl Plugin for MlServer {
    const NAME: &'static str = "mlserver";
    const DESCRIPTION: &'static str = "Deployment of Seldon MLServer (Open Inference Protocol V2, REST 8080, gRPC 8081), scikit-learn by default";
    const STEPS: &'static [Step] = &[Step::Serve];
    const CONFIG_KEYS: Option<&'static [&'static str]> = Some(&[
        "image",
        "podLabels",
        "podAnnotations",
        "nodeSelector",
        "env",
        "resources",
        "implementation",
        "modelFile",
        "parallelWorkers",
    ]);
    /// What `joblib.load` reads: scikit-learn objects, and other pickles (a custom
    /// implementation may load those).
    const MODEL_FORMATS: &'static [&'static str] = &["sklearn", "pickle"];

    fn render(model: &Model, ctx: &Context) -> Result<Vec<Value>, String> {
        let config = &ctx.config;
        let pod = PodSettings::from_config(config)?;
        let name = &ctx.names.model;
        let workers = config.int("parallelWorkers", 0)?;
        if !(0..=16).contains(&workers) {
            return Err("plugin config key `parallelWorkers` must be from 0 to 16".into());
        }
        let mut env = vec![
            json!({"name": "MLSERVER_MODEL_NAME", "value": name}),
            json!({"name": "MLSERVER_MODEL_IMPLEMENTATION", "value": implementation(config.str("implementation")?)?}),
            json!({"name": "MLSERVER_MODEL_URI", "value": model_uri(config.str("modelFile")?)?}),
            json!({"name": "MLSERVER_HTTP_PORT", "value": HTTP_PORT.to_string()}),
            json!({"name": "MLSERVER_GRPC_PORT", "value": GRPC_PORT.to_string()}),
            json!({"name": "MLSERVER_METRICS_PORT", "value": METRICS_PORT.to_string()}),
            json!({"name": "MLSERVER_PARALLEL_WORKERS", "value": workers.to_string()}),
            // Prometheus' files for several workers: on the writable /tmp, not the working
            // directory.
            json!({"name": "MLSERVER_METRICS_DIR", "value": "/tmp"}),
        ];
        env.extend(pod.env.iter().cloned());
        let ready_path = format!("/v2/models/{name}/ready");
        let mut container = json!({
            "name": "server",
            "image": pod.image_or(DEFAULT_IMAGE),
            "command": ["mlserver", "start", MODEL_DIR],
            "env": env,
            "ports": [
                {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
                {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
                {"name": "metrics", "containerPort": METRICS_PORT, "protocol": "TCP"},
            ],
            // 200 only once this model is loaded: a pod whose server is up but whose model is
            // not takes no traffic.
            "readinessProbe": {
                "httpGet": {"path": ready_path, "port": "http"},
                "periodSeconds": 2,
                "failureThreshold": 3,
            },
            "livenessProbe": {
                "httpGet": {"path": "/v2/health/live", "port": "http"},
                "initialDelaySeconds": 30,
                "periodSeconds": 10,
                "failureThreshold": 6,
            },
            // The server's loading can take a while; liveness starts after it.
            "startupProbe": {
                "httpGet": {"path": "/v2/health/live", "port": "http"},
                "periodSeconds": 2,
                "failureThreshold": 150,
            },
            // Leave the Service's endpoints before the server stops: a rolling update drops no
            // request.
            "lifecycle": {"preStop": {"sleep": {"seconds": 3}}},
            // A server that fails otherwise (exit status not 0): its last words become the
            // container's termination message, and so the status message.
            "terminationMessagePolicy": "FallbackToLogsOnError",
            "volumeMounts": [
                k8s::model_files_mount(ctx, MODEL_DIR),
                {"name": "tmp", "mountPath": "/tmp"},
            ],
            "securityContext": k8s::restricted_container_security_context(),
            // About 200 MiB resident with one small model and no parallel workers.
            "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        });
        if let Some(resources) = model.spec.resources.clone().or(pod.resources.clone()) {
            container["resources"] = resources;
        }
        let mut deployment = k8s::serve_deployment(model, ctx, &pod, container);
        let volumes = &mut deployment["spec"]["template"]["spec"]["volumes"];
        if let Some(list) = volumes.as_array_mut() {
            list.push(json!({"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}}));
        }
        k8s::set_inference(&mut deployment, "v2", name);
        Ok([deployment]
            .into_iter()
            .chain(k8s::disruption_budget(model, ctx))
            .collect())
    }
}

mlmodel_plugin_sdk::export_plugin!(MlServer);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_file_stays_inside_the_model() {
        assert_eq!(model_uri(None).unwrap(), "/mnt/models");
        assert_eq!(
            model_uri(Some("iris/model.joblib")).unwrap(),
            "/mnt/models/iris/model.joblib"
        );
        for bad in ["..", "a/../../etc/passwd", "./a", "a//b"] {
            assert!(model_uri(Some(bad)).is_err(), "{bad}");
        }
    }

    #[test]
    fn implementation_is_an_import_path() {
        assert_eq!(implementation(None).unwrap(), DEFAULT_IMPLEMENTATION);
        assert!(implementation(Some("mlserver_xgboost.XGBoostModel")).is_ok());
        for bad in ["os", "a.b;rm -rf /", "a..b", "1a.b", "a.b c", ""] {
            assert!(implementation(Some(bad)).is_err(), "{bad}");
        }
    }
}
