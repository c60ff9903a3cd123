//! Owned objects decoded with only what a reconcile reads.
//!
//! The caches hold every owned object for the operator's life, and each watch event (a pod's
//! status moving, a Job's counts) is decoded in full before the cache takes it. Most of an
//! object is never read: the managed fields (a nested map per writer), a pod's spec, the pod
//! template of a Job or Deployment, a ConfigMap's data. [`Slim`] decodes an object of kind `K`
//! into `K` itself but skips those unread (serde's `IgnoredAny`: parsed, nothing allocated), so
//! the rest of the controller keeps the Kubernetes types.
use crate::api::metadata_skipping_managed_fields;
use k8s_openapi::api::{
    apps::v1::{Deployment, DeploymentSpec, DeploymentStatus},
    batch::v1::{Job, JobSpec, JobStatus},
    core::v1::{ConfigMap, PersistentVolumeClaim, Pod, PodStatus, Service},
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::{Deserialize, Deserializer};

/// A kind whose objects the caches keep in part: what of its spec and status is decoded, and
/// how the object is put back together from them.
pub trait Slimmed: Sized {
    type Spec: DeserializeOwned;
    type Status: DeserializeOwned;
    fn assemble(
        metadata: ObjectMeta,
        spec: Option<Self::Spec>,
        status: Option<Self::Status>,
    ) -> Self;
}

/// An object of kind `K` decoded with only what the controller reads (see [`Slimmed`]).
#[derive(Clone, Debug)]
pub struct Slim<K>(pub K);

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
        Ok(Slim(K::assemble(p.metadata, p.spec, p.status)))
    }
}

impl<K: k8s_openapi::Resource> k8s_openapi::Resource for Slim<K> {
    const API_VERSION: &'static str = K::API_VERSION;
    const GROUP: &'static str = K::GROUP;
    const KIND: &'static str = K::KIND;
    const VERSION: &'static str = K::VERSION;
    const URL_PATH_SEGMENT: &'static str = K::URL_PATH_SEGMENT;
    type Scope = K::Scope;
}

impl<K: k8s_openapi::Metadata<Ty = ObjectMeta>> k8s_openapi::Metadata for Slim<K> {
    type Ty = ObjectMeta;
    fn metadata(&self) -> &ObjectMeta {
        self.0.metadata()
    }
    fn metadata_mut(&mut self) -> &mut ObjectMeta {
        self.0.metadata_mut()
    }
}

/// A pod: its status (phase, conditions, container states: the failure taxonomy and the
/// download's report); no spec.
impl Slimmed for Pod {
    type Spec = IgnoredAny;
    type Status = PodStatus;
    fn assemble(metadata: ObjectMeta, _: Option<IgnoredAny>, status: Option<PodStatus>) -> Self {
        Pod {
            metadata,
            spec: None,
            status,
        }
    }
}

/// What a reconcile reads of a Job's spec: its retries.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobSpecRead {
    backoff_limit: Option<i32>,
}

impl Slimmed for Job {
    type Spec = JobSpecRead;
    type Status = JobStatus;
    fn assemble(
        metadata: ObjectMeta,
        spec: Option<JobSpecRead>,
        status: Option<JobStatus>,
    ) -> Self {
        Job {
            metadata,
            spec: spec.map(|s| JobSpec {
                backoff_limit: s.backoff_limit,
                ..JobSpec::default()
            }),
            status,
        }
    }
}

/// What a reconcile reads of a Deployment's spec: the replicas it wants.
#[derive(Deserialize)]
pub struct DeploymentSpecRead {
    replicas: Option<i32>,
}

impl Slimmed for Deployment {
    type Spec = DeploymentSpecRead;
    type Status = DeploymentStatus;
    fn assemble(
        metadata: ObjectMeta,
        spec: Option<DeploymentSpecRead>,
        status: Option<DeploymentStatus>,
    ) -> Self {
        Deployment {
            metadata,
            spec: spec.map(|s| DeploymentSpec {
                replicas: s.replicas,
                ..DeploymentSpec::default()
            }),
            status,
        }
    }
}

