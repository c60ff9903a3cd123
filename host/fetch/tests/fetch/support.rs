//! Shared by the downloader's tests: a scriptable HTTP/1.1 server on loopback that misbehaves on
//! request (drop mid-body, stall, error statuses, lying Content-Length, no Range, ETag change),
//! counts the body bytes it served, and a runner for `mlmodel-fetch fetch` (the
//! command line of `mlmodel-operator fetch`).
#![allow(dead_code)]

pub use crate::tempdir::TempDir;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What one request gets; a route's script is consumed one step per request, then `Normal`.
#[derive(Debug, Clone)]
pub enum Step {
    Normal,
    /// A bare status with extra headers (e.g. 429 + Retry-After), short text body.
    Status(u16, Vec<(String, String)>),
    /// Announces the full length, sends `n` body bytes, closes the connection.
    DropAfter(usize),
    /// Sends `n` body bytes, then keeps the connection open without sending anything.
    StallAfter(usize),
    /// Announces `Content-Length` = real length + `extra`, sends the real body, closes.
    LengthTooLong(usize),
    /// Announces `Content-Length` = real length - `less` and sends that much.
    LengthTooShort(usize),
    /// Sends the body in `chunk`-byte pieces with `pause` between them.
    Slow {
        chunk: usize,
        pause: Duration,
    },
    /// Replaces the content (and ETag) from this request on.
    Replace {
        body: Vec<u8>,
        etag: String,
    },
    /// 302 to this location (absolute or path).
    Redirect(String),
}

#[derive(Debug, Clone)]
pub struct Route {
    pub body: Arc<Vec<u8>>,
    pub etag: Option<String>,
    /// Honour `Range: bytes=N-` and `bytes=N-M` (with `If-Range` against the ETag).
    pub ranges: bool,
    /// No Content-Length: the body ends when the connection closes.
    pub no_length: bool,
    pub require_bearer: Option<String>,
    pub headers: Vec<(String, String)>,
    pub script: VecDeque<Step>,
}

impl Route {
    pub fn new(body: impl Into<Vec<u8>>) -> Self {
        let body = body.into();
        Self {
            etag: Some(format!("\"{}\"", &sha256_hex(&body)[..16])),
            body: Arc::new(body),
            ranges: true,
            no_length: false,
            require_bearer: None,
            headers: Vec::new(),
            script: VecDeque::new(),
        }
    }

    pub fn script(mut self, steps: impl IntoIterator<Item = Step>) -> Self {
        self.script.extend(steps);
        self
    }

    pub fn no_ranges(mut self) -> Self {
        self.ranges = false;
        self
    }

    pub fn no_length(mut self) -> Self {
        self.no_length = true;
        self
    }

    pub fn bearer(mut self, token: &str) -> Self {
        self.require_bearer = Some(token.to_string());
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Hit {
    pub target: String,
    pub method: String,
    pub range: Option<String>,
    pub if_range: Option<String>,
    pub authorization: Option<String>,
    pub status: u16,
    pub at: Instant,
}

#[derive(Default)]
pub struct State {
    routes: Mutex<HashMap<String, Route>>,
    hits: Mutex<Vec<Hit>>,
    /// Body bytes actually written to sockets, all routes together.
    pub served: AtomicU64,
}

pub struct Server {
    pub addr: SocketAddr,
    pub state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State::default());
        let st = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else {
                    continue;
                };
                let st = st.clone();
                tokio::spawn(async move {
                    let _ = serve(sock, st).await;
                });
            }
        });
        Self { addr, state, task }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Routes are matched on the full target (path?query) first, then on the path alone.
    pub fn route(&self, target: &str, route: Route) {
        self.state
            .routes
            .lock()
            .unwrap()
            .insert(target.to_string(), route);
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.state.hits.lock().unwrap().clone()
    }

    pub fn hits_for(&self, path: &str) -> Vec<Hit> {
        self.hits()
            .into_iter()
            .filter(|h| percent_decode(h.target.split('?').next().unwrap_or_default()) == path)
            .collect()
    }

    pub fn served(&self) -> u64 {
        self.state.served.load(Ordering::SeqCst)
    }
}

