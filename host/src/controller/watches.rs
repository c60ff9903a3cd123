//! What the controller watches besides the models: one label-selected, shared reflector per kind
//! the operator owns (the controller is triggered from the same watches), their caches indexed by
//! owner, and the view of one model's objects that a reconcile reads.
use crate::api::{LABEL_MANAGED_BY, LABEL_MODEL, MANAGER, MLModel};
use crate::apply::ANNOTATION_APPLIED_HASH;
use crate::cached::{
    CachedConfigMap, CachedDeployment, CachedJob, CachedPdb, CachedPod, CachedPvc, CachedService,
};
use crate::index::{self, Index};
use crate::interpret::{self, ObjectKey};
use crate::names;
use futures::{StreamExt, future::BoxFuture};
use kube::api::Api;
use kube::runtime::reflector::{self, ReflectHandle, Store};
use kube::runtime::utils::{Backoff, ResetTimerBackoff};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use std::sync::Arc;
use std::time::Duration;
use tracing::warn;

/// `Api::namespaced` in `ns`, or `Api::all` when the operator watches every namespace.
pub fn scoped<K>(client: &Client, ns: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    K::DynamicType: Default,
{
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// A watch cache and its index by owner (or, for pods, by model label).
#[derive(Clone)]
pub struct Cache<K: Resource<DynamicType = ()> + 'static> {
    pub store: Store<K>,
    pub index: Index<K>,
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Cache<K> {
    fn get(&self, key: &str) -> Vec<Arc<K>> {
        self.index
            .get(key)
            .iter()
            .filter_map(|r| self.store.get(r))
            .collect()
    }
}

/// Caches of what the operator owns, shared by every reconcile.
#[derive(Clone)]
pub struct Stores {
    pub pvcs: Cache<CachedPvc>,
    pub jobs: Cache<CachedJob>,
    pub deployments: Cache<CachedDeployment>,
    pub services: Cache<CachedService>,
    pub configmaps: Cache<CachedConfigMap>,
    pub pdbs: Cache<CachedPdb>,
    pub pods: Cache<CachedPod>,
}

/// The subscriptions to the shared reflectors that the controller is triggered from.
pub struct Triggers {
    pub pvcs: ReflectHandle<CachedPvc>,
    pub jobs: ReflectHandle<CachedJob>,
    pub deployments: ReflectHandle<CachedDeployment>,
    pub services: ReflectHandle<CachedService>,
    pub configmaps: ReflectHandle<CachedConfigMap>,
    pub pdbs: ReflectHandle<CachedPdb>,
    pub pods: ReflectHandle<CachedPod>,
}

/// The watches of one scope (a namespace, or all): the caches, the subscriptions, and the
/// streams that keep both filled (they must be polled; none of them ends while all is well).
pub struct Watches {
    pub stores: Stores,
    pub triggers: Triggers,
    pub drivers: Vec<BoxFuture<'static, ()>>,
}

impl Watches {
    /// Our objects (by label) in `ns`, or in every namespace.
    pub fn start(client: &Client, ns: Option<&str>) -> Watches {
        let owned = format!("{LABEL_MANAGED_BY}={MANAGER}");
        let pvcs = SharedWatch::start(scoped(client, ns), &owned, index::controller_uid);
        let jobs = SharedWatch::start(scoped(client, ns), &owned, index::controller_uid);
        let deployments = SharedWatch::start(scoped(client, ns), &owned, index::controller_uid);
        let services = SharedWatch::start(scoped(client, ns), &owned, index::controller_uid);
        let configmaps = SharedWatch::start(scoped(client, ns), &owned, index::controller_uid);
        let pdbs = SharedWatch::start(scoped(client, ns), &owned, index::controller_uid);
        let pods = SharedWatch::start(scoped(client, ns), LABEL_MODEL, index::model_label);
        Watches {
            drivers: vec![
                pvcs.driver,
                jobs.driver,
                deployments.driver,
                services.driver,
                configmaps.driver,
                pdbs.driver,
                pods.driver,
            ],
            stores: Stores {
                pvcs: pvcs.cache,
                jobs: jobs.cache,
                deployments: deployments.cache,
                services: services.cache,
                configmaps: configmaps.cache,
                pdbs: pdbs.cache,
                pods: pods.cache,
            },
            triggers: Triggers {
                pvcs: pvcs.trigger,
                jobs: jobs.trigger,
                deployments: deployments.trigger,
                services: services.trigger,
                configmaps: configmaps.trigger,
                pdbs: pdbs.trigger,
                pods: pods.trigger,
            },
        }
    }
}

/// A reflector whose cache holds only our objects (by label), decoded with only what a
/// reconcile reads ([`crate::cached::Slim`]), plus the stream that keeps it filled and the subscription the
/// controller is triggered from.
struct SharedWatch<K: Resource<DynamicType = ()> + Clone + 'static> {
    cache: Cache<K>,
    driver: BoxFuture<'static, ()>,
    trigger: ReflectHandle<K>,
}

impl<K> SharedWatch<K>
where
    K: Resource<DynamicType = ()>
        + serde::de::DeserializeOwned
        + Clone
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    fn start(api: Api<K>, selector: &str, key: fn(&K) -> Option<String>) -> Self {
        let (store, writer) = reflector::store_shared(1024);
        let trigger = writer
            .subscribe()
            .expect("shared stores can be subscribed to");
        let cfg = watcher::Config::default().labels(selector);
        let index = Index::new(key);
        let indexer = index.clone();
        let driver = Box::pin(
            watcher(api, cfg)
                .backoff(watch_backoff())
                .inspect(move |ev| {
                    if let Ok(ev) = ev {
                        indexer.apply(ev);
                    }
                })
                .reflect_shared(writer)
                .for_each(|ev| async move {
                    if let Err(e) = ev {
                        warn!(error = %e, kind = %K::kind(&()), "watch error");
                    }
                }),
        );
        SharedWatch {
            cache: Cache { store, index },
            driver,
            trigger,
        }
    }
}

