//! The wasmtime side: one shared `Engine` (pooling allocator, epoch interruption), the linker
//! with WASI (no preopens, network, environment or arguments), the on-disk cache of compiled
//! components, and the sandboxed call: a fresh `Store` per call with a memory bound, a wall-clock
//! deadline and a bounded stderr. Calls at load time run on a thread of their own that the host
//! stops waiting for at [`Limits::host_deadline`], whatever the guest does.
use anyhow::{Context as _, Result};
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, Trap,
};
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::compiler::{self, ChildError, Compiler};
use super::stdio::BoundedPipe;
use crate::artifact_mac;

pub(crate) mod bindings {
    wasmtime::component::bindgen!({ path: "../../wit", world: "plugin" });
}
/// The world of a plugin that also exports the optional `inputs` interface.
pub(crate) mod with_inputs {
    wasmtime::component::bindgen!({ path: "../../wit", world: "plugin-with-inputs" });
}
pub(crate) use bindings::PluginPre;
pub(crate) use bindings::exports::mlmodel::plugin::renderer as wit;
use with_inputs::PluginWithInputsPre;
pub(crate) use with_inputs::exports::mlmodel::plugin::inputs::Accepted;

/// The export every plugin must have; matched semver-compatibly (any `0.1.x`).
pub const CONTRACT: &str = "mlmodel:plugin/renderer@0.1.1";
/// The optional export saying what a plugin accepts (since contract 0.1.1).
pub const INPUTS: &str = "mlmodel:plugin/inputs@0.1.1";

/// Bounds of one plugin call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock time of one call (instantiation included).
    pub timeout: Duration,
    /// Linear memory of one instance.
    pub memory_bytes: usize,
    /// Stderr kept for the error message.
    pub stderr_bytes: usize,
    /// Total size of the manifests one render may return.
    pub output_bytes: usize,
    /// Instances alive at once (the pooling allocator's slots): renders in parallel.
    pub max_concurrent: u32,
    /// Renders of the controller running at once, each on a blocking thread off the async
    /// runtime; the others wait for a turn without holding a thread.
    pub render_threads: usize,
}

impl Default for Limits {
    fn default() -> Self {
        let max_concurrent = 32;
        Limits {
            timeout: Duration::from_secs(1),
            memory_bytes: 64 << 20,
            stderr_bytes: 8 << 10,
            output_bytes: 4 << 20,
            max_concurrent,
            render_threads: default_render_threads(max_concurrent),
        }
    }
}

impl Limits {
    /// How long the host waits for a call before it gives up on it: the epoch deadline plus
    /// [`HOST_GRACE`]. The epoch deadline stops the guest's own code; this bound holds even when
    /// the guest sits in a host call, where the epoch cannot reach it.
    pub fn host_deadline(&self) -> Duration {
        self.timeout + HOST_GRACE
    }
}

/// One render thread per core (at least 2, so that one slow plugin leaves a thread to the
/// others), never more than the pool has instance slots.
fn default_render_threads(max_concurrent: u32) -> usize {
    std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, max_concurrent.max(2) as usize)
}

/// What the host adds to the epoch deadline before it stops waiting for a call: scheduling
/// delays of a busy node, and the tick's granularity.
pub const HOST_GRACE: Duration = Duration::from_secs(1);

/// How often the epoch advances; the deadline is a number of ticks.
const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Memories and core instances of one plugin component (main module, WASI adapter, shims).
const CORE_INSTANCES_PER_PLUGIN: u32 = 16;
const MEMORIES_PER_PLUGIN: u32 = 2;
/// Bytes of linear memory (and table) kept resident between renders in a pool slot.
const KEEP_RESIDENT: usize = 2 << 20;

/// Store data: WASI state (nothing granted) and the memory limiter.
pub(crate) struct HostState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Refuses growth past the limit with an error (a trap), and remembers it so that the call's
/// failure is classified as out-of-memory whatever the guest did with the failed allocation.
struct MemoryLimiter {
    max: usize,
    exceeded: bool,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max {
            self.exceeded = true;
            wasmtime::bail!("memory limit of {} MiB reached", self.max >> 20);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// Why a call did not return.
#[derive(Debug)]
pub(crate) enum CallFailure {
    Trap { message: String, stderr: String },
    Timeout { stderr: String },
    OutOfMemory { stderr: String },
}

/// Advances the engine's epoch every [`EPOCH_TICK`] while at least one call runs, and sleeps
/// otherwise: an idle operator wakes no thread a hundred times a second. A call's deadline is
/// counted in ticks from its start, so ticks missed while no call ran change nothing.
#[derive(Clone)]
struct Ticker(Arc<(Mutex<TickerState>, Condvar)>);

#[derive(Default)]
struct TickerState {
    calls: usize,
    stop: bool,
}

/// A call in progress: the ticker ticks until the last one is dropped.
struct Ticking<'a>(&'a Ticker);

impl Drop for Ticking<'_> {
    fn drop(&mut self) {
        self.0.0.0.lock().expect("not poisoned").calls -= 1;
    }
}

