//! The error a reconcile returns to be retried with backoff, and the reasons it is counted by
//! (`mlmodel_reconcile_errors_total`). Kept apart from the controller so that metrics can list
//! the reasons without importing the controller.

/// Errors a reconcile returns to be retried with backoff (everything a user caused is written
/// to status instead and is not an error here).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("model has no namespace")]
    NoNamespace,
}

/// The `reason` label of `mlmodel_reconcile_errors_total`: every value, from the enum itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, strum::EnumIter, strum::IntoStaticStr)]
pub enum ErrorReason {
    ApiError,
    ApiUnreachable,
    NoNamespace,
}

impl ErrorReason {
    /// Every reason, in declaration order.
    pub fn all() -> impl Iterator<Item = ErrorReason> {
        <ErrorReason as strum::IntoEnumIterator>::iter()
    }

    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl Error {
    /// The `reason` label of `mlmodel_reconcile_errors_total`.
    pub fn reason(&self) -> ErrorReason {
        match self {
            Error::Kube(kube::Error::Api(_)) => ErrorReason::ApiError,
            Error::Kube(_) => ErrorReason::ApiUnreachable,
            Error::NoNamespace => ErrorReason::NoNamespace,
        }
    }

    /// [`Error::reason`] as its label value.
    pub fn metric_label(&self) -> &'static str {
        self.reason().as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_are_labelled_by_their_names() {
        let labels: Vec<&str> = ErrorReason::all().map(ErrorReason::as_str).collect();
        assert_eq!(labels, ["ApiError", "ApiUnreachable", "NoNamespace"]);
        assert_eq!(Error::NoNamespace.metric_label(), "NoNamespace");
    }
}
