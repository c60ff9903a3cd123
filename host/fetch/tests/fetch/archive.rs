//! Archives: layout after unpacking, and one test per traversal attack (tar and zip).

use std::io::Write;
use std::path::Path;

use crate::support::{Fetch, Route, Run, Server, TempDir, tree};
use tar::EntryType;

/// A tar entry written with raw header bytes, so names the `tar` crate would refuse still go in.
struct Entry<'a> {
    name: &'a str,
    kind: EntryType,
    link: Option<&'a str>,
    data: &'a [u8],
}

fn file<'a>(name: &'a str, data: &'a [u8]) -> Entry<'a> {
    Entry {
        name,
        kind: EntryType::Regular,
        link: None,
        data,
    }
}

fn dir(name: &str) -> Entry<'_> {
    Entry {
        name,
        kind: EntryType::Directory,
        link: None,
        data: b"",
    }
}

fn symlink<'a>(name: &'a str, target: &'a str) -> Entry<'a> {
    Entry {
        name,
        kind: EntryType::Symlink,
        link: Some(target),
        data: b"",
    }
}

fn hardlink<'a>(name: &'a str, target: &'a str) -> Entry<'a> {
    Entry {
        name,
        kind: EntryType::Link,
        link: Some(target),
        data: b"",
    }
}

fn tar_bytes(entries: &[Entry]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        let old = h.as_old_mut();
        old.name[..e.name.len()].copy_from_slice(e.name.as_bytes());
        if let Some(l) = e.link {
            old.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        h.set_entry_type(e.kind);
        h.set_size(e.data.len() as u64);
        h.set_mode(if e.kind == EntryType::Directory {
            0o755
        } else {
            0o600
        });
        h.set_cksum();
        b.append(&h, e.data).unwrap();
    }
    b.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(data).unwrap();
    enc.finish().unwrap()
}

enum ZipEntry<'a> {
    File(&'a str, &'a [u8]),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
}

fn zip_bytes(entries: &[ZipEntry]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default();
    for e in entries {
        match e {
            ZipEntry::File(name, data) => {
                w.start_file(*name, opts).unwrap();
                w.write_all(data).unwrap();
            }
            ZipEntry::Dir(name) => w.add_directory(*name, opts).unwrap(),
            ZipEntry::Symlink(name, target) => w.add_symlink(*name, *target, opts).unwrap(),
        }
    }
    w.finish().unwrap().into_inner()
}

/// Serves `archive` as `name` and fetches it into `<tmp>/dest`.
async fn fetch_archive(name: &str, archive: Vec<u8>, extra: &[&str]) -> (Run, TempDir) {
    let srv = Server::start().await;
    let path = format!("/a/{name}");
    srv.route(&path, Route::new(archive));
    let dir = TempDir::new("archive");
    let run = Fetch::new(&srv.url(&path), &dir.path().join("dest"))
        .args(extra)
        .run()
        .await;
    (run, dir)
}