impl Ticker {
    fn start(engine: Engine) -> Result<Ticker> {
        let ticker = Ticker(Arc::default());
        let shared = ticker.0.clone();
        std::thread::Builder::new()
            .name("wasm-epoch".into())
            .spawn(move || {
                let (state, wake) = &*shared;
                loop {
                    {
                        let mut s = state.lock().expect("not poisoned");
                        while s.calls == 0 && !s.stop {
                            s = wake.wait(s).expect("not poisoned");
                        }
                        if s.stop {
                            return;
                        }
                    }
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
                }
            })
            .context("starting the plugin deadline thread")?;
        Ok(ticker)
    }

    fn ticking(&self) -> Ticking<'_> {
        let (state, wake) = &*self.0;
        state.lock().expect("not poisoned").calls += 1;
        wake.notify_one();
        Ticking(self)
    }
}

/// Stops the ticker's thread when the engine goes away.
struct StopTicker(Ticker);

impl Drop for StopTicker {
    fn drop(&mut self) {
        let (state, wake) = &*self.0.0;
        state.lock().expect("not poisoned").stop = true;
        wake.notify_one();
    }
}

pub(crate) struct PluginEngine {
    engine: Engine,
    linker: Linker<HostState>,
    cache_dir: Option<PathBuf>,
    /// Version and settings of the engine, part of every cache key.
    engine_key: String,
    limits: Limits,
    ticker: StopTicker,
    compiler: Compiler,
    /// Where a child compiles when there is no cache directory.
    scratch: Option<Scratch>,
    /// The key of the cache's artifact digests (with a cache directory).
    artifact_key: Option<artifact_mac::Key>,
}

/// A directory only this process uses, removed with it (mapped artifacts outlive their names).
struct Scratch(PathBuf);

