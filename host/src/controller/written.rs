//! The status this operator last wrote per model (its part of the [`Memory`]).
//!
//! The model cache can lag the operator's own status write: a reconcile in that window (woken by
//! a Job or pod change) would compare against the status before the write, and count a finished
//! download or publish an Event a second time. Each write is remembered with the
//! `resourceVersion` it was made over; while the cache still holds exactly that version, the
//! remembered status is the truth. Once the cache moves on (our write, or anyone's), it wins again.
//! The time of each write paces the writes that may be coalesced, and the time a change not yet
//! written was first seen holds it back a little, so that a step passed in passing (Deploying,
//! when the server is ready a moment later) is written with the next one.

use super::memory::{Memory, Write, key};
use crate::api::{MLModel, MLModelStatus};
use kube::ResourceExt;
use std::time::{Duration, Instant};

impl Memory {
    /// The status the model has now: the cached one, or ours if the cache has not caught up.
    pub fn current_status(&self, model: &MLModel) -> Option<MLModelStatus> {
        let ours = self.peek(&key(model), |m| match &m.write {
            Some(w) if w.uid == model.uid() && w.over == model.resource_version() => {
                Some(w.status.clone())
            }
            _ => None,
        });
        ours.flatten().or_else(|| model.status.clone())
    }

    /// How long ago this operator last wrote the model's status, if it did.
    pub fn since_last_write(&self, model: &MLModel) -> Option<Duration> {
        self.peek(&key(model), |m| {
            m.write
                .as_ref()
                .filter(|w| w.uid == model.uid())
                .map(|w| w.at.elapsed())
        })
        .flatten()
    }

    /// Remembers a status written over the model as cached.
    pub fn record_write(&self, model: &MLModel, status: &MLModelStatus) {
        self.with(&key(model), |m| {
            m.pending = None;
            m.write = Some(Write {
                uid: model.uid(),
                over: model.resource_version(),
                status: status.clone(),
                at: Instant::now(),
            });
        })
    }

    /// How long the change of phase not written yet has been seen (zero when seen first now).
    pub fn pending_for(&self, model: &MLModel) -> Duration {
        self.with(&key(model), |m| {
            m.pending.get_or_insert_with(Instant::now).elapsed()
        })
    }

    /// The status is what was written: nothing is pending.
    pub fn settled(&self, model: &MLModel) {
        self.update(&key(model), |m| m.pending = None);
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
        let w = Memory::default();
        let cached = model("u1", "10", Phase::Downloading);
        w.record_write(
            &cached,
            &MLModelStatus {
                phase: Some(Phase::Deploying),
                ..Default::default()
            },
        );
        assert_eq!(phase(w.current_status(&cached)), Some(Phase::Deploying));
    }

    #[test]
    fn a_newer_cache_wins() {
        let w = Memory::default();
        let cached = model("u1", "10", Phase::Downloading);
        w.record_write(
            &cached,
            &MLModelStatus {
                phase: Some(Phase::Deploying),
                ..Default::default()
            },
        );
        let caught_up = model("u1", "11", Phase::Ready);
        assert_eq!(phase(w.current_status(&caught_up)), Some(Phase::Ready));
        assert!(
            w.since_last_write(&caught_up).is_some(),
            "the time of the write is kept"
        );
    }

    #[test]
    fn a_recreated_model_of_the_same_name_is_not_confused_with_the_old() {
        let w = Memory::default();
        w.record_write(
            &model("u1", "10", Phase::Pending),
            &MLModelStatus {
                phase: Some(Phase::Ready),
                ..Default::default()
            },
        );
        let new = model("u2", "10", Phase::Pending);
        assert_eq!(phase(w.current_status(&new)), Some(Phase::Pending));
    }
}