/// Everything one model owns now, by kind and name, with its revision label.
pub struct Owned {
    pub pvcs: Vec<Arc<CachedPvc>>,
    pub jobs: Vec<Arc<CachedJob>>,
    pub deployments: Vec<Arc<CachedDeployment>>,
    pub services: Vec<Arc<CachedService>>,
    pub configmaps: Vec<Arc<CachedConfigMap>>,
    pub pdbs: Vec<Arc<CachedPdb>>,
    pub pods: Vec<Arc<CachedPod>>,
}

/// One owned object as the plan sees it: kind and name, revision label, applied hash.
pub struct OwnedObject {
    pub key: ObjectKey,
    /// Pruning deletes only this object, not one recreated under its name since.
    pub uid: String,
    pub revision: Option<String>,
    pub applied_hash: Option<String>,
}

impl Owned {
    pub fn read(stores: &Stores, model: &MLModel) -> Self {
        let label = names::label_value(&model.name_any());
        let pods_key = format!("{}/{label}", model.namespace().unwrap_or_default());
        Owned {
            pvcs: owned_by(&stores.pvcs, model),
            jobs: owned_by(&stores.jobs, model),
            deployments: owned_by(&stores.deployments, model),
            services: owned_by(&stores.services, model),
            configmaps: owned_by(&stores.configmaps, model),
            pdbs: owned_by(&stores.pdbs, model),
            pods: stores.pods.get(&pods_key),
        }
    }