impl Scratch {
    fn create() -> Result<Scratch> {
        use std::os::unix::fs::DirBuilderExt as _;
        let dir = std::env::temp_dir().join(format!("mlmodel-operator-{}", std::process::id()));
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        Ok(Scratch(dir))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The engine's settings, the same in the operator and in the child that compiles for it (the
/// artifact of another configuration is refused).
fn engine_config(limits: &Limits) -> Config {
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(limits.max_concurrent)
        .total_core_instances(limits.max_concurrent * CORE_INSTANCES_PER_PLUGIN)
        .total_memories(limits.max_concurrent * MEMORIES_PER_PLUGIN)
        .total_tables(limits.max_concurrent * CORE_INSTANCES_PER_PLUGIN)
        .max_memories_per_component(MEMORIES_PER_PLUGIN)
        .max_memory_size(limits.memory_bytes)
        // A render touches a few hundred KB of a fresh memory: resetting only the dirty pages
        // (PAGEMAP_SCAN, Linux 6.7+) and keeping them resident saves a page fault per page
        // on the next render; elsewhere this falls back to madvise.
        .linear_memory_keep_resident(KEEP_RESIDENT)
        .table_keep_resident(KEEP_RESIDENT)
        .pagemap_scan(Enabled::Auto);
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        // A trap's message is enough for a status; backtraces cost time and clutter it.
        .wasm_backtrace_max_frames(None)
        .parallel_compilation(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

/// The limits that shape the engine's settings, as the child's arguments.
fn child_args(limits: &Limits) -> Vec<String> {
    vec![
        "--memory-bytes".into(),
        limits.memory_bytes.to_string(),
        "--max-concurrent".into(),
        limits.max_concurrent.to_string(),
    ]
}

/// What the child (`mlmodel-operator compile-plugin`) does: compiles `bytes` with the engine of
/// these limits into `out` (atomically). An error is the component's own fault.
pub(crate) fn compile_to_file(limits: &Limits, bytes: &[u8], out: &Path) -> Result<()> {
    let engine = Engine::new(&engine_config(limits))
        .map_err(wasm_err)
        .context("configuring wasmtime")?;
    let component = compile_component(&engine, bytes)?;
    write_cache(&component.serialize().map_err(wasm_err)?, out)
}

fn compile_component(engine: &Engine, bytes: &[u8]) -> Result<Component> {
    if is_core_module(bytes) {
        anyhow::bail!(
            "it is a core WebAssembly module, not a component: build it for the target `wasm32-wasip2` (`cargo build --release --target wasm32-wasip2`), or wrap it with `wasm-tools component new`"
        );
    }
    Component::new(engine, bytes)
        .map_err(wasm_err)
        .context("not a valid WebAssembly component")
}

impl PluginEngine {
    pub(crate) fn new(
        limits: Limits,
        cache_dir: Option<PathBuf>,
        compiler: Compiler,
    ) -> Result<Self> {
        let engine = Engine::new(&engine_config(&limits))
            .map_err(wasm_err)
            .context("configuring wasmtime")?;
        // A child compiles into a file: without a cache, into a private directory of ours.
        let (compiler, scratch) = match (compiler, &cache_dir) {
            (Compiler::Subprocess, None) => match Scratch::create() {
                Ok(dir) => (compiler, Some(dir)),
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "no directory for compiled plugins: compiling in this process");
                    (Compiler::InProcess, None)
                }
            },
            _ => (compiler, None),
        };
        // Compiled code is native code: a cached artifact runs only if it carries the digest
        // this operator recorded when it compiled it. Without a usable key, no cache.
        let (cache_dir, artifact_key) = match cache_dir {
            Some(dir) => match artifact_mac::Key::load_or_create(&dir) {
                Ok(key) => (Some(dir), Some(key)),
                Err(e) => {
                    tracing::warn!(dir = %dir.display(), error = %format!("{e:#}"), "the compiled-plugin cache has no key only this operator can read: not using it");
                    (None, None)
                }
            },
            None => (None, None),
        };

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(wasm_err)?;
        refuse_blocking(&mut linker).map_err(wasm_err)?;

        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let engine_key = format!("wasmtime{}-{:016x}", wasmtime_version(), hasher.finish());

        let ticker = StopTicker(Ticker::start(engine.clone())?);
        Ok(PluginEngine {
            engine,
            linker,
            cache_dir,
            engine_key,
            limits,
            ticker,
            compiler,
            scratch,
            artifact_key,
        })
    }

    pub(crate) fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Compiles `bytes` (whose sha256 is `sha256`), or loads the artifact a previous run left in
    /// the cache directory. Returns whether the cache answered.
    pub(crate) fn compile(&self, bytes: &[u8], sha256: &str) -> Result<(Component, bool)> {
        let name = format!("{sha256}-{}.cwasm", self.engine_key);
        let cached = self.cache_dir.as_ref().map(|d| d.join(&name));
        if let (Some(path), Some(key)) = (
            cached.as_deref().filter(|p| p.is_file()),
            &self.artifact_key,
        ) {
            match key.verified(path) {
                // SAFETY: these bytes are what this operator's engine serialized with these
                // settings: their keyed digest, recorded when it wrote them, says so (read
                // once, checked, then mapped from a private copy: the cached file is not read
                // again). wasmtime also checks the header against this engine.
                Ok(bytes) => {
                    match write_private_bytes(&bytes).and_then(|p| map_private(&self.engine, &p)) {
                        Ok(component) => return Ok((component, true)),
                        Err(e) => {
                            tracing::warn!(path = %path.display(), error = %format!("{e:#}"), "ignoring unusable cached plugin artifact")
                        }
                    }
                }
                Err(e) => {
                    artifact_mac::REJECTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    tracing::warn!(path = %path.display(), error = %format!("{e:#}"), "cached plugin artifact not as this operator compiled it: compiling again");
                }
            }
        }
        if self.compiler == Compiler::Subprocess
            && let Some(out) = cached
                .clone()
                .or_else(|| self.scratch.as_ref().map(|s| s.0.join(&name)))
        {
            // The child's artifact is read once: its digest is recorded and it is mapped from
            // a private copy of those very bytes (the file in the cache is not read again).
            let from_child =
                compiler::in_child(bytes, &out, &child_args(&self.limits)).and_then(|()| {
                    self.take_from_child(&out, cached.is_some())
                        .map_err(|e| ChildError::Failed(format!("{e:#}")))
                });
            match from_child {
                // SAFETY: written by `Component::serialize` of this binary's engine with these
                // settings (the child's arguments), read once, copied to a file of ours.
                Ok(private) => match map_private(&self.engine, &private) {
                    Ok(component) => return Ok((component, false)),
                    Err(e) => {
                        tracing::warn!(error = %e, "the compiler process's artifact is unusable: compiling here")
                    }
                },
                Err(ChildError::Refused(message)) => anyhow::bail!(message),
                Err(ChildError::Failed(e)) => {
                    tracing::warn!(error = %e, "compiling in a child process failed: compiling here")
                }
            }
        }
        let compiled = compile_component(&self.engine, bytes)?;
        // The compiler's artifact is anonymous memory, all of it resident for the process's
        // life; the same artifact mapped from a file is resident only where it is used. So it
        // is written out and loaded back from a private temporary file, unlinked once mapped;
        // the same bytes go to the cache, if there is one, with their digest (computed from
        // these bytes, not read back).
        let mapped = compiled.serialize().map_err(wasm_err).and_then(|bytes| {
            if let (Some(path), Some(key)) = (&cached, &self.artifact_key)
                && let Err(e) = write_cache(&bytes, path).and_then(|()| key.record(path, &bytes))
            {
                tracing::warn!(path = %path.display(), error = %format!("{e:#}"), "cannot cache the compiled plugin");
            }
            write_private_bytes(&bytes).and_then(|p| map_private(&self.engine, &p))
        });
        match mapped {
            Ok(component) => Ok((component, false)),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "cannot map the compiled plugin from a file; keeping it in memory");
                Ok((compiled, false))
            }
        }
    }

