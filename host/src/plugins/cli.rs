//! `mlmodel-operator plugins`.
use anyhow::Result;
use clap::Args;

#[derive(Args, Debug)]
pub struct PluginsArgs {}

pub fn run(_args: PluginsArgs) -> Result<()> {
    anyhow::bail!("not built yet")
}
