//! The plugin runtime: engine, registry and output policy.
pub mod cli;
