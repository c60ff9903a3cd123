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
    let dep = deployments
        .next()
        .ok_or("the serve plugin renders no Deployment: per-pod storage needs one to add the download to")?;
    if deployments.next().is_some() {
        return Err("the serve plugin renders more than one Deployment: per-pod storage adds the download to one".into());
    }
    let pod = dep
        .data
        .pointer_mut("/spec/template/spec")
        .and_then(Value::as_object_mut)
        .ok_or("the serving Deployment has no pod template")?;

    // The serve plugin's volume of the claim becomes an emptyDir; its name stays.
    let uses_claim = |v: &Value| v.pointer("/persistentVolumeClaim/claimName") == Some(&json!(claim));
    let volumes = pod
        .entry("volumes")
        .or_insert_with(|| json!([]))
        .as_array_mut()
        .ok_or("the serving pod's volumes are not a list")?;
    let serve_volume = volumes
        .iter_mut()
        .find(|v| uses_claim(v))
        .ok_or_else(|| format!("the serving pod mounts no volume of claim {claim:?}: per-pod storage has nothing to fill"))?;
    let volume_name = serve_volume["name"].as_str().unwrap_or_default().to_string();
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
        .flat_map(|k| pod.get(*k).and_then(Value::as_array).cloned().unwrap_or_default())
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
