//! The expose step: the Service of the served revision, and its endpoint once cached.
use super::super::watches::{Owned, find};
use super::{Applier, Stop};
use crate::plugins::{LoadedPlugin, Step};
use crate::status::{Endpoint, Observation};
use std::sync::Arc;

/// Exposes the served `revision`; its endpoint shows once the Service is in the cache.
pub(super) async fn expose(
    applier: &mut Applier<'_>,
    owned: &Owned,
    plugin: &Arc<LoadedPlugin>,
    revision: &str,
    obs: &mut Observation,
) -> Result<(), Stop> {
    let objs = applier
        .render_and_apply(Step::Expose, plugin, revision, None)
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
