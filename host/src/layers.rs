//! The layering rule, as a test: every `crate::<layer>` a source file names
//! (in a `use` or inline) must be its own layer, a layer below it, or `ops`
//! (used from anywhere); `ops` itself may name only `config`. Within a folder,
//! files may not depend on each other in a circle (through `super::` or
//! `crate::<folder>::`). Reads the source text; no dependency needed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers from the top down: a file may name its own and those after it.
const LAYERS: &[&str] = &[
    "cli", "tools", "run", "bus", "delivery", "plugin", "outbound", "config",
];
/// Beside the layers: usable from every layer, naming only `config` itself.
const BESIDE: &str = "ops";

/// The layer a file of `src/` belongs to: its folder, or its name for a
/// single-file layer (`outbound.rs`); `None` for `lib.rs`, `main.rs` and this.
fn layer_of(relative: &Path) -> Option<String> {
    let first = relative.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main" | "layers")).then(|| name.to_owned())
}

/// Every `crate::<name>` in `text` outside comments, with its line.
fn crate_paths(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let after = &rest[at + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let starts_a_word = at == 0
                || !rest[..at]
                    .chars()
                    .next_back()
                    .is_some_and(|c| c.is_alphanumeric() || c == '_');
            if starts_a_word && !name.is_empty() {
                found.push((number + 1, name));
            }
            rest = after;
        }
    }
    found
}

/// Whether `from` may name `to`.
fn allowed(from: &str, to: &str) -> bool {
    let rank = |layer: &str| LAYERS.iter().position(|l| *l == layer);
    match (from, to) {
        (_, same) if same == from => true,
        (BESIDE, to) => to == "config",
        (_, BESIDE) => true,
        (from, to) => matches!((rank(from), rank(to)), (Some(a), Some(b)) if a < b),
    }
}

/// Every `.rs` file under `dir`, relative to it.
fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(next) = stack.pop() {
        for entry in std::fs::read_dir(&next).expect("reading src/") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path.strip_prefix(dir).expect("under src/").to_owned());
            }
        }
    }
    files.sort();
    files
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn imports_point_down_only() {
    let mut wrong = Vec::new();
    for file in sources(&src()) {
        let Some(from) = layer_of(&file) else {
            continue;
        };
        assert!(
            LAYERS.contains(&from.as_str()) || from == BESIDE,
            "{} is in no layer: add its folder to LAYERS in layers.rs",
            file.display()
        );
        let text = std::fs::read_to_string(src().join(&file)).expect("reading a source file");
        for (line, to) in crate_paths(&text) {
            if !allowed(&from, &to) {
                wrong.push(format!(
                    "{}:{line}: {from} names crate::{to}",
                    file.display()
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports that point up or sideways:\n{}",
        wrong.join("\n")
    );
}

/// The sibling modules a file of `folder` names (`super::x`,
/// `crate::<folder>::x`, either also as `{x, y::z}`), by file stem.
/// A bare `crate::x` is another layer, even when a sibling shares its name.
fn siblings(text: &str, folder: &str, stems: &BTreeSet<String>) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let own = format!("crate::{folder}::");
    let mut named = BTreeSet::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or_default();
        for prefix in ["super::", own.as_str()] {
            for part in code.split(prefix).skip(1) {
                let names: Vec<String> = match part.strip_prefix('{') {
                    Some(group) => group
                        .split('}')
                        .next()
                        .unwrap_or_default()
                        .split(',')
                        .map(ident)
                        .collect(),
                    None => vec![ident(part)],
                };
                named.extend(names.into_iter().filter(|n| stems.contains(n)));
            }
        }
    }
    named
}

#[test]
fn files_of_a_folder_do_not_depend_on_each_other_in_a_circle() {
    let mut folders: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for file in sources(&src()) {
        if file.components().count() == 2 {
            let folder = layer_of(&file).expect("a folder is a layer");
            folders.entry(folder).or_default().push(file);
        }
    }
    for (folder, files) in folders {
        let stem = |f: &PathBuf| f.file_stem().unwrap().to_string_lossy().into_owned();
        let stems: BTreeSet<String> = files.iter().map(stem).filter(|s| s != "mod").collect();
        let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for file in files.iter().filter(|f| stem(f) != "mod") {
            let text = std::fs::read_to_string(src().join(file)).expect("reading a source file");
            // What a file's own `mod tests` names does not make a cycle.
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            let mut named = siblings(code, &folder, &stems);
            named.remove(&stem(file));
            edges.insert(stem(file), named);
        }
        if let Some(cycle) = find_cycle(&edges) {
            panic!(
                "{folder}/: {} depend on each other in a circle",
                cycle.join(" -> ")
            );
        }
    }
}

/// A cycle in `edges` (node -> the nodes it names), as the path around it.
fn find_cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_owned());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, edges, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    edges
        .keys()
        .find_map(|node| visit(node, edges, &mut Vec::new(), &mut done))
}

#[test]
fn the_rule_itself() {
    assert!(allowed("bus", "delivery"));
    assert!(allowed("bus", "bus"));
    assert!(allowed("cli", "config"));
    assert!(allowed("plugin", "ops"));
    assert!(allowed("ops", "config"));
    assert!(
        !allowed("ops", "bus"),
        "ops is used, it uses nothing but config"
    );
    assert!(!allowed("delivery", "bus"), "upward");
    assert!(!allowed("config", "plugin"), "config imports nothing else");
    assert_eq!(
        crate_paths(
            "use crate::bus::x; // crate::cli\nlet a = crate::ops::metrics::x(); my_crate::no"
        ),
        [(1, "bus".to_owned()), (2, "ops".to_owned())]
    );
    let edges = BTreeMap::from([
        ("a".to_owned(), BTreeSet::from(["b".to_owned()])),
        ("b".to_owned(), BTreeSet::from(["a".to_owned()])),
    ]);
    assert_eq!(
        find_cycle(&edges),
        Some(vec!["a".to_owned(), "b".to_owned(), "a".to_owned()])
    );
}
