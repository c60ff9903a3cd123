//! The MLModel API, shared by the plugin runtime (`mlmodel-plugin-runtime`) and the controller
//! (`mlmodel-operator`): nothing here runs anything.
//!
//! - `conditions`: the status vocabulary (condition types, reasons);
//! - `api`: the `MLModel` resource, its spec and status;
//! - `names`: the names and labels of what a model owns, and a step's plugin config;
//! - `text`: bounded text for messages.
pub mod api;
pub mod conditions;
pub mod names;
pub mod text;
