//! Staging inside DEST, atomic placement and the completion marker.
//!
//! Everything is downloaded (and extracted) under `DEST/.mlmodel-partial/`, on the same
//! filesystem as DEST, then each top-level entry is renamed into DEST and the marker
//! `DEST/.mlmodel-complete.json` is written last (temp file + rename). Without a matching marker
//! nothing in DEST counts as done. A staging area left by a run with other inputs is deleted; one
//! left by the same inputs is resumed. A crash in the middle of placement is detected by the
//! `placing.json` journal and undone on the next run.
use std::fs;
use std::io::Write;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::error::FetchError;

pub const MARKER: &str = ".mlmodel-complete.json";
pub const STAGING: &str = ".mlmodel-partial";
/// Names starting with this are the downloader's own and never taken from a source.
const RESERVED_PREFIX: &str = ".mlmodel-";

/// What the user asked for; equal inputs mean "the same download".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Inputs {
    pub url: String,
    /// The requested digest, if any.
    pub sha256: Option<String>,
    pub extract: String,
    pub filename: Option<String>,
}

/// Written last into DEST: the record of a finished download.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Marker {
    pub url: String,
    /// Digest of what was downloaded (the file, the archive, or the manifest of several files).
    pub sha256: String,
    pub bytes: u64,
    /// Regular files placed in DEST.
    pub files: u64,
    pub extract: String,
    pub filename: Option<String>,
    /// Top-level names placed in DEST (what a later, different download removes).
    pub entries: Vec<String>,
}

impl Marker {
    /// Whether this marker satisfies `inputs` (an unpinned digest accepts whatever was fetched).
    fn satisfies(&self, inputs: &Inputs) -> bool {
        self.url == inputs.url
            && self.extract == inputs.extract
            && self.filename == inputs.filename
            && inputs
                .sha256
                .as_ref()
                .is_none_or(|want| want.eq_ignore_ascii_case(&self.sha256))
    }
}

/// Per-file resume state kept next to the partial data.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PartMeta {
    pub validator: Option<String>,
    pub total: Option<u64>,
    pub complete: bool,
}

#[derive(Debug, Serialize, Deserialize)]
struct Placing {
    entries: Vec<String>,
}

/// Returns the marker when DEST already holds this exact download.
pub fn completed(dest: &Path, inputs: &Inputs) -> Option<Marker> {
    let marker = read_marker(dest)?;
    let present = marker
        .entries
        .iter()
        .all(|e| fs::symlink_metadata(dest.join(e)).is_ok());
    (marker.satisfies(inputs) && present).then_some(marker)
}

