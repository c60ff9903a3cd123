//! The one-line JSON result on the termination log, which the controller turns into status.
//!
//! Success: `{"bytes":N,"cached":B,"files":N,"format":"onnx","largest":[{"bytes":N,"path":".."}],
//! "reason":"Downloaded","seconds":S,"sha256":"..","totalBytes":N}` (`format` and the rest of
//! what landed: see [`crate::format`]; reports written before had no `format`, `largest` or
//! `totalBytes`, and still read).
//! Failure: `{"reason":"NotFound","message":"..."}` plus `status` (HTTP) or `expected`/`actual`
//! (checksum) when they apply. Always under 4096 bytes, the kubelet's limit.
//! Keys come in alphabetical order. One type, [`FetchReport`], writes and reads it.
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};
use tracing::warn;

use crate::error::FetchError;
use crate::format::Inventory;
use crate::place::Marker;

pub const MAX_BYTES: usize = 4096;

/// The termination log's line, both ways: the downloader writes it, the controller reads it back
/// (`interpret::download_state`). Fields are declared in alphabetical order, the order the JSON has
/// always had; absent ones are left out. Reading is as lenient as the controller always was:
/// missing fields are `None`, unknown ones are ignored, and so is an ill-typed `actual`,
/// `cached`, `expected`, `files`, `format`, `largest`, `seconds`, `status` or `totalBytes` (so
/// that a report of an older or newer downloader still gives the controller its reason, bytes and
/// digest).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FetchReport {
    /// Checksum failures: the digest received.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient"
    )]
    pub actual: Option<String>,
    /// Success: bytes downloaded (the file, the archive, or all files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<u64>,
    /// Success: whether DEST already held this download.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient"
    )]
    pub cached: Option<bool>,
    /// Checksum failures: the digest asked for.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient"
    )]
    pub expected: Option<String>,
    /// Success: regular files placed in DEST.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient"
    )]
    pub files: Option<u64>,
    /// Success: the model format detected from the content of what was placed: `saved-model`,
    /// `keras-hdf5`, `onnx`, `safetensors`, `gguf`, `pytorch` or `files`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient"
    )]
    pub format: Option<String>,
    /// Success: the largest files placed, largest first (at most [`crate::format::LISTED`], paths
    /// relative to DEST and cut to [`crate::format::MAX_PATH`] bytes).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient"
    )]
    pub largest: Option<Vec<PlacedFile>>,
    /// Failure: what went wrong, cut to fit [`MAX_BYTES`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `Downloaded`, or the failure's reason (`NotFound`, `ChecksumMismatch`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Success: duration of the run, to the millisecond.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient"
    )]
    pub seconds: Option<f64>,
    /// Success: digest of what was downloaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Failure: the HTTP status, when there was one.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient"
    )]
    pub status: Option<u16>,
    /// Success: the size of all the files placed (after unpacking, unlike `bytes`).
    #[serde(
        rename = "totalBytes",
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "lenient"
    )]
    pub total_bytes: Option<u64>,
}

/// One file placed in DEST.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacedFile {
    pub bytes: u64,
    /// Relative to DEST; a long path keeps its end, after `...`.
    pub path: String,
}

/// A value of the wrong type reads as absent instead of failing the whole report.
fn lenient<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    let value = serde_json::Value::deserialize(d)?;
    Ok(serde_json::from_value(value).ok())
}

impl FetchReport {
    pub fn success(marker: &Marker, seconds: f64, cached: bool) -> Self {
        Self {
            reason: Some("Downloaded".into()),
            bytes: Some(marker.bytes),
            sha256: Some(marker.sha256.clone()),
            seconds: Some((seconds * 1000.0).round() / 1000.0),
            files: Some(marker.files),
            cached: Some(cached),
            ..Self::default()
        }
    }

