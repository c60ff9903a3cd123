//! The mlmodel-operator library: the controller and what it decides with. Beside it, in crates
//! of their own: the API types (`mlmodel-api`, `host/api/`), the plugin runtime
//! (`mlmodel-plugin-runtime`, `host/runtime/`), the plugin author tooling
//! (`mlmodel-plugin-author`, `host/author/`) and the downloader (`mlmodel-fetch`, `host/fetch/`).
//!
//! Reading order: `conditions` (the status vocabulary) -> `api` (types) -> `plan` (pure
//! decisions) -> `plugins` (the runtime: engine, registry, output policy) -> `selection` (which
//! plugin a model gets) -> `apply` (server-side apply + prune) -> `status` (phase, conditions,
//! events) -> `controller` (reconcile; `steps`, `watches`, `run`; the caches hold `cached`
//! objects). `error` (the reconcile error and its metric reasons) and `server` (HTTP endpoints,
//! readiness) import nothing of the controller.
pub use mlmodel_api::{api, conditions, names, text};
pub use mlmodel_plugin_runtime as plugins;

pub mod apply;
pub mod cached;
pub mod controller;
pub mod crd;
pub mod error;
pub mod index;
pub mod inference;
pub mod interpret;
pub mod leader;
pub mod metrics;
pub mod per_pod;
pub mod progress;
pub mod redact;
pub mod render_cli;
pub mod selection;
pub mod server;
pub mod status;
pub mod storage;
pub mod telemetry;
pub mod validation;
