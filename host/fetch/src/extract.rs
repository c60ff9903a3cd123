//! Safe unpacking of `.tar`, `.tar.gz`/`.tgz` and `.zip` into an empty directory.
//!
//! Refused (`UnsafeArchive`), never skipped: absolute paths, `..`, names reserved for the
//! downloader, symlinks whose target leaves the tree (checked lexically per entry, then once more
//! over the finished tree following every link, so chains of links cannot escape), hard links to
//! anything but a regular file already unpacked, and any write through a symlink. Device nodes and
//! FIFOs are skipped. Files are made readable by all (mode | 0o644, dirs | 0o755): the serving
//! container may run as another user than the Job.
use std::collections::VecDeque;
use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use flate2::read::GzDecoder;
use tracing::warn;

use crate::error::FetchError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Tar,
    TarGz,
    Zip,
}

/// Known single-file model formats: never unpacked, even the ones that are zip files inside
/// (PyTorch `.pt`, Keras `.keras`, NumPy `.npz`, TorchServe `.mar`).
const MODEL_EXTENSIONS: &[&str] = &[
    "pt",
    "pth",
    "bin",
    "safetensors",
    "onnx",
    "pb",
    "h5",
    "hdf5",
    "keras",
    "gguf",
    "ggml",
    "tflite",
    "pkl",
    "pickle",
    "joblib",
    "npz",
    "npy",
    "ckpt",
    "mar",
    "params",
    "json",
    "txt",
    "model",
    "mlmodel",
    "pmml",
    "engine",
    "plan",
    "msgpack",
];

/// Archive format by file name, or by content when the name says nothing.
pub fn detect(name: &str, path: &Path) -> io::Result<Option<Format>> {
    let lower = name.to_ascii_lowercase();
    if lower.ends_with(".tar.gz") || lower.ends_with(".tgz") {
        return Ok(Some(Format::TarGz));
    }
    if lower.ends_with(".tar") {
        return Ok(Some(Format::Tar));
    }
    if lower.ends_with(".zip") {
        return Ok(Some(Format::Zip));
    }
    if let Some((_, ext)) = lower.rsplit_once('.')
        && MODEL_EXTENSIONS.contains(&ext)
    {
        return Ok(None);
    }
    sniff(path)
}

fn sniff(path: &Path) -> io::Result<Option<Format>> {
    let mut head = Vec::with_capacity(512);
    File::open(path)?.take(512).read_to_end(&mut head)?;
    if head.starts_with(b"PK\x03\x04") {
        return Ok(Some(Format::Zip));
    }
    if is_ustar(&head) {
        return Ok(Some(Format::Tar));
    }
    if head.starts_with(&[0x1f, 0x8b]) {
        let mut inner = Vec::with_capacity(512);
        let _ = GzDecoder::new(File::open(path)?)
            .take(512)
            .read_to_end(&mut inner);
        if is_ustar(&inner) {
            return Ok(Some(Format::TarGz));
        }
    }
    Ok(None)
}

fn is_ustar(block: &[u8]) -> bool {
    block.get(257..262) == Some(b"ustar")
}

/// Unpacks `archive` into the empty directory `into`; returns the number of regular files.
pub fn extract(archive: &Path, format: Format, into: &Path) -> Result<u64, FetchError> {
    let file = File::open(archive).map_err(|e| io_err("opening the archive", into, e))?;
    let mut out = Unpacker {
        root: into.to_path_buf(),
        files: 0,
        symlinks: Vec::new(),
    };
    match format {
        Format::Tar => out.tar(BufReader::with_capacity(1 << 20, file))?,
        Format::TarGz => out.tar(GzDecoder::new(BufReader::with_capacity(1 << 20, file)))?,
        Format::Zip => out.zip(file)?,
    }
    for link in &out.symlinks {
        resolve_within(&out.root, link).map_err(|why| {
            FetchError::UnsafeArchive(format!("symlink {} {why}", link.display()))
        })?;
    }
    Ok(out.files)
}

fn io_err(context: &str, root: &Path, e: io::Error) -> FetchError {
    FetchError::io(format!("unpacking: {context}"), root, e)
}

