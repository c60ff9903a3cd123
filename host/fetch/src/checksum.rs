//! What `--sha256` is compared with.
//!
//! One file: its own sha256 (for an archive, the archive's, checked before unpacking). Several
//! files (a prefix or a repository): the sha256 of a manifest in `sha256sum` format, one line
//! `<hex>  <relative path>\n` per file sorted by path, so `sha256sum` over the tree reproduces it.
use sha2::{Digest, Sha256};

use crate::error::FetchError;
use crate::transfer::Done;

/// Accepts 64 hex digits, optionally prefixed `sha256:`; returns them lowercased.
pub fn parse_expected(raw: &str) -> Result<String, FetchError> {
    let hex = raw.trim();
    let hex = hex.strip_prefix("sha256:").unwrap_or(hex);
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(FetchError::InvalidArgument(format!(
            "--sha256 must be 64 hex digits, got {raw:?}"
        )));
    }
    Ok(hex.to_ascii_lowercase())
}

/// The digest that stands for the whole download.
pub fn digest_of(files: &[Done]) -> String {
    match files {
        [one] => one.sha256.clone(),
        many => {
            let mut sorted: Vec<&Done> = many.iter().collect();
            sorted.sort_by(|a, b| a.rel.cmp(&b.rel));
            let mut h = Sha256::new();
            for f in sorted {
                h.update(format!("{}  {}\n", f.sha256, f.rel));
            }
            hex::encode(h.finalize())
        }
    }
}

pub fn verify(expected: Option<&str>, actual: &str, what: &str) -> Result<(), FetchError> {
    match expected {
        Some(want) if want != actual => Err(FetchError::ChecksumMismatch {
            what: what.to_string(),
            expected: want.to_string(),
            actual: actual.to_string(),
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn done(rel: &str, sha: &str) -> Done {
        Done {
            rel: rel.into(),
            bytes: 1,
            sha256: sha.into(),
        }
    }

    #[test]
    fn expected_forms() {
        let h = "A".repeat(64);
        assert_eq!(parse_expected(&h).unwrap(), "a".repeat(64));
        assert_eq!(
            parse_expected(&format!("sha256:{h}")).unwrap(),
            "a".repeat(64)
        );
        assert!(parse_expected("abc").is_err());
        assert!(parse_expected(&"g".repeat(64)).is_err());
    }

    #[test]
    fn manifest_is_order_independent_and_matches_sha256sum_format() {
        let a = digest_of(&[done("b.bin", "22"), done("a.txt", "11")]);
        let b = digest_of(&[done("a.txt", "11"), done("b.bin", "22")]);
        assert_eq!(a, b);
        let expect = hex::encode(Sha256::digest(b"11  a.txt\n22  b.bin\n"));
        assert_eq!(a, expect);
        assert_eq!(digest_of(&[done("x", "ff")]), "ff");
    }

    #[test]
    fn mismatch_names_both_digests() {
        let e = verify(Some("aa"), "bb", "model.bin").unwrap_err();
        assert_eq!(e.reason(), "ChecksumMismatch");
        let msg = e.to_string();
        assert!(
            msg.contains("expected aa") && msg.contains("got bb"),
            "{msg}"
        );
    }
}
