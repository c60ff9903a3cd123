//! The mlmodel-operator library: API types, plugin runtime and controller (the downloader is
//! the `mlmodel-fetch` crate, `host/fetch/`).
//!
//! Reading order: `conditions` (the status vocabulary) -> `api` (types) -> `plan` (pure
//! decisions) -> `plugins` (engine, registry, output policy) -> `apply` (server-side apply +
//! prune) -> `status` (phase, conditions, events) -> `controller` (reconcile; `steps`,
//! `watches`, `run`; the caches hold `cached` objects). `error` (the reconcile error and its
//! metric reasons) and `server` (HTTP endpoints, readiness) import nothing of the controller.
pub mod api;
pub mod apply;
pub mod cached;
pub mod conditions;
pub mod controller;
pub mod crd;
pub mod error;
pub mod index;
pub mod inference;
pub mod leader;
pub mod metrics;
pub mod names;
pub mod plan;
pub mod plugins;
pub mod progress;
pub mod redact;
pub mod render;
pub mod server;
pub mod status;
pub mod telemetry;
pub mod text;
pub mod validation;