fn unsafe_entry(name: &str, why: &str) -> FetchError {
    FetchError::UnsafeArchive(format!("archive entry {name:?} {why}"))
}

struct Unpacker {
    root: PathBuf,
    files: u64,
    symlinks: Vec<PathBuf>,
}

impl Unpacker {
    fn tar<R: Read>(&mut self, reader: R) -> Result<(), FetchError> {
        let mut archive = tar::Archive::new(reader);
        let bad = |e: io::Error| FetchError::ExtractFailed(format!("reading the tar archive: {e}"));
        for entry in archive.entries().map_err(bad)? {
            let mut entry = entry.map_err(bad)?;
            let raw = entry.path_bytes();
            let name = String::from_utf8_lossy(&raw).into_owned();
            let Some(rel) = entry_path(&name)? else {
                continue;
            };
            let kind = entry.header().entry_type();
            let mode = entry.header().mode().unwrap_or(0o644);
            match kind {
                tar::EntryType::Directory => self.dir(&rel, &name)?,
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    self.file(&rel, &name, mode, &mut entry)?
                }
                tar::EntryType::Symlink => {
                    let target = link_target(entry.link_name_bytes(), &name)?;
                    self.symlink(&rel, &name, &target)?
                }
                tar::EntryType::Link => {
                    let target = link_target(entry.link_name_bytes(), &name)?;
                    self.hardlink(&rel, &name, &target)?
                }
                other => warn!(entry = %name, kind = ?other, "skipping archive entry of this kind"),
            }
        }
        Ok(())
    }

    fn zip(&mut self, file: File) -> Result<(), FetchError> {
        let bad = |e: zip::result::ZipError| {
            FetchError::ExtractFailed(format!("reading the zip archive: {e}"))
        };
        let mut archive = zip::ZipArchive::new(BufReader::new(file)).map_err(bad)?;
        for i in 0..archive.len() {
            let mut entry = archive.by_index(i).map_err(bad)?;
            let name = entry.name().map_err(bad)?.into_owned();
            let Some(rel) = entry_path(&name)? else {
                continue;
            };
            if entry.is_dir() {
                self.dir(&rel, &name)?;
            } else if entry.is_symlink() {
                let mut target = Vec::new();
                entry
                    .read_to_end(&mut target)
                    .map_err(|e| FetchError::ExtractFailed(format!("reading {name:?}: {e}")))?;
                let target = link_target(Some(target.into()), &name)?;
                self.symlink(&rel, &name, &target)?;
            } else {
                let mode = entry.unix_mode().unwrap_or(0o644);
                self.file(&rel, &name, mode, &mut entry)?;
            }
        }
        Ok(())
    }

    fn dir(&mut self, rel: &Path, name: &str) -> Result<(), FetchError> {
        self.parents(rel, name)?;
        let path = self.root.join(rel);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(unsafe_entry(
                name,
                "replaces a file or symlink with a directory",
            )),
            Err(_) => {
                fs::create_dir(&path).map_err(|e| io_err(name, &self.root, e))?;
                let _ = fs::set_permissions(&path, fs::Permissions::from_mode(0o755));
                Ok(())
            }
        }
    }

    fn file(
        &mut self,
        rel: &Path,
        name: &str,
        mode: u32,
        data: &mut dyn Read,
    ) -> Result<(), FetchError> {
        let path = self.prepare_leaf(rel, name)?;
        // create_new never follows a symlink planted at `path`.
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| io_err(name, &self.root, e))?;
        io::copy(data, &mut out).map_err(|e| {
            if crate::error::is_disk_full(&e) {
                io_err(&format!("writing {name}"), &self.root, e)
            } else {
                FetchError::ExtractFailed(format!("unpacking {name:?}: {e}"))
            }
        })?;
        let _ = fs::set_permissions(&path, fs::Permissions::from_mode((mode & 0o755) | 0o644));
        self.files += 1;
        Ok(())
    }

    fn symlink(&mut self, rel: &Path, name: &str, target: &Path) -> Result<(), FetchError> {
        if target.is_absolute() {
            return Err(unsafe_entry(
                name,
                &format!("is a symlink to the absolute path {}", target.display()),
            ));
        }
        // Lexically first; the whole tree is resolved again at the end.
        let mut depth: Vec<OsString> = rel
            .parent()
            .map(|p| p.iter().map(|c| c.to_os_string()).collect())
            .unwrap_or_default();
        for c in target.components() {
            match c {
                Component::Normal(n) => depth.push(n.to_os_string()),
                // The guard pops: a `..` that finds nothing left to pop leaves DEST.
                Component::ParentDir if depth.pop().is_none() => {
                    return Err(unsafe_entry(
                        name,
                        &format!(
                            "is a symlink to {} outside the destination",
                            target.display()
                        ),
                    ));
                }
                _ => {}
            }
        }
        let path = self.prepare_leaf(rel, name)?;
        std::os::unix::fs::symlink(target, &path).map_err(|e| io_err(name, &self.root, e))?;
        self.symlinks.push(rel.to_path_buf());
        Ok(())
    }

    fn hardlink(&mut self, rel: &Path, name: &str, target: &Path) -> Result<(), FetchError> {
        let target_rel = entry_path(&target.to_string_lossy())?
            .ok_or_else(|| unsafe_entry(name, "is a hard link to the archive root"))?;
        // The target must be a regular file reached without following any symlink.
        let mut cur = self.root.clone();
        for c in target_rel.components() {
            cur.push(c);
            let m = fs::symlink_metadata(&cur).map_err(|_| {
                unsafe_entry(
                    name,
                    &format!(
                        "is a hard link to {} which is not in the archive",
                        target.display()
                    ),
                )
            })?;
            if m.file_type().is_symlink() {
                return Err(unsafe_entry(
                    name,
                    &format!("is a hard link through the symlink {}", target.display()),
                ));
            }
        }
        if !fs::symlink_metadata(&cur).is_ok_and(|m| m.is_file()) {
            return Err(unsafe_entry(
                name,
                &format!("is a hard link to {}, not a regular file", target.display()),
            ));
        }
        let path = self.prepare_leaf(rel, name)?;
        fs::hard_link(&cur, &path).map_err(|e| io_err(name, &self.root, e))?;
        self.files += 1;
        Ok(())
    }

    /// Creates the parents and clears the place of a leaf entry (a later duplicate wins, as with
    /// `tar x`); refuses to replace a directory.
    fn prepare_leaf(&mut self, rel: &Path, name: &str) -> Result<PathBuf, FetchError> {
        self.parents(rel, name)?;
        let path = self.root.join(rel);
        match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => Err(FetchError::ExtractFailed(format!(
                "archive entry {name:?} replaces a directory"
            ))),
            Ok(_) => fs::remove_file(&path)
                .map(|()| path)
                .map_err(|e| io_err(name, &self.root, e)),
            Err(_) => Ok(path),
        }
    }

    /// Makes sure every parent of `rel` is a real directory (created if missing), never a symlink.
    fn parents(&mut self, rel: &Path, name: &str) -> Result<(), FetchError> {
        let mut cur = self.root.clone();
        let Some(parent) = rel.parent() else {
            return Ok(());
        };
        for c in parent.components() {
            cur.push(c);
            match fs::symlink_metadata(&cur) {
                Ok(m) if m.is_dir() => {}
                Ok(m) if m.file_type().is_symlink() => {
                    return Err(unsafe_entry(name, "would be written through a symlink"));
                }
                Ok(_) => {
                    return Err(FetchError::ExtractFailed(format!(
                        "archive entry {name:?} needs a directory where a file is"
                    )));
                }
                Err(_) => {
                    fs::create_dir(&cur).map_err(|e| io_err(name, &self.root, e))?;
                    let _ = fs::set_permissions(&cur, fs::Permissions::from_mode(0o755));
                }
            }
        }
        Ok(())
    }
}

