//! The library's one structural rule, checked: a file of `matrx-orm/src` imports only
//! from its own layer or the layers below it, and files import each other in a circle
//! only where docs/ARCHITECTURE.md names and justifies the pair.
//!
//! Imports are read from the source: every `crate::a::b` path outside comments, with
//! `use crate::a::{b, c::d}` groups expanded, resolved to the deepest module file that
//! exists.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The layers, ground first.
const LAYERS: &[&str] = &[
    "base",
    "schema",
    "statement",
    "cache",
    "executor",
    "relation",
    "query",
    "db",
    "migrate",
];

/// Import circles that are allowed, each justified in docs/ARCHITECTURE.md.
const ALLOWED_PAIRS: &[[&str; 2]] = &[["relation/joined/plan.rs", "relation/prefetch.rs"]];

fn src_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`, as paths relative to `src`.
fn rust_files(dir: &Path, root: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        panic!("cannot read {}", dir.display());
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, root, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            if let Ok(rel) = path.strip_prefix(root) {
                out.push(rel.to_path_buf());
            }
        }
    }
}

/// `a/b.rs` -> `["a", "b"]`; `a/mod.rs` -> `["a"]`; `lib.rs` -> `[]`.
fn module_path(file: &Path) -> Vec<String> {
    let mut parts: Vec<String> = file
        .with_extension("")
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if matches!(parts.last().map(String::as_str), Some("mod" | "lib")) {
        parts.pop();
    }
    parts
}

/// The source without line comments (doc comments included) and string literals'
/// contents, so paths in docs and messages are not read as imports.
fn code_of(source: &str) -> String {
    let mut out = String::with_capacity(source.len());
    for line in source.lines() {
        let code = match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        };
        let mut in_string = false;
        for ch in code.chars() {
            if ch == '"' {
                in_string = !in_string;
                out.push(ch);
            } else if !in_string {
                out.push(ch);
            }
        }
        out.push('\n');
    }
    out
}

/// Every module path named after `crate::`, with `{...}` groups expanded.
fn crate_paths(code: &str) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let preceded_by_ident = rest[..i]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_');
        rest = &rest[i + "crate::".len()..];
        if preceded_by_ident {
            continue;
        }
        expand(rest, Vec::new(), &mut paths);
    }
    paths
}

/// Reads one path (or group) from the start of `text` onto `prefix`.
fn expand(text: &str, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    let mut path = prefix;
    let mut text = text.trim_start();
    loop {
        let ident: String = text
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if ident.is_empty() {
            if let Some(group) = text.strip_prefix('{') {
                for item in split_group(group) {
                    expand(item, path.clone(), out);
                }
                return;
            }
            break;
        }
        text = &text[ident.len()..];
        if ident != "self" {
            path.push(ident);
        }
        match text.strip_prefix("::") {
            Some(after) => text = after.trim_start(),
            None => break,
        }
    }
    out.push(path);
}

/// The top-level items of a `{...}` group (up to its closing brace).
fn split_group(group: &str) -> Vec<&str> {
    let mut items = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, ch) in group.char_indices() {
        match ch {
            '{' => depth += 1,
            '}' if depth == 0 => {
                items.push(&group[start..i]);
                return items;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&group[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items
}

/// The file of the deepest module along `path`.
fn resolve(path: &[String], modules: &BTreeMap<Vec<String>, PathBuf>) -> Option<PathBuf> {
    (0..=path.len())
        .rev()
        .find_map(|n| modules.get(&path[..n]).cloned())
}

fn layer_of(file: &Path) -> Option<usize> {
    let first = file.components().next()?.as_os_str().to_string_lossy();
    LAYERS.iter().position(|l| *l == first)
}

/// File -> the files it imports (itself and `lib.rs` excluded).
fn import_graph() -> BTreeMap<PathBuf, BTreeSet<PathBuf>> {
    let root = src_dir();
    let mut files = Vec::new();
    rust_files(&root, &root, &mut files);
    let modules: BTreeMap<Vec<String>, PathBuf> =
        files.iter().map(|f| (module_path(f), f.clone())).collect();
    let mut graph = BTreeMap::new();
    for file in &files {
        let source = std::fs::read_to_string(root.join(file))
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
        let targets: BTreeSet<PathBuf> = crate_paths(&code_of(&source))
            .iter()
            .filter_map(|p| resolve(p, &modules))
            .filter(|t| t != file && t != Path::new("lib.rs"))
            .collect();
        graph.insert(file.clone(), targets);
    }
    graph
}

#[test]
fn every_file_is_in_a_layer() {
    let graph = import_graph();
    let outside: Vec<_> = graph
        .keys()
        .filter(|f| *f != Path::new("lib.rs") && layer_of(f).is_none())
        .collect();
    assert!(outside.is_empty(), "files outside every layer: {outside:?}");
}

#[test]
fn no_file_imports_from_a_higher_layer() {
    let graph = import_graph();
    let mut upward = Vec::new();
    for (file, targets) in &graph {
        let Some(from) = layer_of(file) else { continue };
        for target in targets {
            if layer_of(target).is_some_and(|to| to > from) {
                upward.push(format!("{} -> {}", file.display(), target.display()));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports from a lower layer to a higher one:\n{}",
        upward.join("\n")
    );
}

#[test]
fn import_circles_are_only_the_justified_pairs() {
    let graph = import_graph();
    let mut circles = Vec::new();
    for component in strongly_connected(&graph) {
        if component.len() < 2 {
            continue;
        }
        let names: Vec<String> = component.iter().map(|f| f.display().to_string()).collect();
        let allowed = names.len() == 2
            && ALLOWED_PAIRS
                .iter()
                .any(|pair| pair.iter().all(|p| names.iter().any(|n| n == p)));
        if !allowed {
            circles.push(names.join(" <-> "));
        }
    }
    assert!(
        circles.is_empty(),
        "import circles not justified in docs/ARCHITECTURE.md:\n{}",
        circles.join("\n")
    );
}

#[test]
fn the_reader_sees_grouped_and_nested_imports() {
    let code = code_of(
        "use crate::base::{error::{Error, Result}, sql::SqlBuf};\n\
         // use crate::db::pool::Db;\n\
         let x = \"crate::query\"; fn f() -> crate::schema::model::Model {}\n",
    );
    let mut paths = crate_paths(&code);
    paths.sort();
    let expect: Vec<Vec<String>> = [
        vec!["base", "error", "Error"],
        vec!["base", "error", "Result"],
        vec!["base", "sql", "SqlBuf"],
        vec!["schema", "model", "Model"],
    ]
    .iter()
    .map(|p| p.iter().map(|s| s.to_string()).collect())
    .collect();
    assert_eq!(paths, expect);
}

/// Tarjan's strongly connected components.
fn strongly_connected(graph: &BTreeMap<PathBuf, BTreeSet<PathBuf>>) -> Vec<Vec<PathBuf>> {
    struct State<'g> {
        graph: &'g BTreeMap<PathBuf, BTreeSet<PathBuf>>,
        index: BTreeMap<&'g PathBuf, usize>,
        low: BTreeMap<&'g PathBuf, usize>,
        stack: Vec<&'g PathBuf>,
        on_stack: BTreeSet<&'g PathBuf>,
        next: usize,
        out: Vec<Vec<PathBuf>>,
    }
    fn visit<'g>(s: &mut State<'g>, v: &'g PathBuf) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        let targets = s.graph.get(v).into_iter().flatten();
        for w in targets {
            let Some((w, _)) = s.graph.get_key_value(w) else {
                continue;
            };
            if !s.index.contains_key(w) {
                visit(s, w);
                let low = s.low[v].min(s.low[w]);
                s.low.insert(v, low);
            } else if s.on_stack.contains(w) {
                let low = s.low[v].min(s.index[w]);
                s.low.insert(v, low);
            }
        }
        if s.low[v] == s.index[v] {
            let mut component = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                component.push(w.clone());
                if w == v {
                    break;
                }
            }
            s.out.push(component);
        }
    }
    let mut state = State {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !state.index.contains_key(v) {
            visit(&mut state, v);
        }
    }
    state.out
}
