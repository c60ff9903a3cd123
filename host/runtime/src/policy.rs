//! The output policy: what a plugin may return for a step, and what the host adds to it.
//!
//! Every object must parse as a Kubernetes object, be of a kind allowed for its step, live in
//! the model's namespace (or name none), not be cluster-scoped, and decode as its Kubernetes type
//! (a `replicas: "two"` is refused here, naming the field, not by the API server at apply time). What it asks for is checked
//! too, whatever the namespace's labels say: pod templates meet the `restricted` Pod Security
//! Standard, run as the namespace's default ServiceAccount, run only images the admin allowed
//! ([`BUILTIN_IMAGES`], the operator's, [`Allowances::images`]), reach no Secret but the model's
//! credentials, and are not bound to a node; Services are ClusterIP without external IPs; claims
//! do not pick a volume or a data source; disruption budgets cover the model's own pods and let
//! one go. The admin widens these per plugin ([`Allowances`]). The host then sets the namespace,
//! the owner reference and its labels, overriding whatever the plugin put there, and adds what
//! serving pods need on a cluster of many nodes (spread, a stop that answers while it leaves,
//! leaving a lost node after 30 s) where the plugin says nothing of it.
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{DynamicObject, TypeMeta};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

use super::podsecurity::{restricted_annotation_violations, restricted_violations};
use super::{PluginError, Step};

/// What the cluster admin allows one plugin beyond the defaults.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Allowances {
    /// Pod templates may name a ServiceAccount other than `default`.
    pub service_accounts: bool,
    /// Service types allowed besides `ClusterIP` (e.g. `LoadBalancer`, `NodePort`).
    pub service_types: Vec<String>,
    /// Containers may turn the downloader's guards off or point it elsewhere
    /// ([`GUARD_FLAGS`], [`ENDPOINT_VARIABLES`]).
    pub downloader_overrides: bool,
    /// Pods may reference any Secret of the model's namespace (volumes, environment, image
    /// pulls); without it, only the model's own credentials, in the download step.
    pub secrets: bool,
    /// Images its pods may run besides [`BUILTIN_IMAGES`] and the operator's own, as
    /// [`image_allowed`] reads a pattern: `REPO` (any tag or digest of it), `REPO:TAG` or
    /// `REPO@sha256:HEX` (that one), `PREFIX/` (anything under it).
    pub images: Vec<String>,
    /// Taint keys its pods may tolerate (the nodes the admin opened to it); `*` any.
    pub tolerations: Vec<String>,
    /// PriorityClasses, RuntimeClasses and schedulers its pods may name.
    pub priority_classes: Vec<String>,
    pub runtime_classes: Vec<String>,
    pub schedulers: Vec<String>,
}

/// The images the built-in plugins run by default: allowed to every plugin, as the operator's
/// own image is (what the admin installed). Any other image is the admin's to allow
/// (`--plugin-allow PLUGIN:image=PATTERN`, or `*:image=...` for every plugin), whether a plugin
/// renders it or a model's config asks for it (`spec.plugins.config.<step>.image`).
pub const BUILTIN_IMAGES: &[&str] = &[
    "tensorflow/serving:2.18.0",
    "seldonio/mlserver:1.7.1-sklearn",
    "hashicorp/http-echo:1.0",
    "busybox:1.35",
];

/// The pattern that allows every image: what tools that do not know the admin's list use
/// (`render`, `plugins test`), and an admin's explicit opt-out (`--plugin-allow '*:image=*'`).
pub const ANY_IMAGE: &str = "*";

/// Whether `image` is one `pattern` allows: `REPO` allows any tag or digest of that
/// repository, `REPO:TAG` and `REPO@DIGEST` exactly that, `PREFIX/` every repository under it.
pub fn image_allowed(pattern: &str, image: &str) -> bool {
    if pattern == ANY_IMAGE {
        return true;
    }
    if pattern.is_empty() {
        return false;
    }
    if pattern.ends_with('/') {
        return image.starts_with(pattern);
    }
    image == pattern
        || (!pattern.contains('@')
            && !last_segment_has_tag(pattern)
            && image
                .strip_prefix(pattern)
                .is_some_and(|rest| rest.starts_with(':') || rest.starts_with('@')))
}

/// Whether a reference names a tag (a `:` after its last `/`, not a registry's port).
fn last_segment_has_tag(reference: &str) -> bool {
    reference
        .rsplit('/')
        .next()
        .is_some_and(|last| last.contains(':'))
}

impl Allowances {
    /// Parses one `--plugin-allow` value, `PLUGIN:RULE[,RULE...]` with the rules
    /// `service-accounts`, `service-type=TYPE`, `downloader-overrides` and `secrets`.
    pub fn parse_flag(text: &str) -> Result<(String, Allowances), String> {
        let (plugin, rules) = text
            .split_once(':')
            .filter(|(p, r)| !p.is_empty() && !r.is_empty())
            .ok_or_else(|| format!("{text:?}: expected PLUGIN:RULE[,RULE...]"))?;
        let mut allow = Allowances::default();
        for rule in rules.split(',') {
            match rule.split_once('=') {
                None if rule == "service-accounts" => allow.service_accounts = true,
                None if rule == "downloader-overrides" => allow.downloader_overrides = true,
                None if rule == "secrets" => allow.secrets = true,
                Some(("image", pattern))
                    if !pattern.is_empty() && !pattern.contains(char::is_whitespace) =>
                {
                    allow.images.push(pattern.to_string())
                }
                Some(("toleration", key)) if !key.is_empty() => allow.tolerations.push(key.into()),
                Some(("priority-class", name)) if !name.is_empty() => {
                    allow.priority_classes.push(name.into())
                }
                Some(("runtime-class", name)) if !name.is_empty() => {
                    allow.runtime_classes.push(name.into())
                }
                Some(("scheduler", name)) if !name.is_empty() => allow.schedulers.push(name.into()),
                Some(("service-type", t))
                    if matches!(t, "NodePort" | "LoadBalancer" | "ExternalName") =>
                {
                    allow.service_types.push(t.to_string())
                }
                _ => {
                    return Err(format!(
                        "{text:?}: unknown rule {rule:?} (service-accounts, service-type=NodePort|LoadBalancer|ExternalName, downloader-overrides, secrets, image=REPO|REPO:TAG|REPO@DIGEST|PREFIX/, toleration=KEY, priority-class=NAME, runtime-class=NAME, scheduler=NAME)"
                    ));
                }
            }
        }
        Ok((plugin.to_string(), allow))
    }

    /// Both allowances together (several flags for one plugin).
    pub fn merge(mut self, other: Allowances) -> Allowances {
        self.service_accounts |= other.service_accounts;
        self.downloader_overrides |= other.downloader_overrides;
        self.secrets |= other.secrets;
        self.service_types.extend(other.service_types);
        self.images.extend(other.images);
        self.tolerations.extend(other.tolerations);
        self.priority_classes.extend(other.priority_classes);
        self.runtime_classes.extend(other.runtime_classes);
        self.schedulers.extend(other.schedulers);
        self
    }
}

/// Downloader flags that turn a guard off: an admin's decision, not a model author's (who could
/// otherwise pass them through a plugin's config, e.g. `extraArgs`).
pub const GUARD_FLAGS: &[&str] = &["--allow-link-local"];
/// Variables that send the downloader (and the credentials it holds) to another endpoint, or
/// through a proxy that sees and resolves for it, or make it trust another CA: matched in any
/// case (HTTP libraries read `https_proxy` too), plus every `AWS_ENDPOINT_URL_<SERVICE>`.
pub const ENDPOINT_VARIABLES: &[&str] = &[
    "HF_ENDPOINT",
    "AWS_ENDPOINT",
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ENDPOINT_URL_STS",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "NO_PROXY",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
];

