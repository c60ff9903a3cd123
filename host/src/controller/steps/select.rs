//! The first step: the plugin config within bounds, then the plugin of each step.
use super::{Applier, Blocked, Plugins, Stop};
use crate::conditions::Reason;
use crate::plugins::Step;
use crate::status::Observation;
use kube::ResourceExt;
use std::time::Duration;
use tracing::warn;

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
