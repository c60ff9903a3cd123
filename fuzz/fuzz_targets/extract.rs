//! The downloader's archive extractor (`host/fetch/src/extract.rs`) on arbitrary archives.
//!
//! Input: one byte choosing the format (0 tar, 1 tar.gz, 2 zip, 3 detected from the content as
//! `--extract auto` does for a name without extension), then the archive's bytes.
//!
//! Each run unpacks into a fresh `dest/` two levels inside a sandbox on tmpfs, beside an
//! `outside/` directory holding a canary file:
//!
//! ```text
//! $FUZZ_EXTRACT_DIR (else /dev/shm)/mlmodel-fuzz-extract-<pid>/    (sandbox)
//!   outside/canary
//!   up/dest/                                  (the destination)
//! ```
//!
//! Properties: `extract` never panics; success or failure, nothing is created, removed or
//! changed outside `dest/` (the sandbox and `up/` hold only what they held, the canary keeps its
//! content and its single link); on success every symlink under `dest/` resolves inside it, and
//! every file is readable by all, with no setuid/setgid/sticky bit and no write bit for others.
#![no_main]

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mlmodel_fetch::fuzzing::{Format, detect, extract};

const CANARY: &[u8] = b"outside the destination";

struct Sandbox {
    root: PathBuf,
    up: PathBuf,
    dest: PathBuf,
    outside: PathBuf,
    archive: PathBuf,
}

fn sandbox() -> &'static Sandbox {
    static SANDBOX: OnceLock<Sandbox> = OnceLock::new();
    SANDBOX.get_or_init(|| {
        // hack/fuzz.sh names a directory it removes after the run.
        let base = if let Some(dir) = std::env::var_os("FUZZ_EXTRACT_DIR") {
            PathBuf::from(dir)
        } else if Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let root = base.join(format!("mlmodel-fuzz-extract-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        let up = root.join("up");
        let outside = root.join("outside");
        fs::create_dir_all(&up).unwrap();
        fs::create_dir_all(&outside).unwrap();
        fs::write(outside.join("canary"), CANARY).unwrap();
        // The archive sits outside the sandbox's checked part, as in the downloader (staging).
        let archive = base.join(format!(
            "mlmodel-fuzz-extract-{}.archive",
            std::process::id()
        ));
        Sandbox {
            dest: up.join("dest"),
            root,
            up,
            outside,
            archive,
        }
    })
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, archive)) = data.split_first() else {
        return;
    };
    let s = sandbox();
    fs::write(&s.archive, archive).unwrap();
    let format = match which & 3 {
        0 => Some(Format::Tar),
        1 => Some(Format::TarGz),
        2 => Some(Format::Zip),
        _ => detect("model", &s.archive).unwrap(),
    };
    let Some(format) = format else {
        return;
    };
    fs::create_dir(&s.dest).unwrap();
    let result = extract(&s.archive, format, &s.dest);

    // Nothing outside dest/, success or not.
    assert_eq!(names(&s.root), ["outside", "up"], "sandbox changed");
    assert_eq!(names(&s.up), ["dest"], "dest's parent changed");
    assert_eq!(names(&s.outside), ["canary"], "outside/ changed");
    let canary = s.outside.join("canary");
    let meta = fs::symlink_metadata(&canary).unwrap();
    assert!(meta.is_file(), "canary replaced");
    assert_eq!(meta.nlink(), 1, "canary hard-linked from the archive");
    assert_eq!(fs::read(&canary).unwrap(), CANARY, "canary written");

    if let Ok(files) = result {
        let dest = fs::canonicalize(&s.dest).unwrap();
        let mut regular = 0u64;
        walk(&s.dest, &dest, &mut regular);
        // Duplicate entries replace each other, so the count may exceed what is left.
        assert!(
            regular <= files,
            "{regular} files on disk, {files} reported"
        );
    }
    fs::remove_dir_all(&s.dest).unwrap();
});

fn walk(dir: &Path, dest: &Path, regular: &mut u64) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = fs::symlink_metadata(&path).unwrap();
        let mode = meta.permissions().mode();
        if meta.file_type().is_symlink() {
            // A link that resolves (through any chain of links) must stay inside dest/; one that
            // resolves to nothing is left alone (nothing to read through it).
            if let Ok(real) = fs::canonicalize(&path) {
                assert!(
                    real.starts_with(dest),
                    "{} resolves to {} outside the destination",
                    path.display(),
                    real.display()
                );
            }
        } else if meta.is_dir() {
            assert_eq!(mode & 0o7777, 0o755, "{} has mode {mode:o}", path.display());
            walk(&path, dest, regular);
        } else if meta.is_file() {
            *regular += 1;
            assert_eq!(mode & 0o644, 0o644, "{} has mode {mode:o}", path.display());
            assert_eq!(mode & 0o7022, 0, "{} has mode {mode:o}", path.display());
        } else {
            panic!(
                "{} is neither a file, a directory nor a link",
                path.display()
            );
        }
    }
}
