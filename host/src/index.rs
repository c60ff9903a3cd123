//! Which cached objects belong to which model, kept in step with a reflector's watch events, so
//! that a reconcile finds its model's objects without scanning every cache: with N models a
//! scan made a flood of reconciles cost O(N^2).
use kube::Resource;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::{Arc, RwLock};

/// Objects by a key derived from each object (its controller's uid, or its model label).
pub struct Index<K: Resource<DynamicType = ()>> {
    key: fn(&K) -> Option<String>,
    state: Arc<RwLock<State<K>>>,
}

impl<K: Resource<DynamicType = ()>> Clone for Index<K> {
    fn clone(&self) -> Self {
        Index {
            key: self.key,
            state: self.state.clone(),
        }
    }
}

struct Maps<K: Resource<DynamicType = ()>> {
    by_key: HashMap<String, HashSet<ObjectRef<K>>>,
    key_of: HashMap<ObjectRef<K>, String>,
}

impl<K: Resource<DynamicType = ()>> Default for Maps<K> {
    fn default() -> Self {
        Maps {
            by_key: HashMap::new(),
            key_of: HashMap::new(),
        }
    }
}

impl<K: Resource<DynamicType = ()>> Maps<K>
where
    ObjectRef<K>: Hash + Eq,
{
    fn insert(&mut self, r: ObjectRef<K>, key: Option<String>) {
        self.remove(&r);
        if let Some(key) = key {
            self.by_key
                .entry(key.clone())
                .or_default()
                .insert(r.clone());
            self.key_of.insert(r, key);
        }
    }

    fn remove(&mut self, r: &ObjectRef<K>) {
        if let Some(old) = self.key_of.remove(r)
            && let Some(refs) = self.by_key.get_mut(&old)
        {
            refs.remove(r);
            if refs.is_empty() {
                self.by_key.remove(&old);
            }
        }
    }
}

struct State<K: Resource<DynamicType = ()>> {
    live: Maps<K>,
    /// Built during a re-list and swapped in when it ends, as the reflector does with its store.
    relist: Option<Maps<K>>,
}

impl<K> Index<K>
where
    K: Resource<DynamicType = ()> + Clone,
    ObjectRef<K>: Hash + Eq,
{
    pub fn new(key: fn(&K) -> Option<String>) -> Self {
        Index {
            key,
            state: Arc::new(RwLock::new(State {
                live: Maps::default(),
                relist: None,
            })),
        }
    }

    /// Follows one watch event (call it for every event, before the store sees it).
    pub fn apply(&self, event: &watcher::Event<K>) {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        match event {
            watcher::Event::Init => state.relist = Some(Maps::default()),
            watcher::Event::InitApply(obj) => state
                .relist
                .get_or_insert_with(Maps::default)
                .insert(ObjectRef::from_obj(obj), (self.key)(obj)),
            watcher::Event::InitDone => {
                if let Some(relist) = state.relist.take() {
                    state.live = relist;
                }
            }
            watcher::Event::Apply(obj) => {
                state.live.insert(ObjectRef::from_obj(obj), (self.key)(obj))
            }
            watcher::Event::Delete(obj) => state.live.remove(&ObjectRef::from_obj(obj)),
        }
    }

    pub fn get(&self, key: &str) -> Vec<ObjectRef<K>> {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        state
            .live
            .by_key
            .get(key)
            .map(|refs| refs.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// The uid of an object's controlling owner.
pub fn controller_uid<K: Resource>(obj: &K) -> Option<String> {
    obj.meta()
        .owner_references
        .as_ref()?
        .iter()
        .find(|r| r.controller == Some(true))
        .map(|r| r.uid.clone())
}

/// `namespace/value` of the `mlmodel.dev/model` label.
pub fn model_label<K: Resource>(obj: &K) -> Option<String> {
    let ns = obj.meta().namespace.as_deref()?;
    let label = obj.meta().labels.as_ref()?.get(crate::api::LABEL_MODEL)?;
    Some(format!("{ns}/{label}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

    fn cm(name: &str, owner: &str) -> ConfigMap {
        let mut c = ConfigMap::default();
        c.metadata.name = Some(name.into());
        c.metadata.namespace = Some("ns".into());
        c.metadata.owner_references = Some(vec![OwnerReference {
            uid: owner.into(),
            controller: Some(true),
            ..Default::default()
        }]);
        c
    }

    fn names(index: &Index<ConfigMap>, key: &str) -> Vec<String> {
        let mut v: Vec<String> = index.get(key).into_iter().map(|r| r.name).collect();
        v.sort();
        v
    }

    #[test]
    fn follows_applies_deletes_and_relists() {
        let index = Index::new(controller_uid::<ConfigMap>);
        index.apply(&watcher::Event::Init);
        index.apply(&watcher::Event::InitApply(cm("a", "u1")));
        index.apply(&watcher::Event::InitApply(cm("b", "u1")));
        assert!(
            names(&index, "u1").is_empty(),
            "not before the list is done"
        );
        index.apply(&watcher::Event::InitDone);
        assert_eq!(names(&index, "u1"), ["a", "b"]);

        index.apply(&watcher::Event::Apply(cm("c", "u2")));
        index.apply(&watcher::Event::Apply(cm("b", "u2")));
        assert_eq!(names(&index, "u1"), ["a"]);
        assert_eq!(names(&index, "u2"), ["b", "c"]);
        index.apply(&watcher::Event::Delete(cm("c", "u2")));
        assert_eq!(names(&index, "u2"), ["b"]);

        // A re-list after a gap replaces everything: what was deleted meanwhile disappears.
        index.apply(&watcher::Event::Init);
        index.apply(&watcher::Event::InitApply(cm("a", "u1")));
        index.apply(&watcher::Event::InitDone);
        assert_eq!(names(&index, "u1"), ["a"]);
        assert!(names(&index, "u2").is_empty());
    }
}
