//! The download step: the wanted revision's claim and Job, and where the download stands.
use super::super::brief::name_of;
use super::super::watches::{Owned, find};
use super::{Applier, Stop};
use crate::api::StorageMode;
use crate::interpret::{self, DownloadState};
use crate::names;
use crate::plugins::{LoadedPlugin, Step};
use crate::status::Observation;
use std::sync::Arc;

/// Downloads the wanted revision; returns it.
pub(super) async fn download(
    applier: &mut Applier<'_>,
    owned: &Owned,
    plugin: &Arc<LoadedPlugin>,
    obs: &mut Observation,
) -> Result<String, Stop> {
    let storage = applier.ctx.selection.storage(applier.model);
    let wanted = names::revision(applier.model, &plugin.name, storage.mode);
    obs.wanted_revision = wanted.clone();
    let per_pod = storage.mode == StorageMode::PerPod;
    obs.storage = Some(storage);
    if per_pod {
        // Each serving pod downloads for itself (the serve step folds this step's render into
        // its pods): no claim, no Job; the download is read from those pods.
        obs.storage_exists = true;
        obs.download =
            interpret::per_pod_download_state(&owned.pods_of(Step::Serve.as_str(), Some(&wanted)));
        return Ok(wanted);
    }
    let objs = applier
        .render_and_apply(Step::Download, plugin, &wanted, None)
        .await?;
    // A claim the API server just accepted exists, whether or not the cache shows it yet.
    obs.storage_exists = match objs.iter().find(|b| b.key.kind == "PersistentVolumeClaim") {
        Some(pvc) => find(&owned.pvcs, &pvc.key.name).is_some() || applier.just_applied(pvc),
        None => true,
    };
    obs.download = match name_of(&objs, "Job") {
        Some(job) => interpret::download_state(
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
