//! What can go wrong with a plugin, each with the CamelCase reason a model's status shows.
use std::time::Duration;

use super::Step;
use super::engine::CallFailure;
use super::stdio::stderr_suffix;
use crate::Limits;
use crate::api::InvalidPluginConfig;
use crate::conditions::Reason;

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
    /// The plugin asked for is not loaded because its source failed to load (a registry
    /// reference whose repository's last segment, or a file whose stem, is that name).
    #[error(
        "plugin {wanted:?} for step {step} (chosen by {chosen_by}) failed to load from {from}: {error}"
    )]
    LoadFailed {
        step: Step,
        wanted: String,
        chosen_by: String,
        from: String,
        error: String,
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
    /// The step's config has keys the plugin declared it does not read: it is not called.
    #[error("spec.plugins.config.{step} has {} {}, which plugin {plugin} does not read (it reads: {})", if keys.len() == 1 { "the key" } else { "the keys" }, quoted(keys), if known.is_empty() { "no key".to_string() } else { known.join(", ") })]
    UnknownConfigKeys {
        plugin: String,
        step: Step,
        keys: Vec<String>,
        known: Vec<String>,
    },
}

fn quoted(keys: &[String]) -> String {
    keys.iter()
        .map(|k| format!("{:?}", truncate(k.clone(), 64)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Longest message of a plugin error that reaches a model's status (all of it: what the host
/// says, the plugin's message, its stderr). Far below the API server's 32 KiB for a condition's
/// message, so a plugin's failure can never make the status patch itself fail.
pub const MAX_MESSAGE_BYTES: usize = 16 << 10;

/// Longest message a plugin gives for itself (its `plugin-error`, a trap's message), kept by the
/// host; longer ones are cut when they are lifted out of the sandbox.
pub const MAX_PLUGIN_MESSAGE_BYTES: usize = 4 << 10;

pub use crate::text::truncate;

impl PluginError {
    /// The message for the model's status and its Event: the error's one line, at most
    /// [`MAX_MESSAGE_BYTES`].
    pub fn message(&self) -> String {
        truncate(self.to_string(), MAX_MESSAGE_BYTES)
    }

    /// The reason the model's status shows.
    pub fn reason(&self) -> Reason {
        match self {
            PluginError::NotFound { .. } => Reason::PluginNotFound,
            PluginError::LoadFailed { .. } => Reason::PluginLoadFailed,
            PluginError::DigestMismatch { .. } => Reason::PluginDigestMismatch,
            PluginError::WrongStep { .. } => Reason::PluginWrongStep,
            PluginError::Trap { .. } => Reason::PluginTrapped,
            PluginError::Timeout { .. } => Reason::PluginTimeout,
            PluginError::OutOfMemory { .. } => Reason::PluginOutOfMemory,
            PluginError::Failed { .. } => Reason::PluginFailed,
            PluginError::InvalidOutput { .. } => Reason::InvalidPluginOutput,
            PluginError::Forbidden { .. } => Reason::ForbiddenPluginOutput,
            PluginError::InvalidConfig(_) | PluginError::UnknownConfigKeys { .. } => {
                Reason::InvalidPluginConfig
            }
        }
    }

    pub(super) fn from_call(plugin: &str, limits: &Limits, failure: CallFailure) -> Self {
        let plugin = plugin.to_string();
        match failure {
            CallFailure::Trap { message, stderr } => PluginError::Trap {
                plugin,
                message: truncate(message, MAX_PLUGIN_MESSAGE_BYTES),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::text::TRUNCATED;

    #[test]
    fn short_text_is_kept_whole() {
        assert_eq!(truncate("abc".into(), 3), "abc");
        assert_eq!(truncate(String::new(), 0), "");
    }

    #[test]
    fn long_text_is_cut_with_a_marker_within_the_bound() {
        let cut = truncate("x".repeat(100), 40);
        assert_eq!(cut.len(), 40);
        assert!(cut.ends_with(TRUNCATED), "{cut}");
        assert!(cut.starts_with(&"x".repeat(40 - TRUNCATED.len())));
    }

    #[test]
    fn a_cut_never_splits_a_character() {
        // 'é' is two bytes: every cut point lands on a boundary or moves before it.
        for max in TRUNCATED.len()..TRUNCATED.len() + 6 {
            let cut = truncate("é".repeat(50), max);
            assert!(cut.len() <= max, "{max}: {}", cut.len());
            assert!(cut.ends_with(TRUNCATED));
        }
        // A bound smaller than the marker still holds.
        assert!(truncate("é".repeat(50), 3).len() <= 3);
    }

    #[test]
    fn a_status_message_is_bounded_whatever_the_plugin_said() {
        let huge = "y".repeat(10 * MAX_MESSAGE_BYTES);
        let e = PluginError::Failed {
            plugin: "p".into(),
            message: huge.clone(),
            stderr: huge,
        };
        let message = e.message();
        assert_eq!(message.len(), MAX_MESSAGE_BYTES);
        assert!(
            message.starts_with("plugin p failed: yyy"),
            "{}",
            &message[..40]
        );
        assert!(message.ends_with(TRUNCATED));
        let short = PluginError::Failed {
            plugin: "p".into(),
            message: "no".into(),
            stderr: String::new(),
        };
        assert_eq!(short.message(), "plugin p failed: no");
    }

    #[test]
    fn unknown_config_keys_are_named_with_the_known_ones() {
        let e = PluginError::UnknownConfigKeys {
            plugin: "echo-server".into(),
            step: Step::Serve,
            keys: vec!["imag".into()],
            known: vec!["image".into(), "text".into()],
        };
        assert_eq!(e.reason(), Reason::InvalidPluginConfig);
        assert_eq!(
            e.message(),
            "spec.plugins.config.serve has the key \"imag\", which plugin echo-server does not read (it reads: image, text)"
        );
        let none = PluginError::UnknownConfigKeys {
            plugin: "service".into(),
            step: Step::Expose,
            keys: vec!["a".into(), "b\n".into()],
            known: vec![],
        };
        assert_eq!(
            none.message(),
            "spec.plugins.config.expose has the keys \"a\", \"b\\n\", which plugin service does not read (it reads: no key)"
        );
    }

    #[test]
    fn a_trap_message_is_cut_when_lifted() {
        let e = PluginError::from_call(
            "p",
            &Limits::default(),
            CallFailure::Trap {
                message: "z".repeat(MAX_PLUGIN_MESSAGE_BYTES * 3),
                stderr: String::new(),
            },
        );
        let PluginError::Trap { message, .. } = &e else {
            panic!("{e:?}")
        };
        assert_eq!(message.len(), MAX_PLUGIN_MESSAGE_BYTES);
        assert!(message.ends_with(TRUNCATED));
    }
}