async fn serve(mut sock: TcpStream, st: Arc<State>) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 4096];
    let head_end = loop {
        let n = sock.read(&mut tmp).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&tmp[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > 64 * 1024 {
            return Ok(());
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let method = first.next().unwrap_or_default().to_string();
    let target = first.next().unwrap_or_default().to_string();
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();

    let (route, step) = {
        let mut routes = st.routes.lock().unwrap();
        // GCS clients escape the whole object name (`a%2Fb%2Ec`): routes use decoded paths.
        let path = percent_decode(target.split('?').next().unwrap_or_default());
        let key = if routes.contains_key(&target) {
            target.clone()
        } else {
            path
        };
        match routes.get_mut(&key) {
            None => (None, Step::Normal),
            Some(r) => {
                let step = r.script.pop_front().unwrap_or(Step::Normal);
                if let Step::Replace { body, etag } = &step {
                    r.body = Arc::new(body.clone());
                    r.etag = Some(etag.clone());
                }
                (Some(r.clone()), step)
            }
        }
    };
    let mut hit = Hit {
        target: target.clone(),
        method: method.clone(),
        range: headers.get("range").cloned(),
        if_range: headers.get("if-range").cloned(),
        authorization: headers.get("authorization").cloned(),
        status: 0,
        at: Instant::now(),
    };
    let record = |hit: &mut Hit, status: u16| {
        hit.status = status;
        st.hits.lock().unwrap().push(hit.clone());
    };

    let Some(route) = route else {
        record(&mut hit, 404);
        return simple(&mut sock, 404, &[], "no such route").await;
    };
    if let Some(token) = &route.require_bearer
        && headers.get("authorization") != Some(&format!("Bearer {token}"))
    {
        record(&mut hit, 401);
        return simple(&mut sock, 401, &route.headers, "token required").await;
    }
    match &step {
        Step::Status(code, extra) => {
            record(&mut hit, *code);
            return simple(&mut sock, *code, extra, "scripted status").await;
        }
        Step::Redirect(to) => {
            record(&mut hit, 302);
            return simple(&mut sock, 302, &[("Location".into(), to.clone())], "").await;
        }
        _ => {}
    }

    let body = route.body.clone();
    let len = body.len();
    let mut start = 0usize;
    let mut end = len; // exclusive
    let mut status = 200;
    if route.ranges
        && let Some(r) = headers.get("range")
        && let Some((from, to)) = r.strip_prefix("bytes=").and_then(|v| v.split_once('-'))
        && let Ok(from) = from.parse::<usize>()
    {
        if let Ok(to) = to.parse::<usize>() {
            end = (to + 1).min(len);
        }
        let validator_ok = match headers.get("if-range") {
            None => true,
            Some(v) => Some(v) == route.etag.as_ref(),
        };
        if validator_ok {
            if from >= len {
                record(&mut hit, 416);
                let cr = vec![("Content-Range".to_string(), format!("bytes */{len}"))];
                return simple(&mut sock, 416, &cr, "").await;
            }
            start = from;
            status = 206;
        }
    }
    record(&mut hit, status);
    let part = &body[start..end.max(start)];
    let announced = match step {
        Step::LengthTooLong(extra) => part.len() + extra,
        Step::LengthTooShort(less) => part.len().saturating_sub(less),
        _ => part.len(),
    };
    let mut resp = format!(
        "HTTP/1.1 {status} {}\r\nConnection: close\r\nAccept-Ranges: {}\r\n",
        reason(status),
        if route.ranges { "bytes" } else { "none" }
    );
    if !route.no_length {
        resp += &format!("Content-Length: {announced}\r\n");
    }
    if status == 206 {
        resp += &format!("Content-Range: bytes {start}-{}/{len}\r\n", end - 1);
    }
    if let Some(etag) = &route.etag {
        resp += &format!("ETag: {etag}\r\n");
    }
    for (k, v) in &route.headers {
        resp += &format!("{k}: {v}\r\n");
    }
    resp += "\r\n";
    sock.write_all(resp.as_bytes()).await?;
    if method == "HEAD" {
        return Ok(());
    }
    let send_len = match step {
        Step::DropAfter(n) | Step::StallAfter(n) => n.min(part.len()),
        Step::LengthTooShort(_) => announced,
        _ => part.len(),
    };
    let chunk = match step {
        Step::Slow { chunk, .. } => chunk,
        _ => 64 * 1024,
    };
    for piece in part[..send_len].chunks(chunk.max(1)) {
        sock.write_all(piece).await?;
        st.served.fetch_add(piece.len() as u64, Ordering::SeqCst);
        if let Step::Slow { pause, .. } = step {
            sock.flush().await?;
            tokio::time::sleep(pause).await;
        }
    }
    sock.flush().await?;
    if let Step::StallAfter(_) = step {
        // Hold the connection open and silent until the client gives up.
        let _ = tokio::time::timeout(Duration::from_secs(60), sock.read(&mut tmp)).await;
    }
    Ok(())
}

async fn simple(
    sock: &mut TcpStream,
    status: u16,
    extra: &[(String, String)],
    body: &str,
) -> std::io::Result<()> {
    let mut resp = format!(
        "HTTP/1.1 {status} {}\r\nConnection: close\r\nContent-Length: {}\r\n",
        reason(status),
        body.len()
    );
    for (k, v) in extra {
        resp += &format!("{k}: {v}\r\n");
    }
    resp += "\r\n";
    resp += body;
    sock.write_all(resp.as_bytes()).await?;
    sock.flush().await
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match s.get(i + 1..i + 3).map(|h| u8::from_str_radix(h, 16)) {
            Some(Ok(v)) if b[i] == b'%' => {
                out.push(v);
                i += 3;
            }
            _ => {
                out.push(b[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Deterministic pseudo-random bytes (incompressible enough, reproducible).
pub fn payload(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// The outcome of one `mlmodel-operator fetch` process.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stderr: String,
    /// The termination log, parsed.
    pub term: serde_json::Value,
    pub term_raw: String,
}

impl Run {
    pub fn reason(&self) -> &str {
        self.term["reason"].as_str().unwrap_or_default()
    }

    pub fn message(&self) -> &str {
        self.term["message"].as_str().unwrap_or_default()
    }

    #[track_caller]
    pub fn assert_ok(&self) {
        assert_eq!(
            self.code, 0,
            "fetch failed: {}\n{}",
            self.term_raw, self.stderr
        );
        assert_eq!(self.reason(), "Downloaded", "{}", self.term_raw);
    }

    #[track_caller]
    pub fn assert_failed(&self, reason: &str) {
        // Exit 2 where a retry of the Job would fail the same way (its podFailurePolicy ends the
        // Job at once), 1 where another attempt may succeed.
        let permanent = [
            "DiskFull",
            "InvalidURL",
            "InvalidArgument",
            "ForbiddenAddress",
            "UnsafeArchive",
        ];
        let want = if permanent.contains(&reason) { 2 } else { 1 };
        assert_eq!(
            self.code, want,
            "expected failure {reason}: {}\n{}",
            self.term_raw, self.stderr
        );
        assert_eq!(self.reason(), reason, "{}\n{}", self.term_raw, self.stderr);
    }
}

/// Builder for one fetch run; `dest` and the termination log live in `dir`.
pub struct Fetch {
    args: Vec<String>,
    env: Vec<(String, String)>,
    term: PathBuf,
}

impl Fetch {
    pub fn new(url: &str, dest: &Path) -> Self {
        let term = dest.parent().unwrap().join(format!(
            "termination-log-{}",
            dest.file_name().unwrap().to_string_lossy()
        ));
        let args = [
            "fetch",
            "--url",
            url,
            "--dest",
            dest.to_str().unwrap(),
            "--termination-log",
            term.to_str().unwrap(),
            // Fast retries keep tests quick. The stall limit stays well above any pause a loaded
            // machine may cause; tests about stalls set their own.
            "--retry-base-ms",
            "50",
            "--stall-timeout",
            "10",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        Self {
            args,
            env: Vec::new(),
            term,
        }
    }

    pub fn arg(mut self, a: &str) -> Self {
        self.args.push(a.to_string());
        self
    }

    /// Appends arguments; a `--flag value` already set (a default above) gets the new value.
    pub fn args(mut self, a: &[&str]) -> Self {
        let mut i = 0;
        while i < a.len() {
            let existing = self.args.iter().position(|x| x == a[i]);
            match (existing, a.get(i + 1)) {
                (Some(at), Some(v)) if a[i].starts_with("--") && !v.starts_with("--") => {
                    self.args[at + 1] = v.to_string();
                    i += 2;
                }
                _ => {
                    self.args.push(a[i].to_string());
                    i += 1;
                }
            }
        }
        self
    }

    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.to_string(), v.to_string()));
        self
    }

    /// Runs the binary on a blocking thread (the test's server keeps running meanwhile).
    pub async fn run(self) -> Run {
        let _ = std::fs::remove_file(&self.term);
        tokio::task::spawn_blocking(move || {
            let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_mlmodel-fetch"));
            cmd.args(&self.args).env("MLMODEL_LOG", "info");
            for (k, _) in std::env::vars() {
                let strip = ["AWS_", "GOOGLE_", "HF_", "HUGGING_FACE"]
                    .iter()
                    .any(|p| k.starts_with(p))
                    || k.to_ascii_lowercase().ends_with("_proxy");
                if strip {
                    cmd.env_remove(&k);
                }
            }
            for (k, v) in &self.env {
                cmd.env(k, v);
            }
            let out = cmd.output().expect("running mlmodel-fetch");
            let term_raw = std::fs::read_to_string(&self.term).unwrap_or_default();
            let term = serde_json::from_str(term_raw.trim()).unwrap_or(serde_json::Value::Null);
            Run {
                code: out.status.code().unwrap_or(-1),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
                term,
                term_raw,
            }
        })
        .await
        .unwrap()
    }
}

/// Every regular file under `dir` (relative path -> content), hidden downloader files excluded.
pub fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, Vec<u8>)>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let rel = p.strip_prefix(root).unwrap().to_string_lossy().into_owned();
            if rel.starts_with(".mlmodel-") {
                continue;
            }
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                walk(root, &p, out);
            } else if ft.is_file() {
                out.push((rel, std::fs::read(&p).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}
