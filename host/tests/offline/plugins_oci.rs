//! Plugins from an OCI registry (a real `docker-registry` on loopback, started per test):
//! `plugins push`, loading by digest and by tag, every way a fetch fails, the refs file's
//! reload, the on-disk blob cache, logins; and two plugins of one name in the plugin sources.
use crate::registry::{Scratch, TestRegistry, docker_config, free_port, sha256};
use crate::support::{fixture, model, plugin_dir, workspace};
use mlmodel_operator::plugins::oci::{OciOptions, OciRef, RegistryOptions};
use mlmodel_operator::plugins::{BUILTIN_SOURCE, Runtime, RuntimeOptions, Step};
use mlmodel_operator::selection::select;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const CORE_MODULE: &[u8] = b"\0asm\x01\0\0\0";

fn registry_opts(reg: &TestRegistry) -> RegistryOptions {
    RegistryOptions {
        insecure: vec![reg.host.clone()],
        ..RegistryOptions::default()
    }
}

/// A runtime loading `refs` from `reg`, blobs cached in `cache` (compiled plugins too).
fn runtime(reg: &TestRegistry, refs: &[String], cache: &Path) -> Runtime {
    Runtime::new(reg_options(reg, refs, cache)).unwrap()
}

/// The options of [`runtime`], to change before building one.
fn reg_options(reg: &TestRegistry, refs: &[String], cache: &Path) -> RuntimeOptions {
    options(registry_opts(reg), refs, cache)
}

fn options(registry: RegistryOptions, refs: &[String], cache: &Path) -> RuntimeOptions {
    RuntimeOptions {
        cache_dir: Some(cache.to_path_buf()),
        oci: OciOptions {
            refs: refs.iter().map(|r| r.parse().unwrap()).collect(),
            registry,
            ..OciOptions::default()
        },
        ..RuntimeOptions::default()
    }
}

/// The operator binary, with the compile cache the other CLI tests use.
fn cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mlmodel-operator"))
        .args(args)
        .env(
            "MLMODEL_CACHE",
            workspace().join("target").join("plugin-test-cache-cli"),
        )
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// `plugins push` of a fixture: the pinned reference it printed.
fn push(reg: &TestRegistry, name: &str, target: &str) -> String {
    let file = fixture(name);
    let (ok, stdout, stderr) = cli(&[
        "plugins",
        "push",
        file.to_str().unwrap(),
        target,
        "--insecure-registry",
        &reg.host,
    ]);
    assert!(ok, "{stderr}");
    stdout.lines().next().unwrap().to_string()
}

fn file_sha(name: &str) -> String {
    sha256(&std::fs::read(fixture(name)).unwrap())
}

/// The load error of `key` (a reference as configured), if any.
fn load_error(rt: &Runtime, key: &str) -> Option<String> {
    rt.load_errors()
        .into_iter()
        .find(|(k, _)| k == Path::new(key))
        .map(|(_, e)| e)
}

fn assert_builtins_loaded(rt: &Runtime) {
    let builtins = rt
        .plugins()
        .iter()
        .filter(|p| p.source == BUILTIN_SOURCE && p.active)
        .count();
    assert_eq!(builtins, 6, "{:?}", rt.plugins());
}

