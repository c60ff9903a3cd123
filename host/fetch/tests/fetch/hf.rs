//! `hf://` against a Hub-like endpoint (tree API + resolve, bearer token, LFS digests).

use crate::support::{Fetch, Route, Server, Step, TempDir, payload, sha256_hex, tree};
use serde_json::json;

const TOKEN: &str = "hf_test_token";

/// Serves `org/model` at revision `main` with a config, a LFS weight file and a nested file;
/// `weights_sha` is what the listing claims for the LFS file.
async fn hub(weights_sha: Option<String>) -> (Server, Vec<u8>) {
    let srv = Server::start().await;
    let weights = payload(300_000, 21);
    let listing = json!([
        {"type": "file", "path": "config.json", "size": 2, "oid": "x"},
        {"type": "directory", "path": "onnx", "size": 0, "oid": "y"},
        {"type": "file", "path": "onnx/model.onnx", "size": 4, "oid": "z"},
        {"type": "file", "path": "model.safetensors", "size": weights.len(),
         "lfs": {"oid": weights_sha.unwrap_or_else(|| sha256_hex(&weights)), "size": weights.len()}},
    ]);
    srv.route(
        "/api/models/org/model/tree/main",
        Route::new(listing.to_string()).bearer(TOKEN),
    );
    srv.route(
        "/org/model/resolve/main/config.json",
        Route::new("{}").bearer(TOKEN),
    );
    srv.route(
        "/org/model/resolve/main/onnx/model.onnx",
        Route::new("onnx").bearer(TOKEN),
    );
    // Large files redirect to a CDN, as on the Hub.
    srv.route(
        "/org/model/resolve/main/model.safetensors",
        Route::new(vec![])
            .bearer(TOKEN)
            .script([Step::Redirect(srv.url("/cdn/blob1"))]),
    );
    srv.route("/cdn/blob1", Route::new(weights.clone()));
    (srv, weights)
}

fn hf(srv: &Server, url: &str, dest: &std::path::Path) -> Fetch {
    Fetch::new(url, dest)
        .env("HF_ENDPOINT", &srv.url(""))
        .env("HF_TOKEN", TOKEN)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_repository_lands_under_dest() {
    let (srv, weights) = hub(None).await;
    let dir = TempDir::new("hf-repo");
    let dest = dir.path().join("dest");
    let run = hf(&srv, "hf://org/model", &dest).run().await;
    run.assert_ok();
    assert_eq!(
        tree(&dest),
        vec![
            ("config.json".to_string(), b"{}".to_vec()),
            ("model.safetensors".to_string(), weights.clone()),
            ("onnx/model.onnx".to_string(), b"onnx".to_vec()),
        ]
    );
    assert_eq!(run.term["files"], 3);
    // Several files: the digest is the one of their sha256sum manifest.
    let manifest = format!(
        "{}  config.json\n{}  model.safetensors\n{}  onnx/model.onnx\n",
        sha256_hex(b"{}"),
        sha256_hex(&weights),
        sha256_hex(b"onnx")
    );
    assert_eq!(run.term["sha256"], sha256_hex(manifest.as_bytes()));
    let listing = &srv.hits_for("/api/models/org/model/tree/main")[0];
    assert_eq!(
        listing.target,
        "/api/models/org/model/tree/main?recursive=true"
    );
    assert_eq!(
        listing.authorization.as_deref(),
        Some("Bearer hf_test_token")
    );
    // The CDN (another origin in real life) still got the request, through the redirect.
    assert_eq!(srv.hits_for("/cdn/blob1").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_path_selects_a_directory_or_a_file() {
    let (srv, weights) = hub(None).await;
    let dir = TempDir::new("hf-path");
    let dest = dir.path().join("dest");
    hf(&srv, "hf://org/model/onnx", &dest)
        .run()
        .await
        .assert_ok();
    assert_eq!(
        tree(&dest),
        vec![("model.onnx".to_string(), b"onnx".to_vec())]
    );

    let dest = dir.path().join("dest2");
    let run = hf(&srv, "hf://org/model@main/model.safetensors", &dest)
        .args(&["--sha256", &sha256_hex(&weights)])
        .run()
        .await;
    run.assert_ok();
    assert_eq!(
        tree(&dest),
        vec![("model.safetensors".to_string(), weights)]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lfs_files_are_verified_against_the_published_digest() {
    let wrong = "0".repeat(64);
    let (srv, weights) = hub(Some(wrong.clone())).await;
    let dir = TempDir::new("hf-lfs");
    let run = hf(&srv, "hf://org/model", &dir.path().join("dest"))
        .run()
        .await;
    run.assert_failed("ChecksumMismatch");
    assert_eq!(run.term["expected"], wrong);
    assert_eq!(run.term["actual"], sha256_hex(&weights));
    assert!(
        run.message().contains("model.safetensors"),
        "{}",
        run.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_token_missing_repo_and_missing_file() {
    let (srv, _) = hub(None).await;
    let dir = TempDir::new("hf-err");
    let run = Fetch::new("hf://org/model", &dir.path().join("a"))
        .env("HF_ENDPOINT", &srv.url(""))
        .run()
        .await;
    run.assert_failed("AuthFailed");
    assert_eq!(run.term["status"], 401);

    // The Hub answers 401 for a repository it does not show, and says why in X-Error-Code.
    srv.route(
        "/api/models/org/nothing/tree/main",
        Route::new("").script([Step::Status(
            401,
            vec![
                ("X-Error-Code".into(), "RepoNotFound".into()),
                ("X-Error-Message".into(), "Repository not found".into()),
            ],
        )]),
    );
    let run = hf(&srv, "hf://org/nothing", &dir.path().join("b"))
        .run()
        .await;
    run.assert_failed("NotFound");
    assert!(
        run.message().contains("Repository not found"),
        "{}",
        run.message()
    );

    let run = hf(&srv, "hf://org/model/missing.bin", &dir.path().join("c"))
        .run()
        .await;
    run.assert_failed("NotFound");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listings_follow_pagination() {
    let srv = Server::start().await;
    let page2 = srv.url("/api/models/org/big/tree/main?recursive=true&cursor=2");
    srv.route(
        "/api/models/org/big/tree/main?recursive=true",
        Route::new(json!([{"type": "file", "path": "a.txt", "size": 1}]).to_string())
            .header("Link", &format!("<{page2}>; rel=\"next\"")),
    );
    srv.route(
        "/api/models/org/big/tree/main?recursive=true&cursor=2",
        Route::new(json!([{"type": "file", "path": "b.txt", "size": 1}]).to_string()),
    );
    srv.route("/org/big/resolve/main/a.txt", Route::new("a"));
    srv.route("/org/big/resolve/main/b.txt", Route::new("b"));
    let dir = TempDir::new("hf-pages");
    let dest = dir.path().join("dest");
    hf(&srv, "hf://org/big", &dest).run().await.assert_ok();
    assert_eq!(
        tree(&dest),
        vec![
            ("a.txt".into(), b"a".to_vec()),
            ("b.txt".into(), b"b".to_vec())
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repository_paths_that_would_escape_are_refused() {
    let srv = Server::start().await;
    srv.route(
        "/api/models/org/evil/tree/main",
        Route::new(json!([{"type": "file", "path": "../../etc/x", "size": 1}]).to_string()),
    );
    let dir = TempDir::new("hf-evil");
    let run = hf(&srv, "hf://org/evil", &dir.path().join("dest"))
        .run()
        .await;
    run.assert_failed("InvalidURL");
    assert!(run.message().contains(".."), "{}", run.message());
}
