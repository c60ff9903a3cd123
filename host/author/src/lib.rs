//! Tooling for plugin authors, apart from the runtime the controller uses
//! (`mlmodel-plugin-runtime`): `mlmodel-operator plugins` `list`, `new`, `test` and `push`.
//!
//! - `cli`: the subcommands;
//! - `project`, `scaffold`: plugin projects, what they look like and `plugins new`;
//! - `golden`: a plugin's golden cases (model, input, expected output) and their check;
//! - `push`: a plugin published to an OCI registry.
pub mod cli;
pub mod golden;
pub mod project;
pub mod push;
pub mod scaffold;
