//! Keyed digests of compiled plugins in the cache directory. A cached artifact becomes native
//! code in the operator, and its file name (`<sha256>-<engine>.cwasm`) says nothing of who wrote
//! it: each artifact the operator writes gets an HMAC-SHA256 of its bytes beside it
//! (`<artifact>.mac`) under a key only the operator can read (`artifacts.key`, mode 0600, its
//! own); an artifact without a matching digest is compiled again, logged and counted.
use anyhow::{Context as _, Result, bail, ensure};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::io::Read as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;

/// Cached artifacts refused since the process started (a digest missing or not matching).
pub static REJECTED: AtomicU64 = AtomicU64::new(0);

const KEY_FILE: &str = "artifacts.key";
const KEY_BYTES: usize = 32;

pub(crate) struct Key([u8; KEY_BYTES]);

impl Key {
    /// The cache directory's key: read when the file is this process's user's and nobody
    /// else's to read or write, made (random, mode 0600) when there is none.
    pub(crate) fn load_or_create(dir: &Path) -> Result<Key> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(KEY_FILE);
        let mut key = [0u8; KEY_BYTES];
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(mut file) => {
                std::fs::File::open("/dev/urandom")
                    .and_then(|mut r| r.read_exact(&mut key))
                    .context("reading /dev/urandom")?;
                use std::io::Write as _;
                file.write_all(&key)
                    .with_context(|| format!("writing {}", path.display()))?;
                return Ok(Key(key));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).with_context(|| format!("creating {}", path.display())),
        }
        let meta = std::fs::symlink_metadata(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let me = std::fs::metadata("/proc/self")
            .context("reading /proc/self")?
            .uid();
        ensure!(
            meta.file_type().is_file(),
            "{} is not a regular file",
            path.display()
        );
        ensure!(
            meta.uid() == me,
            "{} belongs to uid {}, not this process's ({me})",
            path.display(),
            meta.uid()
        );
        ensure!(
            meta.permissions().mode() & 0o077 == 0,
            "{} is readable or writable by others (mode {:o})",
            path.display(),
            meta.permissions().mode() & 0o777
        );
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        if bytes.len() != KEY_BYTES {
            bail!(
                "{} holds {} bytes, not {KEY_BYTES}",
                path.display(),
                bytes.len()
            );
        }
        key.copy_from_slice(&bytes);
        Ok(Key(key))
    }

    fn mac(&self) -> Hmac<Sha256> {
        <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("HMAC takes any key length")
    }

    /// Writes the digest of `bytes`, the artifact at `path`, beside it.
    pub(crate) fn record(&self, path: &Path, bytes: &[u8]) -> Result<()> {
        let mut mac = self.mac();
        mac.update(bytes);
        let digest = hex::encode(mac.finalize().into_bytes());
        let out = mac_path(path);
        let tmp = out.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, digest).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &out).with_context(|| format!("renaming into {}", out.display()))
    }

    /// The artifact's bytes, if its recorded digest matches them (read once: what is checked is
    /// what is returned).
    pub(crate) fn verified(&self, path: &Path) -> Result<Vec<u8>> {
        let recorded = std::fs::read_to_string(mac_path(path)).context("no digest recorded")?;
        let recorded = hex::decode(recorded.trim()).context("the recorded digest is not hex")?;
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let mut mac = self.mac();
        mac.update(&bytes);
        mac.verify_slice(&recorded).map_err(|_| {
            anyhow::anyhow!("its bytes do not match the digest recorded when it was compiled")
        })?;
        Ok(bytes)
    }
}

fn mac_path(artifact: &Path) -> PathBuf {
    let mut name = artifact.as_os_str().to_owned();
    name.push(".mac");
    PathBuf::from(name)
}
