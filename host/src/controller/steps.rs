//! The steps of one reconcile, in order, as far as they can go now: select plugins -> download
//! the wanted revision -> serve the downloaded revision (the old one keeps serving meanwhile) ->
//! expose it. Each step records what it saw in the [`Observation`] and returns `Err(Stop)` when
//! the walk cannot go further: [`Stop::Blocked`] for what the user must fix (written to status),
//! [`Stop::Api`] for what may pass (retried with backoff).
use super::Context;
use super::renders::{Brief, name_of};
use super::watches::{Owned, find};
use crate::api::MLModel;
use crate::apply;
use crate::conditions::Reason;
use crate::error::Error;
use crate::names;
use crate::plan::{self, DownloadState, ObjectKey, ServingState};
use crate::plugins::{LoadedPlugin, PluginError, Step};
use crate::status::{Endpoint, Observation};
use kube::ResourceExt;
use kube::api::DynamicObject;
use mlmodel_fetch::FetchReport;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::warn;

/// Why a step stopped the walk.
pub enum Stop {
    /// The user must fix something: written to status, not retried with backoff.
    Blocked(Blocked),
    /// The API server failed: the reconcile fails and is retried with backoff.
    Api(Error),
}

/// A failure the user must fix (bad plugin, invalid output, rejected object), kept apart from
/// errors that may pass.
pub struct Blocked {
    reason: Reason,
    message: String,
    /// Look again after this long even if nothing changes (it may pass by itself).
    retry_after: Option<Duration>,
}

impl Blocked {
    fn new(reason: Reason, message: impl Into<String>) -> Self {
        Blocked {
            reason,
            message: message.into(),
            retry_after: None,
        }
    }

    fn retry_after(self, after: Duration) -> Self {
        Blocked {
            retry_after: Some(after),
            ..self
        }
    }
}

impl From<PluginError> for Blocked {
    fn from(e: PluginError) -> Self {
        // Bounded: whatever a plugin says, its failure fits in a status.
        Blocked::new(e.reason(), e.message())
    }
}

impl From<Blocked> for Stop {
    fn from(b: Blocked) -> Self {
        Stop::Blocked(b)
    }
}

impl From<PluginError> for Stop {
    fn from(e: PluginError) -> Self {
        Stop::Blocked(e.into())
    }
}

impl From<kube::Error> for Stop {
    fn from(e: kube::Error) -> Self {
        Stop::Api(e.into())
    }
}