/// An entry name as a safe relative path; `None` for the archive root (`./`).
fn entry_path(name: &str) -> Result<Option<PathBuf>, FetchError> {
    let mut out = PathBuf::new();
    for c in Path::new(name).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err(unsafe_entry(name, "has an absolute path"));
            }
            Component::ParentDir => return Err(unsafe_entry(name, "contains '..'")),
        }
    }
    if out.as_os_str().is_empty() {
        return Ok(None);
    }
    if out
        .components()
        .next()
        .is_some_and(|c| c.as_os_str().to_string_lossy().starts_with(".mlmodel-"))
    {
        return Err(unsafe_entry(
            name,
            "uses a name reserved for the downloader",
        ));
    }
    Ok(Some(out))
}

fn link_target(raw: Option<std::borrow::Cow<'_, [u8]>>, name: &str) -> Result<PathBuf, FetchError> {
    use std::os::unix::ffi::OsStrExt;
    let raw = raw.ok_or_else(|| unsafe_entry(name, "is a link without a target"))?;
    if raw.is_empty() || raw.contains(&0) {
        return Err(unsafe_entry(name, "is a link with an invalid target"));
    }
    Ok(PathBuf::from(std::ffi::OsStr::from_bytes(&raw)))
}

/// Follows `rel` (a symlink inside `root`) through every link it meets, and fails if the walk
/// ever leaves `root` or loops.
fn resolve_within(root: &Path, rel: &Path) -> Result<(), String> {
    let mut todo: VecDeque<OsString> = rel.iter().map(|c| c.to_os_string()).collect();
    let mut at: Vec<OsString> = Vec::new();
    let mut hops = 0;
    while let Some(c) = todo.pop_front() {
        match c.to_str() {
            Some("..") => {
                if at.pop().is_none() {
                    return Err("resolves outside the destination".into());
                }
            }
            Some(".") | Some("") => {}
            _ => {
                at.push(c);
                let here: PathBuf = root.join(at.iter().collect::<PathBuf>());
                if fs::symlink_metadata(&here).is_ok_and(|m| m.file_type().is_symlink()) {
                    hops += 1;
                    if hops > 40 {
                        return Err("is a loop of links".into());
                    }
                    let target = fs::read_link(&here).map_err(|e| e.to_string())?;
                    if target.is_absolute() {
                        return Err(format!("points to the absolute path {}", target.display()));
                    }
                    at.pop();
                    for part in target.iter().rev() {
                        todo.push_front(part.to_os_string());
                    }
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detection_by_name() {
        let p = Path::new("/nonexistent");
        assert_eq!(detect("m.tar.gz", p).unwrap(), Some(Format::TarGz));
        assert_eq!(detect("M.TGZ", p).unwrap(), Some(Format::TarGz));
        assert_eq!(detect("m.tar", p).unwrap(), Some(Format::Tar));
        assert_eq!(detect("m.zip", p).unwrap(), Some(Format::Zip));
        // A .pt is a zip inside, and must stay a file.
        assert_eq!(detect("model.pt", p).unwrap(), None);
    }

    #[test]
    fn entry_paths() {
        assert_eq!(entry_path("./").unwrap(), None);
        assert_eq!(
            entry_path("./1/a.pb").unwrap(),
            Some(PathBuf::from("1/a.pb"))
        );
        assert_eq!(entry_path("/etc/x").unwrap_err().reason(), "UnsafeArchive");
        assert_eq!(
            entry_path("a/../../x").unwrap_err().reason(),
            "UnsafeArchive"
        );
        assert_eq!(
            entry_path(".mlmodel-complete.json").unwrap_err().reason(),
            "UnsafeArchive"
        );
    }

    #[test]
    fn chained_links_that_leave_the_tree_are_caught() {
        let dir = std::env::temp_dir().join(format!("fetch-resolve-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(dir.join("d")).unwrap();
        // d/b -> .. is the root (fine); a -> d/b/.. looks like "d" but is the root's parent.
        std::os::unix::fs::symlink("..", dir.join("d/b")).unwrap();
        std::os::unix::fs::symlink("d/b/..", dir.join("a")).unwrap();
        std::os::unix::fs::symlink("d", dir.join("ok")).unwrap();
        assert!(resolve_within(&dir, Path::new("d/b")).is_ok());
        assert!(resolve_within(&dir, Path::new("ok")).is_ok());
        assert!(resolve_within(&dir, Path::new("a")).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }
}