    /// Links the component and checks it exports the contract with the right types.
    pub(crate) fn prepare(&self, component: &Component) -> Result<PluginPre<HostState>> {
        let pre = self
            .linker
            .instantiate_pre(component)
            .map_err(wasm_err)
            .context("it needs imports the sandbox does not provide (only WASI without files, network or environment is)")?;
        PluginPre::new(pre)
            .map_err(|e| contract_error(CONTRACT, root_message(&e)))
            .and_then(|pre| self.check_instantiates(pre))
    }

    /// What the plugin accepts: its `inputs` export's answer, or `None` when it has no such
    /// export (a plugin built against contract 0.1.0). Called once at load, on a thread of its
    /// own like `info()`.
    pub(crate) fn accepts(&self, component: &Component) -> Result<Option<Accepted>> {
        if component.get_export_index(None, INPUTS).is_none() {
            return Ok(None);
        }
        let pre = self
            .linker
            .instantiate_pre(component)
            .map_err(wasm_err)
            .context("it needs imports the sandbox does not provide")?;
        let pre =
            PluginWithInputsPre::new(pre).map_err(|e| contract_error(INPUTS, root_message(&e)))?;
        let deadline = self.limits.host_deadline();
        let (engine, limits) = (self.engine.clone(), self.limits.clone());
        let ticker = self.ticker.0.clone();
        let call = move || {
            sandboxed_call(
                &engine,
                &ticker,
                &limits,
                &pre,
                |store, plugin: &with_inputs::PluginWithInputs| {
                    plugin.mlmodel_plugin_inputs().call_accepts(store)
                },
            )
        };
        match on_own_thread(deadline, call) {
            Ok(Ok((accepted, _))) => Ok(Some(accepted)),
            Ok(Err(CallFailure::Trap { message, stderr })) => Err(anyhow::anyhow!(
                "accepts() failed: {message}{}",
                super::stdio::stderr_suffix(&stderr)
            )),
            Ok(Err(CallFailure::OutOfMemory { .. })) => {
                anyhow::bail!("accepts() ran out of memory")
            }
            Ok(Err(CallFailure::Timeout { .. })) | Err(OwnThread::TimedOut) => anyhow::bail!(
                "accepts() did not return within {:?} and was stopped; a plugin must answer at once",
                self.limits.timeout
            ),
            Err(OwnThread::Failed(why)) => Err(anyhow::anyhow!("accepts() failed: {why}")),
        }
    }

    fn check_instantiates(&self, pre: PluginPre<HostState>) -> Result<PluginPre<HostState>> {
        // Function signatures are only checked when an instance is made: make one now, so a
        // changed signature is a load error rather than a failure of every render.
        match self.call_on_own_thread(&pre, |_, _| Ok(())) {
            Ok(((), _)) => Ok(pre),
            Err(CallFailure::Trap { message, .. }) => Err(contract_error(CONTRACT, message)),
            Err(CallFailure::Timeout { .. }) => {
                anyhow::bail!("instantiating it did not finish in time")
            }
            Err(CallFailure::OutOfMemory { .. }) => {
                anyhow::bail!("instantiating it ran out of memory")
            }
        }
    }

