//! What `--url` names: parsed into a location per scheme.
use reqwest::Url;

use crate::error::FetchError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Http(Url),
    /// `s3://bucket/key-or-prefix`
    S3 {
        bucket: String,
        key: String,
    },
    /// `gs://bucket/key-or-prefix`
    Gs {
        bucket: String,
        key: String,
    },
    /// `hf://org/repo[@revision][/path]`; a revision containing `/` is written percent-encoded.
    Hf {
        repo: String,
        revision: String,
        path: String,
    },
}

pub fn parse(raw: &str) -> Result<Location, FetchError> {
    let invalid = |why: &str| FetchError::InvalidUrl(format!("invalid URL {raw:?}: {why}"));
    let (scheme, rest) = raw
        .split_once("://")
        .ok_or_else(|| invalid("expected SCHEME://..."))?;
    match scheme.to_ascii_lowercase().as_str() {
        "http" | "https" => {
            let url = Url::parse(raw).map_err(|e| invalid(&e.to_string()))?;
            if url.host_str().is_none_or(str::is_empty) {
                return Err(invalid("no host"));
            }
            Ok(Location::Http(url))
        }
        "s3" | "gs" => {
            let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(invalid("no bucket"));
            }
            let key = key.trim_matches('/').to_string();
            let bucket = bucket.to_string();
            Ok(if scheme.eq_ignore_ascii_case("s3") {
                Location::S3 { bucket, key }
            } else {
                Location::Gs { bucket, key }
            })
        }
        "hf" => {
            let mut parts = rest.trim_matches('/').splitn(3, '/');
            let org = parts.next().unwrap_or_default();
            let repo_rev = parts.next().unwrap_or_default();
            let path = parts.next().unwrap_or_default().trim_matches('/');
            let (repo, revision) = repo_rev.split_once('@').unwrap_or((repo_rev, "main"));
            if org.is_empty() || repo.is_empty() || revision.is_empty() {
                return Err(invalid("expected hf://org/repo[@revision][/path]"));
            }
            Ok(Location::Hf {
                repo: format!("{org}/{repo}"),
                revision: revision.to_string(),
                path: path.to_string(),
            })
        }
        other => Err(invalid(&format!(
            "unsupported scheme {other:?} (supported: https, http, s3, gs, hf)"
        ))),
    }
}

/// Decodes `%XX` escapes (invalid ones are kept as they are).
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes() {
        assert!(matches!(
            parse("https://h/x.tar.gz").unwrap(),
            Location::Http(_)
        ));
        assert_eq!(
            parse("s3://b/models/resnet/").unwrap(),
            Location::S3 {
                bucket: "b".into(),
                key: "models/resnet".into()
            }
        );
        assert_eq!(
            parse("gs://b").unwrap(),
            Location::Gs {
                bucket: "b".into(),
                key: String::new()
            }
        );
        assert_eq!(
            parse("hf://org/repo@v1/onnx/model.onnx").unwrap(),
            Location::Hf {
                repo: "org/repo".into(),
                revision: "v1".into(),
                path: "onnx/model.onnx".into()
            }
        );
        assert_eq!(
            parse("hf://org/repo").unwrap(),
            Location::Hf {
                repo: "org/repo".into(),
                revision: "main".into(),
                path: String::new()
            }
        );
    }

    #[test]
    fn decoding() {
        assert_eq!(percent_decode("refs%2Fpr%2F1"), "refs/pr/1");
        assert_eq!(percent_decode("a%zz%20b"), "a%zz b");
    }

    #[test]
    fn invalid() {
        for bad in ["ftp://h/x", "nothing", "s3:///key", "hf://org", "http://"] {
            let err = parse(bad).unwrap_err();
            assert_eq!(err.reason(), "InvalidURL", "{bad}: {err}");
        }
    }
}
