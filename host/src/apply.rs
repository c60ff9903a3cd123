//! Applying what plugins rendered (server-side apply, one field manager) and deleting what the
//! plan no longer holds.
use crate::api::{LABEL_MODEL, LABEL_REVISION, LABEL_STEP, MANAGER};
use k8s_openapi::api::{
    apps::v1::Deployment,
    batch::v1::Job,
    core::v1::{ConfigMap, PersistentVolumeClaim, Pod, Service},
    policy::v1::PodDisruptionBudget,
};
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, Preconditions};
use kube::{Client, Resource};
use sha2::{Digest, Sha256};

/// Annotation holding a hash of what the host last applied, so an unchanged object costs no
/// API call.
pub const ANNOTATION_APPLIED_HASH: &str = "mlmodel.dev/applied-hash";
/// Annotation on pod templates naming the model (label values are too short for long names).
pub const ANNOTATION_MODEL_NAME: &str = "mlmodel.dev/model-name";

/// The kinds the host may apply (the union of every step's allow-list) and their API resources.
pub fn api_resource(kind: &str) -> Option<ApiResource> {
    Some(match kind {
        "PersistentVolumeClaim" => ApiResource::erase::<PersistentVolumeClaim>(&()),
        "Job" => ApiResource::erase::<Job>(&()),
        "ConfigMap" => ApiResource::erase::<ConfigMap>(&()),
        "PodDisruptionBudget" => ApiResource::erase::<PodDisruptionBudget>(&()),
        "Deployment" => ApiResource::erase::<Deployment>(&()),
        "Pod" => ApiResource::erase::<Pod>(&()),
        "Service" => ApiResource::erase::<Service>(&()),
        _ => return None,
    })
}

/// Kinds whose spec cannot change once created (a Job's template, a claim's volume): they are
/// created when missing and left alone otherwise. A new revision gets new ones.
pub fn create_only(kind: &str) -> bool {
    matches!(kind, "Job" | "PersistentVolumeClaim" | "Pod")
}

pub fn kind_of(obj: &DynamicObject) -> &str {
    obj.types
        .as_ref()
        .map(|t| t.kind.as_str())
        .unwrap_or_default()
}

/// Labels the pods of a workload so the controller can find them and map them to their model.
pub fn decorate_pod_template(
    obj: &mut DynamicObject,
    model_name: &str,
    model_label: &str,
    step: &str,
    revision: &str,
) {
    if !matches!(kind_of(obj), "Deployment" | "Job") {
        return;
    }
    let Some(template) = obj
        .data
        .pointer_mut("/spec/template")
        .and_then(|t| t.as_object_mut())
    else {
        return;
    };
    let meta = template
        .entry("metadata")
        .or_insert_with(|| serde_json::json!({}))
        .as_object_mut();
    let Some(meta) = meta else { return };
    let labels = meta
        .entry("labels")
        .or_insert_with(|| serde_json::json!({}));
    if let Some(labels) = labels.as_object_mut() {
        labels.insert(LABEL_MODEL.into(), model_label.into());
        labels.insert(LABEL_STEP.into(), step.into());
        labels.insert(LABEL_REVISION.into(), revision.into());
    }
    let annotations = meta
        .entry("annotations")
        .or_insert_with(|| serde_json::json!({}));
    if let Some(annotations) = annotations.as_object_mut() {
        annotations.insert(ANNOTATION_MODEL_NAME.into(), model_name.into());
    }
}

/// Stamps the object with the hash of its content and returns it.
pub fn stamp_hash(obj: &mut DynamicObject) -> String {
    obj.annotations_mut().remove(ANNOTATION_APPLIED_HASH);
    let json = serde_json::to_vec(&obj).expect("objects serialise");
    let hash = hex::encode(&Sha256::digest(&json)[..12]);
    obj.annotations_mut()
        .insert(ANNOTATION_APPLIED_HASH.into(), hash.clone());
    hash
}

