//! The applier: renders a step with its plugin and applies what changed (server-side apply,
//! never adopting what the model does not own), remembering what it rendered for the prune.
use super::super::Context;
use super::super::brief::Brief;
use super::super::watches::Owned;
use super::{Blocked, Stop};
use crate::api::MLModel;
use crate::apply;
use crate::conditions::Reason;
use crate::interpret::ObjectKey;
use crate::names;
use crate::plugins::{LoadedPlugin, PluginError, Step};
use kube::ResourceExt;
use kube::api::DynamicObject;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Renders steps with their plugins and applies what changed, remembering what it rendered so
/// that what is left over can be pruned.
pub struct Applier<'a> {
    pub(super) ctx: &'a Context,
    pub(super) model: &'a MLModel,
    /// The model's key in the controller's memory.
    pub(super) key: String,
    pub(super) ns: &'a str,
    /// Applied hash of every owned object, by kind and name.
    pub(super) applied_hashes: HashMap<ObjectKey, Option<String>>,
    /// Everything rendered by this reconcile: not pruned.
    pub rendered: BTreeSet<ObjectKey>,
    /// When the first apply counted as done without the cache showing it stops being trusted:
    /// the reconcile looks again then (the watch event, if it comes, is sooner).
    pub recheck: Option<Duration>,
}

impl<'a> Applier<'a> {
    pub fn new(ctx: &'a Context, model: &'a MLModel, ns: &'a str, owned: &Owned) -> Self {
        Applier {
            ctx,
            model,
            key: super::super::memory::key(model),
            ns,
            applied_hashes: owned
                .inventory()
                .into_iter()
                .map(|o| (o.key, o.applied_hash))
                .collect(),
            rendered: BTreeSet::new(),
            recheck: None,
        }
    }

    /// Whether the object is in place as rendered: in the cache with its hash (or, for a kind
    /// that is never updated, at all), or applied lately with its hash and not seen yet.
    pub(super) fn in_place(&mut self, brief: &Brief) -> bool {
        match self.applied_hashes.get(&brief.key) {
            Some(_) if apply::create_only(&brief.key.kind) => return true,
            Some(Some(h)) if *h == brief.hash => return true,
            _ => {}
        }
        match self
            .ctx
            .memory
            .apply_trusted_for(&self.key, &brief.key, &brief.hash)
        {
            Some(left) => {
                self.recheck = Some(self.recheck.map_or(left, |r| r.min(left)));
                true
            }
            None => false,
        }
    }

    /// Whether this operator applied the object as rendered lately.
    pub(super) fn just_applied(&self, brief: &Brief) -> bool {
        self.ctx
            .memory
            .apply_trusted_for(&self.key, &brief.key, &brief.hash)
            .is_some()
    }

    /// Something called `kind/name` exists that this model's caches do not show: go on only if
    /// it is this model's (the cache lags behind). Server-side apply would otherwise take over
    /// someone else's object, and the garbage collector would delete it with the model.
    pub(super) async fn refuse_to_adopt(&self, kind: &str, name: &str) -> Result<(), Stop> {
        let Some(controller) =
            apply::existing_controller(&self.ctx.client, self.ns, kind, name).await?
        else {
            return Ok(());
        };
        if controller.is_some() && controller.as_deref() == self.model.metadata.uid.as_deref() {
            return Ok(());
        }
        let by = match controller {
            Some(uid) => format!("is controlled by another owner (uid {uid})"),
            None => "was not created by this MLModel".to_string(),
        };
        Err(Blocked::new(
            Reason::NameConflict,
            format!(
                "{kind} {name:?} already exists in namespace {} and {by}: the operator never takes over an object it did not create; remove or rename that object, or rename the model",
                self.ns
            ),
        )
        // Nothing watches the other object: look again now and then.
        .retry_after(Duration::from_secs(30))
        .into())
    }

    /// The API server refused what a plugin rendered: the user must change something. Other
    /// errors may pass and are retried.
    pub(super) fn refused(
        e: kube::Error,
        kind: &str,
        name: &str,
        plugin: &LoadedPlugin,
        step: Step,
    ) -> Stop {
        match e {
            kube::Error::Api(e) if matches!(e.code, 400 | 403 | 404 | 409 | 422) => Blocked::new(
                Reason::ApplyFailed,
                format!(
                    "the API server refused {kind} {name:?} rendered by plugin {} for step {}: {}",
                    plugin.name,
                    step.as_str(),
                    e.message
                ),
            )
            .into(),
            e => e.into(),
        }
    }