    /// Runs `f` on a fresh instance in a fresh sandboxed store, on this thread; returns its
    /// result and what the plugin wrote to stderr.
    pub(crate) fn call<R>(
        &self,
        pre: &PluginPre<HostState>,
        f: impl FnOnce(&mut Store<HostState>, &bindings::Plugin) -> wasmtime::Result<R> + Send,
    ) -> Result<(R, String), CallFailure>
    where
        R: Send,
    {
        outside_async_context(|| self.call_here(pre, f))
    }

    /// [`PluginEngine::call`] for a thread outside any async context (a `spawn_blocking` thread
    /// or a plain one), where wasmtime-wasi's host functions may block on Tokio.
    pub(crate) fn call_here<R>(
        &self,
        pre: &PluginPre<HostState>,
        f: impl FnOnce(&mut Store<HostState>, &bindings::Plugin) -> wasmtime::Result<R>,
    ) -> Result<(R, String), CallFailure> {
        sandboxed_call(&self.engine, &self.ticker.0, &self.limits, pre, f)
    }

    /// [`PluginEngine::call`] on a thread of its own, waited for at most
    /// [`Limits::host_deadline`]: what loading a plugin calls (instantiation, `info()`), so that
    /// no plugin can hang a start or a reload. A call given up on is left to finish on its
    /// thread (the epoch deadline stops guest code; its pool slot is freed when it ends).
    pub(crate) fn call_on_own_thread<R>(
        &self,
        pre: &PluginPre<HostState>,
        f: impl FnOnce(&mut Store<HostState>, &bindings::Plugin) -> wasmtime::Result<R> + Send + 'static,
    ) -> Result<(R, String), CallFailure>
    where
        R: Send + 'static,
    {
        let (engine, limits, pre) = (self.engine.clone(), self.limits.clone(), pre.clone());
        let ticker = self.ticker.0.clone();
        let deadline = self.limits.host_deadline();
        let call = move || sandboxed_call(&engine, &ticker, &limits, &pre, f);
        match on_own_thread(deadline, call) {
            Ok(result) => result,
            Err(OwnThread::TimedOut) => Err(CallFailure::Timeout {
                stderr: String::new(),
            }),
            Err(OwnThread::Failed(why)) => Err(CallFailure::Trap {
                message: why,
                stderr: String::new(),
            }),
        }
    }

    /// The names of the component's imports and exports (interfaces, as in its WIT world).
    pub(crate) fn world(&self, pre: &PluginPre<HostState>) -> (Vec<String>, Vec<String>) {
        let ty = pre.instance_pre().component().component_type();
        let imports = ty.imports(&self.engine).map(|(n, _)| n.to_string());
        let exports = ty.exports(&self.engine).map(|(n, _)| n.to_string());
        (imports.collect(), exports.collect())
    }

    /// The plugin's `info()`, on a thread of its own (see [`PluginEngine::call_on_own_thread`]).
    pub(crate) fn info(&self, pre: &PluginPre<HostState>) -> Result<wit::PluginInfo, CallFailure> {
        self.call_on_own_thread(pre, |store, plugin| {
            plugin.mlmodel_plugin_renderer().call_info(store)
        })
        .map(|(info, _)| info)
    }
}

/// A core module (`\0asm`, version 1) rather than a component (`\0asm`, layer 1): what a build
/// for `wasm32-unknown-unknown` or `wasm32-wasip1` gives.
fn is_core_module(bytes: &[u8]) -> bool {
    bytes.starts_with(b"\0asm\x01\0\0\0")
}

fn contract_error(export: &str, detail: String) -> anyhow::Error {
    anyhow::anyhow!(
        "it does not export `{export}` with the expected types (was it built against another version of wit/plugin.wit?): {detail}"
    )
}

/// A pre-linked plugin of one of the worlds the host knows.
trait Instantiate {
    type Instance;
    fn instantiate_in(&self, store: &mut Store<HostState>) -> wasmtime::Result<Self::Instance>;
}

impl Instantiate for PluginPre<HostState> {
    type Instance = bindings::Plugin;
    fn instantiate_in(&self, store: &mut Store<HostState>) -> wasmtime::Result<Self::Instance> {
        self.instantiate(store)
    }
}

impl Instantiate for PluginWithInputsPre<HostState> {
    type Instance = with_inputs::PluginWithInputs;
    fn instantiate_in(&self, store: &mut Store<HostState>) -> wasmtime::Result<Self::Instance> {
        self.instantiate(store)
    }
}

