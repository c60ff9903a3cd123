//! Everything the controller remembers of a model between reconciles, in one entry per model
//! with one `forget`: its consecutive failures (the backoff), the status it last wrote
//! (`written.rs`), the objects it applied lately (`applied.rs`) and its last renders
//! (`last_renders.rs`). Those files say what each part means; this one only holds them (and
//! imports none of them).
//!
//! An entry leaves when its model is deleted (`forget`) or, for a model that left the cache
//! unseen (no finalizer: no reconcile sees the deletion), at the next sweep against the cache
//! (`retain`, every minute): nothing of a deleted model stays for the process's life.
use super::brief::Brief;
use crate::api::{MLModel, MLModelStatus};
use crate::interpret::ObjectKey;
use crate::plugins::Step;
use kube::ResourceExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A status written, over which version of which model.
pub(super) struct Write {
    pub(super) uid: Option<String>,
    pub(super) over: Option<String>,
    pub(super) status: MLModelStatus,
    pub(super) at: Instant,
}

/// What is remembered of one model.
#[derive(Default)]
pub(super) struct Remembered {
    /// Consecutive failed reconciles.
    pub(super) failures: u32,
    /// The status last written, over which version.
    pub(super) write: Option<Write>,
    /// When a change of phase not written yet was first seen.
    pub(super) pending: Option<Instant>,
    /// Objects applied lately: the hash each carried, and when.
    pub(super) applied: HashMap<ObjectKey, (String, Instant)>,
    /// The last render of each step, by its input digest.
    pub(super) renders: HashMap<Step, (String, Vec<Brief>)>,
}

/// The controller's memory of every model, by [`key`]. Cheap to clone (shared).
#[derive(Clone, Default)]
pub struct Memory(Arc<Mutex<HashMap<String, Remembered>>>);

/// A model's key: its uid (a model recreated under the same name is another model), or its
/// namespace and name when it has none yet.
pub fn key(model: &MLModel) -> String {
    model.uid().unwrap_or_else(|| {
        format!(
            "{}/{}",
            model.namespace().unwrap_or_default(),
            model.name_any()
        )
    })
}

impl Memory {
    /// `f` over the entry of `key`, made empty if there is none.
    pub(super) fn with<R>(&self, key: &str, f: impl FnOnce(&mut Remembered) -> R) -> R {
        let mut map = self.0.lock().expect("not poisoned");
        match map.get_mut(key) {
            Some(entry) => f(entry),
            None => f(map.entry(key.to_string()).or_default()),
        }
    }

    /// `f` over the entry of `key`, if there is one (a read makes no entry).
    pub(super) fn peek<R>(&self, key: &str, f: impl FnOnce(&Remembered) -> R) -> Option<R> {
        self.0.lock().expect("not poisoned").get(key).map(f)
    }

    /// `f` over the entry of `key`, if there is one, to change it.
    pub(super) fn update<R>(&self, key: &str, f: impl FnOnce(&mut Remembered) -> R) -> Option<R> {
        self.0.lock().expect("not poisoned").get_mut(key).map(f)
    }

    /// Forgets everything remembered of the model `key`.
    pub fn forget(&self, key: &str) {
        self.0.lock().expect("not poisoned").remove(key);
    }

    /// Keeps only the models whose key `keep` says.
    pub fn retain(&self, mut keep: impl FnMut(&str) -> bool) {
        self.0
            .lock()
            .expect("not poisoned")
            .retain(|key, _| keep(key));
    }

    /// How many models are remembered.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.0.lock().expect("not poisoned").len()
    }
}