/// An attack must fail as UnsafeArchive, leave nothing placed, and write nothing outside.
#[track_caller]
fn assert_refused(run: &Run, dir: &TempDir, needle: &str) {
    run.assert_failed("UnsafeArchive");
    assert!(run.message().contains(needle), "{}", run.message());
    let dest = dir.path().join("dest");
    assert!(!dest.join(".mlmodel-complete.json").exists());
    assert!(
        tree(&dest).is_empty(),
        "files were placed: {:?}",
        tree(&dest)
    );
    assert!(!dir.path().join("evil").exists(), "wrote outside DEST");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tar_gz_unpacks_into_dest_keeping_version_directories() {
    let archive = gzip(&tar_bytes(&[
        dir("./"),
        dir("./1/"),
        file("./1/saved_model.pb", b"graph"),
        dir("./1/variables/"),
        file("./1/variables/variables.index", b"index"),
        symlink("./latest", "1"),
        hardlink("./1/copy.pb", "1/saved_model.pb"),
    ]));
    let (run, dir) = fetch_archive("model.tar.gz", archive, &[]).await;
    run.assert_ok();
    assert_eq!(run.term["files"], 3);
    // Named like a SavedModel, but "graph" is no SavedModel message: content, not names.
    assert_eq!(run.term["format"], "files");
    assert_eq!(run.term["totalBytes"], 15);
    assert_eq!(
        run.term["largest"],
        serde_json::json!([
            {"bytes": 5, "path": "1/copy.pb"},
            {"bytes": 5, "path": "1/saved_model.pb"},
            {"bytes": 5, "path": "1/variables/variables.index"},
        ])
    );
    let dest = dir.path().join("dest");
    assert_eq!(
        tree(&dest),
        vec![
            ("1/copy.pb".to_string(), b"graph".to_vec()),
            ("1/saved_model.pb".to_string(), b"graph".to_vec()),
            ("1/variables/variables.index".to_string(), b"index".to_vec()),
        ]
    );
    assert_eq!(
        std::fs::read_link(dest.join("latest")).unwrap(),
        Path::new("1")
    );
    assert!(!dest.join("model.tar.gz").exists(), "the archive was kept");
    // 0o600 in the archive, readable by the serving container's user after unpacking.
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dest.join("1/saved_model.pb"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o644, 0o644, "{mode:o}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_tar_and_a_zip_unpack_too() {
    let (run, dir) = fetch_archive("m.tar", tar_bytes(&[file("a/b.txt", b"tar")]), &[]).await;
    run.assert_ok();
    assert_eq!(
        tree(&dir.path().join("dest")),
        vec![("a/b.txt".into(), b"tar".to_vec())]
    );

    let zip = zip_bytes(&[
        ZipEntry::Dir("1/"),
        ZipEntry::File("1/model.onnx", b"onnx"),
        ZipEntry::Symlink("current", "1"),
    ]);
    let (run, dir) = fetch_archive("m.zip", zip, &[]).await;
    run.assert_ok();
    let dest = dir.path().join("dest");
    assert_eq!(tree(&dest), vec![("1/model.onnx".into(), b"onnx".to_vec())]);
    assert_eq!(
        std::fs::read_link(dest.join("current")).unwrap(),
        Path::new("1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archives_are_recognised_by_content_and_kept_with_extract_none() {
    let archive = gzip(&tar_bytes(&[file("weights.bin", b"w")]));
    let (run, dir) = fetch_archive("download", archive.clone(), &[]).await;
    run.assert_ok();
    assert_eq!(
        tree(&dir.path().join("dest")),
        vec![("weights.bin".into(), b"w".to_vec())]
    );

    let (run, dir) = fetch_archive("m.tar.gz", archive.clone(), &["--extract", "none"]).await;
    run.assert_ok();
    assert_eq!(
        tree(&dir.path().join("dest")),
        vec![("m.tar.gz".into(), archive)]
    );

    // A .pt is a zip inside; it must stay one file.
    let pt = zip_bytes(&[ZipEntry::File("archive/data.pkl", b"p")]);
    let (run, dir) = fetch_archive("model.pt", pt.clone(), &[]).await;
    run.assert_ok();
    assert_eq!(
        tree(&dir.path().join("dest")),
        vec![("model.pt".into(), pt)]
    );
    assert_eq!(run.term["format"], "pytorch");
}

/// The format is detected in what was unpacked, and reported again when DEST already holds the
/// download.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_format_of_what_landed_is_reported() {
    // saved_model_schema_version 1, meta_graphs { meta_info_def {} }.
    let archive = gzip(&tar_bytes(&[
        file("1/saved_model.pb", b"\x08\x01\x12\x02\x0a\x00"),
        file("1/variables/variables.data-00000-of-00001", &[0; 100]),
        file("1/variables/variables.index", b"index"),
    ]));
    let srv = Server::start().await;
    srv.route("/m.tgz", Route::new(archive.clone()));
    let dir = TempDir::new("landed");
    let dest = dir.path().join("dest");
    for cached in [false, true] {
        let run = Fetch::new(&srv.url("/m.tgz"), &dest).run().await;
        run.assert_ok();
        assert_eq!(run.term["cached"], cached);
        assert_eq!(run.term["format"], "saved-model");
        assert_eq!(run.term["files"], 3);
        assert_eq!(run.term["totalBytes"], 111);
        assert_eq!(run.term["bytes"], archive.len());
        assert_eq!(
            run.term["largest"][0]["path"],
            "1/variables/variables.data-00000-of-00001"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_archive_fails_with_extract_failed() {
    let mut broken = gzip(&tar_bytes(&[file("a.bin", &[7u8; 4096])]));
    broken.truncate(broken.len() / 2);
    let (run, dir) = fetch_archive("m.tar.gz", broken, &[]).await;
    run.assert_failed("ExtractFailed");
    assert!(!dir.path().join("dest/.mlmodel-complete.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tar_absolute_path_is_refused() {
    let (run, dir) = fetch_archive("m.tar", tar_bytes(&[file("/tmp/evil", b"x")]), &[]).await;
    assert_refused(&run, &dir, "absolute path");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tar_parent_traversal_is_refused() {
    let archive = tar_bytes(&[file("ok.txt", b"fine"), file("a/../../evil", b"x")]);
    let (run, dir) = fetch_archive("m.tar", archive, &[]).await;
    assert_refused(&run, &dir, "'..'");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tar_symlink_out_of_dest_is_refused() {
    let archive = tar_bytes(&[symlink("escape", "../evil"), file("escape/x", b"x")]);
    let (run, dir) = fetch_archive("m.tar", archive, &[]).await;
    assert_refused(&run, &dir, "outside the destination");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tar_symlink_to_an_absolute_path_is_refused() {
    let archive = tar_bytes(&[symlink("passwd", "/etc/passwd")]);
    let (run, dir) = fetch_archive("m.tar", archive, &[]).await;
    assert_refused(&run, &dir, "absolute path");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tar_chain_of_symlinks_out_of_dest_is_refused() {
    // Each link looks inside on its own; followed together they lead to DEST's parent.
    let archive = tar_bytes(&[
        dir("d/"),
        symlink("d/up", ".."),
        symlink("escape", "d/up/.."),
    ]);
    let (run, dir) = fetch_archive("m.tar", archive, &[]).await;
    assert_refused(&run, &dir, "resolves outside");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tar_write_through_a_symlink_is_refused() {
    // "inside" points within DEST, but nothing may be written through a link.
    let archive = tar_bytes(&[
        dir("real/"),
        symlink("inside", "real"),
        file("inside/x", b"x"),
    ]);
    let (run, dir) = fetch_archive("m.tar", archive, &[]).await;
    assert_refused(&run, &dir, "through a symlink");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tar_hardlink_out_of_dest_is_refused() {
    for target in ["../../etc/passwd", "/etc/passwd"] {
        let archive = tar_bytes(&[hardlink("passwd", target)]);
        let (run, dir) = fetch_archive("m.tar", archive, &[]).await;
        run.assert_failed("UnsafeArchive");
        assert!(tree(&dir.path().join("dest")).is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tar_reserved_names_are_refused() {
    let archive = tar_bytes(&[file(".mlmodel-complete.json", b"{}")]);
    let (run, dir) = fetch_archive("m.tar", archive, &[]).await;
    assert_refused(&run, &dir, "reserved");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zip_absolute_path_is_refused() {
    let archive = zip_bytes(&[ZipEntry::File("/tmp/evil", b"x")]);
    let (run, dir) = fetch_archive("m.zip", archive, &[]).await;
    assert_refused(&run, &dir, "absolute path");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zip_parent_traversal_is_refused() {
    let archive = zip_bytes(&[ZipEntry::File("ok", b"1"), ZipEntry::File("../evil", b"x")]);
    let (run, dir) = fetch_archive("m.zip", archive, &[]).await;
    assert_refused(&run, &dir, "'..'");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zip_symlink_out_of_dest_is_refused() {
    let archive = zip_bytes(&[ZipEntry::Symlink("escape", "../../evil")]);
    let (run, dir) = fetch_archive("m.zip", archive, &[]).await;
    assert_refused(&run, &dir, "outside the destination");
}