/// A fresh store with the sandbox's bounds, a fresh instance of `pre` in it, then `f`.
fn sandboxed_call<P: Instantiate, R>(
    engine: &Engine,
    ticker: &Ticker,
    limits: &Limits,
    pre: &P,
    f: impl FnOnce(&mut Store<HostState>, &P::Instance) -> wasmtime::Result<R>,
) -> Result<(R, String), CallFailure> {
    let stderr = BoundedPipe::new(limits.stderr_bytes);
    // Nothing is granted: no preopened directory, no environment, no arguments, stdin
    // closed, stdout discarded; sockets exist but every address is denied.
    let wasi = WasiCtxBuilder::new().stderr(stderr.clone()).build();
    let state = HostState {
        wasi,
        table: ResourceTable::new(),
        limiter: MemoryLimiter {
            max: limits.memory_bytes,
            exceeded: false,
        },
    };
    let mut store = Store::new(engine, state);
    store.limiter(|s| &mut s.limiter);
    let ticks = (limits.timeout.as_micros() / EPOCH_TICK.as_micros()).max(1) as u64;
    let _ticking = ticker.ticking();
    store.set_epoch_deadline(ticks);
    store.epoch_deadline_trap();

    let result = pre
        .instantiate_in(&mut store)
        .and_then(|plugin| f(&mut store, &plugin));
    result.map(|r| (r, stderr.one_line())).map_err(|e| {
        let stderr = stderr.one_line();
        if store.data().limiter.exceeded {
            CallFailure::OutOfMemory { stderr }
        } else if matches!(
            e.downcast_ref::<Trap>(),
            Some(Trap::Interrupt | Trap::OutOfFuel)
        ) {
            CallFailure::Timeout { stderr }
        } else {
            CallFailure::Trap {
                message: root_message(&e),
                stderr,
            }
        }
    })
}

/// Why [`on_own_thread`] has no result.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum OwnThread {
    /// Still running at the deadline: left to finish alone.
    TimedOut,
    /// The thread could not start, or panicked.
    Failed(String),
}

/// Runs `f` on a Tokio blocking thread and waits for it at most `deadline`, without holding the
/// caller's thread. A host panic in `f` is the caller's.
pub(crate) async fn on_blocking_thread<R: Send + 'static>(
    deadline: Duration,
    f: impl FnOnce() -> R + Send + 'static,
) -> Result<R, OwnThread> {
    match tokio::time::timeout(deadline, tokio::task::spawn_blocking(f)).await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Ok(Err(_)) => Err(OwnThread::Failed(
            "the call was cancelled: the operator is shutting down".into(),
        )),
        Err(_) => Err(OwnThread::TimedOut),
    }
}

/// Runs `f` on a new thread and waits for it at most `deadline`.
pub(crate) fn on_own_thread<R: Send + 'static>(
    deadline: Duration,
    f: impl FnOnce() -> R + Send + 'static,
) -> Result<R, OwnThread> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("plugin-call".into())
        .spawn(move || {
            // The receiver is gone when the caller stopped waiting: nothing to tell.
            let _ = tx.send(f());
        })
        .map_err(|e| OwnThread::Failed(format!("cannot start a thread for the plugin: {e}")))?;
    rx.recv_timeout(deadline).map_err(|e| match e {
        std::sync::mpsc::RecvTimeoutError::Timeout => OwnThread::TimedOut,
        std::sync::mpsc::RecvTimeoutError::Disconnected => {
            OwnThread::Failed("the host panicked while calling the plugin".into())
        }
    })
}

/// The WASI version whose `wasi:io/poll` this wasmtime-wasi defines (guests built against an
/// older 0.2.x resolve to it).
const WASI_IO_POLL: &str = "wasi:io/poll@0.2.12";