    /// Adds what landed: the format, the total size and the largest files. Bounded whatever the
    /// number of files: at most [`crate::format::LISTED`] paths of at most [`crate::format::MAX_PATH`] bytes.
    pub fn with_inventory(mut self, inventory: &Inventory) -> Self {
        self.format = Some(inventory.format.to_string());
        self.total_bytes = Some(inventory.total_bytes);
        self.largest = Some(
            inventory
                .largest
                .iter()
                .map(|(path, bytes)| PlacedFile {
                    bytes: *bytes,
                    path: path.clone(),
                })
                .collect(),
        );
        self
    }

    pub fn failure(err: &FetchError) -> Self {
        let (expected, actual) = match err {
            FetchError::ChecksumMismatch {
                expected, actual, ..
            } => (Some(expected.clone()), Some(actual.clone())),
            _ => (None, None),
        };
        Self {
            reason: Some(err.reason().into()),
            message: Some(err.to_string()),
            status: err.status(),
            expected,
            actual,
            ..Self::default()
        }
    }

    /// The JSON line, under [`MAX_BYTES`]: the message is shortened until it fits.
    pub fn to_line(&self) -> String {
        let line = self.json();
        if line.len() < MAX_BYTES {
            return line;
        }
        let message = self.message.clone().unwrap_or_default();
        let mut cut = self.clone();
        // JSON escaping can grow a message up to 6x; cut with room to spare, on a char boundary.
        let mut keep = message.len().saturating_sub(line.len() - MAX_BYTES + 64);
        loop {
            while !message.is_char_boundary(keep) {
                keep -= 1;
            }
            cut.message = Some(format!("{}...", &message[..keep]));
            let line = cut.json();
            if line.len() < MAX_BYTES || keep == 0 {
                return line;
            }
            keep = keep.saturating_sub(line.len() - MAX_BYTES + 64);
        }
    }

    fn json(&self) -> String {
        serde_json::to_string(self).expect("a report is always valid JSON")
    }
}

pub fn success(marker: &Marker, seconds: f64, cached: bool, inventory: &Inventory) -> String {
    FetchReport::success(marker, seconds, cached)
        .with_inventory(inventory)
        .to_line()
}

