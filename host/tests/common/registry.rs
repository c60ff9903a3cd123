//! A registry for tests that fetch plugins from one: Debian's `docker-registry` (distribution
//! 2.8, installed by `hack/setup.sh`) on a free loopback port, with its own storage and config
//! in a temporary directory, optionally behind an htpasswd login. Stopped (and its directory
//! removed) when dropped. Its access log counts the requests a test made it serve.
#![allow(dead_code)] // each test binary uses its own subset

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct TestRegistry {
    child: Option<Child>,
    /// `127.0.0.1:PORT`.
    pub host: String,
    pub dir: PathBuf,
}

/// The registry binary: `$MLMODEL_TEST_REGISTRY` or Debian's.
fn binary() -> PathBuf {
    let bin = std::env::var_os("MLMODEL_TEST_REGISTRY")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/docker-registry"));
    assert!(
        bin.is_file(),
        "{} is missing: install Debian's docker-registry (hack/setup.sh does)",
        bin.display()
    );
    bin
}

/// A port nothing listens on now (bound, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn temp_dir(what: &str) -> PathBuf {
    static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("{what}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl TestRegistry {
    /// An open registry (no login).
    pub fn start() -> TestRegistry {
        Self::start_with(None)
    }

    /// A registry that wants `user`/`password` (htpasswd, bcrypt from apache2-utils' `htpasswd`).
    pub fn with_login(user: &str, password: &str) -> TestRegistry {
        Self::start_with(Some((user, password)))
    }

    fn start_with(login: Option<(&str, &str)>) -> TestRegistry {
        let dir = temp_dir("test-registry");
        let port = free_port();
        let host = format!("127.0.0.1:{port}");
        let auth = match login {
            None => String::new(),
            Some((user, password)) => {
                let out = Command::new("htpasswd")
                    .args(["-nbB", user, password])
                    .output()
                    .expect("htpasswd (Debian's apache2-utils, installed by hack/setup.sh)");
                assert!(out.status.success(), "htpasswd failed");
                std::fs::write(dir.join("htpasswd"), &out.stdout).unwrap();
                format!(
                    "auth:\n  htpasswd:\n    realm: test\n    path: {}\n",
                    dir.join("htpasswd").display()
                )
            }
        };
        let config = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {host}\n{auth}",
            dir.join("data").display()
        );
        std::fs::write(dir.join("config.yml"), config).unwrap();
        let log = std::fs::File::create(dir.join("registry.log")).unwrap();
        let child = Command::new(binary())
            .arg("serve")
            .arg(dir.join("config.yml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting the registry");
        let registry = TestRegistry {
            child: Some(child),
            host,
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(&registry.host).is_err() {
            assert!(
                Instant::now() < deadline,
                "the registry did not listen on {}: {}",
                registry.host,
                registry.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        registry
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("registry.log")).unwrap_or_default()
    }

    /// Requests served whose access-log line contains `needle` (e.g. `"GET /v2/p/blobs/`).
    pub fn requests(&self, needle: &str) -> usize {
        self.log()
            .lines()
            .filter(|l| l.contains(" HTTP/1.1\" ") && l.contains(needle))
            .count()
    }

    /// Where the registry keeps the blob `sha256:<hex>` (to tamper with it).
    pub fn blob_file(&self, hex: &str) -> PathBuf {
        self.dir
            .join("data/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    /// Stops it (connections are refused from then on).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Pushes an artifact of one layer by hand (plain HTTP API, no code of the operator's):
    /// returns the manifest's digest.
    pub fn push_raw(
        &self,
        repository: &str,
        tag: &str,
        config: (&str, &[u8]),
        layer: (&str, &[u8]),
    ) -> String {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let http = reqwest::Client::new();
            let base = format!("http://{}/v2/{repository}", self.host);
            let mut descriptors = Vec::new();
            for (media_type, bytes) in [config, layer] {
                let digest = format!("sha256:{}", sha256(bytes));
                let started = http
                    .post(format!("{base}/blobs/uploads/"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(started.status(), 202, "{:?}", started.text().await);
                let location = started.headers()["location"].to_str().unwrap().to_string();
                let sep = if location.contains('?') { '&' } else { '?' };
                let put = http
                    .put(format!("{location}{sep}digest={digest}"))
                    .header("content-type", "application/octet-stream")
                    .body(bytes.to_vec())
                    .send()
                    .await
                    .unwrap();
                assert_eq!(put.status(), 201, "{:?}", put.text().await);
                descriptors.push(serde_json::json!({
                    "mediaType": media_type, "digest": digest, "size": bytes.len(),
                }));
            }
            let manifest = serde_json::to_vec(&serde_json::json!({
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": descriptors[0],
                "layers": [descriptors[1]],
            }))
            .unwrap();
            let put = http
                .put(format!("{base}/manifests/{tag}"))
                .header("content-type", "application/vnd.oci.image.manifest.v1+json")
                .body(manifest.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(put.status(), 201, "{:?}", put.text().await);
            format!("sha256:{}", sha256(&manifest))
        })
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// A docker `config.json` with a login for `host`, in a file of its own.
pub fn docker_config(host: &str, user: &str, password: &str) -> PathBuf {
    use base64::Engine;
    let dir = temp_dir("docker-config");
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    let path = dir.join("config.json");
    std::fs::write(
        &path,
        serde_json::json!({"auths": {host: {"auth": auth}}}).to_string(),
    )
    .unwrap();
    path
}

/// A directory of its own for a test's files (caches, refs files), removed when dropped.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(what: &str) -> Scratch {
        Scratch(temp_dir(what))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
