//! Embeds the web console's build (`web/dist`, committed) in the binary: a table of its files,
//! each an `include_bytes!`, so `cargo run` needs no Node and nothing is read from disk or the
//! network at run time. Cargo reruns this when anything under `web/dist` changes.

use std::path::{Path, PathBuf};

/// Files the console's build may hold (a runaway build fails here rather than bloating the binary).
const FILES_MAX: usize = 200;

fn walk(dir: &Path, root: &Path, out: &mut Vec<(String, PathBuf)>) {
    let mut entries: Vec<_> =
        std::fs::read_dir(dir).expect("read web/dist").map(|e| e.expect("entry").path()).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            walk(&path, root, out);
        } else {
            let name = path.strip_prefix(root).expect("under root").to_string_lossy().replace('\\', "/");
            out.push((name, path));
        }
    }
}

fn main() {
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../web/dist");
    println!("cargo:rerun-if-changed={}", dist.display());
    let dist = dist.canonicalize().expect("web/dist exists (the console's committed build)");
    let mut files = Vec::new();
    walk(&dist, &dist, &mut files);
    assert!(files.iter().any(|(n, _)| n == "index.html"), "web/dist/index.html is missing");
    assert!(files.len() <= FILES_MAX, "web/dist holds {} files (at most {FILES_MAX})", files.len());
    let mut code = String::from(
        "/// The console's files: (path under web/dist, bytes).\npub static FILES: &[(&str, &[u8])] = &[\n",
    );
    for (name, path) in files {
        code.push_str(&format!("    ({name:?}, include_bytes!({:?})),\n", path.display().to_string()));
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR")).join("console.rs");
    std::fs::write(out, code).expect("write console.rs");
}
