//! Each model's last render of each step, in brief, by the digest of its input.
//!
//! A model is reconciled on every change of what it owns (a pod turning ready, a Job's status),
//! and each reconcile walks every step. When a step's input is what it was (same plugin bytes,
//! same model and context documents) the plugin would render the same objects: if they are all
//! in the cache with the hash they were applied with, there is nothing to call or apply. What the
//! controller reads of a render afterwards (kinds, names, hashes, a Service's port) is kept here,
//! not the objects.
use super::memory::Memory;
use crate::apply;
use crate::inference;
use crate::interpret::ObjectKey;
use crate::plugins::Step;
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

impl Memory {
    /// The last render of `step` for the model `model` (its memory key), if its input digest
    /// was `digest`.
    pub fn last_render(&self, model: &str, step: Step, digest: &str) -> Option<Vec<Brief>> {
        self.peek(model, |m| match m.renders.get(&step) {
            Some((d, briefs)) if d == digest => Some(briefs.clone()),
            _ => None,
        })
        .flatten()
    }

    pub fn record_render(&self, model: &str, step: Step, digest: String, briefs: Vec<Brief>) {
        self.with(model, |m| m.renders.insert(step, (digest, briefs)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brief(name: &str) -> Brief {
        Brief {
            key: ObjectKey {
                kind: "Service".into(),
                name: name.into(),
            },
            hash: "h".into(),
            port: Some(80),
            inference: None,
            http_port: None,
        }
    }

    #[test]
    fn a_render_is_kept_for_its_input_only() {
        let r = Memory::default();
        r.record_render("u1", Step::Expose, "d1".into(), vec![brief("svc")]);
        assert_eq!(
            r.last_render("u1", Step::Expose, "d1"),
            Some(vec![brief("svc")])
        );
        assert_eq!(
            r.last_render("u1", Step::Expose, "d2"),
            None,
            "the input changed"
        );
        assert_eq!(r.last_render("u1", Step::Serve, "d1"), None, "another step");
        assert_eq!(
            r.last_render("u2", Step::Expose, "d1"),
            None,
            "another model"
        );
        r.forget("u1");
        assert_eq!(r.last_render("u1", Step::Expose, "d1"), None);
    }

    #[test]
    fn a_brief_holds_what_the_controller_reads() {
        let svc: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "m"},
            "spec": {"ports": [{"name": "http", "port": 8501}]}}))
        .unwrap();
        let b = Brief::of(&svc, "h1".into());
        assert_eq!(b.key.kind, "Service");
        assert_eq!(b.key.name, "m");
        assert_eq!(b.port, Some(8501));
        assert_eq!(name_of(&[b], "Service").as_deref(), Some("m"));
    }
}