#[test]
fn a_pushed_plugin_loads_by_digest_and_by_tag_with_its_resolved_digest_shown() {
    let reg = TestRegistry::start();
    let scratch = Scratch::new("oci-push");
    let by_tag = format!("oci://{}/plugins/failing:v1", reg.host);
    let t0 = Instant::now();
    let pinned = push(&reg, "failing", &by_tag);
    let push_time = t0.elapsed();
    let prefix = format!("oci://{}/plugins/failing@sha256:", reg.host);
    let hex = pinned.strip_prefix(&prefix).expect(&pinned);
    assert!(
        hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()),
        "{pinned}"
    );
    // Pushing the same file again gives the same digest: nothing in the artifact varies.
    assert_eq!(push(&reg, "failing", &by_tag), pinned);

    let t0 = Instant::now();
    let rt = runtime(&reg, std::slice::from_ref(&pinned), scratch.path());
    let pull_time = t0.elapsed();
    assert!(rt.load_errors().is_empty(), "{:?}", rt.load_errors());
    let p = rt.get("failing").expect("loaded by digest");
    assert_eq!(p.source, pinned);
    assert_eq!(
        p.sha256,
        file_sha("failing"),
        "the plugin's sha256 is its layer's"
    );
    assert_eq!(p.tag, None);
    assert_eq!(p.status_label(), format!("failing@{} {pinned}", p.version));
    assert_builtins_loaded(&rt);

    let t0 = Instant::now();
    let cached = runtime(&reg, std::slice::from_ref(&pinned), scratch.path());
    let cached_time = t0.elapsed();
    assert_eq!(cached.get("failing").unwrap().source, pinned);
    eprintln!(
        "push {push_time:?}, first load by digest (fetch + compile) {pull_time:?}, load from the caches {cached_time:?}"
    );

    let rt = runtime(&reg, std::slice::from_ref(&by_tag), scratch.path());
    let p = rt.get("failing").expect("loaded by tag");
    assert_eq!(p.source, pinned, "the tag resolves to the pushed digest");
    assert_eq!(p.tag.as_deref(), Some("v1"));

    // `plugins` shows the digest the tag resolved to, and the tag.
    let (ok, stdout, stderr) = cli(&[
        "plugins",
        "--plugin-ref",
        &by_tag,
        "--insecure-registry",
        &reg.host,
    ]);
    assert!(ok, "{stdout}{stderr}");
    let line = stdout
        .lines()
        .find(|l| l.starts_with("failing"))
        .expect(&stdout);
    assert!(line.contains(&format!("{pinned} (tag v1)")), "{line}");
    assert!(line.contains(&file_sha("failing")), "{line}");
}

#[test]
fn push_refuses_a_file_the_operator_cannot_load_before_sending_anything() {
    let reg = TestRegistry::start();
    let scratch = Scratch::new("oci-push-core");
    let file = scratch.path().join("core.wasm");
    std::fs::write(&file, CORE_MODULE).unwrap();
    let target = format!("oci://{}/plugins/core:v1", reg.host);
    let (ok, _, stderr) = cli(&[
        "plugins",
        "push",
        file.to_str().unwrap(),
        &target,
        "--insecure-registry",
        &reg.host,
    ]);
    assert!(!ok);
    assert!(
        stderr.contains("is not a plugin the operator can load")
            && stderr.contains("wasm32-wasip2"),
        "{stderr}"
    );
    assert_eq!(reg.requests("/v2/plugins/core/"), 0, "{}", reg.log());

    let pinned = format!("oci://{}/plugins/core@sha256:{}", reg.host, "0".repeat(64));
    let (ok, _, stderr) = cli(&[
        "plugins",
        "push",
        fixture("failing").to_str().unwrap(),
        &pinned,
    ]);
    assert!(!ok && stderr.contains("push to a tag"), "{stderr}");
}

#[test]
fn a_registry_plugin_renders_and_may_replace_a_builtin_only_when_allowed() {
    let reg = TestRegistry::start();
    let scratch = Scratch::new("oci-render");
    let pinned = push(
        &reg,
        "echo-alt",
        &format!("oci://{}/plugins/echo-server:alt", reg.host),
    );
    let mut opts = reg_options(&reg, std::slice::from_ref(&pinned), scratch.path());
    let refused = Runtime::new(opts.clone()).unwrap();
    let err = load_error(&refused, &pinned).expect("refused");
    assert!(err.contains("--replace-builtin echo-server"), "{err}");

    opts.replace_builtins = BTreeSet::from(["echo-server".to_string()]);
    // The replacement runs its own image: the admin allows it.
    opts.allowances = [(
        "echo-server".to_string(),
        mlmodel_operator::plugins::policy::Allowances {
            images: vec!["registry.example/alt-echo".into()],
            ..Default::default()
        },
    )]
    .into();
    let rt = Runtime::new(opts).unwrap();
    let m = model("m", "echo", &[]);
    let p = select(&rt, Step::Serve, &m).unwrap();
    assert_eq!(p.source, pinned);
    let objects = rt.render(&p, &m, Step::Serve, "r1").unwrap();
    assert_eq!(
        objects[0].data["spec"]["template"]["spec"]["containers"][0]["image"],
        "registry.example/alt-echo:2.0"
    );
}