trait AnnotationsMut {
    fn annotations_mut(&mut self) -> &mut std::collections::BTreeMap<String, String>;
}
impl AnnotationsMut for DynamicObject {
    fn annotations_mut(&mut self) -> &mut std::collections::BTreeMap<String, String> {
        self.meta_mut()
            .annotations
            .get_or_insert_with(Default::default)
    }
}

/// Server-side apply of one object in its namespace.
pub async fn apply(client: &Client, ns: &str, obj: &DynamicObject) -> Result<(), kube::Error> {
    let kind = kind_of(obj).to_string();
    let ar = api_resource(&kind).expect("the output policy only lets known kinds through");
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
    let name = obj.metadata.name.clone().unwrap_or_default();
    api.patch(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(obj),
    )
    .await?;
    Ok(())
}

/// A resourceVersion no object has (etcd revisions never get near it). Server-side apply treats
/// a resourceVersion in the applied object as a precondition on an existing object and ignores it
/// on a create, so an apply that carries this one creates the object or fails with 409 Conflict:
/// create-if-absent in one request, where a GET then an apply took two.
const NO_OBJECT_HAS: &str = "18446744073709551615";

/// Creates one object with server-side apply, unless an object of that name exists already:
/// `Ok(false)` then, and nothing is written.
pub async fn create(client: &Client, ns: &str, obj: &DynamicObject) -> Result<bool, kube::Error> {
    let mut obj = obj.clone();
    obj.metadata.resource_version = Some(NO_OBJECT_HAS.into());
    match apply(client, ns, &obj).await {
        Ok(()) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether an object `kind/name` exists in `ns`, and if so the uid of its controller (the owner
/// reference with `controller: true`), `None` when nothing controls it.
pub async fn existing_controller(
    client: &Client,
    ns: &str,
    kind: &str,
    name: &str,
) -> Result<Option<Option<String>>, kube::Error> {
    let ar = api_resource(kind).expect("the output policy only lets known kinds through");
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
    Ok(api.get_opt(name).await?.map(|obj| {
        obj.metadata
            .owner_references
            .into_iter()
            .flatten()
            .find(|o| o.controller == Some(true))
            .map(|o| o.uid)
    }))
}

/// Deletes one object, only if it is still the one with `uid` (the one the cache saw this model
/// own): an object someone recreated under that name since is left alone. Its dependents (a
/// Job's pods) go too. Already gone, or replaced, is fine.
pub async fn delete(
    client: &Client,
    ns: &str,
    kind: &str,
    name: &str,
    uid: &str,
) -> Result<(), kube::Error> {
    let Some(ar) = api_resource(kind) else {
        return Ok(());
    };
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
    let params = DeleteParams::background().preconditions(Preconditions {
        uid: Some(uid.to_string()),
        resource_version: None,
    });
    match api.delete(name, &params).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        // The UID precondition failed: the name now belongs to another object.
        Err(kube::Error::Api(e)) if e.code == 409 => {
            tracing::info!(%kind, %name, "not pruned: the object was replaced since");
            Ok(())
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_templates_are_labelled_for_the_controller() {
        let mut obj: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"template": {"spec": {"containers": []}}}
        }))
        .unwrap();
        decorate_pod_template(&mut obj, "my.model", "my-model-1234", "serve", "abc");
        let meta = &obj.data["spec"]["template"]["metadata"];
        assert_eq!(meta["labels"][LABEL_REVISION], "abc");
        assert_eq!(meta["labels"][LABEL_STEP], "serve");
        assert_eq!(meta["annotations"][ANNOTATION_MODEL_NAME], "my.model");
    }

    #[test]
    fn hash_changes_with_content_only() {
        let make = |image: &str| -> DynamicObject {
            serde_json::from_value(serde_json::json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"image": image}})).unwrap()
        };
        let (mut a, mut b, mut c) = (make("x"), make("x"), make("y"));
        let h = stamp_hash(&mut a);
        assert_eq!(h, stamp_hash(&mut b));
        assert_eq!(h, stamp_hash(&mut a), "restamping is stable");
        assert_ne!(h, stamp_hash(&mut c));
    }
}