/// Whether `name` is one of [`ENDPOINT_VARIABLES`] (any case) or another
/// `AWS_ENDPOINT_URL_<SERVICE>`.
pub fn is_endpoint_variable(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    ENDPOINT_VARIABLES.contains(&upper.as_str()) || upper.starts_with("AWS_ENDPOINT_URL")
}

/// Violations listed in one refusal (the rest are counted).
const MAX_LISTED: usize = 4;

/// Objects one render may return.
const MAX_OBJECTS: usize = 64;

/// (apiVersion, kind) allowed per step.
pub fn allowed_kinds(step: Step) -> &'static [(&'static str, &'static str)] {
    match step {
        Step::Download => &[
            ("v1", "PersistentVolumeClaim"),
            ("batch/v1", "Job"),
            ("v1", "ConfigMap"),
        ],
        Step::Serve => &[
            ("apps/v1", "Deployment"),
            ("v1", "Pod"),
            ("v1", "ConfigMap"),
            ("policy/v1", "PodDisruptionBudget"),
        ],
        Step::Expose => &[("v1", "Service")],
    }
}

/// Kinds that have no namespace; named so that the rejection says why.
const CLUSTER_SCOPED: &[&str] = &[
    "Namespace",
    "Node",
    "PersistentVolume",
    "StorageClass",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "APIService",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
    "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding",
    "PriorityClass",
    "RuntimeClass",
    "IngressClass",
    "CSIDriver",
    "VolumeAttachment",
    "CertificateSigningRequest",
];

/// What the host adds to every object of a render.
pub struct HostAdditions<'a> {
    pub namespace: &'a str,
    pub labels: &'a BTreeMap<String, String>,
    /// The model as controller owner; `None` when the model has no uid (not from a cluster).
    pub owner: Option<OwnerReference>,
    /// A readiness gate the host holds on every pod the objects make (`spec.validation`).
    pub readiness_gate: Option<&'a str>,
    /// The one Secret the step's pods may reference without the admin's `secrets` allowance:
    /// the model's own `credentialsSecretRef`, in the download step.
    pub credentials_secret: Option<&'a str>,
    /// The labels of the model's serving pods: what a disruption budget may select.
    pub selector: &'a BTreeMap<String, String>,
    /// Images every plugin may run: the operator's own, [`BUILTIN_IMAGES`] (exact references).
    pub images: &'a [String],
}

/// Checks the plugin's `manifests` for `step` and returns them as objects with the host's
/// additions.
pub fn check(
    plugin: &str,
    step: Step,
    manifests: &[String],
    max_bytes: usize,
    host: &HostAdditions<'_>,
    allow: &Allowances,
) -> Result<Vec<DynamicObject>, PluginError> {
    let invalid = |object: String, message: String| PluginError::InvalidOutput {
        plugin: plugin.into(),
        object,
        message,
    };
    if manifests.len() > MAX_OBJECTS {
        return Err(invalid(
            "(all)".into(),
            format!(
                "{} objects, at most {MAX_OBJECTS} are allowed",
                manifests.len()
            ),
        ));
    }
    let total: usize = manifests.iter().map(String::len).sum();
    if total > max_bytes {
        return Err(invalid(
            "(all)".into(),
            format!("{total} bytes of manifests, at most {max_bytes} are allowed"),
        ));
    }
    let mut seen = BTreeSet::new();
    let mut objects = Vec::with_capacity(manifests.len());
    for (i, manifest) in manifests.iter().enumerate() {
        let position = format!("object #{}", i + 1);
        let value: Value = serde_json::from_str(manifest)
            .map_err(|e| invalid(position.clone(), format!("not JSON: {e}")))?;
        let field = |path: &[&str]| {
            path.iter()
                .try_fold(&value, |v, k| v.get(k))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        let (Some(api_version), Some(kind)) = (field(&["apiVersion"]), field(&["kind"])) else {
            return Err(invalid(
                position,
                "not a Kubernetes object: `apiVersion` and `kind` are required".into(),
            ));
        };
        let Some(name) = field(&["metadata", "name"]) else {
            return Err(invalid(
                format!("{kind} ({position})"),
                "`metadata.name` is required".into(),
            ));
        };
        let object = format!("{kind}/{name}");
        if !is_dns_subdomain(name) {
            return Err(invalid(
                object,
                "`metadata.name` must be a lowercase DNS name of at most 253 characters".into(),
            ));
        }
        let forbidden = |rule: String| PluginError::Forbidden {
            plugin: plugin.into(),
            object: object.clone(),
            rule,
        };
        if CLUSTER_SCOPED.contains(&kind) {
            return Err(forbidden(format!(
                "{kind} is cluster-scoped; plugins may only create namespaced objects"
            )));
        }
        let allowed = allowed_kinds(step);
        if !allowed.contains(&(api_version, kind)) {
            let list: Vec<String> = allowed.iter().map(|(v, k)| format!("{k} ({v})")).collect();
            return Err(forbidden(format!(
                "step {step} may create only {}, not {kind} ({api_version})",
                list.join(", ")
            )));
        }
        if let Some(ns) = value.get("metadata").and_then(|m| m.get("namespace"))
            && !ns.is_null()
            && ns.as_str() != Some(host.namespace)
        {
            return Err(forbidden(format!(
                "objects must be in the model's namespace {:?}, not {ns}",
                host.namespace
            )));
        }
        if value
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty())
        {
            return Err(forbidden(
                "objects must not set metadata.finalizers: one that nobody removes holds the object, and the model's deletion, forever".into(),
            ));
        }
        if let Some(problem) = type_error(kind, &value) {
            return Err(invalid(object, problem));
        }
        let broken = content_violations(kind, &value, allow, host);
        if !broken.is_empty() {
            let more = broken.len().saturating_sub(MAX_LISTED);
            let mut rule = broken
                .into_iter()
                .take(MAX_LISTED)
                .collect::<Vec<_>>()
                .join("; ");
            if more > 0 {
                rule.push_str(&format!(" (and {more} more)"));
            }
            return Err(forbidden(rule));
        }
        if !seen.insert((kind.to_string(), name.to_string())) {
            return Err(invalid(object, "returned twice".into()));
        }
        let mut object = into_object(value)
            .map_err(|e| invalid(object.clone(), format!("malformed object: {e}")))?;
        decorate(&mut object, step, host);
        objects.push(object);
    }
    Ok(objects)
}

/// Where an object of an allowed kind does not decode as its Kubernetes type (k8s-openapi), as
/// `path: problem`; `None` when it does. Unknown fields pass, as the API server's types have more
/// fields than this build knows; wrong types and shapes do not.
fn type_error(kind: &str, value: &Value) -> Option<String> {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::batch::v1::Job;
    use k8s_openapi::api::core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Service};
    fn decode<T: serde::de::DeserializeOwned>(value: &Value) -> Option<String> {
        // The path is tracked only to explain a failure: tracking it slows every check.
        T::deserialize(value).err()?;
        let err = serde_path_to_error::deserialize::<_, T>(value).err()?;
        // serde names Rust types; say what the field wants in the API's words.
        let problem = err
            .inner()
            .to_string()
            .replace("expected i32", "expected an integer (int32)")
            .replace("expected i64", "expected an integer (int64)")
            .replace("expected a sequence", "expected a list")
            .replace("expected a map", "expected an object");
        Some(format!(
            "{}: {problem} (not a valid {})",
            err.path(),
            std::any::type_name::<T>()
                .rsplit("::")
                .next()
                .unwrap_or("object")
        ))
    }
    match kind {
        "Deployment" => decode::<Deployment>(value),
        "Job" => decode::<Job>(value),
        "Pod" => decode::<Pod>(value),
        "PersistentVolumeClaim" => decode::<PersistentVolumeClaim>(value),
        "Service" => decode::<Service>(value),
        "ConfigMap" => decode::<ConfigMap>(value),
        "PodDisruptionBudget" => decode::<k8s_openapi::api::policy::v1::PodDisruptionBudget>(value),
        _ => None,
    }
}

