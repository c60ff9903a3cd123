//! What can go wrong with a plugin, each with the CamelCase reason a model's status shows.
use std::time::Duration;

use super::Step;
use super::engine::CallFailure;
use super::registry::stderr_suffix;
use crate::api::InvalidPluginConfig;
use crate::conditions::Reason;
use crate::plugins::Limits;

/// Why a plugin could not be used. Each message is one line that names the plugin.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("no plugin named {wanted:?} for step {step} (chosen by {chosen_by}); loaded: {known}")]
    NotFound {
        step: Step,
        wanted: String,
        chosen_by: String,
        known: String,
    },
    #[error("plugin {plugin} has digest sha256:{actual}, but {chosen_by} pins {wanted}")]
    DigestMismatch {
        plugin: String,
        wanted: String,
        actual: String,
        chosen_by: String,
    },
    #[error("plugin {plugin} does not render step {step} (it renders: {steps})")]
    WrongStep {
        plugin: String,
        step: Step,
        steps: String,
    },
    #[error("plugin {plugin} crashed: {message}{}", stderr_suffix(stderr))]
    Trap {
        plugin: String,
        message: String,
        stderr: String,
    },
    #[error(
        "plugin {plugin} did not finish within {limit:?} and was stopped{}",
        stderr_suffix(stderr)
    )]
    Timeout {
        plugin: String,
        limit: Duration,
        stderr: String,
    },
    #[error("plugin {plugin} needed more than its {} MiB of memory and was stopped{}", limit_bytes >> 20, stderr_suffix(stderr))]
    OutOfMemory {
        plugin: String,
        limit_bytes: usize,
        stderr: String,
    },
    #[error("plugin {plugin} failed: {message}{}", stderr_suffix(stderr))]
    Failed {
        plugin: String,
        message: String,
        stderr: String,
    },
    #[error("plugin {plugin} returned invalid output: {object}: {message}")]
    InvalidOutput {
        plugin: String,
        object: String,
        message: String,
    },
    #[error("plugin {plugin} returned {object}, which is not allowed: {rule}")]
    Forbidden {
        plugin: String,
        object: String,
        rule: String,
    },
    /// The model's `spec.plugins.config` is out of bounds: no plugin is called with it.
    #[error("{0}")]
    InvalidConfig(#[from] InvalidPluginConfig),
}

impl PluginError {
    /// The reason the model's status shows.
    pub fn reason(&self) -> Reason {
        match self {
            PluginError::NotFound { .. } => Reason::PluginNotFound,
            PluginError::DigestMismatch { .. } => Reason::PluginDigestMismatch,
            PluginError::WrongStep { .. } => Reason::PluginWrongStep,
            PluginError::Trap { .. } => Reason::PluginTrapped,
            PluginError::Timeout { .. } => Reason::PluginTimeout,
            PluginError::OutOfMemory { .. } => Reason::PluginOutOfMemory,
            PluginError::Failed { .. } => Reason::PluginFailed,
            PluginError::InvalidOutput { .. } => Reason::InvalidPluginOutput,
            PluginError::Forbidden { .. } => Reason::ForbiddenPluginOutput,
            PluginError::InvalidConfig(_) => Reason::InvalidPluginConfig,
        }
    }

    pub(super) fn from_call(plugin: &str, limits: &Limits, failure: CallFailure) -> Self {
        let plugin = plugin.to_string();
        match failure {
            CallFailure::Trap { message, stderr } => PluginError::Trap {
                plugin,
                message,
                stderr,
            },
            CallFailure::Timeout { stderr } => PluginError::Timeout {
                plugin,
                limit: limits.timeout,
                stderr,
            },
            CallFailure::OutOfMemory { stderr } => PluginError::OutOfMemory {
                plugin,
                limit_bytes: limits.memory_bytes,
                stderr,
            },
        }
    }
}
