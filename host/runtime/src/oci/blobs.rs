//! What was fetched, on disk by digest (`<cache>/oci/sha256/<hex>.wasm`, manifests as
//! `<hex>.manifest.json`), so a restart fetches nothing a digest already names. A file is never
//! trusted: its sha256 is checked at every read, and one that does not match is removed.
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::artifact::sha256_hex;

pub(super) struct BlobCache {
    dir: PathBuf,
}

/// What a cached file holds.
#[derive(Clone, Copy)]
pub(super) enum Kind {
    Manifest,
    Component,
}

impl Kind {
    fn suffix(self) -> &'static str {
        match self {
            Kind::Manifest => "manifest.json",
            Kind::Component => "wasm",
        }
    }
}

impl BlobCache {
    /// The cache under `dir` (the runtime's cache directory).
    pub(super) fn new(dir: &Path) -> BlobCache {
        BlobCache {
            dir: dir.join("oci").join("sha256"),
        }
    }

    fn path(&self, hex: &str, kind: Kind) -> PathBuf {
        self.dir.join(format!("{hex}.{}", kind.suffix()))
    }

    /// The cached bytes whose sha256 is `hex`, if the file is there, at most `max` bytes, and
    /// its content matches (else it is removed, to be fetched again).
    pub(super) fn read(&self, hex: &str, kind: Kind, max: u64) -> Option<Vec<u8>> {
        let path = self.path(hex, kind);
        let file = std::fs::File::open(&path).ok()?;
        let mut bytes = Vec::new();
        if let Err(e) = file.take(max + 1).read_to_end(&mut bytes) {
            tracing::warn!(path = %path.display(), error = %e, "cannot read a cached OCI blob; fetching it again");
            return None;
        }
        let actual = sha256_hex(&bytes);
        if bytes.len() as u64 > max || actual != hex {
            tracing::warn!(path = %path.display(), %actual, "cached OCI blob does not match its digest; removed, fetching it again");
            let _ = std::fs::remove_file(&path);
            return None;
        }
        Some(bytes)
    }

    /// Keeps `bytes` (whose sha256 is `hex`); a failure only costs a fetch next time.
    pub(super) fn write(&self, hex: &str, kind: Kind, bytes: &[u8]) {
        let path = self.path(hex, kind);
        let written = std::fs::create_dir_all(&self.dir).and_then(|()| {
            let tmp = path.with_extension(format!("tmp{}", std::process::id()));
            std::fs::write(&tmp, bytes)?;
            std::fs::rename(&tmp, &path)
        });
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), error = %e, "cannot cache a fetched OCI blob");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_blob_is_returned_only_while_it_matches_its_digest() {
        let dir = std::env::temp_dir().join(format!("oci-blobs-{}", std::process::id()));
        let cache = BlobCache::new(&dir);
        let bytes = b"\0asm component bytes";
        let hex = sha256_hex(bytes);
        assert_eq!(cache.read(&hex, Kind::Component, 1 << 20), None);
        cache.write(&hex, Kind::Component, bytes);
        assert_eq!(
            cache.read(&hex, Kind::Component, 1 << 20).as_deref(),
            Some(&bytes[..])
        );
        assert_eq!(
            cache.read(&hex, Kind::Manifest, 1 << 20),
            None,
            "kinds apart"
        );
        assert_eq!(cache.read(&hex, Kind::Component, 4), None, "over the bound");

        cache.write(&hex, Kind::Component, bytes);
        let path = cache.path(&hex, Kind::Component);
        std::fs::write(&path, b"\0asm tampered bytes!").unwrap();
        assert_eq!(cache.read(&hex, Kind::Component, 1 << 20), None);
        assert!(!path.exists(), "a tampered blob is removed");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
