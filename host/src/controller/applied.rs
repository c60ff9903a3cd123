//! What this operator applied lately that its caches may not show yet (its part of the
//! [`Memory`]).
//!
//! A create is seen by the watch a little later; a reconcile woken in between (by another of the
//! model's objects) would find the object absent from the cache and create it again: a `409`, a
//! GET to check whose it is, and an apply, three requests for nothing. Each successful apply is
//! remembered by model, kind and name with the hash it carried; until the cache shows that hash,
//! or the entry is older than [`TRUST`], the object counts as applied.
use super::memory::Memory;
use crate::interpret::ObjectKey;
use std::time::{Duration, Instant};

/// How long an apply is trusted without the watch confirming it. Far beyond the watch's usual
/// lag (milliseconds to a second); after it, the next reconcile applies again (a lost watch event
/// or an object deleted meanwhile is then put right).
pub const TRUST: Duration = Duration::from_secs(20);

impl Memory {
    /// Remembers that the object `object` of the model `model` (its memory key) was applied
    /// with `hash`.
    pub fn record_apply(&self, model: &str, object: &ObjectKey, hash: &str) {
        self.with(model, |m| {
            m.applied.retain(|_, (_, at)| at.elapsed() < TRUST);
            m.applied
                .insert(object.clone(), (hash.to_string(), Instant::now()));
        })
    }

    /// If the object `object` of the model `model` was applied with `hash` within [`TRUST`]:
    /// how much longer that apply is trusted.
    pub fn apply_trusted_for(
        &self,
        model: &str,
        object: &ObjectKey,
        hash: &str,
    ) -> Option<Duration> {
        self.peek(model, |m| {
            let (h, at) = m.applied.get(object)?;
            let left = TRUST.checked_sub(at.elapsed())?;
            (h == hash && !left.is_zero()).then_some(left)
        })
        .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> ObjectKey {
        ObjectKey {
            kind: "Service".into(),
            name: name.into(),
        }
    }

    #[test]
    fn an_apply_is_trusted_for_its_hash_only() {
        let a = Memory::default();
        a.record_apply("u1", &key("svc"), "h1");
        assert!(a.apply_trusted_for("u1", &key("svc"), "h1").is_some());
        assert!(
            a.apply_trusted_for("u1", &key("svc"), "h2").is_none(),
            "changed since"
        );
        assert!(
            a.apply_trusted_for("u2", &key("svc"), "h1").is_none(),
            "another model"
        );
        assert!(a.apply_trusted_for("u1", &key("other"), "h1").is_none());
        let left = a.apply_trusted_for("u1", &key("svc"), "h1").unwrap();
        assert!(
            left <= TRUST && left > TRUST - Duration::from_secs(5),
            "{left:?}"
        );
    }

    #[test]
    fn a_deleted_model_is_forgotten() {
        let a = Memory::default();
        a.record_apply("u1", &key("svc"), "h1");
        a.record_apply("u2", &key("svc"), "h1");
        a.forget("u1");
        assert!(a.apply_trusted_for("u1", &key("svc"), "h1").is_none());
        assert!(a.apply_trusted_for("u2", &key("svc"), "h1").is_some());
    }
}
