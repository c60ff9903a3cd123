//! The status vocabulary: the types of a model's conditions, condition statuses, and the reasons
//! the operator sets, each spelt exactly as on the wire (the API users and tools read). Reasons
//! copied verbatim from elsewhere (a pod's `ImagePullBackOff`, a Job's `BackoffLimitExceeded`,
//! the downloader's `NotFound`) pass through as [`Reason::Passed`]. Imports nothing.
use strum::{AsRefStr, Display, EnumIter, IntoStaticStr};

/// The pod condition of the readiness gate the host puts on serving pods of a model with
/// `spec.validation`: `True` once the pod answered the sample request as expected.
pub const VALIDATED_GATE: &str = "mlmodel.dev/validated";

/// The conditions of `MLModel.status.conditions`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Display, AsRefStr, IntoStaticStr, EnumIter)]
pub enum ConditionType {
    /// The wanted revision is downloaded.
    Downloaded,
    /// The served revision's workload is available.
    Serving,
    /// The Service exists (only when `spec.expose`).
    Exposed,
    /// A model is served (and exposed, when asked).
    Ready,
}

impl ConditionType {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// A condition's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Display, AsRefStr, IntoStaticStr, EnumIter)]
pub enum ConditionStatus {
    True,
    False,
    Unknown,
}

impl ConditionStatus {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// `True` when `ok`, else `False`.
    pub fn from_bool(ok: bool) -> Self {
        if ok {
            ConditionStatus::True
        } else {
            ConditionStatus::False
        }
    }

    /// Whether `status` (a condition's status as read from any object) is this one.
    pub fn is(self, status: &str) -> bool {
        status == self.as_str()
    }
}

/// The CamelCase reason of a condition or of the model's phase.
#[derive(Clone, Debug, PartialEq, Eq, Hash, IntoStaticStr, EnumIter)]
pub enum Reason {
    // Condition `Downloaded`.
    Downloaded,
    Downloading,
    Pending,
    /// The download failed without a reason of its own (its phase reason too).
    DownloadFailed,
    /// The download's bytes have not moved for a minute or more (its phase reason too).
    DownloadStalled,
    /// An Event's: a download attempt failed and the Job retries it.
    DownloadRetried,
    // Condition `Serving`.
    Available,
    RollingOut,
    NotDeployed,
    // Condition `Exposed`.
    ServiceReady,
    ServicePending,
    // The phase (and condition `Ready`).
    CreatingStorage,
    Deploying,
    Exposing,
    Ready,
    // Phase `Degraded` (and condition `Ready`): why replicas of the served revision are not ready.
    /// A replica's node stopped reporting (the node lifecycle controller marked it not ready).
    NodeLost,
    /// A replica was evicted (a drain, a taint, the API's eviction).
    Evicted,
    /// A replica cannot be scheduled (the scheduler's message says why).
    Unschedulable,
    /// A replica is not ready yet (starting, or its probe fails).
    ReplicasNotReady,
    // A step the user must unblock.
    NameConflict,
    ApplyFailed,
    InvalidPluginConfig,
    /// The downloaded files are of a format the serve plugin does not load.
    ModelFormatMismatch,
    /// The plugins cannot do the storage mode asked (per-pod needs a download Job and a
    /// serving Deployment).
    StorageModeUnsupported,
    /// `spec.validation.expect` is not JSON.
    InvalidValidation,
    /// A new serving pod answered the sample request of `spec.validation` wrongly (its
    /// condition `Serving` and the phase).
    ValidationFailed,
    // A plugin that could not be used (`PluginError::reason`).
    PluginNotFound,
    /// The plugin asked for failed to load (a registry reference or file of that name).
    PluginLoadFailed,
    PluginDigestMismatch,
    PluginWrongStep,
    PluginTrapped,
    PluginTimeout,
    PluginOutOfMemory,
    PluginFailed,
    InvalidPluginOutput,
    ForbiddenPluginOutput,
    /// A reason copied verbatim from a Kubernetes object or the downloader's report.
    Passed(String),
}

impl Reason {
    /// The reason of a wire string: one of ours, else passed through.
    pub fn from_wire(s: &str) -> Reason {
        <Reason as strum::IntoEnumIterator>::iter()
            .find(|r| !matches!(r, Reason::Passed(_)) && r.as_str() == s)
            .unwrap_or_else(|| Reason::Passed(s.to_string()))
    }

    /// The wire string.
    pub fn as_str(&self) -> &str {
        match self {
            Reason::Passed(reason) => reason,
            own => own.into(),
        }
    }
}

impl AsRef<str> for Reason {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strum::IntoEnumIterator;

    /// The API: renaming a variant must not change what users and tools read.
    #[test]
    fn wire_strings_are_pinned() {
        let types: Vec<String> = ConditionType::iter().map(|t| t.to_string()).collect();
        assert_eq!(types, ["Downloaded", "Serving", "Exposed", "Ready"]);
        assert!(ConditionType::iter().all(|t| t.as_ref() == t.as_str()));

        let statuses: Vec<String> = ConditionStatus::iter().map(|s| s.to_string()).collect();
        assert_eq!(statuses, ["True", "False", "Unknown"]);
        assert!(ConditionStatus::iter().all(|s| s.as_ref() == s.as_str()));
        assert_eq!(ConditionStatus::from_bool(true), ConditionStatus::True);
        assert_eq!(ConditionStatus::from_bool(false), ConditionStatus::False);

        let reasons: Vec<String> = Reason::iter()
            .filter(|r| !matches!(r, Reason::Passed(_)))
            .map(|r| r.to_string())
            .collect();
        assert_eq!(
            reasons,
            [
                "Downloaded",
                "Downloading",
                "Pending",
                "DownloadFailed",
                "DownloadStalled",
                "DownloadRetried",
                "Available",
                "RollingOut",
                "NotDeployed",
                "ServiceReady",
                "ServicePending",
                "CreatingStorage",
                "Deploying",
                "Exposing",
                "Ready",
                "NodeLost",
                "Evicted",
                "Unschedulable",
                "ReplicasNotReady",
                "NameConflict",
                "ApplyFailed",
                "InvalidPluginConfig",
                "ModelFormatMismatch",
                "StorageModeUnsupported",
                "InvalidValidation",
                "ValidationFailed",
                "PluginNotFound",
                "PluginLoadFailed",
                "PluginDigestMismatch",
                "PluginWrongStep",
                "PluginTrapped",
                "PluginTimeout",
                "PluginOutOfMemory",
                "PluginFailed",
                "InvalidPluginOutput",
                "ForbiddenPluginOutput",
            ]
        );
        assert!(Reason::iter().all(|r| r.as_ref() == r.to_string()));
        // Read back from the wire: ours by name, anything else passed through.
        for r in Reason::iter().filter(|r| !matches!(r, Reason::Passed(_))) {
            assert_eq!(Reason::from_wire(r.as_str()), r);
        }
        assert_eq!(
            Reason::from_wire("BackoffLimitExceeded"),
            Reason::Passed("BackoffLimitExceeded".into())
        );
        let passed = Reason::Passed("ImagePullBackOff".into());
        assert_eq!(passed.to_string(), "ImagePullBackOff");
        assert_eq!(passed.as_str(), "ImagePullBackOff");
    }
}
