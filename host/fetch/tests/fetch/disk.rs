//! `DiskFull` on a real full filesystem: DEST is a 1 MiB tmpfs mounted by the test (needs root,
//! as on the project's machines and CI; the test fails, never skips, when it cannot mount).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{Fetch, Route, Server, TempDir, payload};
use serde_json::json;

struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path) -> Self {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(at)
            .output()
            .expect("running mount");
        assert!(
            out.status.success(),
            "cannot mount a 1 MiB tmpfs for the DiskFull test (needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// A size the server states that cannot fit fails before a byte is written: nothing is left
/// filling the volume for the next attempt.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stated_size_that_cannot_fit_fails_before_writing() {
    let srv = Server::start().await;
    srv.route("/big.bin", Route::new(payload(3 << 20, 41)));
    let dir = TempDir::new("diskfull");
    let dest = dir.path().join("dest");
    let _fs = Tmpfs::mount(&dest);
    let run = Fetch::new(&srv.url("/big.bin"), &dest).run().await;
    run.assert_failed("DiskFull");
    let msg = run.message();
    assert!(
        msg.contains("big.bin needs 3.0 MiB (3145728 bytes) more"),
        "{msg}"
    );
    assert!(msg.contains("free of 1.0 MiB"), "{msg}");
    assert_eq!(
        srv.hits_for("/big.bin").len(),
        1,
        "a full disk is not retried"
    );
    let used: u64 = walk(&dest)
        .iter()
        .map(|f| f.metadata().unwrap().len())
        .sum();
    assert!(used < 64 << 10, "{used} bytes left on the volume");
}

/// A stream of unknown length fills the volume: `DiskFull` with what was written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_fails_with_disk_full_and_the_sizes() {
    let srv = Server::start().await;
    srv.route("/big.bin", Route::new(payload(3 << 20, 41)).no_length());
    let dir = TempDir::new("diskfull-stream");
    let dest = dir.path().join("dest");
    let _fs = Tmpfs::mount(&dest);
    let run = Fetch::new(&srv.url("/big.bin"), &dest).run().await;
    run.assert_failed("DiskFull");
    let msg = run.message();
    assert!(msg.contains("writing big.bin after"), "{msg}");
    assert!(msg.contains("free of 1.0 MiB"), "{msg}");
    assert_eq!(
        srv.hits_for("/big.bin").len(),
        1,
        "a full disk is not retried"
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn known_sizes_that_cannot_fit_fail_before_downloading() {
    let srv = Server::start().await;
    let listing = json!([{"type": "file", "path": "w.bin", "size": 5 << 20}]);
    srv.route(
        "/api/models/org/m/tree/main",
        Route::new(listing.to_string()),
    );
    srv.route(
        "/org/m/resolve/main/w.bin",
        Route::new(payload(5 << 20, 42)),
    );
    let dir = TempDir::new("diskcheck");
    let dest = dir.path().join("dest");
    let _fs = Tmpfs::mount(&dest);
    let run = Fetch::new("hf://org/m", &dest)
        .env("HF_ENDPOINT", &srv.url(""))
        .run()
        .await;
    run.assert_failed("DiskFull");
    assert!(
        run.message().contains("needs 5.0 MiB (5242880 bytes)"),
        "{}",
        run.message()
    );
    assert!(srv.hits_for("/org/m/resolve/main/w.bin").is_empty());
}
