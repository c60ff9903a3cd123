//! Owned objects as the caches keep them: only what a reconcile reads.
//!
//! The caches hold every owned object for the operator's life, and each watch event (a pod's
//! status moving, a Job's counts) is decoded before the cache takes it. Most of an object is
//! never read: the managed fields, a pod's spec, the pod template of a Job or Deployment, a
//! ConfigMap's data, the labels other controllers add, a pod's addresses. And the Kubernetes
//! types hold every field inline: a `Pod` takes 2.2 KiB, a `Job` 2.6 KiB, before any of it is
//! filled. [`Slim`] keeps an object's metadata, the few spec fields read and its status, and is
//! decoded skipping the rest (serde's `IgnoredAny`: parsed, nothing allocated); the fields it
//! keeps have the Kubernetes names, so code reads `pod.status`, `job.spec` as usual.
use crate::api::{LABEL_MANAGED_BY, metadata_skipping_managed_fields};
use k8s_openapi::api::{
    apps::v1::{Deployment, DeploymentStatus},
    batch::v1::{Job, JobStatus},
    core::v1::{ConfigMap, PersistentVolumeClaim, Pod, PodStatus, Service},
    policy::v1::PodDisruptionBudget,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Deserializer, Serialize};
use std::fmt::Debug;
use std::marker::PhantomData;

/// The prefix of the labels and annotations the controller reads (its own).
const OURS: &str = "mlmodel.dev/";

/// A kind whose objects the caches keep in part: what of its spec and status is decoded, and
/// what of that is dropped once decoded.
pub trait Slimmed: Sized {
    type Spec: DeserializeOwned + Clone + Debug + Send + Sync;
    type Status: DeserializeOwned + Clone + Debug + Send + Sync;
    /// Drops what of a decoded status nothing reads.
    fn trim(_status: &mut Self::Status) {}
}

/// An object of kind `K` with only what the controller reads (see [`Slimmed`]).
pub struct Slim<K: Slimmed> {
    pub metadata: ObjectMeta,
    pub spec: Option<K::Spec>,
    pub status: Option<K::Status>,
    kind: PhantomData<fn() -> K>,
}

pub type CachedPod = Slim<Pod>;
pub type CachedJob = Slim<Job>;
pub type CachedDeployment = Slim<Deployment>;
pub type CachedPvc = Slim<PersistentVolumeClaim>;
pub type CachedService = Slim<Service>;
pub type CachedConfigMap = Slim<ConfigMap>;
pub type CachedPdb = Slim<PodDisruptionBudget>;

impl<K: Slimmed> Slim<K> {
    pub fn new(metadata: ObjectMeta, spec: Option<K::Spec>, status: Option<K::Status>) -> Self {
        let mut s = Slim {
            metadata,
            spec,
            status,
            kind: PhantomData,
        };
        s.trim();
        s
    }

    fn trim(&mut self) {
        let m = &mut self.metadata;
        m.generate_name = None;
        if let Some(labels) = &mut m.labels {
            labels.retain(|k, _| k.starts_with(OURS) || k == LABEL_MANAGED_BY);
        }
        if let Some(annotations) = &mut m.annotations {
            annotations.retain(|k, _| k.starts_with(OURS));
        }
        if let Some(status) = &mut self.status {
            K::trim(status);
        }
    }
}

impl<K: Slimmed + Serialize> Slim<K> {
    /// What the cache would keep of `obj` (as if it came from a watch).
    pub fn of(obj: &K) -> Self {
        serde_json::to_value(obj)
            .and_then(serde_json::from_value)
            .expect("a Kubernetes object reads back")
    }
}

impl<K: Slimmed> Clone for Slim<K> {
    fn clone(&self) -> Self {
        Slim {
            metadata: self.metadata.clone(),
            spec: self.spec.clone(),
            status: self.status.clone(),
            kind: PhantomData,
        }
    }
}

impl<K: Slimmed> Debug for Slim<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slim")
            .field("metadata", &self.metadata)
            .field("spec", &self.spec)
            .field("status", &self.status)
            .finish()
    }
}

#[derive(Deserialize)]
#[serde(bound(deserialize = "S: DeserializeOwned, T: DeserializeOwned"))]
struct Parts<S, T> {
    #[serde(default, deserialize_with = "metadata_skipping_managed_fields")]
    metadata: ObjectMeta,
    #[serde(default)]
    spec: Option<S>,
    #[serde(default)]
    status: Option<T>,
}

impl<'de, K: Slimmed> Deserialize<'de> for Slim<K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let p = Parts::<K::Spec, K::Status>::deserialize(d)?;
        Ok(Slim::new(p.metadata, p.spec, p.status))
    }
}

