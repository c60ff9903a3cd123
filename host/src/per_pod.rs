//! Per-pod storage: the download step's Job folded into the serving Deployment, so that each
//! serving pod downloads its own copy before its server starts. The download plugin's
//! container runs as an init container writing into an `emptyDir` that takes the place of the
//! revision's claim; the serve plugin's mounts (`subPath: <revision>`) read it unchanged. Any
//! serve plugin and any download plugin that renders a Job work as they are.
use crate::plugins::podsecurity;
use kube::api::DynamicObject;
use serde_json::{Value, json};

/// Why the two renders cannot be folded (the message names the fix).
pub type FoldError = String;

fn kind(o: &DynamicObject) -> &str {
    o.types.as_ref().map_or("", |t| t.kind.as_str())
}

/// Folds `download` (the download step's render: a claim and a Job) into the Deployment of
/// `serve`: the Job's containers become init containers (first, in order) and the claim's
/// volume an `emptyDir` of `size`. The claim, the Job and anything else of the download render
/// are not applied.
pub fn fold(
    serve: &mut [DynamicObject],
    download: &[DynamicObject],
    size: &str,
) -> Result<(), FoldError> {
    let claim = download
        .iter()
        .find(|o| kind(o) == "PersistentVolumeClaim")
        .and_then(|o| o.metadata.name.clone())
        .ok_or("the download plugin renders no PersistentVolumeClaim to download into")?;
    let job = download
        .iter()
        .find(|o| kind(o) == "Job")
        .ok_or("the download plugin renders no Job: per-pod storage runs the Job's containers in each serving pod")?;
    let job_pod = job
        .data
        .pointer("/spec/template/spec")
        .ok_or("the download Job has no pod template")?;
    let mut deployments = serve.iter_mut().filter(|o| kind(o) == "Deployment");
    let dep = deployments.next().ok_or(
        "the serve plugin renders no Deployment: per-pod storage needs one to add the download to",
    )?;
    if deployments.next().is_some() {
        return Err("the serve plugin renders more than one Deployment: per-pod storage adds the download to one".into());
    }
    let pod = dep
        .data
        .pointer_mut("/spec/template/spec")
        .and_then(Value::as_object_mut)
        .ok_or("the serving Deployment has no pod template")?;

    // The serve plugin's volume of the claim becomes an emptyDir; its name stays.
    let uses_claim =
        |v: &Value| v.pointer("/persistentVolumeClaim/claimName") == Some(&json!(claim));
    let volumes = pod
        .entry("volumes")
        .or_insert_with(|| json!([]))
        .as_array_mut()
        .ok_or("the serving pod's volumes are not a list")?;
    let serve_volume = volumes
        .iter_mut()
        .find(|v| uses_claim(v))
        .ok_or_else(|| format!("the serving pod mounts no volume of claim {claim:?}: per-pod storage has nothing to fill"))?;
    let volume_name = serve_volume["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    *serve_volume = json!({"name": volume_name, "emptyDir": {"sizeLimit": size}});

    // The Job's other volumes come along (a name taken by the serving pod must mean the same).
    let mut job_volume = None;
    for v in job_pod["volumes"].as_array().into_iter().flatten() {
        if uses_claim(v) {
            job_volume = v["name"].as_str().map(str::to_string);
            continue;
        }
        match volumes.iter().find(|w| w["name"] == v["name"]) {
            Some(w) if w == v => {}
            Some(_) => {
                return Err(format!(
                    "the download Job and the serving pod both have a volume {} that differ",
                    v["name"]
                ));
            }
            None => volumes.push(v.clone()),
        }
    }
    let job_volume = job_volume
        .ok_or_else(|| format!("the download Job mounts no volume of claim {claim:?}"))?;

    let mut inits = Vec::new();
    let taken: Vec<Value> = ["initContainers", "containers"]
        .iter()
        .flat_map(|k| {
            pod.get(*k)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        })
        .map(|c| c["name"].clone())
        .collect();
    for c in job_pod["containers"].as_array().into_iter().flatten() {
        if taken.contains(&c["name"]) {
            return Err(format!(
                "the download container {} has the name of a serving container",
                c["name"]
            ));
        }
        let mut c = c.clone();
        for m in c["volumeMounts"].as_array_mut().into_iter().flatten() {
            if m["name"] == json!(job_volume) {
                m["name"] = json!(volume_name);
            }
        }
        inits.push(c);
    }
    let existing = pod
        .get("initContainers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    inits.extend(existing);
    pod.insert("initContainers".into(), Value::Array(inits));

    // Each half was checked alone; the pod they make is checked as a whole.
    let violations = podsecurity::restricted_violations(&Value::Object(pod.clone()));
    if !violations.is_empty() {
        return Err(format!(
            "the serving pod with the download in it breaks the restricted Pod Security Standard: {}",
            violations.join("; ")
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(v: Value) -> DynamicObject {
        serde_json::from_value(v).unwrap()
    }

    fn claim() -> DynamicObject {
        object(
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "c"}}),
        )
    }

    fn job() -> DynamicObject {
        object(
            json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
            "spec": {"template": {"spec": {
                "containers": [{"name": "fetch", "image": "op",
                    "volumeMounts": [{"name": "data", "mountPath": "/models"}]}],
                "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "c"}},
                    {"name": "ca", "configMap": {"name": "ca"}}]}}}}),
        )
    }

    fn deployment() -> DynamicObject {
        object(
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"template": {"spec": {
                "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{"name": "server", "image": "s",
                    "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
                    "volumeMounts": [{"name": "model", "mountPath": "/m", "subPath": "r"}]}],
                "volumes": [{"name": "model", "persistentVolumeClaim": {"claimName": "c", "readOnly": true}}]}}}}),
        )
    }

    #[test]
    fn the_job_runs_first_in_each_serving_pod_into_an_empty_dir() {
        let mut serve = vec![deployment()];
        let mut job = job();
        job.data["spec"]["template"]["spec"]["containers"][0]["securityContext"] =
            json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}});
        fold(&mut serve, &[claim(), job], "2Gi").unwrap();
        let pod = &serve[0].data["spec"]["template"]["spec"];
        assert_eq!(pod["initContainers"][0]["name"], "fetch");
        // The Job's mount of the claim now names the serving pod's volume.
        assert_eq!(pod["initContainers"][0]["volumeMounts"][0]["name"], "model");
        assert_eq!(
            pod["volumes"][0],
            json!({"name": "model", "emptyDir": {"sizeLimit": "2Gi"}})
        );
        assert_eq!(pod["volumes"][1]["configMap"]["name"], "ca");
    }

    #[test]
    fn what_cannot_be_folded_says_why() {
        let no_job = fold(&mut [deployment()], &[claim()], "1Gi").unwrap_err();
        assert!(no_job.contains("no Job"), "{no_job}");
        let mut clash = deployment();
        clash.data["spec"]["template"]["spec"]["containers"][0]["name"] = json!("fetch");
        let err = fold(&mut [clash], &[claim(), job()], "1Gi").unwrap_err();
        assert!(err.contains("name of a serving container"), "{err}");
        // The download container says nothing of privileges: the pod it joins breaks the
        // restricted standard and is refused whole.
        let err = fold(&mut [deployment()], &[claim(), job()], "1Gi").unwrap_err();
        assert!(err.contains("restricted"), "{err}");
    }
}
