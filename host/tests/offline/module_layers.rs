//! The rooms of `host/src` stay layered: no top-level module imports one that imports it back
//! (directly or around a longer circle), and the lower rooms never import the controller. Read
//! from the source (`crate::<module>` paths outside `#[cfg(test)]` modules), so a change that
//! closes a circle fails here, not in a later review.
use crate::support::workspace;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level module -> the top-level modules its non-test code names.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = workspace().join("host/src");
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let top = top_module(&src, &path);
            if matches!(top.as_str(), "lib" | "main") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]\nmod ").next().unwrap();
            let named = graph.entry(top.clone()).or_default();
            for (i, _) in code.match_indices("crate::") {
                let name: String = code[i + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && name != top {
                    named.insert(name);
                }
            }
        }
    }
    graph
}

fn top_module(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// A circle through `start`, if one exists (depth-first).
fn circle(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    fn walk(
        graph: &BTreeMap<String, BTreeSet<String>>,
        start: &str,
        at: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in graph.get(at).into_iter().flatten() {
            if next == start {
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(graph, start, next, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_string()];
    walk(graph, start, start, &mut path, &mut BTreeSet::new()).then_some(path)
}

#[test]
fn no_module_imports_one_that_imports_it_back() {
    let graph = imports();
    assert!(graph.len() > 10, "modules read: {:?}", graph.keys());
    for module in graph.keys() {
        if let Some(path) = circle(&graph, module) {
            panic!("an import circle: {} -> {module}", path.join(" -> "));
        }
    }
}

#[test]
fn the_lower_rooms_never_import_the_controller() {
    let graph = imports();
    for room in [
        "api",
        "conditions",
        "names",
        "plan",
        "plugins",
        "status",
        "inference",
        "validation",
        "text",
    ] {
        let named = &graph[room];
        assert!(
            !named.contains("controller"),
            "{room} imports the controller: {named:?}"
        );
    }
    assert!(
        graph["conditions"].is_empty(),
        "conditions imports nothing: {:?}",
        graph["conditions"]
    );
}
