//! What this operator applied lately that its caches may not show yet.
//!
//! A create is seen by the watch a little later; a reconcile woken in between (by another of the
//! model's objects) would find the object absent from the cache and create it again: a `409`, a
//! GET to check whose it is, and an apply, three requests for nothing. Each successful apply is
//! remembered by model, kind and name with the hash it carried; until the cache shows that hash,
//! or the entry is older than [`TRUST`], the object counts as applied.
use crate::interpret::ObjectKey;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long an apply is trusted without the watch confirming it. Far beyond the watch's usual
/// lag (milliseconds to a second); after it, the next reconcile applies again (a lost watch event
/// or an object deleted meanwhile is then put right).
pub const TRUST: Duration = Duration::from_secs(20);
/// Entries are dropped when the map grows past this, keeping only those still trusted.
const PRUNE_ABOVE: usize = 4096;

type Entries = HashMap<(String, ObjectKey), (String, Instant)>;

#[derive(Clone, Default)]
pub struct Applied(Arc<Mutex<Entries>>);

impl Applied {
    /// Remembers that the object `key` of the model `uid` was applied with `hash`.
    pub fn record(&self, uid: &str, key: &ObjectKey, hash: &str) {
        let mut map = self.0.lock().expect("not poisoned");
        if map.len() > PRUNE_ABOVE {
            map.retain(|_, (_, at)| at.elapsed() < TRUST);
        }
        map.insert(
            (uid.to_string(), key.clone()),
            (hash.to_string(), Instant::now()),
        );
    }

    /// If the object `key` of the model `uid` was applied with `hash` within [`TRUST`]: how much
    /// longer that apply is trusted.
    pub fn trusted_for(&self, uid: &str, key: &ObjectKey, hash: &str) -> Option<Duration> {
        let map = self.0.lock().expect("not poisoned");
        let (h, at) = map.get(&(uid.to_string(), key.clone()))?;
        let left = TRUST.checked_sub(at.elapsed())?;
        (h == hash && !left.is_zero()).then_some(left)
    }

    /// Forgets what the model `uid` applied (it was deleted).
    /// Keeps only the models whose uid `keep` says.
    pub fn retain(&self, mut keep: impl FnMut(&str) -> bool) {
        self.0
            .lock()
            .expect("not poisoned")
            .retain(|(u, _), _| keep(u));
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.0.lock().expect("not poisoned").len()
    }

    pub fn forget(&self, uid: &str) {
        self.0
            .lock()
            .expect("not poisoned")
            .retain(|(u, _), _| u != uid);
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
        let a = Applied::default();
        a.record("u1", &key("svc"), "h1");
        assert!(a.trusted_for("u1", &key("svc"), "h1").is_some());
        assert!(
            a.trusted_for("u1", &key("svc"), "h2").is_none(),
            "changed since"
        );
        assert!(
            a.trusted_for("u2", &key("svc"), "h1").is_none(),
            "another model"
        );
        assert!(a.trusted_for("u1", &key("other"), "h1").is_none());
        let left = a.trusted_for("u1", &key("svc"), "h1").unwrap();
        assert!(
            left <= TRUST && left > TRUST - Duration::from_secs(5),
            "{left:?}"
        );
    }

    #[test]
    fn a_deleted_model_is_forgotten() {
        let a = Applied::default();
        a.record("u1", &key("svc"), "h1");
        a.record("u2", &key("svc"), "h1");
        a.forget("u1");
        assert!(a.trusted_for("u1", &key("svc"), "h1").is_none());
        assert!(a.trusted_for("u2", &key("svc"), "h1").is_some());
    }
}