/// Renders steps with their plugins and applies what changed, remembering what it rendered so
/// that what is left over can be pruned.
pub struct Applier<'a> {
    ctx: &'a Context,
    model: &'a MLModel,
    uid: String,
    ns: &'a str,
    /// Applied hash of every owned object, by kind and name.
    applied_hashes: HashMap<ObjectKey, Option<String>>,
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
            uid: model.uid().unwrap_or_default(),
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
    fn in_place(&mut self, brief: &Brief) -> bool {
        match self.applied_hashes.get(&brief.key) {
            Some(_) if apply::create_only(&brief.key.kind) => return true,
            Some(Some(h)) if *h == brief.hash => return true,
            _ => {}
        }
        match self
            .ctx
            .applied
            .trusted_for(&self.uid, &brief.key, &brief.hash)
        {
            Some(left) => {
                self.recheck = Some(self.recheck.map_or(left, |r| r.min(left)));
                true
            }
            None => false,
        }
    }

    /// Whether this operator applied the object as rendered lately.
    fn just_applied(&self, brief: &Brief) -> bool {
        let applied = &self.ctx.applied;
        applied
            .trusted_for(&self.uid, &brief.key, &brief.hash)
            .is_some()
    }

    /// Something called `kind/name` exists that this model's caches do not show: go on only if
    /// it is this model's (the cache lags behind). Server-side apply would otherwise take over
    /// someone else's object, and the garbage collector would delete it with the model.
    async fn refuse_to_adopt(&self, kind: &str, name: &str) -> Result<(), Stop> {
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
    fn refused(e: kube::Error, kind: &str, name: &str, plugin: &LoadedPlugin, step: Step) -> Stop {
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
    async fn render_and_apply(
        &mut self,
        step: Step,
        plugin: &Arc<LoadedPlugin>,
        revision: &str,
    ) -> Result<Vec<Brief>, Stop> {
        let runtime = &self.ctx.runtime;
        let digest = runtime.input_digest(plugin, self.model, step, revision);
        if let Some(briefs) = self.ctx.renders.get(&self.uid, step, &digest)
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
            .renders
            .record(&self.uid, step, digest, briefs.clone());
        Ok(briefs)
    }

    /// Applies one rendered object: created (one request) when the caches do not show it, after
    /// checking whose it is when something of that name is in the way.
    async fn apply(
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
        self.ctx.applied.record(&self.uid, &brief.key, &brief.hash);
        Ok(())
    }
}

/// The plugin of each step of one model.
struct Plugins {
    download: Arc<LoadedPlugin>,
    serve: Arc<LoadedPlugin>,
    expose: Option<Arc<LoadedPlugin>>,
}

/// Runs the steps, in order, as far as they can go now: what they saw (with the running
/// download's figures), and when to look again if nothing else wakes the model.
pub async fn run_steps(
    applier: &mut Applier<'_>,
    owned: &Owned,
) -> Result<(Observation, Option<Duration>), Error> {
    let mut obs = observe_serving(applier.model, owned);
    let again = match in_order(applier, owned, &mut obs).await {
        Ok(()) => None,
        Err(Stop::Blocked(b)) => {
            obs.blocking_error = Some((b.reason, b.message));
            b.retry_after
        }
        Err(Stop::Api(e)) => return Err(e),
    };
    if matches!(obs.download, DownloadState::Running { .. }) {
        obs.progress = applier.ctx.progress.sample(&crate::progress::Key {
            namespace: applier.ns.to_string(),
            model: applier.model.name_any(),
            revision: obs.wanted_revision.clone(),
        });
    }
    let again = [again, applier.recheck].into_iter().flatten().min();
    Ok((obs, again))
}

/// Each step in turn; the first that cannot go on stops the others.
async fn in_order(
    applier: &mut Applier<'_>,
    owned: &Owned,
    obs: &mut Observation,
) -> Result<(), Stop> {
    let plugins = select_plugins(applier, obs)?;
    let wanted = download(applier, owned, &plugins.download, obs).await?;
    let downloaded = matches!(obs.download, DownloadState::Succeeded { .. });
    let served = obs.serve_revision.clone();
    // Serve the downloaded revision, or keep serving the old one.
    let Some(serve_rev) =
        plan::serve_revision(&wanted, downloaded, served.as_deref()).map(str::to_string)
    else {
        return Ok(());
    };
    if serve_rev == wanted
        && let DownloadState::Succeeded {
            report: Some(report),
            ..
        } = &obs.download
    {
        check_format(&plugins.serve, report)?;
    }
    serve(applier, owned, &plugins.serve, &serve_rev, obs).await?;
    if let Some(plugin) = &plugins.expose {
        expose(applier, owned, plugin, &serve_rev, obs).await?;
    }
    Ok(())
}

/// The downloaded files' format against what the serve plugin loads: a mismatch stops before
/// any server starts (a server that cannot load its model never becomes ready, and says why only
/// in its logs).
fn check_format(plugin: &LoadedPlugin, report: &FetchReport) -> Result<(), Stop> {
    let Some(format) = report.format.as_deref() else {
        return Ok(());
    };
    if plugin.accepts.loads_format(format) {
        return Ok(());
    }
    let found = match report.largest.as_deref().and_then(|l| l.first()) {
        Some(file) => format!(
            "{format} (largest file: {:?}, {} bytes)",
            file.path, file.bytes
        ),
        None => format.to_string(),
    };
    let message = format!(
        "the downloaded model is {found}, but serve plugin {} loads only {}: choose a model URL in one of those formats, or a serve plugin that loads {format} (annotation {})",
        plugin.name,
        plugin.accepts.model_formats.join(", "),
        Step::Serve.annotation(),
    );
    Err(Blocked::new(Reason::ModelFormatMismatch, message).into())
}

/// What is served now: the revision the current workload's pod template says (level-triggered:
/// read from the cluster, not remembered), and how it is doing.
fn observe_serving(model: &MLModel, owned: &Owned) -> Observation {
    let mut obs = Observation {
        blocking_error: None,
        wanted_revision: String::new(),
        storage_exists: false,
        download: DownloadState::NotStarted,
        serve_revision: None,
        serving: ServingState::Missing,
        expose: model.spec.expose.then_some(None),
        plugins: BTreeMap::new(),
        progress: None,
        inference: None,
    };
    let served = owned
        .deployments
        .iter()
        .find(|d| plan::step_of(d.as_ref()) == Some(Step::Serve.as_str()))
        .and_then(|d| plan::revision_of(d.as_ref()).map(str::to_string));
    if let Some(rev) = &served {
        let dep = owned
            .deployments
            .iter()
            .find(|d| plan::revision_of(d.as_ref()) == Some(rev));
        obs.serving = plan::serving_state(
            dep.map(|d| d.as_ref()),
            &owned.pods_of(Step::Serve.as_str(), Some(rev)),
        );
    }
    obs.serve_revision = served;
    obs
}

/// Checks the plugin config and selects the plugin of each step.
fn select_plugins(applier: &Applier<'_>, obs: &mut Observation) -> Result<Plugins, Stop> {
    let model = applier.model;
    let runtime = &applier.ctx.runtime;
    // A config out of bounds is the user's to fix: no plugin is selected or called, nothing is
    // applied (or pruned), until the spec changes.
    if let Some(e) = model.spec.plugin_config_error() {
        warn!(model = %model.name_any(), namespace = %applier.ns, error = %e, "invalid spec.plugins.config");
        return Err(Blocked::new(Reason::InvalidPluginConfig, e.to_string()).into());
    }
    // A missing plugin may show up in a plugin directory: look again in a minute.
    let select = |step| {
        runtime
            .select(step, model)
            .map_err(|e| Blocked::from(e).retry_after(Duration::from_secs(60)))
    };
    let download = select(Step::Download)?;
    let serve = select(Step::Serve)?;
    let expose = if model.spec.expose {
        Some(select(Step::Expose)?)
    } else {
        None
    };
    for (step, p) in [
        (Step::Download, Some(&download)),
        (Step::Serve, Some(&serve)),
        (Step::Expose, expose.as_ref()),
    ] {
        if let Some(p) = p {
            obs.plugins.insert(step.as_str().into(), p.status_label());
        }
    }
    Ok(Plugins {
        download,
        serve,
        expose,
    })
}

/// Downloads the wanted revision; returns it.
async fn download(
    applier: &mut Applier<'_>,
    owned: &Owned,
    plugin: &Arc<LoadedPlugin>,
    obs: &mut Observation,
) -> Result<String, Stop> {
    let wanted = names::revision(applier.model, &plugin.name);
    obs.wanted_revision = wanted.clone();
    let objs = applier
        .render_and_apply(Step::Download, plugin, &wanted)
        .await?;
    // A claim the API server just accepted exists, whether or not the cache shows it yet.
    obs.storage_exists = match objs.iter().find(|b| b.key.kind == "PersistentVolumeClaim") {
        Some(pvc) => find(&owned.pvcs, &pvc.key.name).is_some() || applier.just_applied(pvc),
        None => true,
    };
    obs.download = match name_of(&objs, "Job") {
        Some(job) => plan::download_state(
            find(&owned.jobs, &job),
            &owned.pods_of(Step::Download.as_str(), Some(&wanted)),
        ),
        // A download plugin without a Job (e.g. a pre-filled volume) has nothing to wait for.
        None => DownloadState::Succeeded {
            report: None,
            started: None,
            finished: None,
            attempts: 0,
        },
    };
    Ok(wanted)
}

/// Serves `revision` (downloaded, or the one served already).
async fn serve(
    applier: &mut Applier<'_>,
    owned: &Owned,
    plugin: &Arc<LoadedPlugin>,
    revision: &str,
    obs: &mut Observation,
) -> Result<(), Stop> {
    let objs = applier
        .render_and_apply(Step::Serve, plugin, revision)
        .await?;
    obs.serve_revision = Some(revision.to_string());
    obs.inference = objs.iter().find_map(|b| b.inference.clone());
    let serve_pods = owned.pods_of(Step::Serve.as_str(), Some(revision));
    obs.serving = match name_of(&objs, "Deployment") {
        Some(dep) => {
            let current =
                find(&owned.deployments, &dep).filter(|d| plan::revision_of(*d) == Some(revision));
            match current {
                Some(d) => plan::serving_state(Some(d), &serve_pods),
                // Just applied (or re-labelled to the new revision): the cache catches up next.
                None => ServingState::Progressing {
                    ready: 0,
                    wanted: applier.model.spec.replicas,
                    message: "rolling out".into(),
                },
            }
        }
        None => match plan::pod_failure(&serve_pods) {
            Some((reason, message)) => ServingState::Failed {
                reason,
                message,
                ready: 0,
                wanted: 1,
            },
            None => ServingState::Available {
                ready: serve_pods.len() as i32,
                wanted: serve_pods.len() as i32,
            },
        },
    };
    if let ServingState::Failed {
        reason, message, ..
    } = &mut obs.serving
        && reason == "CrashLoopBackOff"
        && let Some((pod, container)) = plan::silent_crash(&serve_pods)
        && let Some(words) = last_log_words(applier, &pod, &container).await
    {
        message.push_str(&format!(
            "; it left no termination message, its log ends: {words}"
        ));
    }
    if let Some(v) = &applier.model.spec.validation {
        let port = objs.iter().find_map(|b| b.http_port);
        validate(applier, v, revision, &serve_pods, port, obs).await?;
    }
    Ok(())
}

/// The last words of a container's previous run, from its log (a few lines, read while it
/// crash-loops: one read per pod change); none when the log cannot be read.
async fn last_log_words(applier: &Applier<'_>, pod: &str, container: &str) -> Option<String> {
    let params = kube::api::LogParams {
        container: Some(container.to_string()),
        previous: true,
        tail_lines: Some(40),
        limit_bytes: Some(16 * 1024),
        ..Default::default()
    };
    let pods: kube::Api<k8s_openapi::api::core::v1::Pod> =
        kube::Api::namespaced(applier.ctx.client.clone(), applier.ns);
    match pods.logs(pod, &params).await {
        Ok(log) => plan::last_words(&log),
        Err(e) => {
            warn!(%pod, %container, error = %e, "cannot read the crashed container's log");
            None
        }
    }
}

/// `spec.validation`: asks the revision's new pods the sample request; a wrong answer fails the
/// model while the pods of the revision before keep the traffic (the new ones never turn
/// Ready, so the rolling update does not go on).
async fn validate(
    applier: &mut Applier<'_>,
    v: &crate::api::Validation,
    revision: &str,
    pods: &[&crate::cached::CachedPod],
    port: Option<i64>,
    obs: &mut Observation,
) -> Result<(), Stop> {
    let expected =
        crate::validation::expected(v).map_err(|e| Blocked::new(Reason::InvalidValidation, e))?;
    let asked = super::validate::ask_pods(
        &applier.ctx.client,
        applier.ns,
        v,
        expected.as_ref(),
        pods,
        port,
        obs.inference.as_ref(),
    )
    .await?;
    if asked.retry {
        let again = Duration::from_secs(2);
        applier.recheck = Some(applier.recheck.map_or(again, |r| r.min(again)));
    }
    if let Some((pod, why)) = asked.failed {
        let (ready, wanted) = match &obs.serving {
            ServingState::Available { ready, wanted }
            | ServingState::Progressing { ready, wanted, .. }
            | ServingState::Failed { ready, wanted, .. } => (*ready, *wanted),
            ServingState::Missing => (0, applier.model.spec.replicas),
        };
        obs.serving = ServingState::Failed {
            reason: Reason::ValidationFailed.to_string(),
            message: format!(
                "pod {pod} of revision {revision} {why}; it takes no traffic (spec.validation), and the pods of the revision before keep serving"
            ),
            ready,
            wanted,
        };
    }
    Ok(())
}

/// Exposes the served `revision`; its endpoint shows once the Service is in the cache.
async fn expose(
    applier: &mut Applier<'_>,
    owned: &Owned,
    plugin: &Arc<LoadedPlugin>,
    revision: &str,
    obs: &mut Observation,
) -> Result<(), Stop> {
    let objs = applier
        .render_and_apply(Step::Expose, plugin, revision)
        .await?;
    let ns = applier.ns;
    let svc = objs.iter().find(|b| b.key.kind == "Service");
    obs.expose = Some(svc.and_then(|svc| {
        let name = svc.key.name.clone();
        find(&owned.services, &name)?;
        let port = svc.port.unwrap_or(80);
        let host = format!("{name}.{ns}.svc.cluster.local");
        Some(Endpoint {
            endpoint: format!("{host}:{port}"),
            url: format!("http://{host}:{port}"),
        })
    }));
    Ok(())
}
