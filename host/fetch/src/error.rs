//! The downloader's typed errors; each maps to the CamelCase `reason` the controller shows.
use std::io;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0}")]
    InvalidUrl(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{message}")]
    NotFound {
        message: String,
        status: Option<u16>,
    },
    #[error("{message}")]
    AuthFailed {
        message: String,
        status: Option<u16>,
    },
    #[error("sha256 mismatch for {what}: expected {expected}, got {actual}")]
    ChecksumMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("{0}")]
    DiskFull(String),
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    Network(String),
    #[error("{message}")]
    Http { message: String, status: u16 },
    #[error("{0}")]
    ForbiddenAddress(String),
    #[error("{0}")]
    UnsafeArchive(String),
    #[error("{0}")]
    ExtractFailed(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
}

impl FetchError {
    /// Machine-readable reason, as written to the termination log and shown in status.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::InvalidUrl(_) => "InvalidURL",
            Self::InvalidArgument(_) => "InvalidArgument",
            Self::NotFound { .. } => "NotFound",
            Self::AuthFailed { .. } => "AuthFailed",
            Self::ChecksumMismatch { .. } => "ChecksumMismatch",
            Self::DiskFull(_) => "DiskFull",
            Self::Timeout(_) => "Timeout",
            Self::Network(_) => "NetworkError",
            Self::Http { .. } => "HttpError",
            Self::ForbiddenAddress(_) => "ForbiddenAddress",
            Self::UnsafeArchive(_) => "UnsafeArchive",
            Self::ExtractFailed(_) => "ExtractFailed",
            Self::Io { .. } => "IOError",
        }
    }

    /// Whether another attempt with the same inputs can only fail the same way: a full volume
    /// (the partial data is kept, so a retry meets the same disk), a URL or argument refused, an
    /// archive refused. The process exits with [`crate::EXIT_PERMANENT`] then, and the download
    /// Job's `podFailurePolicy` fails the Job at once instead of spending its retries.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self,
            Self::DiskFull(_)
                | Self::InvalidUrl(_)
                | Self::InvalidArgument(_)
                | Self::ForbiddenAddress(_)
                | Self::UnsafeArchive(_)
        )
    }

    pub fn status(&self) -> Option<u16> {
        match self {
            Self::NotFound { status, .. } | Self::AuthFailed { status, .. } => *status,
            Self::Http { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// A local I/O failure; `ENOSPC` becomes `DiskFull` with the filesystem's sizes.
    pub fn io(context: impl Into<String>, path: &Path, source: io::Error) -> Self {
        let context = context.into();
        if is_disk_full(&source) {
            return Self::DiskFull(format!(
                "{context}: no space left on device ({})",
                describe_space(path)
            ));
        }
        Self::Io { context, source }
    }
}

pub fn is_disk_full(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::StorageFull || e.raw_os_error() == Some(libc::ENOSPC)
}

/// Free and total bytes of the filesystem holding `path`.
pub fn fs_space(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::ffi::OsStrExt;
    // The path may not exist yet (a file about to be created): ask about its nearest ancestor.
    let existing = path.ancestors().find(|p| p.exists())?;
    let c = std::ffi::CString::new(existing.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a properly sized out-parameter.
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let frsize = st.f_frsize as u64;
    Some((st.f_bavail as u64 * frsize, st.f_blocks as u64 * frsize))
}

pub fn describe_space(path: &Path) -> String {
    match fs_space(path) {
        Some((free, total)) => format!(
            "filesystem of {} has {} ({free} bytes) free of {}",
            path.display(),
            human_bytes(free),
            human_bytes(total)
        ),
        None => format!("filesystem of {}: size unknown", path.display()),
    }
}

pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// An error with its sources, "a: b: c" (reqwest's own Display hides the cause).
pub fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !parts.last().is_some_and(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = s.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enospc_is_disk_full_with_sizes() {
        let e = io::Error::from_raw_os_error(libc::ENOSPC);
        let err = FetchError::io("writing model.bin after 10 bytes", Path::new("/tmp"), e);
        assert_eq!(err.reason(), "DiskFull");
        let msg = err.to_string();
        assert!(
            msg.contains("after 10 bytes") && msg.contains("free of"),
            "{msg}"
        );
    }

    #[test]
    fn other_io_errors_stay_io() {
        let e = io::Error::from(io::ErrorKind::PermissionDenied);
        assert_eq!(FetchError::io("x", Path::new("/"), e).reason(), "IOError");
    }

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(12), "12 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }
}