/// What an object asks for that the policy refuses, as sentences.
fn content_violations(
    kind: &str,
    value: &Value,
    allow: &Allowances,
    host: &HostAdditions<'_>,
) -> Vec<String> {
    let spec = value.get("spec").unwrap_or(&Value::Null);
    match kind {
        "PodDisruptionBudget" => disruption_budget_violations(spec, host.selector),
        "Pod" => {
            let mut out = pod_violations(spec, allow, host);
            out.extend(restricted_annotation_violations(
                value.pointer("/metadata/annotations"),
            ));
            out
        }
        "Deployment" | "Job" => match spec.pointer("/template/spec") {
            Some(pod) => {
                let mut out = pod_violations(pod, allow, host);
                out.extend(restricted_annotation_violations(
                    spec.pointer("/template/metadata/annotations"),
                ));
                out
            }
            None => vec![format!("{kind} without spec.template.spec")],
        },
        "Service" => {
            let mut out = Vec::new();
            let t = spec
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("ClusterIP");
            if t != "ClusterIP" && !allow.service_types.iter().any(|a| a == t) {
                out.push(format!(
                    "Service type {t} is not allowed (ClusterIP only, unless the admin allows {t} for this plugin)"
                ));
            }
            if spec
                .get("externalIPs")
                .and_then(Value::as_array)
                .is_some_and(|ips| !ips.is_empty())
            {
                out.push("Services must not set externalIPs".into());
            }
            out
        }
        "PersistentVolumeClaim" => claim_violations(spec, "claims"),
        _ => Vec::new(),
    }
}

/// A disruption budget covers this model's serving pods only (a wider selector would hold up
/// the evictions of other workloads) and lets at least one of them go at a time (a budget of
/// none would stop every node drain): authority the model's author may not have.
fn disruption_budget_violations(spec: &Value, selector: &BTreeMap<String, String>) -> Vec<String> {
    let mut out = Vec::new();
    let matches = spec.pointer("/selector/matchLabels");
    let covers_own_only = selector
        .iter()
        .all(|(k, v)| matches.and_then(|m| m.get(k)).and_then(Value::as_str) == Some(v));
    if !covers_own_only {
        out.push(format!(
            "a disruption budget must select the model's serving pods by their labels ({}) in spec.selector.matchLabels",
            selector
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if spec.get("minAvailable").is_some_and(|v| !v.is_null()) {
        out.push("a disruption budget must use maxUnavailable, not minAvailable".into());
    }
    let allows_one = match spec.get("maxUnavailable") {
        Some(Value::Number(n)) => n.as_i64().is_some_and(|n| n >= 1),
        Some(Value::String(p)) => p
            .strip_suffix('%')
            .and_then(|p| p.parse::<u32>().ok())
            .is_some_and(|p| p >= 1),
        _ => false,
    };
    if !allows_one {
        out.push("a disruption budget must allow at least one disruption (maxUnavailable of 1 or more, or a percentage above 0%): none would stop every drain of the nodes it runs on".into());
    }
    out
}

/// A claim (or an ephemeral volume's claim template) binds no volume that exists and copies no
/// data: `volumeName`, `selector` (a label match on existing volumes), an empty
/// `storageClassName` (only pre-made volumes of no class), `dataSource`, `dataSourceRef`.
fn claim_violations(spec: &Value, what: &str) -> Vec<String> {
    let mut out: Vec<String> = ["volumeName", "selector", "dataSource", "dataSourceRef"]
        .into_iter()
        .filter(|k| spec.get(*k).is_some_and(|v| !v.is_null()))
        .map(|k| {
            format!("{what} must not set spec.{k} (it would bind an existing volume or copy data)")
        })
        .collect();
    if spec.get("storageClassName").and_then(Value::as_str) == Some("") {
        out.push(format!(
            "{what} must not set an empty spec.storageClassName (it binds only existing volumes of no class)"
        ));
    }
    out
}

/// Where a pod may run and what it may push aside is the admin's: tolerations (the nodes a
/// taint keeps for others), priority classes (preemption, `system-node-critical`), runtime
/// classes and schedulers, each unless allowed for the plugin. The standard tolerations of a
/// node that stops reporting (`not-ready`, `unreachable`, `NoExecute`, with a bound) stay open.
/// Node selectors and affinities only narrow where a pod may go: taints keep the rest closed.
fn scheduling_violations(pod: &Value, allow: &Allowances) -> Vec<String> {
    let mut out = Vec::new();
    for t in pod
        .get("tolerations")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let key = t.get("key").and_then(Value::as_str).unwrap_or_default();
        let lost_node = matches!(
            key,
            "node.kubernetes.io/not-ready" | "node.kubernetes.io/unreachable"
        ) && t.get("effect").and_then(Value::as_str) == Some("NoExecute")
            && t.get("tolerationSeconds").is_some_and(Value::is_i64);
        let allowed = allow
            .tolerations
            .iter()
            .any(|a| a == "*" || (!key.is_empty() && a == key));
        if !lost_node && !allowed {
            let what = if key.is_empty() {
                "every taint".to_string()
            } else {
                format!("the taint {key:?}")
            };
            out.push(format!(
                "a toleration of {what}: the nodes a taint keeps are the admin's to open (--plugin-allow PLUGIN:toleration=KEY)"
            ));
        }
    }
    for (field, allowed, rule) in [
        (
            "priorityClassName",
            &allow.priority_classes,
            "priority-class",
        ),
        ("runtimeClassName", &allow.runtime_classes, "runtime-class"),
        ("schedulerName", &allow.schedulers, "scheduler"),
    ] {
        let Some(name) = pod
            .get(field)
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
        else {
            continue;
        };
        if field == "schedulerName" && name == "default-scheduler" {
            continue;
        }
        if !allowed.iter().any(|a| a == name) {
            out.push(format!(
                "{field} {name:?} is the admin's to allow (--plugin-allow PLUGIN:{rule}={name})"
            ));
        }
    }
    for v in pod
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        if let Some(spec) = v.pointer("/ephemeral/volumeClaimTemplate/spec") {
            let name = v.get("name").and_then(Value::as_str).unwrap_or("?");
            out.extend(claim_violations(
                spec,
                &format!("ephemeral volume {name:?}"),
            ));
        }
    }
    out
}

fn pod_violations(pod: &Value, allow: &Allowances, host: &HostAdditions<'_>) -> Vec<String> {
    let credentials = host.credentials_secret;
    let mut out = scheduling_violations(pod, allow);
    if !allow.secrets {
        out.extend(
            secret_references(pod)
                .into_iter()
                .filter(|(_, name)| Some(name.as_str()) != credentials)
                .map(|(place, name)| {
                    format!(
                        "{place} references the Secret {name:?}: pods reach no Secret but the model's own credentials (in the download step) unless the admin allows secrets for this plugin"
                    )
                }),
        );
    }
    for key in ["serviceAccountName", "serviceAccount"] {
        if let Some(sa) = pod.get(key).and_then(Value::as_str)
            && !sa.is_empty()
            && sa != "default"
            && !allow.service_accounts
        {
            out.push(format!(
                "{key} {sa:?}: pods run as the namespace's default ServiceAccount unless the admin allows others for this plugin"
            ));
        }
    }
    if !allow.downloader_overrides {
        out.extend(downloader_overrides(pod));
    }
    if pod
        .get("nodeName")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty())
    {
        out.push("pods must not set nodeName (it bypasses the scheduler)".into());
    }
    out.extend(
        restricted_violations(pod)
            .into_iter()
            .map(|v| format!("violates the restricted Pod Security Standard: {v}")),
    );
    out.extend(image_violations(pod, allow, host.images));
    out
}