impl<K: Slimmed + k8s_openapi::Resource> k8s_openapi::Resource for Slim<K> {
    const API_VERSION: &'static str = K::API_VERSION;
    const GROUP: &'static str = K::GROUP;
    const KIND: &'static str = K::KIND;
    const VERSION: &'static str = K::VERSION;
    const URL_PATH_SEGMENT: &'static str = K::URL_PATH_SEGMENT;
    type Scope = K::Scope;
}

impl<K: Slimmed + k8s_openapi::Resource> k8s_openapi::Metadata for Slim<K> {
    type Ty = ObjectMeta;
    fn metadata(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

/// A part decoded to nothing (skipped unread).
#[derive(Clone, Debug, Default)]
pub struct Unread;

impl<'de> Deserialize<'de> for Unread {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        IgnoredAny::deserialize(d).map(|_| Unread)
    }
}

/// A pod: its status (phase, the scheduling condition, container states: the failure taxonomy
/// and the download's report); no spec, no addresses, no image digests or mounts.
impl Slimmed for Pod {
    type Spec = Unread;
    type Status = PodStatus;
    fn trim(s: &mut PodStatus) {
        s.host_ip = None;
        s.host_ips = None;
        // pod_ip stays: `spec.validation` asks the pod itself.
        s.pod_ips = None;
        s.qos_class = None;
        s.start_time = None;
        // Init container states stay: per-pod storage downloads in them.
        s.ephemeral_container_statuses = None;
        s.resource_claim_statuses = None;
        if let Some(conditions) = &mut s.conditions {
            conditions.retain(|c| {
                matches!(
                    c.type_.as_str(),
                    "PodScheduled" | "ContainersReady" | "Ready" | "DisruptionTarget"
                ) || c.type_ == crate::conditions::VALIDATED_GATE
            });
        }
        let statuses = s.container_statuses.iter_mut().flatten();
        for cs in statuses.chain(s.init_container_statuses.iter_mut().flatten()) {
            cs.image_id = String::new();
            cs.container_id = None;
            cs.volume_mounts = None;
            cs.resources = None;
            cs.allocated_resources = None;
            cs.allocated_resources_status = None;
            cs.user = None;
        }
    }
}

/// What a reconcile reads of a Job's spec: its retries.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobSpecRead {
    pub backoff_limit: Option<i32>,
}

impl Slimmed for Job {
    type Spec = JobSpecRead;
    type Status = JobStatus;
    fn trim(s: &mut JobStatus) {
        s.uncounted_terminated_pods = None;
    }
}

/// What a reconcile reads of a Deployment's spec: the replicas it wants.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct DeploymentSpecRead {
    pub replicas: Option<i32>,
}

impl Slimmed for Deployment {
    type Spec = DeploymentSpecRead;
    type Status = DeploymentStatus;
}

/// Kinds of which a reconcile reads only the metadata: that they exist, whose they are, the
/// hash they were applied with.
macro_rules! metadata_only {
    ($($kind:ty),*) => {$(
        impl Slimmed for $kind {
            type Spec = Unread;
            type Status = Unread;
        }
    )*};
}