    /// Renders `step` with `plugin`, then applies what changed. Returns what was rendered, in
    /// brief. When the step's input is unchanged since its last render and everything that
    /// render gave is in place, the plugin is not called. The render runs off the controller's
    /// threads ([`crate::plugins::Runtime::render_async`]): a slow plugin holds up its own model only.
    ///
    /// `per_pod_download`: the download plugin whose Job each serving pod runs (per-pod
    /// storage, [`crate::per_pod::fold`]); its render is part of this step's input.
    pub(super) async fn render_and_apply(
        &mut self,
        step: Step,
        plugin: &Arc<LoadedPlugin>,
        revision: &str,
        per_pod_download: Option<&Arc<LoadedPlugin>>,
    ) -> Result<Vec<Brief>, Stop> {
        let runtime = &self.ctx.runtime;
        let mut digest = runtime.input_digest(plugin, self.model, step, revision);
        if let Some(download) = per_pod_download {
            let of_download = runtime.input_digest(download, self.model, Step::Download, revision);
            digest = format!("{digest}+{of_download}");
        }
        if let Some(briefs) = self.ctx.memory.last_render(&self.key, step, &digest)
            && briefs.iter().all(|b| self.in_place(b))
        {
            self.rendered.extend(briefs.iter().map(|b| b.key.clone()));
            return Ok(briefs);
        }
        let t0 = Instant::now();
        let rendered = runtime
            .render_async(plugin.clone(), self.model, step, revision)
            .await;
        let failure = rendered.as_ref().err().map(PluginError::reason);
        self.ctx.metrics.rendered(
            &plugin.name,
            step.as_str(),
            failure.as_ref().map(Reason::as_str),
            t0.elapsed(),
        );
        let mut objs = rendered?;
        if let Some(download) = per_pod_download {
            self.fold_download(&mut objs, download, revision).await?;
        }
        let model_name = self.model.name_any();
        let label = names::label_value(&model_name);
        let mut briefs = Vec::with_capacity(objs.len());
        for obj in &mut objs {
            apply::decorate_pod_template(obj, &model_name, &label, step.as_str(), revision);
            let hash = apply::stamp_hash(obj);
            let brief = Brief::of(obj, hash);
            self.rendered.insert(brief.key.clone());
            if !self.in_place(&brief) {
                self.apply(obj, &brief, plugin, step).await?;
            }
            briefs.push(brief);
        }
        self.ctx
            .memory
            .record_render(&self.key, step, digest, briefs.clone());
        Ok(briefs)
    }

    /// Per-pod storage: renders the download step and folds it into the serving Deployment.
    async fn fold_download(
        &self,
        serve: &mut [DynamicObject],
        download: &Arc<LoadedPlugin>,
        revision: &str,
    ) -> Result<(), Stop> {
        let t0 = Instant::now();
        let rendered = self
            .ctx
            .runtime
            .render_async(download.clone(), self.model, Step::Download, revision)
            .await;
        let failure = rendered.as_ref().err().map(PluginError::reason);
        self.ctx.metrics.rendered(
            &download.name,
            Step::Download.as_str(),
            failure.as_ref().map(Reason::as_str),
            t0.elapsed(),
        );
        crate::per_pod::fold(serve, &rendered?, &self.model.spec.storage_size).map_err(|why| {
            Blocked::new(
                Reason::StorageModeUnsupported,
                format!(
                    "storage mode PerPod with download plugin {}: {why}; set spec.storageMode: Shared, or choose plugins that render a Job and a Deployment",
                    download.name
                ),
            )
            .into()
        })
    }

    /// Applies one rendered object: created (one request) when the caches do not show it, after
    /// checking whose it is when something of that name is in the way.
    pub(super) async fn apply(
        &mut self,
        obj: &DynamicObject,
        brief: &Brief,
        plugin: &LoadedPlugin,
        step: Step,
    ) -> Result<(), Stop> {
        let (kind, name) = (&brief.key.kind, &brief.key.name);
        let client = &self.ctx.client;
        let refused = |e| Self::refused(e, kind, name, plugin, step);
        let done = !self.applied_hashes.contains_key(&brief.key)
            && apply::create(client, self.ns, obj).await.map_err(refused)?;
        if !done {
            if !self.applied_hashes.contains_key(&brief.key) {
                self.refuse_to_adopt(kind, name).await?;
            }
            apply::apply(client, self.ns, obj).await.map_err(refused)?;
        }
        self.ctx
            .memory
            .record_apply(&self.key, &brief.key, &brief.hash);
        Ok(())
    }
}
