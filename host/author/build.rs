//! Lists the files `plugins new` writes into a new plugin project (the SDKs, the WIT, the
//! templates and their vectors) for `include_bytes!`, in `$OUT_DIR/scaffold_files.rs`.
use std::env;
use std::path::{Path, PathBuf};

fn main() {
    let manifest_dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let workspace = manifest_dir
        .ancestors()
        .nth(2)
        .expect("host/author/ sits in the workspace")
        .to_path_buf();
    for path in SCAFFOLD_SOURCES {
        println!("cargo:rerun-if-changed={}", workspace.join(path).display());
    }
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("set by cargo"));
    embed_scaffold_files(&workspace, &out_dir);
}

/// What `plugins new` copies from the workspace (host/author/src/scaffold.rs picks per language
/// and step): files, or folders taken whole but for tool output (`node_modules`,
/// `__pycache__`, `target`, hidden files).
const SCAFFOLD_SOURCES: &[&str] = &[
    "Cargo.lock",
    "wit",
    "plugins/sdk",
    "plugins/sdk-ts",
    "plugins/sdk-python",
    "plugins/echo-server/src/lib.rs",
    "plugins/echo-server-ts",
    "plugins/echo-server-py",
    "plugins/download-job/src/lib.rs",
    "plugins/download-job-ts",
    "plugins/download-job-py",
    "plugins/service/src/lib.rs",
    "plugins/service-ts",
    "plugins/service-py",
    "plugins/test-vectors",
    "plugins/test-vectors-download",
    "plugins/test-vectors-expose",
];

/// Writes `scaffold_files.rs`: a `&[(&str, &[u8])]` of (path in the workspace, contents) for
/// every file of [`SCAFFOLD_SOURCES`], sorted.
fn embed_scaffold_files(workspace: &Path, out_dir: &Path) {
    fn walk(workspace: &Path, rel: &Path, out: &mut Vec<String>) {
        let path = workspace.join(rel);
        if path.is_file() {
            out.push(rel.to_str().expect("workspace paths are UTF-8").to_string());
            return;
        }
        let entries =
            std::fs::read_dir(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        for entry in entries {
            let name = entry.expect("a directory entry").file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') || ["node_modules", "__pycache__", "target"].contains(&&*name)
            {
                continue;
            }
            walk(workspace, &rel.join(&*name), out);
        }
    }
    let mut files = Vec::new();
    for source in SCAFFOLD_SOURCES {
        walk(workspace, Path::new(source), &mut files);
    }
    files.sort();
    let mut code = String::from("&[\n");
    for file in &files {
        let abs = workspace.join(file);
        code.push_str(&format!(
            "    ({file:?}, include_bytes!({:?})),\n",
            abs.to_str().expect("workspace paths are UTF-8")
        ));
    }
    code.push_str("]\n");
    std::fs::write(out_dir.join("scaffold_files.rs"), code).expect("writing scaffold_files.rs");
}
