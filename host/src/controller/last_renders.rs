//! Each model's last render of each step, in brief, by the digest of its input.
//!
//! A model is reconciled on every change of what it owns (a pod turning ready, a Job's status),
//! and each reconcile walks every step. When a step's input is what it was (same plugin bytes,
//! same model and context documents) the plugin would render the same objects: if they are all
//! in the cache with the hash they were applied with, there is nothing to call or apply. What the
//! controller reads of a render afterwards (kinds, names, hashes, a Service's port) is kept here,
//! not the objects.
use super::brief::Brief;
use super::memory::Memory;
use crate::plugins::Step;

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
    use crate::controller::brief::name_of;
    use crate::interpret::ObjectKey;
    use kube::api::DynamicObject;

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
