//! The rooms of each crate of the operator (`host/src`, and the API, plugin runtime, author
//! tooling and downloader crates beside it) stay layered: no module imports one that imports it
//! back, directly or around a longer circle, at any depth (`oci::transfer` as much as `oci`),
//! and the lower rooms never import the controller. (Between crates, cargo refuses circles.) Read from the source: the `crate::`, `super::` and
//! `self::` paths outside `#[cfg(test)]` modules, each resolved to the deepest module it names.
//! A module naming one of its own ancestors (a child using what its parent declares) is not a
//! circle: the parent declares the child. So a change that closes a circle fails here, not in a
//! later review.
use crate::support::workspace;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The source folders of the operator's crates.
const CRATES: &[&str] = &[
    "host/src",
    "host/api/src",
    "host/runtime/src",
    "host/author/src",
    "host/fetch/src",
];

type Module = Vec<String>;

/// Every module file of the crate at `src`, by module path (`oci/mod.rs` is `oci`).
fn modules(src: &Path) -> BTreeMap<Module, String> {
    let src = workspace().join(src);
    let mut out = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let mut module: Module = path
                    .strip_prefix(&src)
                    .unwrap()
                    .with_extension("")
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                if matches!(
                    module.last().map(String::as_str),
                    Some("mod" | "lib" | "main")
                ) {
                    module.pop();
                }
                if module.is_empty() {
                    continue; // lib.rs, main.rs: they declare everything
                }
                let text = std::fs::read_to_string(&path).unwrap();
                let code = text.split("#[cfg(test)]\nmod ").next().unwrap().to_string();
                out.insert(module, code);
            }
        }
    }
    out
}

/// The paths a file names: `crate::a::b`, `super::x`, and each item of a `use p::{a, b::c}`.
fn paths(code: &str) -> Vec<Vec<String>> {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut out = Vec::new();
    for root in ["crate::", "super::", "self::"] {
        for (i, _) in code.match_indices(root) {
            if code[..i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
                continue;
            }
            let path: String = code[i..].chars().take_while(|c| ident(*c)).collect();
            let path = path.trim_end_matches(':');
            let parts: Vec<String> = path.split("::").map(str::to_string).collect();
            let rest = &code[i + path.len()..];
            if let Some(group) = rest.strip_prefix("::{") {
                let group = &group[..group.find('}').unwrap_or(0)];
                for item in group.split(',') {
                    let head = item.trim().split("::").next().unwrap_or_default();
                    let head = head.split_whitespace().next().unwrap_or_default();
                    if !head.is_empty() && head != "self" {
                        let mut p = parts.clone();
                        p.push(head.to_string());
                        out.push(p);
                    }
                }
            }
            out.push(parts);
        }
    }
    out
}

/// The deepest module `path`, seen from `at`, names.
fn resolve(modules: &BTreeMap<Module, String>, at: &Module, path: &[String]) -> Module {
    let (mut base, rest): (Module, &[String]) = match path[0].as_str() {
        "crate" => (Vec::new(), &path[1..]),
        "self" => (at.clone(), &path[1..]),
        _ => {
            let ups = path.iter().take_while(|p| *p == "super").count();
            (at[..at.len().saturating_sub(ups)].to_vec(), &path[ups..])
        }
    };
    for part in rest {
        let mut next = base.clone();
        next.push(part.clone());
        if !modules.contains_key(&next) {
            break;
        }
        base = next;
    }
    base
}

/// Module -> the modules (not its ancestors, not itself) its code names, in the crate at `src`.
fn imports(src: &str) -> BTreeMap<Module, BTreeSet<Module>> {
    let modules = modules(Path::new(src));
    modules
        .iter()
        .map(|(module, code)| {
            let named = paths(code)
                .iter()
                .map(|p| resolve(&modules, module, p))
                .filter(|m| !m.is_empty() && m != module && !module.starts_with(m))
                .collect();
            (module.clone(), named)
        })
        .collect()
}

/// A circle through `start`, if there is one.
fn circle(graph: &BTreeMap<Module, BTreeSet<Module>>, start: &Module) -> Option<Vec<String>> {
    fn walk(
        graph: &BTreeMap<Module, BTreeSet<Module>>,
        start: &Module,
        at: &Module,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<Module>,
    ) -> bool {
        for next in graph.get(at).into_iter().flatten() {
            if next == start {
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.join("::"));
                if walk(graph, start, next, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.join("::")];
    walk(graph, start, start, &mut path, &mut BTreeSet::new()).then_some(path)
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let graphs: Vec<_> = CRATES.iter().map(|src| (src, imports(src))).collect();
    let read: usize = graphs.iter().map(|(_, g)| g.len()).sum();
    assert!(read > 60, "modules read: {read}");
    let runtime = imports("host/runtime/src");
    let engine = vec!["engine".to_string()];
    assert!(
        runtime[&engine].contains(&vec!["stdio".to_string()]),
        "the reading finds the imports it checks: {:?}",
        runtime[&engine]
    );
    for (src, graph) in &graphs {
        for module in graph.keys() {
            if let Some(path) = circle(graph, module) {
                panic!(
                    "an import circle in {src}: {} -> {}",
                    path.join(" -> "),
                    module.join("::")
                );
            }
        }
    }
}

#[test]
fn the_lower_rooms_never_import_the_controller() {
    let graph = imports("host/src");
    let controller = vec!["controller".to_string()];
    for (module, named) in &graph {
        if module[0] == "controller" || ["main", "server", "leader"].contains(&module[0].as_str()) {
            continue;
        }
        assert!(
            !named.iter().any(|m| m.starts_with(&controller)),
            "{} imports the controller: {named:?}",
            module.join("::")
        );
    }
    let conditions = vec!["conditions".to_string()];
    let api = imports("host/api/src");
    assert!(
        api[&conditions].is_empty(),
        "conditions imports nothing: {:?}",
        api[&conditions]
    );
}