/// Every container image of `pod` that neither the host's images nor the plugin's allowances
/// allow.
fn image_violations(pod: &Value, allow: &Allowances, host_images: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        for c in pod
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let image = c.get("image").and_then(Value::as_str).unwrap_or_default();
            let allowed = host_images.iter().any(|i| i == image)
                || allow.images.iter().any(|p| image_allowed(p, image));
            if !allowed {
                let name = c.get("name").and_then(Value::as_str).unwrap_or("?");
                out.push(format!(
                    "container {name:?} runs image {image:?}, which the admin has not allowed: the operator's image, the built-in plugins' ({}) and what --plugin-allow PLUGIN:image=PATTERN allows",
                    BUILTIN_IMAGES.join(", ")
                ));
            }
        }
    }
    out
}

/// Every Secret a pod spec names, with where: volumes (`secret`, `projected` sources, a CSI
/// driver's `nodePublishSecretRef`; the other volume types that name Secrets are refused by the
/// restricted standard), each container's `envFrom` and `env[].valueFrom`, and
/// `imagePullSecrets`.
fn secret_references(pod: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let name_at = |v: &Value, pointer: &str| v.pointer(pointer)?.as_str().map(str::to_string);
    for volume in pod
        .get("volumes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let vname = volume.get("name").and_then(Value::as_str).unwrap_or("?");
        let place = format!("volume {vname:?}");
        out.extend(name_at(volume, "/secret/secretName").map(|n| (place.clone(), n)));
        out.extend(name_at(volume, "/csi/nodePublishSecretRef/name").map(|n| (place.clone(), n)));
        let sources = volume
            .pointer("/projected/sources")
            .and_then(Value::as_array);
        for source in sources.into_iter().flatten() {
            out.extend(name_at(source, "/secret/name").map(|n| (place.clone(), n)));
        }
    }
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        for c in pod
            .get(list)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let place = format!(
                "container {:?}",
                c.get("name").and_then(Value::as_str).unwrap_or("?")
            );
            for from in c
                .get("envFrom")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                out.extend(name_at(from, "/secretRef/name").map(|n| (place.clone(), n)));
            }
            for var in c.get("env").and_then(Value::as_array).into_iter().flatten() {
                out.extend(
                    name_at(var, "/valueFrom/secretKeyRef/name").map(|n| (place.clone(), n)),
                );
            }
        }
    }
    for secret in pod
        .get("imagePullSecrets")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        out.extend(name_at(secret, "/name").map(|n| ("imagePullSecrets".to_string(), n)));
    }
    out
}

/// Guard flags and endpoint variables in a pod's containers, as violations.
fn downloader_overrides(pod: &Value) -> Vec<String> {
    let mut out = Vec::new();
    for c in ["initContainers", "containers"]
        .iter()
        .filter_map(|f| pod.get(*f)?.as_array())
        .flatten()
    {
        let name = c.get("name").and_then(Value::as_str).unwrap_or("?");
        let words = ["command", "args"]
            .iter()
            .filter_map(|f| c.get(*f)?.as_array())
            .flatten()
            .filter_map(Value::as_str);
        for word in words {
            if let Some(flag) = GUARD_FLAGS
                .iter()
                .find(|f| word == **f || word.starts_with(&format!("{f}=")))
            {
                out.push(format!(
                    "container {name:?} passes {flag}, which turns a downloader guard off: only the admin may allow it for this plugin"
                ));
            }
        }
        for var in c.get("env").and_then(Value::as_array).into_iter().flatten() {
            let var = var.get("name").and_then(Value::as_str).unwrap_or_default();
            if is_endpoint_variable(var) {
                out.push(format!(
                    "container {name:?} sets {var}, which sends downloads and their credentials elsewhere: only the admin may allow it for this plugin"
                ));
            }
        }
        // A ConfigMap's keys become variables unseen here: any of them could be one of those.
        for from in c
            .get("envFrom")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(cm) = from.pointer("/configMapRef/name").and_then(Value::as_str) {
                out.push(format!(
                    "container {name:?} takes its environment from the ConfigMap {cm:?}, which could set the downloader's endpoints or proxies: only the admin may allow it for this plugin"
                ));
            }
        }
    }
    out
}

/// A checked manifest as an object. By hand rather than `serde_json::from_value`: the derive of
/// `DynamicObject` flattens, which buffers the whole object once more (a third of a render).
fn into_object(value: Value) -> Result<DynamicObject, serde_json::Error> {
    let Value::Object(mut map) = value else {
        unreachable!("checked: apiVersion and kind were read from it");
    };
    let text = |v: Option<Value>| match v {
        Some(Value::String(s)) => s,
        _ => String::new(),
    };
    let types = TypeMeta {
        api_version: text(map.remove("apiVersion")),
        kind: text(map.remove("kind")),
    };
    let metadata: ObjectMeta = serde_json::from_value(map.remove("metadata").unwrap_or_default())?;
    Ok(DynamicObject {
        types: Some(types),
        metadata,
        data: Value::Object(map),
    })
}

