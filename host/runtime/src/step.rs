//! The steps of a model's life, as the host and the WIT contract name them.
use serde::Serialize;
use std::fmt;

use super::engine::wit;
use crate::api::{ANNOTATION_DOWNLOAD_PLUGIN, ANNOTATION_EXPOSE_PLUGIN, ANNOTATION_SERVE_PLUGIN};

/// A step of a model, rendered by one plugin.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    Download,
    Serve,
    Expose,
}

impl Step {
    pub const ALL: [Step; 3] = [Step::Download, Step::Serve, Step::Expose];

    pub fn as_str(self) -> &'static str {
        match self {
            Step::Download => "download",
            Step::Serve => "serve",
            Step::Expose => "expose",
        }
    }

    /// The annotation that picks this step's plugin for a model.
    pub fn annotation(self) -> &'static str {
        match self {
            Step::Download => ANNOTATION_DOWNLOAD_PLUGIN,
            Step::Serve => ANNOTATION_SERVE_PLUGIN,
            Step::Expose => ANNOTATION_EXPOSE_PLUGIN,
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Step {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Step::ALL
            .into_iter()
            .find(|step| step.as_str() == s)
            .ok_or_else(|| format!("unknown step {s:?}: expected download, serve or expose"))
    }
}

impl From<wit::Step> for Step {
    fn from(s: wit::Step) -> Self {
        match s {
            wit::Step::Download => Step::Download,
            wit::Step::Serve => Step::Serve,
            wit::Step::Expose => Step::Expose,
        }
    }
}