/// Kinds of which a reconcile reads only the metadata: that they exist, whose they are, the
/// hash they were applied with.
macro_rules! metadata_only {
    ($($kind:ty),*) => {$(
        impl Slimmed for $kind {
            type Spec = IgnoredAny;
            type Status = IgnoredAny;
            fn assemble(metadata: ObjectMeta, _: Option<IgnoredAny>, _: Option<IgnoredAny>) -> Self {
                <$kind>::default().with_metadata(metadata)
            }
        }
    )*};
}

trait WithMetadata {
    fn with_metadata(self, metadata: ObjectMeta) -> Self;
}

impl<K: k8s_openapi::Metadata<Ty = ObjectMeta>> WithMetadata for K {
    fn with_metadata(mut self, metadata: ObjectMeta) -> Self {
        *self.metadata_mut() = metadata;
        self
    }
}

metadata_only!(PersistentVolumeClaim, Service, ConfigMap);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meta() -> serde_json::Value {
        json!({"name": "p", "namespace": "ns", "uid": "u", "labels": {"a": "b"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "x", "uid": "o", "controller": true}],
            "managedFields": [{"manager": "kubelet", "operation": "Update", "fieldsType": "FieldsV1",
                "fieldsV1": {"f:status": {"f:phase": {}}}}]})
    }

    #[test]
    fn a_pod_keeps_its_metadata_and_status_only() {
        let pod: Slim<Pod> = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod", "metadata": meta(),
            "spec": {"containers": [{"name": "c", "image": "i"}]},
            "status": {"phase": "Running", "containerStatuses": [{"name": "c", "ready": true,
                "restartCount": 2, "image": "i", "imageID": ""}]}}))
        .unwrap();
        let pod = pod.0;
        assert_eq!(pod.metadata.name.as_deref(), Some("p"));
        assert_eq!(pod.metadata.labels.unwrap()["a"], "b");
        assert_eq!(pod.metadata.owner_references.unwrap()[0].uid, "o");
        assert_eq!(pod.metadata.managed_fields, None);
        assert!(pod.spec.is_none());
        let status = pod.status.unwrap();
        assert_eq!(status.phase.as_deref(), Some("Running"));
        assert_eq!(status.container_statuses.unwrap()[0].restart_count, 2);
    }

    #[test]
    fn a_job_and_a_deployment_keep_what_the_plan_reads() {
        let job: Slim<Job> = serde_json::from_value(json!({
            "metadata": meta(), "spec": {"backoffLimit": 3, "template": {"spec": {"containers": []}}},
            "status": {"failed": 1}}))
        .unwrap();
        assert_eq!(job.0.spec.unwrap().backoff_limit, Some(3));
        assert_eq!(job.0.status.unwrap().failed, Some(1));
        let dep: Slim<Deployment> = serde_json::from_value(json!({
            "metadata": meta(), "spec": {"replicas": 2, "selector": {}, "template": {}},
            "status": {"readyReplicas": 1}}))
        .unwrap();
        assert_eq!(dep.0.spec.unwrap().replicas, Some(2));
        assert_eq!(dep.0.status.unwrap().ready_replicas, Some(1));
    }

    #[test]
    fn metadata_only_kinds_keep_their_metadata() {
        let cm: Slim<ConfigMap> = serde_json::from_value(json!({
            "metadata": meta(), "data": {"big": "x".repeat(1000)}}))
        .unwrap();
        assert_eq!(cm.0.metadata.uid.as_deref(), Some("u"));
        assert_eq!(cm.0.data, None);
        let svc: Slim<Service> = serde_json::from_value(json!({
            "metadata": meta(), "spec": {"ports": [{"port": 80}]}}))
        .unwrap();
        assert!(svc.0.spec.is_none());
    }
}
