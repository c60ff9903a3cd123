//! Prune: objects of the model that the plan no longer renders (an older revision's claim and
//! Job once no live pod uses that revision, an object a plugin stopped rendering), deleted with
//! their uid as a precondition so that an object recreated under that name is left alone.
use super::Context;
use super::watches::Owned;
use crate::api::MLModel;
use crate::apply;
use crate::error::Error;
use crate::interpret::{self, ObjectKey};
use crate::plugins::Step;
use kube::ResourceExt;
use std::collections::BTreeSet;
use tracing::info;

/// Deletes what `rendered` (everything this reconcile rendered) leaves out, keeping the objects
/// of `serve_revision` and of any revision a live serving pod still uses. Call it only after a
/// complete plan: a step that failed to render must not lose its objects.
pub async fn prune(
    ctx: &Context,
    model: &MLModel,
    ns: &str,
    owned: &Owned,
    rendered: &BTreeSet<ObjectKey>,
    serve_revision: Option<&str>,
) -> Result<(), Error> {
    let mut in_use: BTreeSet<String> = owned
        .pods_of(Step::Serve.as_str(), None)
        .iter()
        .filter_map(|p| interpret::revision_of(*p).map(str::to_string))
        .collect();
    in_use.extend(serve_revision.map(str::to_string));
    let inventory = owned.inventory();
    let existing: Vec<_> = inventory
        .iter()
        .map(|o| (o.key.clone(), o.revision.clone()))
        .collect();
    for key in interpret::prune(&existing, rendered, &in_use) {
        let uid = inventory
            .iter()
            .find(|o| o.key == key)
            .map(|o| o.uid.as_str())
            .unwrap_or_default();
        info!(model = %model.name_any(), kind = %key.kind, name = %key.name, "pruning");
        apply::delete(&ctx.client, ns, &key.kind, &key.name, uid).await?;
    }
    Ok(())
}
