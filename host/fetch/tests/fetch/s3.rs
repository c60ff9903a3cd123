//! `s3://` against a real S3-compatible server: moto's standalone server, installed by
//! `hack/setup.sh` into `~/.cache/mlmodel-operator/venv` (or named by `MLMODEL_MOTO_SERVER`).
//! Without it these tests fail, loudly: they never pass by skipping.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Fetch, TempDir, payload, sha256_hex, tree};

struct Moto {
    child: Child,
    endpoint: String,
    http: reqwest::Client,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn moto_binary() -> PathBuf {
    if let Ok(p) = std::env::var("MLMODEL_MOTO_SERVER") {
        return PathBuf::from(p);
    }
    let cache = std::env::var("MLMODEL_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/mlmodel-operator")
        });
    let p = cache.join("venv/bin/moto_server");
    assert!(
        p.exists(),
        "the S3-compatible test server is missing: {} not found. Run `make setup` \
         (hack/setup.sh installs moto[server] there) or set MLMODEL_MOTO_SERVER.",
        p.display()
    );
    p
}

impl Moto {
    async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new(moto_binary())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting moto_server");
        let moto = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(90);
        while moto.http.get(&moto.endpoint).send().await.is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not start on port {port}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        moto
    }

    /// moto does not check signatures, so plain requests set up the fixtures.
    async fn put(&self, path: &str, body: Vec<u8>) {
        self.put_acl(path, body, "private").await
    }

    async fn put_acl(&self, path: &str, body: Vec<u8>, acl: &str) {
        let resp = self
            .http
            .put(format!("{}/{path}", self.endpoint))
            .header("x-amz-acl", acl)
            .body(body)
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "PUT {path}: {}", resp.status());
    }

    async fn etag(&self, path: &str) -> String {
        let resp = self
            .http
            .head(format!("{}/{path}", self.endpoint))
            .send()
            .await
            .unwrap();
        resp.headers()["etag"].to_str().unwrap().to_string()
    }

    fn fetch(&self, url: &str, dest: &std::path::Path) -> Fetch {
        Fetch::new(url, dest)
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
    }
}

fn tar_gz(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, *data).unwrap();
    }
    let mut gz = b.into_inner().unwrap();
    gz.flush().unwrap();
    gz.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_and_prefixes_download_from_an_s3_compatible_store() {
    let moto = Moto::start().await;
    moto.put("models", vec![]).await;
    let archive = tar_gz(&[
        ("1/saved_model.pb", b"graph"),
        ("1/variables/v.index", b"v"),
    ]);
    moto.put("models/tf/resnet.tar.gz", archive.clone()).await;
    let weights = payload(700_000, 31);
    moto.put_acl("models/bert/config.json", b"{}".to_vec(), "public-read")
        .await;
    moto.put("models/bert/onnx/model.onnx", weights.clone())
        .await;
    moto.put("models/bert-large/other.bin", b"not me".to_vec())
        .await;
    let dir = TempDir::new("s3");

    // One object: an archive, verified then unpacked.
    let dest = dir.path().join("one");
    let run = moto
        .fetch("s3://models/tf/resnet.tar.gz", &dest)
        .args(&["--sha256", &sha256_hex(&archive)])
        .run()
        .await;
    run.assert_ok();
    assert_eq!(
        tree(&dest),
        vec![
            ("1/saved_model.pb".into(), b"graph".to_vec()),
            ("1/variables/v.index".into(), b"v".to_vec())
        ]
    );

    // A prefix: every object under it (and not under a sibling sharing its first letters).
    let dest = dir.path().join("prefix");
    let run = moto.fetch("s3://models/bert/", &dest).run().await;
    run.assert_ok();
    assert_eq!(run.term["files"], 2);
    assert_eq!(
        tree(&dest),
        vec![
            ("config.json".into(), b"{}".to_vec()),
            ("onnx/model.onnx".into(), weights.clone())
        ]
    );

    // Anonymous access (no keys in the environment) works for a public bucket.
    let dest = dir.path().join("anon");
    Fetch::new("s3://models/bert/config.json", &dest)
        .env("AWS_ENDPOINT_URL", &moto.endpoint)
        .run()
        .await
        .assert_ok();
    assert_eq!(tree(&dest), vec![("config.json".into(), b"{}".to_vec())]);

    let run = moto
        .fetch("s3://models/nothing/here", &dir.path().join("missing"))
        .run()
        .await;
    run.assert_failed("NotFound");
    assert!(
        run.message().contains("s3://models/nothing/here"),
        "{}",
        run.message()
    );
}

/// Lays out what an interrupted run leaves in DEST: the kept prefix and its validator.
fn seed_partial(
    dest: &std::path::Path,
    url: &str,
    rel: &str,
    prefix: &[u8],
    validator: &str,
    total: usize,
) {
    let staging = dest.join(".mlmodel-partial");
    std::fs::create_dir_all(staging.join("data")).unwrap();
    std::fs::create_dir_all(staging.join("meta")).unwrap();
    let inputs =
        serde_json::json!({"url": url, "sha256": null, "extract": "auto", "filename": null});
    std::fs::write(staging.join("inputs.json"), inputs.to_string()).unwrap();
    std::fs::write(staging.join("data").join(rel), prefix).unwrap();
    let meta = serde_json::json!({"validator": validator, "total": total, "complete": false});
    std::fs::write(
        staging.join("meta").join(format!("{rel}.json")),
        meta.to_string(),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_downloads_resume_with_a_validated_range() {
    let moto = Moto::start().await;
    moto.put("weights", vec![]).await;
    let body = payload(1 << 20, 32);
    // Readable without signing, for the test's own HEAD below.
    moto.put_acl("weights/w.bin", body.clone(), "public-read")
        .await;
    let etag = moto.etag("weights/w.bin").await;
    let dir = TempDir::new("s3-resume");
    let half = body.len() / 2;

    // A kept prefix with the right ETag is continued with a Range request, not fetched again:
    // marked bytes in the prefix survive into the result.
    let dest = dir.path().join("resume");
    let marked = vec![0xAAu8; half];
    seed_partial(
        &dest,
        "s3://weights/w.bin",
        "w.bin",
        &marked,
        &etag,
        body.len(),
    );
    let run = moto.fetch("s3://weights/w.bin", &dest).run().await;
    run.assert_ok();
    let got = std::fs::read(dest.join("w.bin")).unwrap();
    assert_eq!(&got[..half], &marked[..]);
    assert_eq!(&got[half..], &body[half..]);
    assert!(run.stderr.contains("resuming"), "{}", run.stderr);

    // A kept prefix of an object that has changed since (ETag differs) is thrown away.
    let dest = dir.path().join("changed");
    seed_partial(
        &dest,
        "s3://weights/w.bin",
        "w.bin",
        &marked,
        "\"stale\"",
        body.len(),
    );
    let run = moto.fetch("s3://weights/w.bin", &dest).run().await;
    run.assert_ok();
    assert_eq!(std::fs::read(dest.join("w.bin")).unwrap(), body);
    assert_eq!(run.term["sha256"], sha256_hex(&body));
    assert!(
        run.stderr.contains("changed since the kept bytes"),
        "{}",
        run.stderr
    );
}
