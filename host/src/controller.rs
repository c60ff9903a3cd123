//! The MLModel controller (`mlmodel-operator run`).
use anyhow::Result;
use clap::Args;

#[derive(Args, Debug)]
pub struct RunArgs {}

pub fn run(_args: RunArgs) -> Result<()> {
    anyhow::bail!("the controller is not built yet")
}