/// A plugin may not wait: `poll` and `pollable.block` (what a guest's `sleep` becomes) trap at
/// once instead of blocking the thread inside a host call, where the epoch deadline cannot
/// interrupt them. Nothing a render needs waits: stdin is closed, stdout and stderr never block,
/// and every socket address is denied.
fn refuse_blocking(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
    use wasmtime::component::Resource;
    use wasmtime_wasi::p2::DynPollable;
    linker.allow_shadowing(true);
    let mut poll = linker.instance(WASI_IO_POLL)?;
    poll.func_wrap(
        "poll",
        |_, _: (Vec<Resource<DynPollable>>,)| -> wasmtime::Result<(Vec<u32>,)> {
            Err(wasmtime::Error::msg(
                "plugins may not wait (wasi:io/poll.poll, e.g. a sleep)",
            ))
        },
    )?;
    poll.func_wrap(
        "[method]pollable.block",
        |_, _: (Resource<DynPollable>,)| -> wasmtime::Result<()> {
            Err(wasmtime::Error::msg(
                "plugins may not wait (wasi:io/poll.pollable.block, e.g. a sleep)",
            ))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// The last line of an error chain: what went wrong, without the layers of context.
pub(crate) fn root_message(e: &wasmtime::Error) -> String {
    let root = e.root_cause().to_string();
    let message = if root.trim().is_empty() {
        e.to_string()
    } else {
        root
    };
    message
        .lines()
        .next()
        .unwrap_or_default()
        .trim()
        .to_string()
}

fn wasm_err(e: wasmtime::Error) -> anyhow::Error {
    anyhow::anyhow!("{e:#}")
}

impl PluginEngine {
    /// The child's artifact at `out`, read once: its digest recorded when it is in the cache,
    /// its bytes copied to a private file to map; a file in the scratch directory is removed.
    fn take_from_child(&self, out: &Path, in_cache: bool) -> Result<PathBuf> {
        let bytes = std::fs::read(out).with_context(|| format!("reading {}", out.display()))?;
        match (&self.artifact_key, in_cache) {
            (Some(key), true) => key.record(out, &bytes)?,
            _ => {
                let _ = std::fs::remove_file(out);
            }
        }
        write_private_bytes(&bytes)
    }
}

/// Maps an artifact from a private file of ours, and unlinks it (the mapping outlives the name).
fn map_private(engine: &Engine, path: &Path) -> Result<Component> {
    // SAFETY: the caller wrote the file exclusively (mode 0600) from verified bytes.
    let mapped = unsafe { Component::deserialize_file(engine, path) };
    let _ = std::fs::remove_file(path);
    mapped.map_err(wasm_err)
}

fn wasmtime_version() -> &'static str {
    // Bumped with the pinned dependency; the engine hash covers settings and target.
    "48.0.8"
}

fn write_cache(bytes: &[u8], path: &Path) -> Result<()> {
    let dir = path.parent().context("cache path has a directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))
}

/// Writes an artifact into a new file of the temporary directory, named for this process and
/// call, that only this process can have made.
fn write_private_bytes(bytes: &[u8]) -> Result<PathBuf> {
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path =
        std::env::temp_dir().join(format!("mlmodel-operator-{}-{n}.cwasm", std::process::id()));
    write_new(&path, bytes)?;
    Ok(path)
}

/// Creates `path` (mode 0600) and writes `bytes`: an existing file or symlink of that name is
/// refused, never written through or loaded.
fn write_new(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes).map_err(|e| {
        let _ = std::fs::remove_file(path);
        anyhow::Error::new(e).context(format!("writing {}", path.display()))
    })
}

/// wasmtime-wasi's synchronous host functions (stderr writes among them) block on a Tokio
/// runtime; called from an async worker thread that would panic. So leave the async context:
/// `block_in_place` on a multi-thread runtime (a no-op on `spawn_blocking` threads), a scoped
/// thread on a current-thread runtime.
fn outside_async_context<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Err(_) => f(),
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        Ok(_) => std::thread::scope(|s| {
            s.spawn(f)
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::artifact::sha256_hex;

    /// A cached artifact becomes native code: it runs only as this operator compiled it (its
    /// keyed digest recorded beside it). A changed byte, a missing digest, or a key others can
    /// read send the plugin to the compiler again.
    #[test]
    fn a_cached_artifact_runs_only_if_its_recorded_digest_matches() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("mlmodel-artifact-mac-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let bytes = crate::registry::builtin_bytes("service").unwrap();
        let sha = sha256_hex(bytes);
        let compile = || {
            PluginEngine::new(Limits::default(), Some(dir.clone()), Compiler::InProcess)
                .unwrap()
                .compile(bytes, &sha)
                .unwrap()
                .1
        };
        assert!(!compile(), "the first time: compiled");
        assert!(compile(), "as compiled: from the cache");
        let artifact = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.extension().is_some_and(|e| e == "cwasm"))
            .expect("an artifact in the cache");

        let mut data = std::fs::read(&artifact).unwrap();
        let middle = data.len() / 2;
        data[middle] ^= 0xff;
        std::fs::write(&artifact, &data).unwrap();
        let before = artifact_mac::REJECTED.load(std::sync::atomic::Ordering::Relaxed);
        assert!(!compile(), "a changed byte: compiled again");
        assert!(artifact_mac::REJECTED.load(std::sync::atomic::Ordering::Relaxed) > before);
        assert!(compile(), "compiled again, recorded again");

        let mut mac = artifact.clone().into_os_string();
        mac.push(".mac");
        std::fs::remove_file(&mac).unwrap();
        assert!(!compile(), "a file with no digest of ours: compiled again");

        let key = dir.join("artifacts.key");
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(!compile(), "a key others can read: no cache");
        assert!(!compile(), "still none");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_core_module_is_told_apart_from_a_component() {
        // The smallest core module, and a component's header (version 0xd, layer 1).
        assert!(is_core_module(b"\0asm\x01\0\0\0"));
        assert!(!is_core_module(b"\0asm\x0d\0\x01\0"));
        let engine = PluginEngine::new(Limits::default(), None, Compiler::InProcess).unwrap();
        let err = engine.compile(b"\0asm\x01\0\0\0", "x").unwrap_err();
        assert!(format!("{err:#}").contains("wasm32-wasip2"), "{err:#}");
    }
    use std::sync::mpsc;

    /// A call stuck where nothing can interrupt it (here: a channel nobody writes to yet, as a
    /// guest sitting in a blocking host call would be).
    fn stuck() -> (mpsc::Sender<()>, impl FnOnce() -> u32 + Send + 'static) {
        let (release, wait) = mpsc::channel::<()>();
        (release, move || {
            let _ = wait.recv();
            7
        })
    }

    #[test]
    fn the_host_stops_waiting_for_a_stuck_call_on_its_own_thread() {
        let (release, f) = stuck();
        assert_eq!(
            on_own_thread(Duration::from_millis(50), f),
            Err(OwnThread::TimedOut)
        );
        release.send(()).unwrap();
        assert_eq!(on_own_thread(Duration::from_secs(30), || 3), Ok(3));
    }

    #[test]
    fn a_panic_on_its_own_thread_is_a_failure_not_a_hang() {
        let r = on_own_thread(Duration::from_secs(30), || -> u32 { panic!("host bug") });
        assert!(matches!(r, Err(OwnThread::Failed(_))), "{r:?}");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn the_host_stops_waiting_for_a_stuck_call_on_a_blocking_thread() {
        let (release, f) = stuck();
        assert_eq!(
            on_blocking_thread(Duration::from_millis(50), f).await,
            Err(OwnThread::TimedOut)
        );
        // Let the blocking thread end, or the test runtime would wait for it when dropped.
        release.send(()).unwrap();
        assert_eq!(
            on_blocking_thread(Duration::from_secs(30), || 3).await,
            Ok(3)
        );
    }

    #[test]
    fn a_compiled_plugin_is_loaded_back_from_a_file_that_is_then_removed() {
        let engine = PluginEngine::new(Limits::default(), None, Compiler::InProcess).unwrap();
        let bytes = crate::registry::builtin_bytes("service").unwrap();
        let before = private_files();
        let (component, cached) = engine.compile(bytes, &sha256_hex(bytes)).unwrap();
        assert!(!cached);
        let pre = engine.prepare(&component).unwrap();
        assert_eq!(engine.info(&pre).ok().unwrap().name, "service");
        // Tests running beside this one compile too: their files come and go, a leak stays.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        loop {
            let left: Vec<_> = private_files().difference(&before).cloned().collect();
            if left.is_empty() {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "left behind: {left:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn private_files() -> std::collections::BTreeSet<PathBuf> {
        let prefix = format!("mlmodel-operator-{}-", std::process::id());
        std::fs::read_dir(std::env::temp_dir())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
            .map(|e| e.path())
            .collect()
    }

    #[test]
    fn a_planted_file_or_symlink_is_never_written_through() {
        let dir = std::env::temp_dir().join(format!("mlmodel-plant-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let target = dir.join("target");
        std::fs::write(&target, b"theirs").unwrap();
        let link = dir.join("link.cwasm");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(write_new(&link, b"ours").is_err());
        assert!(write_new(&target, b"ours").is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"theirs");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn default_render_threads_are_bounded() {
        let n = default_render_threads(32);
        assert!((2..=32).contains(&n), "{n}");
        assert_eq!(default_render_threads(1), 2);
        assert_eq!(Limits::default().host_deadline(), Duration::from_secs(2));
    }
}