#[test]
fn a_wrong_digest_is_a_load_error_and_the_others_load() {
    let reg = TestRegistry::start();
    let scratch = Scratch::new("oci-digest");
    let pinned = push(
        &reg,
        "failing",
        &format!("oci://{}/plugins/failing:v1", reg.host),
    );

    // A digest the registry does not have.
    let unknown = format!(
        "oci://{}/plugins/failing@sha256:{}",
        reg.host,
        "0".repeat(64)
    );
    let rt = runtime(&reg, std::slice::from_ref(&unknown), scratch.path());
    let err = load_error(&rt, &unknown).expect("an error for the unknown digest");
    assert!(
        err.starts_with(&format!(
            "manifest of {unknown} not found in registry {}",
            reg.host
        )),
        "{err}"
    );
    assert_builtins_loaded(&rt);

    // The registry serves other bytes for the component's digest: refused, never compiled.
    std::fs::write(reg.blob_file(&file_sha("failing")), fixture_bytes("panic")).unwrap();
    let fresh = Scratch::new("oci-digest-fresh");
    let rt = runtime(&reg, std::slice::from_ref(&pinned), fresh.path());
    let err = load_error(&rt, &pinned).expect("an error for the tampered blob");
    assert!(err.starts_with("wrong digest: the component of"), "{err}");
    assert!(err.contains(&file_sha("failing")), "{err}");
    assert!(rt.get("failing").is_none() && rt.get("panic").is_none());
    assert_builtins_loaded(&rt);
}

fn fixture_bytes(name: &str) -> Vec<u8> {
    std::fs::read(fixture(name)).unwrap()
}

#[test]
fn an_unreachable_registry_fails_its_references_within_the_bound_and_nothing_else() {
    let scratch = Scratch::new("oci-unreachable");
    // Nothing listens: connection refused.
    let closed = format!("127.0.0.1:{}", free_port());
    let refused = format!("oci://{closed}/plugins/triton@sha256:{}", "1".repeat(64));
    // Accepts connections and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_host = silent.local_addr().unwrap().to_string();
    let hung = format!("oci://{silent_host}/plugins/slow:v1");
    let registry = RegistryOptions {
        insecure: vec![closed.clone(), silent_host.clone()],
        timeout: Duration::from_secs(2),
        ..RegistryOptions::default()
    };
    let t0 = Instant::now();
    let rt = Runtime::new(options(
        registry,
        &[refused.clone(), hung.clone()],
        scratch.path(),
    ))
    .unwrap();
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(15), "{took:?}");
    let err = load_error(&rt, &refused).expect("refused");
    assert!(
        err.starts_with(&format!("cannot reach registry {closed}: ")) && err.contains("refused"),
        "{err}"
    );
    let err = load_error(&rt, &hung).expect("silent");
    assert_eq!(
        err,
        format!("registry {silent_host} did not answer within 2s")
    );
    assert_builtins_loaded(&rt);
    assert_eq!(rt.load_errors().len(), 2, "{:?}", rt.load_errors());

    // A model asking for the plugin that failed to load is told why; another name is not found.
    let m = model("m", "echo", &[("mlmodel.dev/serve-plugin", "triton")]);
    let e = select(&rt, Step::Serve, &m).unwrap_err();
    assert_eq!(e.reason().as_str(), "PluginLoadFailed");
    assert!(
        e.message().contains(&refused) && e.message().contains("cannot reach registry"),
        "{e}"
    );
    let m = model("m", "echo", &[("mlmodel.dev/serve-plugin", "onnx")]);
    assert_eq!(
        select(&rt, Step::Serve, &m).unwrap_err().reason().as_str(),
        "PluginNotFound"
    );
    assert!(
        select(&rt, Step::Serve, &model("m", "echo", &[])).is_ok(),
        "the others keep working"
    );
}

