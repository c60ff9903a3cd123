//! `file-server`: serves the model's files read-only over HTTP (busybox `httpd`, port 8080), for
//! model artifacts that clients fetch as they are, and to see a download end to end (`make
//! demo`): `curl http://<service>/<file>` returns the bytes the download Job wrote.
//!
//! Config (`spec.plugins.config.serve`): `image` (any image with `/bin/busybox`), `directory`
//! (a relative directory inside the model to serve instead of its root; the server exits if it
//! does not exist), and the pod settings of [`PodSettings`]. The model's `spec.resources` wins
//! over config `resources`.
use mlmodel_plugin_sdk::k8s::{self, PodSettings};
use mlmodel_plugin_sdk::serde_json::{Value, json};
use mlmodel_plugin_sdk::{Context, Model, Plugin, Step};

/// Pinned; `/bin/busybox` is all the server needs.
pub const DEFAULT_IMAGE: &str = "busybox:1.35";
pub const HTTP_PORT: u16 = 8080;

pub struct FileServer;

/// `directory` as a path under the model root: relative, no `..`, no empty or `.` parts.
fn served_dir(root: &str, directory: Option<&str>) -> Result<String, String> {
    let Some(dir) = directory
        .map(|d| d.trim_matches('/'))
        .filter(|d| !d.is_empty())
    else {
        return Ok(root.to_string());
    };
    if dir.split('/').any(|part| matches!(part, "" | "." | "..")) {
        return Err(format!(
            "config directory {dir:?} must be a relative path inside the model (no '.', '..' or empty parts)"
        ));
    }
    Ok(format!("{root}/{dir}"))
}

impl Plugin for FileServer {
    const NAME: &'static str = "file-server";
    const DESCRIPTION: &'static str =
        "Deployment of busybox httpd serving the model's files read-only on port 8080";
    const STEPS: &'static [Step] = &[Step::Serve];
    const CONFIG_KEYS: Option<&'static [&'static str]> = Some(&[
        "image",
        "podLabels",
        "podAnnotations",
        "nodeSelector",
        "env",
        "resources",
        "directory",
    ]);

    fn render(model: &Model, ctx: &Context) -> Result<Vec<Value>, String> {
        let config = &ctx.config;
        let pod = PodSettings::from_config(config)?;
        let root = format!("/models/{}", ctx.names.model);
        let dir = served_dir(&root, config.str("directory")?)?;
        let mut container = json!({
            "name": "server",
            "image": pod.image_or(DEFAULT_IMAGE),
            "command": ["/bin/busybox", "httpd", "-f", "-v", "-p", HTTP_PORT.to_string(), "-h", dir],
            "ports": [{"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"}],
            "readinessProbe": {
                "tcpSocket": {"port": "http"},
                "periodSeconds": 2,
                "failureThreshold": 2,
            },
            "livenessProbe": {
                "tcpSocket": {"port": "http"},
                "initialDelaySeconds": 10,
                "periodSeconds": 10,
            },
            // Leave the Service's endpoints before the server stops, so that a rolling update
            // (a new revision) drops no request.
            "lifecycle": {"preStop": {"sleep": {"seconds": 3}}},
            "terminationMessagePolicy": "FallbackToLogsOnError",
            "volumeMounts": [k8s::model_files_mount(ctx, &root)],
            "securityContext": k8s::restricted_container_security_context(),
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}},
        });
        if let Some(resources) = model.spec.resources.clone().or(pod.resources.clone()) {
            container["resources"] = resources;
        }
        if !pod.env.is_empty() {
            container["env"] = json!(pod.env);
        }
        let mut deployment = k8s::serve_deployment(model, ctx, &pod, container);
        // httpd as the pod's first process would ignore SIGTERM (PID 1 has no default signal
        // actions) and every stop would wait out the grace period: the pause process is PID 1.
        deployment["spec"]["template"]["spec"]["shareProcessNamespace"] = json!(true);
        Ok([deployment]
            .into_iter()
            .chain(k8s::disruption_budget(model, ctx))
            .collect())
    }
}

mlmodel_plugin_sdk::export_plugin!(FileServer);

#[cfg(test)]
mod tests {
    use super::served_dir;

    #[test]
    fn directory_stays_inside_the_model() {
        assert_eq!(served_dir("/models/m", None).unwrap(), "/models/m");
        assert_eq!(served_dir("/models/m", Some("1/")).unwrap(), "/models/m/1");
        assert_eq!(
            served_dir("/models/m", Some("a/b")).unwrap(),
            "/models/m/a/b"
        );
        for bad in ["..", "a/../..", "./a", "a//b"] {
            assert!(served_dir("/models/m", Some(bad)).is_err(), "{bad}");
        }
    }
}
