//! The one-line JSON result on the termination log, which the controller turns into status.
//!
//! Success: `{"reason":"Downloaded","bytes":N,"sha256":"..","seconds":S,"files":N,"cached":B}`.
//! Failure: `{"reason":"NotFound","message":"..."}` plus `status` (HTTP) or `expected`/`actual`
//! (checksum) when they apply. Always under 4096 bytes, the kubelet's limit.
use std::path::Path;

use serde_json::{Value, json};
use tracing::warn;

use crate::error::FetchError;
use crate::place::Marker;

pub const MAX_BYTES: usize = 4096;

pub fn success(marker: &Marker, seconds: f64, cached: bool) -> String {
    json!({
        "reason": "Downloaded",
        "bytes": marker.bytes,
        "sha256": marker.sha256,
        "seconds": (seconds * 1000.0).round() / 1000.0,
        "files": marker.files,
        "cached": cached,
    })
    .to_string()
}

pub fn failure(err: &FetchError) -> String {
    let mut v = json!({ "reason": err.reason(), "message": err.to_string() });
    if let Some(status) = err.status() {
        v["status"] = json!(status);
    }
    if let FetchError::ChecksumMismatch {
        expected, actual, ..
    } = err
    {
        v["expected"] = json!(expected);
        v["actual"] = json!(actual);
    }
    fit(v)
}

/// Shortens the message until the line fits the kubelet's limit.
fn fit(mut v: Value) -> String {
    let line = v.to_string();
    if line.len() < MAX_BYTES {
        return line;
    }
    let message = v["message"].as_str().unwrap_or_default().to_string();
    // JSON escaping can grow a message up to 6x; cut with room to spare, on a char boundary.
    let mut keep = message.len().saturating_sub(line.len() - MAX_BYTES + 64);
    loop {
        while !message.is_char_boundary(keep) {
            keep -= 1;
        }
        v["message"] = json!(format!("{}...", &message[..keep]));
        let line = v.to_string();
        if line.len() < MAX_BYTES || keep == 0 {
            return line;
        }
        keep = keep.saturating_sub(line.len() - MAX_BYTES + 64);
    }
}

/// Writes the line; a missing or read-only path (outside Kubernetes) is only a warning.
pub fn write(path: &Path, line: &str) {
    if let Err(e) = std::fs::write(path, format!("{line}\n")) {
        warn!(path = %path.display(), "could not write the termination log: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_messages_are_cut_to_fit() {
        let err = FetchError::Network("\"é\u{1}".repeat(5000));
        let line = failure(&err);
        assert!(line.len() < MAX_BYTES, "{}", line.len());
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["reason"], "NetworkError");
        assert!(v["message"].as_str().unwrap().ends_with("..."));
    }

    #[test]
    fn checksum_failure_carries_both_digests() {
        let err = FetchError::ChecksumMismatch {
            what: "m.bin".into(),
            expected: "aa".into(),
            actual: "bb".into(),
        };
        let v: Value = serde_json::from_str(&failure(&err)).unwrap();
        assert_eq!(v["reason"], "ChecksumMismatch");
        assert_eq!(v["expected"], "aa");
        assert_eq!(v["actual"], "bb");
    }
}