#[test]
fn a_blob_that_is_not_a_component_or_not_wasm_is_a_load_error() {
    let reg = TestRegistry::start();
    let scratch = Scratch::new("oci-not-wasm");
    let config = ("application/vnd.wasm.config.v0+json", &b"{}"[..]);
    let core = reg.push_raw(
        "plugins/core",
        "v1",
        config,
        ("application/wasm", CORE_MODULE),
    );
    let tar = reg.push_raw(
        "plugins/tarball",
        "v1",
        config,
        (
            "application/vnd.oci.image.layer.v1.tar",
            &fixture_bytes("failing"),
        ),
    );
    let image = reg.push_raw(
        "plugins/image",
        "v1",
        ("application/vnd.oci.image.config.v1+json", &b"{}"[..]),
        ("application/wasm", &fixture_bytes("failing")),
    );
    let refs: Vec<String> = [("core", &core), ("tarball", &tar), ("image", &image)]
        .iter()
        .map(|(repo, digest)| format!("oci://{}/plugins/{repo}@{digest}", reg.host))
        .collect();
    let rt = runtime(&reg, &refs, scratch.path());
    let err = load_error(&rt, &refs[0]).unwrap();
    assert!(
        err.contains("not a component") && err.contains("wasm32-wasip2"),
        "{err}"
    );
    let err = load_error(&rt, &refs[1]).unwrap();
    assert_eq!(
        err,
        "not a Wasm plugin artifact: its layer is of type \"application/vnd.oci.image.layer.v1.tar\", not \"application/wasm\""
    );
    let err = load_error(&rt, &refs[2]).unwrap();
    assert!(err.starts_with("not a Wasm plugin artifact: its config is of type \"application/vnd.oci.image.config.v1+json\""), "{err}");
    assert!(rt.get("failing").is_none());
    assert_builtins_loaded(&rt);
}