    /// Every owned object the host applies.
    pub fn inventory(&self) -> Vec<OwnedObject> {
        fn add<K: Resource>(out: &mut Vec<OwnedObject>, kind: &str, objs: &[Arc<K>]) {
            for o in objs {
                out.push(OwnedObject {
                    key: ObjectKey {
                        kind: kind.into(),
                        name: o.meta().name.clone().unwrap_or_default(),
                    },
                    uid: o.meta().uid.clone().unwrap_or_default(),
                    revision: interpret::revision_of(o.as_ref()).map(str::to_string),
                    applied_hash: o
                        .meta()
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(ANNOTATION_APPLIED_HASH).cloned()),
                });
            }
        }
        let mut out = Vec::new();
        add(&mut out, "PersistentVolumeClaim", &self.pvcs);
        add(&mut out, "Job", &self.jobs);
        add(&mut out, "Deployment", &self.deployments);
        add(&mut out, "Service", &self.services);
        add(&mut out, "ConfigMap", &self.configmaps);
        add(&mut out, "PodDisruptionBudget", &self.pdbs);
        out
    }

    /// Live pods of `step` (of `revision`, when given).
    pub fn pods_of(&self, step: &str, revision: Option<&str>) -> Vec<&CachedPod> {
        self.pods
            .iter()
            .filter(|p| interpret::step_of(p.as_ref()) == Some(step))
            .filter(|p| revision.is_none() || interpret::revision_of(p.as_ref()) == revision)
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .map(|p| p.as_ref())
            .collect()
    }
}

/// Objects of one model in the caches, owned by it (owner reference to its uid).
fn owned_by<K: Resource<DynamicType = ()> + Clone + 'static>(
    cache: &Cache<K>,
    model: &MLModel,
) -> Vec<Arc<K>> {
    let Some(uid) = model.uid() else {
        return Vec::new();
    };
    let ns = model.namespace();
    cache
        .get(&uid)
        .into_iter()
        .filter(|o| o.meta().namespace == ns)
        .collect()
}

/// The object called `name` among `objs`.
pub fn find<'a, K: Resource>(objs: &'a [Arc<K>], name: &str) -> Option<&'a K> {
    objs.iter()
        .find(|o| o.meta().name.as_deref() == Some(name))
        .map(|o| o.as_ref())
}

/// The delays between a watch's retries: from 0.5 s, doubling, at most [`WATCH_RETRY_MAX`],
/// each between half and all of its value (so watches that failed together do not retry in
/// step), back to 0.5 s after two minutes without an error. kube's default goes up to 30 s:
/// after an API server outage of half a minute the operator saw changes up to 30 s late (the
/// fault tests' `relist`, hack/chaos.py). A failed retry costs one request per watch.
pub(super) fn watch_backoff() -> ResetTimerBackoff<Doubling> {
    ResetTimerBackoff::new(Doubling::default(), Duration::from_secs(120))
}

/// The longest delay between two retries of a watch.
pub(super) const WATCH_RETRY_MAX: Duration = Duration::from_secs(8);
const WATCH_RETRY_MIN: Duration = Duration::from_millis(500);

pub(super) struct Doubling {
    next: Duration,
}

impl Default for Doubling {
    fn default() -> Self {
        Doubling {
            next: WATCH_RETRY_MIN,
        }
    }
}

impl Iterator for Doubling {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        use std::hash::{BuildHasher, Hasher};
        let full = self.next;
        self.next = (full * 2).min(WATCH_RETRY_MAX);
        // A random fraction from std's randomly keyed hasher: no RNG crate for one number.
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        let fraction = 0.5 + (random % 1000) as f64 / 2000.0;
        Some(full.mul_f64(fraction))
    }
}

impl Backoff for Doubling {
    fn reset(&mut self) {
        self.next = WATCH_RETRY_MIN;
    }
}

#[cfg(test)]
mod backoff_tests {
    use super::*;

    #[test]
    fn retries_double_up_to_the_cap_and_start_over_on_reset() {
        let mut b = Doubling::default();
        let delays: Vec<Duration> = (&mut b).take(8).collect();
        for (i, d) in delays.iter().enumerate() {
            let full = (WATCH_RETRY_MIN * 2u32.pow(i as u32)).min(WATCH_RETRY_MAX);
            assert!(
                *d >= full / 2 && *d <= full,
                "retry {i}: {d:?} for {full:?}"
            );
        }
        assert!(delays.iter().all(|d| *d <= WATCH_RETRY_MAX));
        b.reset();
        assert!(b.next().unwrap() <= WATCH_RETRY_MIN);
    }
}
