//! `mlmodel-operator render`.
use anyhow::Result;
use clap::Args;

#[derive(Args, Debug)]
pub struct RenderArgs {}

pub fn run(_args: RenderArgs) -> Result<()> {
    anyhow::bail!("not built yet")
}