metadata_only!(
    PersistentVolumeClaim,
    Service,
    ConfigMap,
    PodDisruptionBudget
);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meta() -> serde_json::Value {
        json!({"name": "p", "namespace": "ns", "uid": "u", "resourceVersion": "7",
            "generateName": "p-",
            "labels": {"mlmodel.dev/model": "m", "app.kubernetes.io/managed-by": "mlmodel-operator",
                "batch.kubernetes.io/controller-uid": "0b1c", "pod-template-hash": "5d8f"},
            "annotations": {"mlmodel.dev/applied-hash": "h", "kubectl.kubernetes.io/restartedAt": "now"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "x", "uid": "o", "controller": true}],
            "managedFields": [{"manager": "kubelet", "operation": "Update", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:status": {"f:phase": {}}}}]})
    }

    #[test]
    fn a_pod_keeps_its_metadata_and_the_status_the_taxonomy_reads() {
        let pod: CachedPod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": meta(),
            "spec": {"containers": [{"name": "c", "image": "i"}]},
            "status": {"phase": "Running", "podIP": "10.0.0.1", "hostIP": "10.1.0.1",
                "conditions": [{"type": "Ready", "status": "True"},
                    {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"},
                    {"type": "ContainersReady", "status": "True"},
                    {"type": "mlmodel.dev/validated", "status": "False"},
                    {"type": "Initialized", "status": "True"}],
                "containerStatuses": [{"name": "c", "ready": true, "restartCount": 2,
                    "image": "i", "imageID": "sha256:abc", "containerID": "containerd://x",
                    "volumeMounts": [{"name": "model", "mountPath": "/models"}],
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}}))
        .unwrap();
        let m = &pod.metadata;
        assert_eq!(m.name.as_deref(), Some("p"));
        assert_eq!(
            m.resource_version.as_deref(),
            Some("7"),
            "the watch resumes from it"
        );
        let labels: Vec<_> = m.labels.as_ref().unwrap().keys().cloned().collect();
        assert_eq!(
            labels,
            ["app.kubernetes.io/managed-by", "mlmodel.dev/model"]
        );
        let annotations: Vec<_> = m.annotations.as_ref().unwrap().keys().cloned().collect();
        assert_eq!(annotations, ["mlmodel.dev/applied-hash"]);
        assert_eq!(m.owner_references.as_ref().unwrap()[0].uid, "o");
        assert_eq!(m.managed_fields, None);
        assert_eq!(m.generate_name, None);
        let status = pod.status.unwrap();
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert_eq!(
            status.pod_ip.as_deref(),
            Some("10.0.0.1"),
            "validation asks it"
        );
        assert_eq!(status.host_ip, None);
        let conditions = status.conditions.unwrap();
        let types: Vec<&str> = conditions.iter().map(|c| c.type_.as_str()).collect();
        assert_eq!(
            types,
            [
                "Ready",
                "PodScheduled",
                "ContainersReady",
                "mlmodel.dev/validated"
            ]
        );
        assert_eq!(conditions[1].reason.as_deref(), Some("Unschedulable"));
        let cs = &status.container_statuses.unwrap()[0];
        assert_eq!(cs.restart_count, 2);
        assert_eq!(cs.image, "i", "named in an image pull failure");
        assert_eq!(cs.image_id, "");
        assert_eq!(cs.volume_mounts, None);
        let waiting = cs.state.as_ref().unwrap().waiting.as_ref().unwrap();
        assert_eq!(waiting.reason.as_deref(), Some("CrashLoopBackOff"));
    }

    #[test]
    fn a_job_and_a_deployment_keep_what_the_plan_reads() {
        let job: CachedJob = serde_json::from_value(json!({
            "metadata": meta(), "spec": {"backoffLimit": 3, "template": {"spec": {"containers": []}}},
            "status": {"failed": 1, "uncountedTerminatedPods": {"succeeded": ["u1"]}}}))
        .unwrap();
        assert_eq!(job.spec.unwrap().backoff_limit, Some(3));
        let status = job.status.unwrap();
        assert_eq!(status.failed, Some(1));
        assert_eq!(status.uncounted_terminated_pods, None);
        let dep: CachedDeployment = serde_json::from_value(json!({
            "metadata": meta(), "spec": {"replicas": 2, "selector": {}, "template": {}},
            "status": {"readyReplicas": 1}}))
        .unwrap();
        assert_eq!(dep.spec.unwrap().replicas, Some(2));
        assert_eq!(dep.status.unwrap().ready_replicas, Some(1));
    }

    #[test]
    fn metadata_only_kinds_keep_their_metadata() {
        let cm: CachedConfigMap = serde_json::from_value(json!({
            "metadata": meta(), "data": {"big": "x".repeat(1000)}}))
        .unwrap();
        assert_eq!(cm.metadata.uid.as_deref(), Some("u"));
        let svc: CachedService = serde_json::from_value(json!({
            "metadata": meta(), "spec": {"ports": [{"port": 80}]}}))
        .unwrap();
        assert_eq!(svc.metadata.name.as_deref(), Some("p"));
        assert_eq!(
            svc.metadata.labels.unwrap().len(),
            2,
            "only the labels read"
        );
    }

    #[test]
    fn a_cached_object_is_a_fraction_of_the_full_type() {
        assert!(size_of::<CachedPod>() * 2 < size_of::<Pod>());
        assert!(size_of::<CachedJob>() * 2 < size_of::<Job>());
        assert!(size_of::<CachedDeployment>() * 2 < size_of::<Deployment>());
        assert!(size_of::<CachedPvc>() * 2 < size_of::<PersistentVolumeClaim>());
    }

    #[test]
    fn a_full_object_reads_as_the_cache_would_keep_it() {
        let mut job = Job::default();
        job.metadata.name = Some("j".into());
        job.spec = Some(k8s_openapi::api::batch::v1::JobSpec {
            backoff_limit: Some(2),
            ..Default::default()
        });
        let cached = CachedJob::of(&job);
        assert_eq!(cached.metadata.name.as_deref(), Some("j"));
        assert_eq!(cached.spec.unwrap().backoff_limit, Some(2));
    }
}
