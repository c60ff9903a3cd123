//! What the controller reads of a rendered object (kinds, names, hashes, a Service's port, a
//! serve workload's declarations): kept in the memory in place of the objects.
use crate::apply;
use crate::inference;
use crate::interpret::ObjectKey;
use kube::api::DynamicObject;

/// What the controller reads of one rendered object.
#[derive(Clone, Debug, PartialEq)]
pub struct Brief {
    pub key: ObjectKey,
    /// The applied hash it carries (`mlmodel.dev/applied-hash`).
    pub hash: String,
    /// A Service's first port.
    pub port: Option<i64>,
    /// How clients call the server, if the object (a serve workload) declares it.
    pub inference: Option<inference::Declared>,
    /// A workload's container port named `http` (where `spec.validation` asks its pods).
    pub http_port: Option<i64>,
}

impl Brief {
    /// `obj` stamped with `hash`.
    pub fn of(obj: &DynamicObject, hash: String) -> Self {
        Brief {
            key: ObjectKey {
                kind: apply::kind_of(obj).to_string(),
                name: obj.metadata.name.clone().unwrap_or_default(),
            },
            hash,
            port: obj
                .data
                .pointer("/spec/ports/0/port")
                .and_then(|p| p.as_i64()),
            inference: inference::declared(obj.metadata.annotations.as_ref()),
            http_port: obj
                .data
                .pointer("/spec/template/spec/containers")
                .and_then(|c| c.as_array())
                .into_iter()
                .flatten()
                .flat_map(|c| c["ports"].as_array().into_iter().flatten())
                .find(|p| p["name"] == "http")
                .and_then(|p| p["containerPort"].as_i64()),
        }
    }
}

/// The name of the first object of `kind`.
pub fn name_of(briefs: &[Brief], kind: &str) -> Option<String> {
    briefs
        .iter()
        .find(|b| b.key.kind == kind)
        .map(|b| b.key.name.clone())
}
