//! The status this operator last wrote per model.
//!
//! The model cache can lag the operator's own status write: a reconcile in that window (woken by
//! a Job or pod change) would compare against the status before the write, and count a finished
//! download or publish an Event a second time. Each write is remembered with the
//! `resourceVersion` it was made over; while the cache still holds exactly that version, the
//! remembered status is the truth. Once the cache moves on (our write, or anyone's), it wins again.
//! The time of each write paces the writes that may be coalesced, and the time a change not yet
//! written was first seen holds it back a little, so that a step passed in passing (Deploying,
//! when the server is ready a moment later) is written with the next one.

use crate::api::{MLModel, MLModelStatus};
use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Entries older than this say nothing any more (far beyond the coalescing window); they are
/// dropped when the map grows, so models deleted unseen cost nothing for long.
const KEEP: Duration = Duration::from_secs(60);
const PRUNE_ABOVE: usize = 1024;

struct Write {
    uid: Option<String>,
    over: Option<String>,
    status: MLModelStatus,
    at: Instant,
}

#[derive(Default)]
struct Maps {
    writes: HashMap<ObjectRef<MLModel>, Write>,
    /// When a change of phase not written yet was first seen, by model.
    pending: HashMap<ObjectRef<MLModel>, Instant>,
}

#[derive(Clone, Default)]
pub struct Written(Arc<Mutex<Maps>>);

impl Written {
    /// The status the model has now: the cached one, or ours if the cache has not caught up.
    pub fn current(&self, model: &MLModel) -> Option<MLModelStatus> {
        let map = self.0.lock().expect("not poisoned");
        match map.writes.get(&ObjectRef::from_obj(model)) {
            Some(w) if w.uid == model.uid() && w.over == model.resource_version() => {
                Some(w.status.clone())
            }
            _ => model.status.clone(),
        }
    }

    /// How long ago this operator last wrote the model's status, if it did lately.
    pub fn since_last(&self, model: &MLModel) -> Option<Duration> {
        let map = self.0.lock().expect("not poisoned");
        map.writes
            .get(&ObjectRef::from_obj(model))
            .filter(|w| w.uid == model.uid())
            .map(|w| w.at.elapsed())
    }

    /// Remembers a status written over the model as cached.
    pub fn record(&self, model: &MLModel, status: &MLModelStatus) {
        let mut map = self.0.lock().expect("not poisoned");
        if map.writes.len() > PRUNE_ABOVE {
            map.writes.retain(|_, w| w.at.elapsed() < KEEP);
        }
        let key = ObjectRef::from_obj(model);
        map.pending.remove(&key);
        map.writes.insert(
            key,
            Write {
                uid: model.uid(),
                over: model.resource_version(),
                status: status.clone(),
                at: Instant::now(),
            },
        );
    }

    /// How long the change of phase not written yet has been seen (zero when seen first now).
    pub fn pending_for(&self, model: &MLModel) -> Duration {
        let mut map = self.0.lock().expect("not poisoned");
        if map.pending.len() > PRUNE_ABOVE {
            map.pending.retain(|_, at| at.elapsed() < KEEP);
        }
        map.pending
            .entry(ObjectRef::from_obj(model))
            .or_insert_with(Instant::now)
            .elapsed()
    }

    /// The status is what was written: nothing is pending.
    pub fn settled(&self, model: &MLModel) {
        let mut map = self.0.lock().expect("not poisoned");
        if !map.pending.is_empty() {
            map.pending.remove(&ObjectRef::from_obj(model));
        }
    }

    /// Keeps only the models `keep` says.
    pub fn retain(&self, mut keep: impl FnMut(&ObjectRef<MLModel>) -> bool) {
        let mut map = self.0.lock().expect("not poisoned");
        map.writes.retain(|key, _| keep(key));
        map.pending.retain(|key, _| keep(key));
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        let map = self.0.lock().expect("not poisoned");
        map.writes.len() + map.pending.len()
    }

    pub fn forget(&self, model: &MLModel) {
        let mut map = self.0.lock().expect("not poisoned");
        let key = ObjectRef::from_obj(model);
        map.writes.remove(&key);
        map.pending.remove(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::Phase;

    fn model(uid: &str, rv: &str, phase: Phase) -> MLModel {
        let mut m: MLModel = serde_json::from_value(serde_json::json!({
            "apiVersion": "mlmodel.dev/v1alpha1", "kind": "MLModel",
            "metadata": {"name": "m", "namespace": "ns", "uid": uid, "resourceVersion": rv},
            "spec": {"modelURL": "https://example.com/m", "framework": "tensorflow"},
        }))
        .unwrap();
        m.status = Some(MLModelStatus {
            phase: Some(phase),
            ..Default::default()
        });
        m
    }

    fn phase(s: Option<MLModelStatus>) -> Option<Phase> {
        s.and_then(|s| s.phase)
    }

    #[test]
    fn a_stale_cache_reads_as_the_status_written_over_it() {
        let w = Written::default();
        let cached = model("u1", "10", Phase::Downloading);
        w.record(
            &cached,
            &MLModelStatus {
                phase: Some(Phase::Deploying),
                ..Default::default()
            },
        );
        assert_eq!(phase(w.current(&cached)), Some(Phase::Deploying));
    }

    #[test]
    fn a_newer_cache_wins() {
        let w = Written::default();
        let cached = model("u1", "10", Phase::Downloading);
        w.record(
            &cached,
            &MLModelStatus {
                phase: Some(Phase::Deploying),
                ..Default::default()
            },
        );
        let caught_up = model("u1", "11", Phase::Ready);
        assert_eq!(phase(w.current(&caught_up)), Some(Phase::Ready));
        assert!(
            w.since_last(&caught_up).is_some(),
            "the time of the write is kept"
        );
    }

    #[test]
    fn a_recreated_model_of_the_same_name_is_not_confused_with_the_old() {
        let w = Written::default();
        w.record(
            &model("u1", "10", Phase::Pending),
            &MLModelStatus {
                phase: Some(Phase::Ready),
                ..Default::default()
            },
        );
        let new = model("u2", "10", Phase::Pending);
        assert_eq!(phase(w.current(&new)), Some(Phase::Pending));
    }
}