/// Reloads until `done` holds (fetches of new references arrive on a later reload).
fn reload_until(rt: &Runtime, what: &str, done: impl Fn(&Runtime) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done(rt) {
        assert!(
            Instant::now() < deadline,
            "{what}: {:?} {:?}",
            rt.plugins(),
            rt.load_errors()
        );
        rt.reload();
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_refs_file_adds_and_removes_plugins_on_reload_without_fetching_unchanged_ones_again() {
    let reg = TestRegistry::start();
    let scratch = Scratch::new("oci-refs-file");
    let failing = push(
        &reg,
        "failing",
        &format!("oci://{}/plugins/failing:v1", reg.host),
    );
    let panic = push(
        &reg,
        "panic",
        &format!("oci://{}/plugins/panic:v1", reg.host),
    );
    let file = scratch.path().join("refs");
    std::fs::write(&file, format!("# team plugins\n{failing}\n")).unwrap();
    let mut opts = reg_options(&reg, &[], &scratch.path().join("cache"));
    opts.oci.refs_file = Some(file.clone());
    let rt = Runtime::new(opts).unwrap();
    assert!(rt.get("failing").is_some(), "{:?}", rt.load_errors());
    let blob_gets = |name: &str| reg.requests(&format!("\"GET /v2/plugins/{name}/blobs/"));
    let gets = reg.requests("\"GET /v2/");
    assert_eq!(blob_gets("failing"), 1);
    assert!(!rt.reload(), "nothing changed");

    std::fs::write(
        &file,
        format!("{failing}\n{panic}   # added\nnot a reference\n"),
    )
    .unwrap();
    reload_until(&rt, "panic added", |rt| rt.get("panic").is_some());
    assert!(rt.get("failing").is_some());
    assert_eq!(
        blob_gets("failing"),
        1,
        "an unchanged reference is not fetched again"
    );
    assert_eq!(blob_gets("panic"), 1);
    let err = load_error(&rt, file.to_str().unwrap()).expect("the bad line");
    assert!(
        err.starts_with("line 3: \"not a reference\" is not a plugin reference"),
        "{err}"
    );

    let gets_now = reg.requests("\"GET /v2/");
    assert!(gets_now > gets);
    std::fs::write(&file, format!("{panic}\n")).unwrap();
    reload_until(&rt, "failing removed", |rt| rt.get("failing").is_none());
    assert!(rt.get("panic").is_some());
    assert!(rt.load_errors().is_empty(), "{:?}", rt.load_errors());
    assert_eq!(
        reg.requests("\"GET /v2/"),
        gets_now,
        "a removal fetches nothing"
    );
    assert_eq!(
        reg.requests("\"HEAD /v2/"),
        0,
        "digests are never resolved again"
    );

    // The file gone (an optional ConfigMap deleted): no references, and no error.
    std::fs::remove_file(&file).unwrap();
    reload_until(&rt, "panic removed", |rt| rt.get("panic").is_none());
    assert!(rt.load_errors().is_empty(), "{:?}", rt.load_errors());
}

#[test]
fn a_tag_is_resolved_again_at_its_interval_not_at_every_reload() {
    let reg = TestRegistry::start();
    let scratch = Scratch::new("oci-tag");
    let tag = format!("oci://{}/plugins/failing:stable", reg.host);
    let first = push(&reg, "failing", &tag);
    let mut opts = reg_options(&reg, std::slice::from_ref(&tag), scratch.path());
    opts.oci.tag_interval = Duration::from_secs(2);
    let rt = Runtime::new(opts).unwrap();
    assert_eq!(rt.get("failing").unwrap().source, first);
    for _ in 0..5 {
        assert!(!rt.reload());
    }
    assert_eq!(
        reg.requests("\"HEAD /v2/"),
        0,
        "not resolved at every reload"
    );
    std::thread::sleep(Duration::from_millis(2100));
    rt.reload();
    let deadline = Instant::now() + Duration::from_secs(20);
    while reg.requests("\"HEAD /v2/plugins/failing/manifests/stable") == 0 {
        assert!(Instant::now() < deadline, "the tag was not resolved again");
        std::thread::sleep(Duration::from_millis(50));
        rt.reload();
    }
    assert_eq!(
        rt.get("failing").unwrap().source,
        first,
        "unchanged tag, unchanged plugin"
    );

    // The tag moves to another plugin: the new digest is fetched and replaces the old.
    let moved = push(&reg, "panic", &tag);
    assert_ne!(moved, first);
    std::thread::sleep(Duration::from_millis(2100));
    reload_until(&rt, "the moved tag", |rt| rt.get("panic").is_some());
    assert!(rt.get("failing").is_none());
    let p = rt.get("panic").unwrap();
    assert_eq!(p.source, moved);
    assert_eq!(p.tag.as_deref(), Some("stable"));
}

#[test]
fn a_restart_fetches_nothing_and_a_tampered_cached_blob_is_fetched_again_or_refused() {
    let mut reg = TestRegistry::start();
    let scratch = Scratch::new("oci-cache");
    let pinned = push(
        &reg,
        "failing",
        &format!("oci://{}/plugins/failing:v1", reg.host),
    );
    let blob_gets = || reg.requests("\"GET /v2/plugins/failing/blobs/");
    assert!(
        runtime(&reg, std::slice::from_ref(&pinned), scratch.path())
            .get("failing")
            .is_some()
    );
    assert_eq!(blob_gets(), 1);
    let requests = reg.requests("/v2/");

    // A restart with the same cache: no request at all.
    assert!(
        runtime(&reg, std::slice::from_ref(&pinned), scratch.path())
            .get("failing")
            .is_some()
    );
    assert_eq!(reg.requests("/v2/"), requests);

    let hex = file_sha("failing");
    let cached = scratch
        .path()
        .join("oci/sha256")
        .join(format!("{hex}.wasm"));
    assert!(cached.is_file());
    std::fs::write(&cached, fixture_bytes("panic")).unwrap();
    let rt = runtime(&reg, std::slice::from_ref(&pinned), scratch.path());
    assert_eq!(rt.get("failing").unwrap().sha256, hex, "fetched again");
    assert!(
        rt.get("panic").is_none(),
        "the tampered bytes were never loaded"
    );
    assert_eq!(blob_gets(), 2);
    assert_eq!(
        sha256(&std::fs::read(&cached).unwrap()),
        hex,
        "the cache is repaired"
    );

    // Tampered again, and the registry is gone: refused.
    std::fs::write(&cached, fixture_bytes("panic")).unwrap();
    reg.stop();
    let rt = runtime(&reg, std::slice::from_ref(&pinned), scratch.path());
    let err = load_error(&rt, &pinned).expect("refused");
    assert!(err.starts_with("cannot reach registry"), "{err}");
    assert!(rt.get("panic").is_none() && rt.get("failing").is_none());
}

#[test]
fn credentials_come_from_a_docker_config_and_missing_ones_are_named() {
    let reg = TestRegistry::with_login("ci", "s3cret");
    let scratch = Scratch::new("oci-login");
    let good = docker_config(&reg.host, "ci", "s3cret");
    let bad = docker_config(&reg.host, "ci", "wrong");
    let target = format!("oci://{}/plugins/failing:v1", reg.host);

    let file = fixture("failing");
    let push_with = |config: Option<&PathBuf>| {
        let mut args = vec![
            "plugins",
            "push",
            file.to_str().unwrap(),
            &target,
            "--insecure-registry",
            &reg.host,
        ];
        if let Some(c) = config {
            args.extend(["--registry-config", c.to_str().unwrap()]);
        }
        cli(&args)
    };
    let (ok, _, stderr) = push_with(None);
    assert!(
        !ok && stderr
            .contains("refused access to plugins/failing: no login given (--registry-config)"),
        "{stderr}"
    );
    let (ok, _, stderr) = push_with(Some(&bad));
    assert!(!ok && stderr.contains("was refused"), "{stderr}");
    let (ok, stdout, stderr) = push_with(Some(&good));
    assert!(ok, "{stderr}");
    let pinned = stdout.lines().next().unwrap().to_string();

    // Each load with a cache of its own: a cached blob would need no login.
    let load = |config: Option<&PathBuf>, cache: &str| {
        let registry = RegistryOptions {
            config: config.cloned(),
            ..registry_opts(&reg)
        };
        Runtime::new(options(
            registry,
            std::slice::from_ref(&pinned),
            &scratch.path().join(cache),
        ))
        .unwrap()
    };
    let rt = load(Some(&good), "good");
    assert_eq!(rt.get("failing").unwrap().source, pinned);
    let rt = load(None, "none");
    let err = load_error(&rt, &pinned).expect("no login");
    assert_eq!(
        err,
        format!(
            "registry {} refused access to plugins/failing: no login given (--registry-config)",
            reg.host
        )
    );
    let rt = load(Some(&scratch.path().join("absent.json")), "absent");
    let err = load_error(&rt, &pinned).expect("no login file");
    assert!(err.ends_with("absent.json does not exist)"), "{err}");
    let rt = load(Some(&bad), "bad");
    let err = load_error(&rt, &pinned).expect("wrong login");
    assert!(
        err.ends_with(&format!(
            "the login for {} in {} was refused",
            reg.host,
            bad.display()
        )),
        "{err}"
    );
}

/// Two plugins of one name in the plugin sources: the first is kept, the later is a load error
/// that names both (it used to win silently).
#[test]
fn two_plugins_of_one_name_keep_the_first_and_report_the_later() {
    let first = plugin_dir(&["failing"]);
    let second = plugin_dir(&["failing"]);
    let rt = Runtime::new(RuntimeOptions {
        plugin_dirs: vec![first.path().to_path_buf(), second.path().to_path_buf()],
        cache_dir: Some(workspace().join("target").join("plugin-test-cache")),
        ..RuntimeOptions::default()
    })
    .unwrap();
    let kept = first.path().join("failing.wasm");
    let later = second.path().join("failing.wasm");
    assert_eq!(PathBuf::from(&rt.get("failing").unwrap().source), kept);
    let errors = rt.load_errors();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].0, later);
    assert_eq!(
        errors[0].1,
        format!(
            "plugin failing from {} has the name of the plugin from {}, which is kept; remove or rename one of them",
            later.display(),
            kept.display()
        )
    );

    // A registry plugin of a directory plugin's name comes later: refused the same way.
    let reg = TestRegistry::start();
    let scratch = Scratch::new("oci-same-name");
    let pinned = push(
        &reg,
        "failing",
        &format!("oci://{}/plugins/failing:v1", reg.host),
    );
    let mut opts = reg_options(&reg, std::slice::from_ref(&pinned), scratch.path());
    opts.plugin_dirs = vec![first.path().to_path_buf()];
    let rt = Runtime::new(opts).unwrap();
    assert_eq!(PathBuf::from(&rt.get("failing").unwrap().source), kept);
    let err = load_error(&rt, &pinned).expect("the registry plugin is refused");
    assert!(
        err.contains(&format!(
            "has the name of the plugin from {}",
            kept.display()
        )),
        "{err}"
    );
}

#[test]
fn references_parse_as_the_flags_take_them() {
    let r: OciRef = "oci://localhost:23500/plugins/triton:v1".parse().unwrap();
    assert_eq!(r.plugin_name(), "triton");
    assert!(
        "localhost:23500/plugins/triton:v1"
            .parse::<OciRef>()
            .is_err()
    );
}
