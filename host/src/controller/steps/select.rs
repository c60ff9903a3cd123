//! The first step: the plugin config within bounds, then the plugin of each step.
use super::{Applier, Blocked, Plugins, Stop};
use crate::conditions::Reason;
use crate::plugins::Step;
use crate::status::Observation;
use kube::ResourceExt;
use std::time::Duration;
use tracing::warn;

/// Another model of the namespace whose name derives the same object names or pod label
/// ([`crate::names::identity`]): the younger of the two applies nothing (its Service would
/// select the other's pods, its objects would be the other's). Looked at again now and then:
/// the older one may go.
fn refuse_a_twin(applier: &Applier<'_>) -> Result<(), Stop> {
    let model = applier.model;
    let name = model.name_any();
    let plain = crate::names::is_plain(&name);
    let mine = crate::names::identity(&name);
    let age = |m: &crate::api::MLModel| {
        (
            m.metadata.creation_timestamp.as_ref().map(|t| t.0),
            m.metadata.uid.clone(),
        )
    };
    let twin = applier.ctx.models.state().into_iter().find(|other| {
        other.namespace().as_deref() == Some(applier.ns)
            && other.metadata.uid != model.metadata.uid
            && age(other) < age(model)
            && !(plain && crate::names::is_plain(&other.name_any()))
            && !crate::names::identity(&other.name_any()).is_disjoint(&mine)
    });
    let Some(twin) = twin else {
        return Ok(());
    };
    let shared: Vec<String> = crate::names::identity(&twin.name_any())
        .intersection(&mine)
        .cloned()
        .collect();
    Err(Blocked::new(
        Reason::NameConflict,
        format!(
            "model {name:?} derives the same object names or pod labels as the older model {:?} ({}): its Service would select the other's pods; rename this model",
            twin.name_any(),
            shared.join(", ")
        ),
    )
    .retry_after(Duration::from_secs(60))
    .into())
}

/// Checks the plugin config and selects the plugin of each step.
pub(super) fn select_plugins(
    applier: &Applier<'_>,
    obs: &mut Observation,
) -> Result<Plugins, Stop> {
    let model = applier.model;
    let (runtime, selection) = (&applier.ctx.runtime, &applier.ctx.selection);
    // A config out of bounds is the user's to fix: no plugin is selected or called, nothing is
    // applied (or pruned), until the spec changes.
    if let Some(e) = model.spec.plugin_config_error() {
        warn!(model = %model.name_any(), namespace = %applier.ns, error = %e, "invalid spec.plugins.config");
        return Err(Blocked::new(Reason::InvalidPluginConfig, e.to_string()).into());
    }
    refuse_a_twin(applier)?;
    // A missing plugin may show up in a plugin directory: look again in a minute.
    let select = |step| {
        selection
            .select(runtime, step, model)
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
