//! The architecture's rules about the code itself (ARCHITECTURE.md, "Crate graph"):
//! within the engine and the server, top-level modules import each other in one
//! direction only (no circles); webrtc-rs is named only inside the engine's `peer`
//! module; cpal and nokhwa only inside `chingu-media`; and a source file over 600 lines
//! is named in its crate's README with the reason.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    // The runner's directory first: a binary built in another checkout carries its path.
    let manifest =
        std::env::var("CARGO_MANIFEST_DIR").unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").into());
    Path::new(&manifest)
        .parent()
        .expect("tests/ lives in the workspace root")
        .to_owned()
}

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_owned()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

/// The code of a file without its comments (line comments and doc comments), so that
/// prose mentioning a module is not an import.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The top-level module a file belongs to (`pipeline` for `pipeline/video_send.rs`), or
/// `None` for the crate root.
fn top_module(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).expect("file under src");
    let first = rel.components().next()?.as_os_str().to_string_lossy();
    let name = first.trim_end_matches(".rs").to_owned();
    (name != "lib" && name != "main").then_some(name)
}

/// Every `crate::<name>` a piece of code mentions.
fn crate_paths(code: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().last();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue; // `chingu_crate::`, say
        }
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            found.insert(name);
        }
    }
    found
}

/// The graph of imports between a crate's top-level modules.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let files = rust_files(src);
    let modules: BTreeSet<String> = files.iter().filter_map(|f| top_module(src, f)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let Some(module) = top_module(src, file) else {
            continue;
        };
        let uses: Vec<String> = crate_paths(&code(file))
            .into_iter()
            .filter(|m| modules.contains(m) && *m != module)
            .collect();
        graph.entry(module).or_default().extend(uses);
    }
    graph
}

/// A circle in the graph, if there is one.
fn find_circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut circle = path[at..].to_vec();
            circle.push(node.to_owned());
            return Some(circle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(circle) = visit(next, graph, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(circle) = visit(node, graph, &mut Vec::new(), &mut done) {
            return Some(circle);
        }
    }
    None
}

#[test]
fn the_circle_finder_finds_circles() {
    let graph = |edges: &[(&str, &str)]| {
        let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in edges {
            g.entry((*a).into()).or_default().insert((*b).into());
        }
        g
    };
    assert_eq!(
        find_circle(&graph(&[
            ("peer", "stats"),
            ("stats", "pipeline"),
            ("pipeline", "peer")
        ])),
        Some(vec![
            "peer".into(),
            "stats".into(),
            "pipeline".into(),
            "peer".into()
        ])
    );
    assert_eq!(
        find_circle(&graph(&[("a", "b"), ("a", "c"), ("b", "c")])),
        None
    );
    assert_eq!(
        crate_paths("use crate::peer::{Peer};\nlet x = crate::stats::X; chingu_crate::no"),
        ["peer".to_owned(), "stats".to_owned()].into()
    );
}

#[test]
fn modules_import_each_other_in_one_direction_only() {
    for krate in [
        "crates/engine",
        "crates/server",
        "crates/media",
        "crates/proto",
    ] {
        let src = root().join(krate).join("src");
        let graph = module_graph(&src);
        assert!(!graph.is_empty(), "{krate}: no modules found");
        if let Some(circle) = find_circle(&graph) {
            panic!(
                "{krate}: modules import each other in a circle: {}",
                circle.join(" -> ")
            );
        }
    }
}

/// Files of `krate` outside `allowed` that name `library` in code.
fn named_outside(krate: &str, allowed: &[&str], library: &str) -> Vec<String> {
    let src = root().join(krate).join("src");
    let needle = format!("{library}::");
    rust_files(&src)
        .into_iter()
        .filter(|f| {
            let rel = f
                .strip_prefix(&src)
                .expect("under src")
                .to_string_lossy()
                .into_owned();
            !allowed.iter().any(|a| rel.starts_with(a))
        })
        .filter(|f| {
            let code = code(f);
            code.match_indices(&needle).any(|(at, _)| {
                !code[..at]
                    .chars()
                    .last()
                    .is_some_and(|c| c.is_alphanumeric() || c == '_')
            })
        })
        .map(|f| f.display().to_string())
        .collect()
}

#[test]
fn webrtc_rs_is_named_only_in_the_engines_peer_module() {
    for library in ["webrtc", "rtc"] {
        let found = named_outside("crates/engine", &["peer/"], library);
        assert!(
            found.is_empty(),
            "{library} named outside engine/src/peer/: {found:?}"
        );
        for krate in [
            "crates/media",
            "crates/server",
            "crates/cli",
            "crates/proto",
            "src-tauri",
        ] {
            let found = named_outside(krate, &[], library);
            assert!(found.is_empty(), "{library} named in {krate}: {found:?}");
        }
    }
}

#[test]
fn devices_are_named_only_in_the_media_crate() {
    for library in ["cpal", "nokhwa"] {
        for krate in ["crates/engine", "crates/server", "crates/cli", "src-tauri"] {
            let found = named_outside(krate, &[], library);
            assert!(found.is_empty(), "{library} named in {krate}: {found:?}");
        }
    }
}

#[test]
fn long_files_say_why_in_their_crates_readme() {
    const LONG: usize = 600;
    let mut unexplained = Vec::new();
    for krate in [
        "crates/engine",
        "crates/server",
        "crates/media",
        "crates/proto",
        "crates/cli",
        "crates/testkit",
        "src-tauri",
        "xtask",
    ] {
        let dir = root().join(krate);
        let readme = std::fs::read_to_string(dir.join("README.md")).unwrap_or_default();
        for file in rust_files(&dir.join("src")) {
            let lines = std::fs::read_to_string(&file).map_or(0, |t| t.lines().count());
            let rel = file
                .strip_prefix(&dir)
                .expect("under the crate")
                .to_string_lossy()
                .into_owned();
            if lines > LONG && !readme.contains(&rel) {
                unexplained.push(format!("{krate}/{rel} ({lines} lines)"));
            }
        }
    }
    assert!(
        unexplained.is_empty(),
        "files over {LONG} lines not explained in their crate's README: {unexplained:?}"
    );
}
