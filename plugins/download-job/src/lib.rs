//! `download-job`: the model's PersistentVolumeClaim and a Job running `mlmodel-operator fetch`
//! into it.
//!
//! Volume layout: the Job mounts the claim at `/models` and fetches into
//! `context.modelMountPath` (`/models/<revision>`), so the files sit under `<revision>/` on the
//! volume and the fetcher can rename into place atomically (a mount point cannot be renamed).
//!
//! Config (`spec.plugins.config.download`): `image` (default: the operator's image),
//! `storageClassName`, `accessModes` (the claim's, default `[ReadWriteOnce]`; `ReadWriteMany` lets
//! every replica of any node mount one download: the operator then shares it), `backoffLimit` (3), `activeDeadlineSeconds` (3600), `extraArgs` (appended
//! to the fetch argv), and the pod settings of [`PodSettings`].
use mlmodel_plugin_sdk::k8s::{self, PodSettings};
use mlmodel_plugin_sdk::serde_json::{Value, json};
use mlmodel_plugin_sdk::{Context, Model, Plugin, Step};
use std::collections::BTreeMap;

pub struct DownloadJob;

impl Plugin for DownloadJob {
    const NAME: &'static str = "download-job";
    const DESCRIPTION: &'static str =
        "PersistentVolumeClaim + Job running `mlmodel-operator fetch` into it";
    const STEPS: &'static [Step] = &[Step::Download];
    const CONFIG_KEYS: Option<&'static [&'static str]> = Some(&[
        "image",
        "podLabels",
        "podAnnotations",
        "nodeSelector",
        "env",
        "resources",
        "storageClassName",
        "accessModes",
        "extraArgs",
        "backoffLimit",
        "activeDeadlineSeconds",
    ]);

    fn render(model: &Model, ctx: &Context) -> Result<Vec<Value>, String> {
        let config = &ctx.config;
        let pod = PodSettings::from_config(config)?;

        let mut access_modes = config.string_list("accessModes")?;
        if let Some(bad) = access_modes.iter().find(|m| {
            !matches!(
                m.as_str(),
                "ReadWriteOnce" | "ReadWriteMany" | "ReadOnlyMany" | "ReadWriteOncePod"
            )
        }) {
            return Err(format!(
                "config accessModes: {bad:?} is not an access mode (ReadWriteOnce, ReadWriteMany, ReadOnlyMany, ReadWriteOncePod)"
            ));
        }
        if access_modes.is_empty() {
            access_modes.push("ReadWriteOnce".into());
        }
        let mut claim_spec = json!({
            "accessModes": access_modes,
            "resources": {"requests": {"storage": model.spec.storage_size}},
        });
        if let Some(class) = config.str("storageClassName")? {
            claim_spec["storageClassName"] = json!(class);
        }
        let claim = json!({
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": k8s::object_meta(&ctx.names.volume, ctx),
            "spec": claim_spec,
        });

        // argv, never a shell line: the URL is user input.
        let mut command = vec![
            "mlmodel-operator".to_string(),
            "fetch".into(),
            "--url".into(),
            model.spec.model_url.clone(),
            "--dest".into(),
            ctx.model_mount_path.clone(),
        ];
        if let Some(sha) = &model.spec.sha256 {
            command.extend(["--sha256".to_string(), sha.to_ascii_lowercase()]);
        }
        command.extend(config.string_list("extraArgs")?);

        let mut container = json!({
            "name": "fetch",
            "image": pod.image_or(&ctx.operator_image),
            "command": command,
            "volumeMounts": [{"name": k8s::MODEL_VOLUME, "mountPath": k8s::MODEL_VOLUME_ROOT}],
            "resources": pod.resources.clone().unwrap_or_else(|| json!({
                "requests": {"cpu": "100m", "memory": "128Mi"},
                "limits": {"memory": "512Mi"},
            })),
            "securityContext": k8s::restricted_container_security_context(),
            // The fetcher writes a one-line JSON result here; the operator reads it from the
            // Job's pod to explain a failure.
            "terminationMessagePath": "/dev/termination-log",
            "terminationMessagePolicy": "FallbackToLogsOnError",
        });
        if !pod.env.is_empty() {
            container["env"] = json!(pod.env);
        }
        if let Some(secret) = &model.spec.credentials_secret_ref {
            container["envFrom"] = json!([{"secretRef": {"name": secret.name}}]);
        }

        let mut pod_spec = json!({
            "restartPolicy": "Never",
            "automountServiceAccountToken": false,
            "enableServiceLinks": false,
            "securityContext": k8s::restricted_pod_security_context(),
            "containers": [container],
            "volumes": [k8s::model_volume(ctx, false)],
        });
        pod.apply_to_pod(&mut pod_spec);

        // No ttlSecondsAfterFinished: the operator reads the finished Job to know the revision
        // is on disk, and the owner reference removes it with the model.
        let job = json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": k8s::object_meta(&ctx.names.job, ctx),
            "spec": {
                "backoffLimit": config.int("backoffLimit", 3)?,
                "activeDeadlineSeconds": config.int("activeDeadlineSeconds", 3600)?,
                // `fetch` exits 2 when another attempt would fail the same way (a full volume,
                // a refused URL or archive): the Job fails at once instead of retrying.
                "podFailurePolicy": {"rules": [{
                    "action": "FailJob",
                    "onExitCodes": {"containerName": "fetch", "operator": "In", "values": [2]},
                }]},
                "template": {
                    "metadata": pod.template_meta(ctx, &BTreeMap::new()),
                    "spec": pod_spec,
                },
            },
        });
        Ok(vec![claim, job])
    }
}

mlmodel_plugin_sdk::export_plugin!(DownloadJob);
