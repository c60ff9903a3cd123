//! The steps of one reconcile, in order, as far as they can go now: select plugins -> download
//! the wanted revision -> serve the downloaded revision (the old one keeps serving meanwhile) ->
//! expose it. Each step records what it saw in the [`Observation`] and returns `Err(Stop)` when
//! the walk cannot go further: [`Stop::Blocked`] for what the user must fix (written to status),
//! [`Stop::Api`] for what may pass (retried with backoff).
use super::watches::{Owned, find};
use crate::api::MLModel;
use crate::apply;
use crate::conditions::Reason;
use crate::error::Error;
use crate::metrics::Metrics;
use crate::names;
use crate::plan::{self, DownloadState, ObjectKey, ServingState};
use crate::plugins::{LoadedPlugin, PluginError, Runtime, Step};
use crate::status::{Endpoint, Observation};
use kube::api::DynamicObject;
use kube::{Client, ResourceExt};
use mlmodel_fetch::FetchReport;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::warn;

/// How a reconcile's steps ended.
pub enum Progress {
    /// Every step that can run now ran.
    Done(Observation),
    /// A failure the user must fix; requeue after the given time if it may pass by itself
    /// (e.g. a plugin that shows up in a plugin directory).
    Blocked(Observation, Option<Duration>),
}

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
    client: &'a Client,
    runtime: &'a Runtime,
    metrics: &'a Metrics,
    model: &'a MLModel,
    ns: &'a str,
    /// Applied hash of every owned object, by kind and name.
    applied_hashes: HashMap<ObjectKey, Option<String>>,
    /// Everything rendered by this reconcile: not pruned.
    pub rendered: BTreeSet<ObjectKey>,
}

impl<'a> Applier<'a> {
    pub fn new(
        client: &'a Client,
        runtime: &'a Runtime,
        metrics: &'a Metrics,
        model: &'a MLModel,
        ns: &'a str,
        owned: &Owned,
    ) -> Self {
        Applier {
            client,
            runtime,
            metrics,
            model,
            ns,
            applied_hashes: owned
                .inventory()
                .into_iter()
                .map(|o| (o.key, o.applied_hash))
                .collect(),
            rendered: BTreeSet::new(),
        }
    }

    /// Something called `kind/name` exists that this model's caches do not show: go on only if
    /// it is this model's (the cache lags behind). Server-side apply would otherwise take over
    /// someone else's object, and the garbage collector would delete it with the model.
    async fn refuse_to_adopt(&self, kind: &str, name: &str) -> Result<(), Stop> {
        let Some(controller) = apply::existing_controller(self.client, self.ns, kind, name).await?
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

    /// Renders `step` with `plugin`, then applies what changed. Returns the rendered objects.
    /// The render runs off the controller's threads ([`Runtime::render_async`]): a slow plugin
    /// holds up its own model only.
    async fn render_and_apply(
        &mut self,
        step: Step,
        plugin: &Arc<LoadedPlugin>,
        revision: &str,
    ) -> Result<Vec<DynamicObject>, Stop> {
        let t0 = Instant::now();
        let rendered = self
            .runtime
            .render_async(plugin.clone(), self.model, step, revision)
            .await;
        let failure = rendered.as_ref().err().map(PluginError::reason);
        self.metrics.rendered(
            &plugin.name,
            step.as_str(),
            failure.as_ref().map(Reason::as_str),
            t0.elapsed(),
        );
        let mut objs = rendered?;
        let model_name = self.model.name_any();
        let label = names::label_value(&model_name);
        for obj in &mut objs {
            apply::decorate_pod_template(obj, &model_name, &label, step.as_str(), revision);
            let hash = apply::stamp_hash(obj);
            let kind = apply::kind_of(obj).to_string();
            let key = ObjectKey {
                kind: kind.clone(),
                name: obj.metadata.name.clone().unwrap_or_default(),
            };
            self.rendered.insert(key.clone());
            let unchanged = match self.applied_hashes.get(&key) {
                Some(_) if apply::create_only(&kind) => true,
                Some(h) => h.as_deref() == Some(hash.as_str()),
                None => false,
            };
            if unchanged {
                continue;
            }
            if !self.applied_hashes.contains_key(&key) {
                // Created only if nothing of that name exists: one request in the usual case.
                let created = apply::create(self.client, self.ns, obj)
                    .await
                    .map_err(|e| Self::refused(e, &kind, &key.name, plugin, step))?;
                if created {
                    continue;
                }
                self.refuse_to_adopt(&kind, &key.name).await?;
            }
            apply::apply(self.client, self.ns, obj)
                .await
                .map_err(|e| Self::refused(e, &kind, &key.name, plugin, step))?;
        }
        Ok(objs)
    }
}

/// The plugin of each step of one model.
struct Plugins {
    download: Arc<LoadedPlugin>,
    serve: Arc<LoadedPlugin>,
    expose: Option<Arc<LoadedPlugin>>,
}

/// Runs the steps, in order, as far as they can go now.
pub async fn run_steps(applier: &mut Applier<'_>, owned: &Owned) -> Result<Progress, Error> {
    let mut obs = observe_serving(applier.model, owned);
    match in_order(applier, owned, &mut obs).await {
        Ok(()) => Ok(Progress::Done(obs)),
        Err(Stop::Blocked(b)) => {
            obs.blocking_error = Some((b.reason, b.message));
            Ok(Progress::Blocked(obs, b.retry_after))
        }
        Err(Stop::Api(e)) => Err(e),
    }
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
    let runtime = applier.runtime;
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
            obs.plugins
                .insert(step.as_str().into(), format!("{}@{}", p.name, p.version));
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
    obs.storage_exists = match rendered_name(&objs, "PersistentVolumeClaim") {
        Some(pvc) => find(&owned.pvcs, &pvc).is_some(),
        None => true,
    };
    obs.download = match rendered_name(&objs, "Job") {
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
    let serve_pods = owned.pods_of(Step::Serve.as_str(), Some(revision));
    obs.serving = match rendered_name(&objs, "Deployment") {
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
    let svc = objs.iter().find(|o| apply::kind_of(o) == "Service");
    obs.expose = Some(svc.and_then(|svc| {
        let name = svc.metadata.name.clone()?;
        find(&owned.services, &name)?;
        let port = svc
            .data
            .pointer("/spec/ports/0/port")
            .and_then(|p| p.as_i64())
            .unwrap_or(80);
        let host = format!("{name}.{ns}.svc.cluster.local");
        Some(Endpoint {
            endpoint: format!("{host}:{port}"),
            url: format!("http://{host}:{port}"),
        })
    }));
    Ok(())
}

fn rendered_name(objs: &[DynamicObject], kind: &str) -> Option<String> {
    objs.iter()
        .find(|o| apply::kind_of(o) == kind)
        .and_then(|o| o.metadata.name.clone())
}