fn decorate(object: &mut DynamicObject, step: Step, host: &HostAdditions<'_>) {
    let meta = &mut object.metadata;
    meta.namespace = Some(host.namespace.to_string());
    let labels = meta.labels.get_or_insert_with(BTreeMap::new);
    labels.extend(host.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    // Only the model owns what the plugin renders: garbage collection and the controller's
    // watches depend on it.
    meta.owner_references = host.owner.clone().map(|o| vec![o]);
    if let Some(gate) = host.readiness_gate {
        let pod_spec = match object.data.pointer_mut("/spec/template/spec") {
            Some(spec) => Some(spec),
            None if object.types.as_ref().is_some_and(|t| t.kind == "Pod") => {
                object.data.pointer_mut("/spec")
            }
            None => None,
        };
        if let Some(Value::Object(spec)) = pod_spec {
            let gates = spec
                .entry("readinessGates")
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(gates) = gates
                && !gates.iter().any(|g| g["conditionType"] == gate)
            {
                gates.push(serde_json::json!({"conditionType": gate}));
            }
        }
    }
    if step == Step::Serve {
        spread_replicas(object);
        answer_while_leaving(object);
        leave_lost_nodes(object);
    }
}

/// Seconds a serving pod stays bound to a node that stopped reporting before it is evicted
/// and replaced elsewhere (Kubernetes' default, added at admission, is 300).
const LOST_NODE_SECONDS: i64 = 30;

/// A serving replica on a node that stopped reporting answers nothing the Service can count on:
/// each serving Deployment's pods tolerate an unreachable or not-ready node for
/// [`LOST_NODE_SECONDS`] instead of five minutes, unless the plugin says otherwise for that
/// taint. A download holds no node: a replica downloads again where it lands (per-pod storage),
/// and one bound to a node's volume waits for that node whatever this says.
fn leave_lost_nodes(object: &mut DynamicObject) {
    if object.types.as_ref().is_none_or(|t| t.kind != "Deployment") {
        return;
    }
    let Some(Value::Object(spec)) = object.data.pointer_mut("/spec/template/spec") else {
        return;
    };
    let Value::Array(tolerations) = spec
        .entry("tolerations")
        .or_insert_with(|| Value::Array(Vec::new()))
    else {
        return;
    };
    for key in [
        "node.kubernetes.io/unreachable",
        "node.kubernetes.io/not-ready",
    ] {
        if !tolerations.iter().any(|t| t["key"] == key) {
            tolerations.push(serde_json::json!({
                "key": key,
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": LOST_NODE_SECONDS,
            }));
        }
    }
}

/// Seconds a leaving serving container keeps answering before it is stopped.
const LEAVING_SECONDS: i64 = 5;

/// A serving pod that is deleted (a drain, a rollout, a scale-down) leaves the Service's
/// endpoints while it is told to stop, and every kube-proxy drops it a moment later: a server
/// that stops at once refuses the requests routed to it meanwhile. Each container of a serving
/// Deployment that says nothing of its stop gets a `preStop` sleep (no exec, no shell: the
/// kubelet sleeps) of [`LEAVING_SECONDS`], within the pod's grace period.
fn answer_while_leaving(object: &mut DynamicObject) {
    if object.types.as_ref().is_none_or(|t| t.kind != "Deployment") {
        return;
    }
    let Some(Value::Array(containers)) = object.data.pointer_mut("/spec/template/spec/containers")
    else {
        return;
    };
    for c in containers.iter_mut().filter_map(Value::as_object_mut) {
        let lifecycle = c
            .entry("lifecycle")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Value::Object(lifecycle) = lifecycle {
            lifecycle
                .entry("preStop")
                .or_insert_with(|| serde_json::json!({"sleep": {"seconds": LEAVING_SECONDS}}));
        }
    }
}

/// A serving Deployment of two replicas or more that says nothing of its spread gets a soft one
/// over nodes: one node lost or drained then takes only its share of the replicas. Soft
/// (`ScheduleAnyway`): on one node, or with replicas bound to one node's volume, they still run.
/// Only the pods of one rollout count (`pod-template-hash`), so an update spreads as well.
fn spread_replicas(object: &mut DynamicObject) {
    if object.types.as_ref().is_none_or(|t| t.kind != "Deployment") {
        return;
    }
    let replicas = object
        .data
        .pointer("/spec/replicas")
        .and_then(Value::as_i64);
    let selector = object.data.pointer("/spec/selector").cloned();
    let (Some(replicas), Some(selector)) = (replicas, selector) else {
        return;
    };
    if replicas < 2 {
        return;
    }
    if let Some(Value::Object(spec)) = object.data.pointer_mut("/spec/template/spec") {
        spec.entry("topologySpreadConstraints").or_insert_with(|| {
            serde_json::json!([{
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": selector,
                "matchLabelKeys": ["pod-template-hash"],
            }])
        });
    }
}

fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= 253
        && name.split('.').all(|part| {
            !part.is_empty()
                && part.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && part.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const NO_SELECTOR: &BTreeMap<String, String> = &BTreeMap::new();
    /// The images the host allows in these tests (the operator's, as the runtime adds it).
    static TEST_IMAGES: std::sync::LazyLock<Vec<String>> =
        std::sync::LazyLock::new(|| vec!["i".to_string(), "op".to_string()]);

    /// The host's part with no labels, owner or selector: for checks under other allowances.
    fn bare_host() -> HostAdditions<'static> {
        HostAdditions {
            namespace: "ns",
            labels: NO_SELECTOR,
            owner: None,
            readiness_gate: None,
            credentials_secret: None,
            selector: NO_SELECTOR,
            images: &TEST_IMAGES,
        }
    }

    fn run(step: Step, objects: &[Value]) -> Result<Vec<DynamicObject>, PluginError> {
        let labels = BTreeMap::from([("mlmodel.dev/model".to_string(), "m".to_string())]);
        let selector =
            BTreeMap::from([("app.kubernetes.io/instance".to_string(), "m".to_string())]);
        let owner = OwnerReference {
            api_version: "mlmodel.dev/v1alpha1".into(),
            kind: "MLModel".into(),
            name: "m".into(),
            uid: "u-1".into(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        };
        let host = HostAdditions {
            namespace: "ns",
            labels: &labels,
            owner: Some(owner),
            readiness_gate: None,
            credentials_secret: None,
            selector: &selector,
            images: &TEST_IMAGES,
        };
        let manifests: Vec<String> = objects.iter().map(Value::to_string).collect();
        check(
            "p",
            step,
            &manifests,
            1 << 20,
            &host,
            &Allowances::default(),
        )
    }

    fn obj(api_version: &str, kind: &str, name: &str) -> Value {
        json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": name}})
    }

    #[test]
    fn allowed_objects_get_namespace_labels_and_owner() {
        let mut svc = obj("v1", "Service", "s");
        svc["metadata"]["labels"] = json!({"mine": "x", "mlmodel.dev/model": "spoofed"});
        let out = run(Step::Expose, &[svc]).unwrap();
        let meta = &out[0].metadata;
        assert_eq!(meta.namespace.as_deref(), Some("ns"));
        let labels = meta.labels.as_ref().unwrap();
        assert_eq!(labels["mine"], "x");
        assert_eq!(labels["mlmodel.dev/model"], "m", "host labels win");
        let owner = &meta.owner_references.as_ref().unwrap()[0];
        assert_eq!((owner.uid.as_str(), owner.controller), ("u-1", Some(true)));
    }

    #[test]
    fn each_step_has_its_kinds() {
        assert!(
            run(
                Step::Download,
                &[obj("v1", "PersistentVolumeClaim", "v"), job()]
            )
            .is_ok()
        );
        assert!(run(Step::Serve, &[deployment(), obj("v1", "ConfigMap", "c")]).is_ok());
        let err = run(Step::Serve, &[obj("v1", "Service", "s")]).unwrap_err();
        assert_eq!(err.reason().as_str(), "ForbiddenPluginOutput");
        let text = err.to_string();
        assert!(
            text.contains("Service/s") && text.contains("step serve may create only"),
            "{text}"
        );
        // The group matters, not only the kind.
        assert!(run(Step::Serve, &[obj("example.com/v1", "Deployment", "d")]).is_err());
    }

    #[test]
    fn cluster_scoped_and_foreign_namespace_are_forbidden() {
        let err = run(
            Step::Serve,
            &[obj("rbac.authorization.k8s.io/v1", "ClusterRole", "admin")],
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("ClusterRole/admin")
                && err.to_string().contains("cluster-scoped"),
            "{err}"
        );
        let mut cm = obj("v1", "ConfigMap", "c");
        cm["metadata"]["namespace"] = json!("kube-system");
        let err = run(Step::Serve, &[cm]).unwrap_err();
        assert_eq!(err.reason().as_str(), "ForbiddenPluginOutput");
        assert!(err.to_string().contains("kube-system"), "{err}");
        let mut same = obj("v1", "ConfigMap", "c");
        same["metadata"]["namespace"] = json!("ns");
        assert!(run(Step::Serve, &[same]).is_ok());
    }

    /// Two replicas or more of a serving Deployment are spread over nodes (softly) unless the
    /// plugin said how; one replica, and the other steps, are left as rendered.
    #[test]
    fn serving_replicas_are_spread_over_nodes_unless_the_plugin_says_how() {
        let labels = BTreeMap::new();
        let host = HostAdditions {
            selector: NO_SELECTOR,
            images: &TEST_IMAGES,
            namespace: "ns",
            labels: &labels,
            owner: None,
            readiness_gate: None,
            credentials_secret: None,
        };
        let with_replicas = |n: i64| {
            let mut d = deployment();
            d["spec"]["replicas"] = json!(n);
            d["spec"]["selector"] = json!({"matchLabels": {"app": "m"}});
            d
        };
        let spread = |step: Step, d: Value| {
            let out = check(
                "p",
                step,
                &[d.to_string()],
                1 << 20,
                &host,
                &Allowances::default(),
            )
            .unwrap();
            out[0]
                .data
                .pointer("/spec/template/spec/topologySpreadConstraints")
                .cloned()
        };
        let two = spread(Step::Serve, with_replicas(2)).expect("a spread for 2 replicas");
        assert_eq!(two[0]["topologyKey"], "kubernetes.io/hostname");
        assert_eq!(two[0]["whenUnsatisfiable"], "ScheduleAnyway");
        assert_eq!(
            two[0]["labelSelector"],
            json!({"matchLabels": {"app": "m"}})
        );
        assert_eq!(spread(Step::Serve, with_replicas(1)), None);
        let mut own = with_replicas(3);
        own["spec"]["template"]["spec"]["topologySpreadConstraints"] =
            json!([{"maxSkew": 2, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}]);
        assert_eq!(
            spread(Step::Serve, own).unwrap()[0]["topologyKey"],
            "zone",
            "the plugin's own spread is kept"
        );
    }

    /// `spec.validation`: the host holds a readiness gate on every pod the serve step makes.
    #[test]
    fn serving_containers_keep_answering_while_they_leave_unless_the_plugin_says_how() {
        let mut own = deployment();
        own["spec"]["template"]["spec"]["containers"][0]["lifecycle"] =
            json!({"preStop": {"httpGet": {"path": "/drain", "port": 8080}}});
        let objs = run(Step::Serve, &[deployment()]).unwrap();
        let c = &objs[0].data["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(
            c["lifecycle"]["preStop"],
            json!({"sleep": {"seconds": LEAVING_SECONDS}})
        );
        let objs = run(Step::Serve, &[own]).unwrap();
        let c = &objs[0].data["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["lifecycle"]["preStop"]["httpGet"]["path"], "/drain");
        // A download Job's pod is not a server.
        let objs = run(Step::Download, &[job()]).unwrap();
        let c = &objs[0].data["spec"]["template"]["spec"]["containers"][0];
        assert!(c.get("lifecycle").is_none(), "{c}");
    }

    #[test]
    fn serving_pods_leave_a_lost_node_after_30_seconds_unless_the_plugin_says_how() {
        let objs = run(Step::Serve, &[deployment()]).unwrap();
        let t = &objs[0].data["spec"]["template"]["spec"]["tolerations"];
        assert_eq!(t.as_array().unwrap().len(), 2, "{t}");
        assert!(
            t.as_array()
                .unwrap()
                .iter()
                .all(|t| t["tolerationSeconds"] == LOST_NODE_SECONDS)
        );
        let mut own = deployment();
        own["spec"]["template"]["spec"]["tolerations"] = json!([{"key": "node.kubernetes.io/unreachable",
            "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 600}]);
        let objs = run(Step::Serve, &[own]).unwrap();
        let t = objs[0].data["spec"]["template"]["spec"]["tolerations"]
            .as_array()
            .unwrap()
            .clone();
        assert_eq!(t[0]["tolerationSeconds"], 600, "the plugin's own stays");
        assert_eq!(t[1]["key"], "node.kubernetes.io/not-ready");
        assert!(
            run(Step::Download, &[job()]).unwrap()[0].data["spec"]["template"]["spec"]
                .get("tolerations")
                .is_none()
        );
    }

    #[test]
    fn the_host_adds_its_readiness_gate_to_pod_templates() {
        let labels = BTreeMap::new();
        let host = HostAdditions {
            selector: NO_SELECTOR,
            images: &TEST_IMAGES,
            namespace: "ns",
            labels: &labels,
            owner: None,
            readiness_gate: Some("mlmodel.dev/validated"),
            credentials_secret: None,
        };
        let mut own = deployment();
        own.pointer_mut("/spec/template/spec").unwrap()["readinessGates"] =
            json!([{"conditionType": "example.com/other"}]);
        for d in [deployment(), own] {
            let out = check(
                "p",
                Step::Serve,
                &[d.to_string()],
                1 << 20,
                &host,
                &Allowances::default(),
            )
            .unwrap();
            let gates = out[0]
                .data
                .pointer("/spec/template/spec/readinessGates")
                .unwrap();
            let types: Vec<&str> = gates
                .as_array()
                .unwrap()
                .iter()
                .map(|g| g["conditionType"].as_str().unwrap())
                .collect();
            assert!(types.contains(&"mlmodel.dev/validated"), "{types:?}");
            assert_eq!(
                types
                    .iter()
                    .filter(|t| **t == "mlmodel.dev/validated")
                    .count(),
                1
            );
        }
    }

    #[test]
    fn malformed_output_is_invalid() {
        let labels = BTreeMap::new();
        let host = HostAdditions {
            selector: NO_SELECTOR,
            images: &TEST_IMAGES,
            namespace: "ns",
            labels: &labels,
            owner: None,
            readiness_gate: None,
            credentials_secret: None,
        };
        let err = check(
            "p",
            Step::Serve,
            &["{not json".to_string()],
            1 << 20,
            &host,
            &Allowances::default(),
        )
        .unwrap_err();
        assert_eq!(err.reason().as_str(), "InvalidPluginOutput");
        assert!(
            err.to_string().contains("object #1") && err.to_string().contains("not JSON"),
            "{err}"
        );
        for bad in [
            json!([1]),
            json!({"kind": "ConfigMap"}),
            obj("v1", "ConfigMap", "Bad_Name"),
            obj("v1", "ConfigMap", ""),
        ] {
            assert_eq!(
                run(Step::Serve, std::slice::from_ref(&bad))
                    .unwrap_err()
                    .reason()
                    .as_str(),
                "InvalidPluginOutput",
                "{bad}"
            );
        }
        let twice = [obj("v1", "ConfigMap", "c"), obj("v1", "ConfigMap", "c")];
        assert!(
            run(Step::Serve, &twice)
                .unwrap_err()
                .to_string()
                .contains("twice")
        );
        let big = vec!["x".repeat(100); 2];
        assert!(check("p", Step::Serve, &big, 150, &host, &Allowances::default()).is_err());
        let out = run(Step::Serve, &[obj("v1", "ConfigMap", "c")]).unwrap();
        assert!(out[0].metadata.owner_references.is_some());
        let none = check(
            "p",
            Step::Serve,
            &[obj("v1", "ConfigMap", "c").to_string()],
            1 << 20,
            &host,
            &Allowances::default(),
        )
        .unwrap();
        assert!(
            none[0].metadata.owner_references.is_none(),
            "no uid, no owner reference"
        );
    }

    #[test]
    fn objects_that_break_their_kubernetes_type_are_invalid_naming_the_field() {
        let pod = "/spec/template/spec";
        let cases: Vec<(Step, Value, &str)> = vec![
            (
                Step::Serve,
                {
                    let mut d = deployment();
                    d["spec"]["replicas"] = json!("two");
                    d
                },
                "spec.replicas: invalid type: string \"two\", expected an integer (int32)",
            ),
            (
                Step::Serve,
                {
                    let mut d = deployment();
                    d.pointer_mut(pod).unwrap()["containers"] = json!({"name": "c", "image": "i"});
                    d
                },
                "spec.template.spec.containers: invalid type: map, expected a list",
            ),
            (
                Step::Serve,
                {
                    let mut d = deployment();
                    d.pointer_mut(pod).unwrap()["containers"][0]["env"] =
                        json!([{"name": "A", "value": 5}]);
                    d
                },
                "spec.template.spec.containers[0].env[0].value: invalid type: integer `5`, expected a string",
            ),
            (
                Step::Expose,
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
                "spec": {"ports": [{"port": "eighty"}]}}),
                "spec.ports[0].port",
            ),
            (
                Step::Download,
                json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": "v"}, "spec": {"accessModes": "ReadWriteOnce"}}),
                "spec.accessModes",
            ),
            (
                Step::Serve,
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
                "data": {"n": 1}}),
                "data.n",
            ),
            (
                Step::Download,
                {
                    let mut j = job();
                    j["spec"]["backoffLimit"] = json!(true);
                    j
                },
                "spec.backoffLimit",
            ),
            (
                Step::Serve,
                json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "p", "labels": ["a"]}, "spec": {"containers": []}}),
                "metadata.labels",
            ),
        ];
        for (step, object, want) in cases {
            let err = run(step, std::slice::from_ref(&object)).unwrap_err();
            assert_eq!(err.reason().as_str(), "InvalidPluginOutput", "{err}");
            assert!(err.to_string().contains(want), "want {want:?} in: {err}");
        }
        // Numbers are valid quantities, int-or-string ports take either, unknown fields pass.
        let mut d = deployment();
        let c = &mut d.pointer_mut(pod).unwrap()["containers"][0];
        c["resources"] = json!({"requests": {"cpu": 1, "memory": "64Mi"}});
        c["ports"] = json!([{"name": "http", "containerPort": 8080}]);
        c["readinessProbe"] = json!({"httpGet": {"port": "http"}});
        c["someFutureField"] = json!({"x": 1});
        d["spec"]["replicas"] = json!(2);
        assert!(run(Step::Serve, &[d]).is_ok());
    }

    /// A Deployment whose pod meets the restricted standard, for the attacks to break.
    fn deployment() -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"template": {"spec": {
                "securityContext": {"runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{"name": "c", "image": "i", "securityContext": {
                    "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}}]}}}})
    }

    fn job() -> Value {
        let mut j = deployment();
        j["apiVersion"] = json!("batch/v1");
        j["kind"] = json!("Job");
        j["metadata"]["name"] = json!("j");
        j
    }

    /// What a pod reaches is the admin's (least authority, round two): a plugin cannot mount,
    /// read into its environment or pull with any Secret of the namespace. The one exception is
    /// the model's own `credentialsSecretRef` in the download step (the downloader's
    /// credentials); the admin may open the rest per plugin (`secrets`).
    #[test]
    fn a_plugin_reaches_no_secret_but_the_models_credentials_in_the_download() {
        let labels = BTreeMap::new();
        let host = |credentials: Option<&'static str>| HostAdditions {
            selector: NO_SELECTOR,
            images: &TEST_IMAGES,
            namespace: "ns",
            labels: &labels,
            owner: None,
            readiness_gate: None,
            credentials_secret: credentials,
        };
        let with = |base: Value, pointer: &str, field: &str, v: Value| {
            let mut o = base;
            o.pointer_mut(pointer).unwrap()[field] = v;
            o
        };
        let pod = "/spec/template/spec";
        let c0 = "/spec/template/spec/containers/0";
        let attacks = [
            (
                "a secret volume",
                with(
                    deployment(),
                    pod,
                    "volumes",
                    json!([{"name": "s", "secret": {"secretName": "db-password"}}]),
                ),
            ),
            (
                "a projected secret",
                with(
                    deployment(),
                    pod,
                    "volumes",
                    json!([{"name": "s", "projected": {"sources": [{"secret": {"name": "db-password"}}]}}]),
                ),
            ),
            (
                "a CSI secret",
                with(
                    deployment(),
                    pod,
                    "volumes",
                    json!([{"name": "s", "csi": {"driver": "d", "nodePublishSecretRef": {"name": "db-password"}}}]),
                ),
            ),
            (
                "envFrom",
                with(
                    deployment(),
                    c0,
                    "envFrom",
                    json!([{"secretRef": {"name": "db-password"}}]),
                ),
            ),
            (
                "env valueFrom",
                with(
                    deployment(),
                    c0,
                    "env",
                    json!([{"name": "P", "valueFrom": {"secretKeyRef": {"name": "db-password", "key": "p"}}}]),
                ),
            ),
            (
                "imagePullSecrets",
                with(
                    deployment(),
                    pod,
                    "imagePullSecrets",
                    json!([{"name": "db-password"}]),
                ),
            ),
        ];
        for (what, object) in &attacks {
            for step in [Step::Serve, Step::Download] {
                let object = if step == Step::Download {
                    let mut j = object.clone();
                    j["apiVersion"] = json!("batch/v1");
                    j["kind"] = json!("Job");
                    j
                } else {
                    object.clone()
                };
                let err = check(
                    "p",
                    step,
                    &[object.to_string()],
                    1 << 20,
                    &host(Some("creds")),
                    &Allowances::default(),
                )
                .expect_err(what);
                let message = err.message();
                assert_eq!(
                    err.reason().as_str(),
                    "ForbiddenPluginOutput",
                    "{what}: {message}"
                );
                assert!(message.contains("\"db-password\""), "{what}: {message}");
            }
            // The admin opened Secrets to this plugin.
            let open = Allowances {
                secrets: true,
                ..Default::default()
            };
            assert!(
                check(
                    "p",
                    Step::Serve,
                    &[object.to_string()],
                    1 << 20,
                    &host(None),
                    &open
                )
                .is_ok(),
                "{what}"
            );
        }
        // The model's own credentials, in the download step only.
        let mut download = job();
        download.pointer_mut(c0).unwrap()["envFrom"] = json!([{"secretRef": {"name": "creds"}}]);
        assert!(
            check(
                "p",
                Step::Download,
                &[download.to_string()],
                1 << 20,
                &host(Some("creds")),
                &Allowances::default()
            )
            .is_ok()
        );
        let mut serve = deployment();
        serve.pointer_mut(c0).unwrap()["envFrom"] = json!([{"secretRef": {"name": "creds"}}]);
        assert!(
            check(
                "p",
                Step::Serve,
                &[serve.to_string()],
                1 << 20,
                &host(None),
                &Allowances::default()
            )
            .is_err()
        );
    }

    #[test]
    fn the_plugin_attacks_of_the_trust_issue_are_refused() {
        let pod = "/spec/template/spec";
        let attacks: Vec<(&str, Step, Value)> = vec![
            ("privileged", Step::Serve, {
                let mut d = deployment();
                d.pointer_mut(pod).unwrap()["containers"][0]["securityContext"]["privileged"] =
                    json!(true);
                d
            }),
            ("hostPath", Step::Serve, {
                let mut d = deployment();
                d.pointer_mut(pod).unwrap()["volumes"] =
                    json!([{"name": "root", "hostPath": {"path": "/"}}]);
                d
            }),
            ("hostNetwork", Step::Serve, {
                let mut d = deployment();
                d.pointer_mut(pod).unwrap()["hostNetwork"] = json!(true);
                d
            }),
            ("hostPID", Step::Serve, {
                let mut d = deployment();
                d.pointer_mut(pod).unwrap()["hostPID"] = json!(true);
                d
            }),
            ("must not add NET_ADMIN", Step::Serve, {
                let mut d = deployment();
                d.pointer_mut(pod).unwrap()["containers"][0]["securityContext"]["capabilities"]["add"] =
                    json!(["NET_ADMIN"]);
                d
            }),
            ("serviceAccountName \"admin\"", Step::Serve, {
                let mut d = deployment();
                d.pointer_mut(pod).unwrap()["serviceAccountName"] = json!("admin");
                d.pointer_mut(pod).unwrap()["automountServiceAccountToken"] = json!(true);
                d
            }),
            ("nodeName", Step::Serve, {
                let mut d = deployment();
                d.pointer_mut(pod).unwrap()["nodeName"] = json!("control-plane");
                d
            }),
            (
                "externalIPs",
                Step::Expose,
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
                "spec": {"externalIPs": ["1.2.3.4"], "ports": [{"port": 80}]}}),
            ),
            (
                "LoadBalancer",
                Step::Expose,
                json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
                "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}}),
            ),
            (
                "spec.volumeName",
                Step::Download,
                json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": "v"}, "spec": {"volumeName": "someone-elses-pv"}}),
            ),
            (
                "spec.dataSource",
                Step::Download,
                json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "metadata": {"name": "v"}, "spec": {"dataSource": {"kind": "PersistentVolumeClaim", "name": "secrets"}}}),
            ),
            (
                "runAsNonRoot",
                Step::Download,
                json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j"},
                "spec": {"template": {"spec": {"containers": [{"name": "c", "securityContext": {
                    "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]},
                    "seccompProfile": {"type": "RuntimeDefault"}}}]}}}}),
            ),
        ];
        for (rule, step, object) in attacks {
            let err = run(step, std::slice::from_ref(&object)).unwrap_err();
            assert_eq!(
                err.reason().as_str(),
                "ForbiddenPluginOutput",
                "{rule}: {err}"
            );
            assert!(err.to_string().contains(rule), "{rule}: {err}");
        }
        assert!(run(Step::Serve, &[deployment()]).is_ok());
    }

    #[test]
    fn the_admin_can_widen_service_accounts_and_service_types_per_plugin() {
        let labels = BTreeMap::new();
        let host = HostAdditions {
            selector: NO_SELECTOR,
            images: &TEST_IMAGES,
            namespace: "ns",
            labels: &labels,
            owner: None,
            readiness_gate: None,
            credentials_secret: None,
        };
        let mut d = deployment();
        d.pointer_mut("/spec/template/spec").unwrap()["serviceAccountName"] = json!("reader");
        let lb = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"},
            "spec": {"type": "LoadBalancer"}});
        let allow = Allowances {
            service_accounts: true,
            service_types: vec!["LoadBalancer".into()],
            ..Allowances::default()
        };
        assert!(check("p", Step::Serve, &[d.to_string()], 1 << 20, &host, &allow).is_ok());
        assert!(check("p", Step::Expose, &[lb.to_string()], 1 << 20, &host, &allow).is_ok());
        // Widening one rule leaves the others: still no privileged pod.
        d.pointer_mut("/spec/template/spec").unwrap()["hostNetwork"] = json!(true);
        assert!(check("p", Step::Serve, &[d.to_string()], 1 << 20, &host, &allow).is_err());
    }

    /// The corpus of hostile plugin outputs (host/tests/hostile/plugin-outputs.json): each is
    /// refused with its reason, and the refusal names the rule.
    #[test]
    fn every_hostile_output_of_the_corpus_is_refused() {
        let corpus: Vec<Value> =
            serde_json::from_str(include_str!("../../tests/hostile/plugin-outputs.json")).unwrap();
        assert!(corpus.len() >= 30, "{} cases", corpus.len());
        for case in corpus {
            let step = match case["step"].as_str().unwrap() {
                "download" => Step::Download,
                "serve" => Step::Serve,
                _ => Step::Expose,
            };
            let objects = case["objects"].as_array().unwrap();
            let name = case["name"].as_str().unwrap();
            let err = run(step, objects).expect_err(name);
            assert_eq!(
                err.reason().as_str(),
                case["reason"].as_str().unwrap(),
                "{name}: {err}"
            );
            let expect = case["expect"].as_str().unwrap();
            assert!(err.to_string().contains(expect), "{name}: {err}");
        }
    }

    #[test]
    fn a_disruption_budget_of_the_models_pods_that_lets_one_go_passes() {
        let budget = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "b"}, "spec": {"maxUnavailable": 1,
            "selector": {"matchLabels": {"app.kubernetes.io/instance": "m", "extra": "x"}}}});
        let objs = run(Step::Serve, &[budget]).expect("allowed");
        assert_eq!(objs[0].metadata.namespace.as_deref(), Some("ns"));
    }

    #[test]
    fn images_run_only_as_the_admin_allows() {
        for (pattern, image, allowed) in [
            ("ghcr.io/acme/", "ghcr.io/acme/triton:24.1", true),
            ("ghcr.io/acme/", "ghcr.io/acme-evil/triton:1", false),
            ("ghcr.io/acme/triton", "ghcr.io/acme/triton:24.1", true),
            ("ghcr.io/acme/triton", "ghcr.io/acme/triton@sha256:ab", true),
            ("ghcr.io/acme/triton", "ghcr.io/acme/tritonx:1", false),
            (
                "ghcr.io/acme/triton:24.1",
                "ghcr.io/acme/triton:24.2",
                false,
            ),
            (
                "ghcr.io/acme/triton:24.1",
                "ghcr.io/acme/triton:24.1@sha256:ab",
                false,
            ),
            ("localhost:5000/m", "localhost:5000/m:1", true),
            ("localhost:5000/m:1", "localhost:5000/m:1", true),
            ("", "anything", false),
            ("*", "anything:1", true),
        ] {
            assert_eq!(
                image_allowed(pattern, image),
                allowed,
                "{pattern} / {image}"
            );
        }
        let mut d = deployment();
        d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("evil.example/miner:1");
        let err = run(Step::Serve, std::slice::from_ref(&d)).unwrap_err();
        assert_eq!(err.reason().as_str(), "ForbiddenPluginOutput");
        assert!(err.to_string().contains("evil.example/miner:1"), "{err}");
        let (_, allow) = Allowances::parse_flag("p:image=evil.example/").unwrap();
        check(
            "p",
            Step::Serve,
            &[d.to_string()],
            1 << 20,
            &bare_host(),
            &allow,
        )
        .expect("allowed");
    }

    #[test]
    fn the_admin_opens_tolerations_and_classes_per_plugin() {
        let mut d = deployment();
        d["spec"]["template"]["spec"]["tolerations"] =
            json!([{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]);
        d["spec"]["template"]["spec"]["priorityClassName"] = json!("models-high");
        d["spec"]["template"]["spec"]["runtimeClassName"] = json!("gvisor");
        let err = run(Step::Serve, std::slice::from_ref(&d))
            .unwrap_err()
            .to_string();
        for rule in [
            "toleration=KEY",
            "priority-class=models-high",
            "runtime-class=gvisor",
        ] {
            assert!(err.contains(rule), "{rule}: {err}");
        }
        let (_, allow) = Allowances::parse_flag(
            "p:toleration=gpu,priority-class=models-high,runtime-class=gvisor",
        )
        .unwrap();
        check(
            "p",
            Step::Serve,
            &[d.to_string()],
            1 << 20,
            &bare_host(),
            &allow,
        )
        .expect("allowed");
        // A node lost, with a bound: open to every plugin.
        let mut lost = deployment();
        lost["spec"]["template"]["spec"]["tolerations"] = json!([{"key": "node.kubernetes.io/unreachable",
            "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60}]);
        run(Step::Serve, &[lost]).expect("a bounded lost-node toleration");
    }

    #[test]
    fn the_downloader_is_not_sent_elsewhere_by_any_name_or_a_config_map() {
        for var in [
            "AWS_ENDPOINT_URL_STS",
            "https_proxy",
            "HTTPS_PROXY",
            "all_proxy",
            "SSL_CERT_FILE",
            "AWS_ENDPOINT_URL_SSO",
        ] {
            let mut j = job();
            j["spec"]["template"]["spec"]["containers"][0]["env"] =
                json!([{"name": var, "value": "http://attacker.example"}]);
            let err = run(Step::Download, &[j]).unwrap_err().to_string();
            assert!(
                err.contains(var) && err.contains("elsewhere"),
                "{var}: {err}"
            );
        }
        let mut j = job();
        j["spec"]["template"]["spec"]["containers"][0]["envFrom"] =
            json!([{"configMapRef": {"name": "endpoints"}}]);
        let err = run(Step::Download, &[j]).unwrap_err().to_string();
        assert!(err.contains("ConfigMap \"endpoints\""), "{err}");
        assert!(!is_endpoint_variable("AWS_REGION"));
    }

    #[test]
    fn plugin_allow_flags_parse() {
        let (name, allow) =
            Allowances::parse_flag("triton:service-accounts,service-type=LoadBalancer").unwrap();
        assert_eq!(name, "triton");
        assert!(allow.service_accounts && !allow.downloader_overrides);
        assert_eq!(allow.service_types, ["LoadBalancer"]);
        let (_, more) = Allowances::parse_flag("triton:downloader-overrides").unwrap();
        let both = allow.merge(more);
        assert!(both.service_accounts && both.downloader_overrides);
        for bad in [
            "triton",
            ":service-accounts",
            "triton:",
            "triton:root",
            "triton:service-type=Host",
        ] {
            assert!(Allowances::parse_flag(bad).is_err(), "{bad}");
        }
    }
}