pub fn failure(err: &FetchError) -> String {
    FetchReport::failure(err).to_line()
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
    use crate::format;
    use serde_json::Value;

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

    fn marker() -> Marker {
        Marker {
            url: "https://h.example/m.bin".into(),
            sha256: "ab".repeat(32),
            bytes: 42,
            files: 1,
            extract: "auto".into(),
            filename: None,
            entries: Vec::new(),
        }
    }

    fn inventory() -> Inventory {
        Inventory {
            format: format::ONNX,
            files: 1,
            total_bytes: 42,
            largest: vec![("m.bin".into(), 42)],
        }
    }

    /// The lines on the wire, byte for byte, and back: what the controller reads is what was
    /// written.
    #[test]
    fn lines_are_unchanged_and_read_back() {
        let sha = "ab".repeat(32);
        let landed = r#""format":"onnx","largest":[{"bytes":42,"path":"m.bin"}]"#;
        let cases = [
            (
                success(&marker(), 1.23456, false, &inventory()),
                format!(
                    r#"{{"bytes":42,"cached":false,"files":1,{landed},"reason":"Downloaded","seconds":1.235,"sha256":"{sha}","totalBytes":42}}"#
                ),
            ),
            (
                success(&marker(), 2.0, true, &inventory()),
                format!(
                    r#"{{"bytes":42,"cached":true,"files":1,{landed},"reason":"Downloaded","seconds":2.0,"sha256":"{sha}","totalBytes":42}}"#
                ),
            ),
            (
                failure(&FetchError::NotFound {
                    message: "HTTP 404 \"x\" from https://x/m".into(),
                    status: Some(404),
                }),
                r#"{"message":"HTTP 404 \"x\" from https://x/m","reason":"NotFound","status":404}"#
                    .to_string(),
            ),
            (
                failure(&FetchError::ChecksumMismatch {
                    what: "m.bin".into(),
                    expected: "aa".into(),
                    actual: "bb".into(),
                }),
                format!(
                    r#"{{"actual":"bb","expected":"aa","message":{},"reason":"ChecksumMismatch"}}"#,
                    serde_json::to_string(
                        &FetchError::ChecksumMismatch {
                            what: "m.bin".into(),
                            expected: "aa".into(),
                            actual: "bb".into(),
                        }
                        .to_string()
                    )
                    .unwrap()
                ),
            ),
            (
                failure(&FetchError::Network("reset".into())),
                r#"{"message":"reset","reason":"NetworkError"}"#.to_string(),
            ),
        ];
        for (line, wire) in cases {
            assert_eq!(line, wire);
            let read: FetchReport = serde_json::from_str(&line).unwrap();
            assert_eq!(read.to_line(), line);
        }
        let read: FetchReport =
            serde_json::from_str(&success(&marker(), 0.5, false, &inventory())).unwrap();
        assert_eq!(
            read,
            FetchReport {
                reason: Some("Downloaded".into()),
                bytes: Some(42),
                sha256: Some(sha.clone()),
                seconds: Some(0.5),
                files: Some(1),
                cached: Some(false),
                format: Some("onnx".into()),
                largest: Some(vec![PlacedFile {
                    bytes: 42,
                    path: "m.bin".into()
                }]),
                total_bytes: Some(42),
                ..FetchReport::default()
            }
        );
        // A report of an earlier downloader, without what landed, still reads.
        let old = format!(
            r#"{{"bytes":42,"cached":false,"files":1,"reason":"Downloaded","seconds":1.235,"sha256":"{sha}"}}"#
        );
        let read: FetchReport = serde_json::from_str(&old).unwrap();
        assert_eq!(
            (read.bytes, &read.format, &read.largest),
            (Some(42), &None, &None)
        );
        assert_eq!(read.to_line(), old);
    }

    /// However many files landed, and however long their names, the report fits the kubelet's
    /// limit.
    #[test]
    fn the_report_of_ten_thousand_files_fits() {
        let dir = std::env::temp_dir().join(format!("fetch-report-many-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let deep = dir.join(format!("{}/{}", "d".repeat(200), "\u{e9}\"".repeat(60)));
        std::fs::create_dir_all(&deep).unwrap();
        for i in 0..10_000 {
            let name = format!("{i:05}-{}\u{1}", "n".repeat(200));
            std::fs::write(deep.join(name), vec![0; i % 97]).unwrap();
        }
        let inventory = format::inspect(&dir, &[]);
        assert_eq!((inventory.files, inventory.format), (10_000, format::FILES));
        assert_eq!(inventory.largest.len(), format::LISTED);
        let line = success(&marker(), 12.5, false, &inventory);
        assert!(line.len() < MAX_BYTES, "{} bytes: {line}", line.len());
        let read: FetchReport = serde_json::from_str(&line).unwrap();
        assert_eq!(read.total_bytes, Some(inventory.total_bytes));
        assert_eq!(read.largest.unwrap()[0].bytes, 96);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reading_is_lenient_about_fields_the_controller_does_not_use() {
        let read: FetchReport = serde_json::from_str(
            r#"{"reason":"NotFound","message":"m","status":"x","files":-1,"seconds":"1s","extra":[1]}"#,
        )
        .unwrap();
        assert_eq!(read.reason.as_deref(), Some("NotFound"));
        assert_eq!(read.message.as_deref(), Some("m"));
        assert_eq!((read.status, read.files, read.seconds), (None, None, None));
        let read: FetchReport = serde_json::from_str(
            r#"{"reason":"Downloaded","bytes":1,"format":7,"largest":"x","totalBytes":-3}"#,
        )
        .unwrap();
        assert_eq!(read.bytes, Some(1));
        assert_eq!(
            (read.format, read.largest, read.total_bytes),
            (None, None, None)
        );
        let empty: FetchReport = serde_json::from_str("{}").unwrap();
        assert_eq!(empty, FetchReport::default());
    }
}
