//! Where a plugin missing from the compile cache is compiled. The operator compiles in a child
//! process of its own binary (`mlmodel-operator compile-plugin`, hidden), which writes the
//! artifact into the cache and exits; the operator then maps the artifact. So the long-lived
//! process never runs the compiler: the compiler's code pages and the heap it leaves behind
//! (about 13 MiB for the built-ins, which `malloc_trim` does not get back) go with the child,
//! and a component that crashes the compiler crashes only the child. The CLI and the tests
//! compile in-process.
use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How a plugin missing from the cache is compiled.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Compiler {
    /// In this process.
    #[default]
    InProcess,
    /// In a short-lived child process of this binary, into the cache (`mlmodel-operator run`).
    Subprocess,
}

/// The subcommand the child runs.
pub const SUBCOMMAND: &str = "compile-plugin";

/// A compile in a child takes this long at most (a 19 MB Python component: about 7 s).
const CHILD_DEADLINE: Duration = Duration::from_secs(120);

/// What the child's stderr may add to an error.
const CHILD_STDERR_BYTES: u64 = 16 << 10;

/// Exit status of a child that refused the component (its stderr says why).
pub const REFUSED: i32 = 3;

#[derive(Debug, thiserror::Error)]
pub enum ChildError {
    /// The component cannot be compiled: the child's own message, as an in-process compile
    /// would have said it.
    #[error("{0}")]
    Refused(String),
    /// The child could not do its work (not started, killed, timed out): compile here instead.
    #[error("{0}")]
    Failed(String),
}

/// Runs `<this binary> compile-plugin --out OUT ARGS...` with `bytes` on its stdin, and waits at
/// most [`CHILD_DEADLINE`] for the artifact.
pub fn in_child(bytes: &[u8], out: &Path, args: &[String]) -> Result<(), ChildError> {
    let exe = std::env::current_exe()
        .map_err(|e| ChildError::Failed(format!("cannot find this program: {e}")))?;
    let mut child = Command::new(exe)
        .arg(SUBCOMMAND)
        .arg("--out")
        .arg(out)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| ChildError::Failed(format!("cannot start the compiler process: {e}")))?;
    let mut stdin = child.stdin.take().expect("piped");
    let written = stdin.write_all(bytes);
    drop(stdin);
    let mut stderr = child.stderr.take().expect("piped");
    // Read on a thread: a child writing much to stderr must not block on a full pipe.
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = (&mut stderr)
            .take(CHILD_STDERR_BYTES)
            .read_to_string(&mut text);
        text
    });
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() < CHILD_DEADLINE => {
                std::thread::sleep(Duration::from_millis(10))
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ChildError::Failed(format!(
                    "the compiler process took more than {CHILD_DEADLINE:?}"
                )));
            }
            Err(e) => return Err(ChildError::Failed(format!("waiting for the compiler: {e}"))),
        }
    };
    let stderr = reader.join().unwrap_or_default();
    let stderr = stderr.trim();
    match status.code() {
        Some(0) if written.is_ok() => Ok(()),
        Some(REFUSED) => Err(ChildError::Refused(stderr.to_string())),
        _ => Err(ChildError::Failed(format!(
            "the compiler process ended with {status}: {stderr}"
        ))),
    }
}