fn read_marker(dest: &Path) -> Option<Marker> {
    let text = fs::read(dest.join(MARKER)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Removes what an earlier, different download placed in DEST.
pub fn clear_previous(dest: &Path) -> Result<(), FetchError> {
    let Some(old) = read_marker(dest) else {
        return Ok(());
    };
    info!(url = %old.url, "DEST holds another download; removing it");
    // The marker goes first: a crash halfway must not leave a marker over a partial tree.
    remove_path(&dest.join(MARKER))?;
    for entry in &old.entries {
        if check_rel(entry).is_ok() {
            remove_path(&dest.join(entry))?;
        }
    }
    Ok(())
}

/// The staging area of one download.
#[derive(Debug)]
pub struct Staging {
    dest: PathBuf,
    root: PathBuf,
}

impl Staging {
    /// Opens the staging area for `inputs`, discarding one left by other inputs or by a crash
    /// during placement.
    pub fn prepare(dest: &Path, inputs: &Inputs) -> Result<Self, FetchError> {
        let root = dest.join(STAGING);
        if let Ok(text) = fs::read(root.join("placing.json")) {
            warn!("an earlier run stopped while placing files; undoing it and starting again");
            if let Ok(placing) = serde_json::from_slice::<Placing>(&text) {
                for entry in placing.entries.iter().filter(|e| check_rel(e).is_ok()) {
                    remove_path(&dest.join(entry))?;
                }
            }
            remove_path(&root)?;
        }
        let same = fs::read(root.join("inputs.json"))
            .ok()
            .and_then(|t| serde_json::from_slice::<Inputs>(&t).ok())
            .is_some_and(|old| &old == inputs);
        if !same && root.exists() {
            info!("discarding partial data of a download with other inputs");
            remove_path(&root)?;
        }
        for dir in [root.join("data"), root.join("meta")] {
            fs::create_dir_all(&dir)
                .map_err(|e| FetchError::io(format!("creating {}", dir.display()), &dir, e))?;
        }
        write_atomic(
            &root.join("inputs.json"),
            &serde_json::to_vec(inputs).unwrap(),
        )?;
        Ok(Self {
            dest: dest.to_path_buf(),
            root,
        })
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    pub fn data_path(&self, rel: &str) -> PathBuf {
        self.root.join("data").join(rel)
    }

    /// An empty directory for unpacking an archive (emptied if an earlier run left one).
    pub fn fresh_tree_dir(&self) -> Result<PathBuf, FetchError> {
        let dir = self.root.join("tree");
        remove_path(&dir)?;
        fs::create_dir_all(&dir)
            .map_err(|e| FetchError::io(format!("creating {}", dir.display()), &dir, e))?;
        Ok(dir)
    }

    pub fn read_meta(&self, rel: &str) -> Option<PartMeta> {
        let text = fs::read(self.meta_path(rel)).ok()?;
        serde_json::from_slice(&text).ok()
    }

    pub fn write_meta(&self, rel: &str, meta: &PartMeta) -> Result<(), FetchError> {
        let path = self.meta_path(rel);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)
                .map_err(|e| FetchError::io(format!("creating {}", dir.display()), dir, e))?;
        }
        write_atomic(&path, &serde_json::to_vec(meta).unwrap())
    }

    fn meta_path(&self, rel: &str) -> PathBuf {
        self.root.join("meta").join(format!("{rel}.json"))
    }

    /// Moves every top-level entry of `tree` into DEST, then writes the marker and drops the
    /// staging area.
    pub fn place(self, tree: &Path, mut marker: Marker) -> Result<Marker, FetchError> {
        let mut entries = Vec::new();
        for entry in fs::read_dir(tree).map_err(|e| io(tree, e))? {
            let name = entry.map_err(|e| io(tree, e))?.file_name();
            let name = name.to_str().ok_or_else(|| {
                FetchError::ExtractFailed(format!("file name {name:?} is not UTF-8"))
            })?;
            entries.push(name.to_string());
        }
        entries.sort();
        let journal = self.root.join("placing.json");
        write_atomic(
            &journal,
            &serde_json::to_vec(&Placing {
                entries: entries.clone(),
            })
            .unwrap(),
        )?;
        for name in &entries {
            let to = self.dest.join(name);
            remove_path(&to)?;
            fs::rename(tree.join(name), &to).map_err(|e| io(&to, e))?;
        }
        sync_dir(&self.dest);
        marker.entries = entries;
        write_atomic(
            &self.dest.join(MARKER),
            &serde_json::to_vec_pretty(&marker).unwrap(),
        )?;
        sync_dir(&self.dest);
        if let Err(e) = fs::remove_dir_all(&self.root) {
            warn!("could not remove {}: {e}", self.root.display());
        }
        Ok(marker)
    }
}

/// A relative path from a source (object key, repo path, archive entry) that is safe to create
/// under DEST: no absolute path, no `..`, no `.`, no empty part, not one of our own names.
pub fn check_rel(rel: &str) -> Result<(), String> {
    if rel.is_empty() || rel.contains('\0') {
        return Err(format!("invalid path {rel:?}"));
    }
    let path = Path::new(rel);
    for (i, c) in path.components().enumerate() {
        match c {
            Component::Normal(name) => {
                if i == 0 && name.to_string_lossy().starts_with(RESERVED_PREFIX) {
                    return Err(format!("{rel:?} uses a name reserved for the downloader"));
                }
            }
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!("{rel:?} is an absolute path"));
            }
            Component::ParentDir => return Err(format!("{rel:?} contains '..'")),
            Component::CurDir => return Err(format!("{rel:?} contains '.'")),
        }
    }
    if rel.split('/').any(str::is_empty) {
        return Err(format!("{rel:?} has an empty path segment"));
    }
    Ok(())
}

fn io(path: &Path, e: std::io::Error) -> FetchError {
    FetchError::io(format!("placing {}", path.display()), path, e)
}

/// Removes a file, symlink or directory tree; absent is fine.
pub fn remove_path(path: &Path) -> Result<(), FetchError> {
    let result = match fs::symlink_metadata(path) {
        Err(_) => return Ok(()),
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
    };
    result.map_err(|e| FetchError::io(format!("removing {}", path.display()), path, e))
}

pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), FetchError> {
    let tmp = path.with_extension("tmp~");
    let ctx = |e| FetchError::io(format!("writing {}", path.display()), path, e);
    let mut f = fs::File::create(&tmp).map_err(ctx)?;
    f.write_all(bytes).map_err(ctx)?;
    f.sync_data().map_err(ctx)?;
    fs::rename(&tmp, path).map_err(ctx)
}

fn sync_dir(dir: &Path) {
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_relative_paths() {
        for ok in [
            "model.bin",
            "1/saved_model.pb",
            "a/b/c.txt",
            ".gitattributes",
        ] {
            check_rel(ok).unwrap();
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "./a",
            "a//b",
            ".mlmodel-complete.json",
            ".mlmodel-partial/x",
        ] {
            assert!(check_rel(bad).is_err(), "{bad:?} accepted");
        }
    }

    fn inputs(url: &str, sha: Option<&str>) -> Inputs {
        Inputs {
            url: url.into(),
            sha256: sha.map(Into::into),
            extract: "auto".into(),
            filename: None,
        }
    }

    fn scratch(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("fetch-place-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn staging_is_kept_for_the_same_inputs_and_dropped_for_others() {
        let dest = scratch("inputs");
        let a = inputs("a", None);
        let staging = Staging::prepare(&dest, &a).unwrap();
        fs::write(staging.data_path("m.bin"), b"half").unwrap();
        Staging::prepare(&dest, &a).unwrap();
        assert!(dest.join(STAGING).join("data/m.bin").exists());
        Staging::prepare(&dest, &inputs("b", None)).unwrap();
        assert!(!dest.join(STAGING).join("data/m.bin").exists());
        fs::remove_dir_all(&dest).unwrap();
    }

    #[test]
    fn a_placement_cut_short_is_undone() {
        let dest = scratch("placing");
        let a = inputs("a", None);
        let staging = Staging::prepare(&dest, &a).unwrap();
        fs::write(staging.data_path("m.bin"), b"data").unwrap();
        // As if the process died after moving one entry and before writing the marker.
        fs::write(dest.join("moved.bin"), b"x").unwrap();
        write_atomic(
            &dest.join(STAGING).join("placing.json"),
            br#"{"entries":["moved.bin","m.bin"]}"#,
        )
        .unwrap();
        Staging::prepare(&dest, &a).unwrap();
        assert!(!dest.join("moved.bin").exists());
        assert!(!dest.join(STAGING).join("data/m.bin").exists());
        assert!(completed(&dest, &a).is_none());
        fs::remove_dir_all(&dest).unwrap();
    }

    #[test]
    fn placement_moves_entries_and_writes_the_marker_last() {
        let dest = scratch("place");
        let a = inputs("a", None);
        let staging = Staging::prepare(&dest, &a).unwrap();
        fs::create_dir_all(staging.data_path("1")).unwrap();
        fs::write(staging.data_path("1/saved_model.pb"), b"g").unwrap();
        let tree = staging.data_dir();
        let marker = Marker {
            url: "a".into(),
            sha256: "ab".into(),
            bytes: 1,
            files: 1,
            extract: "auto".into(),
            filename: None,
            entries: vec![],
        };
        let placed = staging.place(&tree, marker).unwrap();
        assert_eq!(placed.entries, vec!["1".to_string()]);
        assert_eq!(fs::read(dest.join("1/saved_model.pb")).unwrap(), b"g");
        assert!(!dest.join(STAGING).exists());
        assert_eq!(completed(&dest, &a).unwrap().sha256, "ab");
        clear_previous(&dest).unwrap();
        assert!(!dest.join("1").exists() && !dest.join(MARKER).exists());
        fs::remove_dir_all(&dest).unwrap();
    }

    #[test]
    fn marker_matching() {
        let m = Marker {
            url: "u".into(),
            sha256: "ab".into(),
            bytes: 1,
            files: 1,
            extract: "auto".into(),
            filename: None,
            entries: vec![],
        };
        assert!(m.satisfies(&inputs("u", None)));
        assert!(m.satisfies(&inputs("u", Some("AB"))));
        assert!(!m.satisfies(&inputs("u", Some("cd"))));
        assert!(!m.satisfies(&inputs("v", None)));
    }
}
