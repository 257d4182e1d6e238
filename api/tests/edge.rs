//! `api/src` is the edge only (docs/architecture.md): no SQL text (queries live with the crate
//! that owns the table) and no import circles among its modules.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read api/src") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// `wire/cabinet.rs` → `wire::cabinet`; `wire/mod.rs` → `wire`; `lib.rs`, `main.rs` → `crate`.
fn module_of(path: &Path) -> String {
    let relative = path.strip_prefix(root()).expect("under src");
    let text = relative
        .with_extension("")
        .to_string_lossy()
        .replace('/', "::");
    let text = text.trim_end_matches("::mod").to_string();
    match text.as_str() {
        "lib" | "main" => "crate".to_string(),
        _ => text,
    }
}

#[test]
fn no_sql_text_in_the_edge() {
    let mut files = Vec::new();
    sources(&root(), &mut files);
    let mut found = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read");
        for (i, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or_default();
            let sql = [
                "sqlx::query",
                "SELECT ",
                "INSERT INTO",
                "UPDATE ",
                "DELETE FROM",
            ]
            .iter()
            .any(|needle| code.contains(needle));
            if sql {
                found.push(format!("{}:{}: {}", module_of(&file), i + 1, line.trim()));
            }
        }
    }
    assert!(found.is_empty(), "SQL in api/src:\n{}", found.join("\n"));
}

/// The modules each module imports (`crate::x`, `super::x`, `super::{x, y}`).
fn imports(modules: &BTreeMap<String, String>) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph = BTreeMap::new();
    for (module, text) in modules {
        let parent = module.rsplit_once("::").map(|(p, _)| p.to_string());
        let mut deps = BTreeSet::new();
        let mut add = |name: &str| {
            if modules.contains_key(name) && name != module {
                deps.insert(name.to_string());
            }
        };
        for (prefix, base) in [("crate::", None), ("super::", parent.clone())] {
            for (at, _) in text.match_indices(prefix) {
                let rest = &text[at + prefix.len()..];
                let names: Vec<String> = if let Some(group) = rest.strip_prefix('{') {
                    let inner = group.split('}').next().unwrap_or_default();
                    inner
                        .split(',')
                        .map(|n| n.trim().split("::").next().unwrap_or_default().to_string())
                        .collect()
                } else {
                    let path: String = rest
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                        .collect();
                    let mut parts = path.split("::");
                    let first = parts.next().unwrap_or_default().to_string();
                    match parts.next() {
                        Some(second) if !second.is_empty() => {
                            vec![format!("{first}::{second}"), first]
                        }
                        _ => vec![first],
                    }
                };
                for name in names {
                    let full = match &base {
                        Some(parent) => format!("{parent}::{name}"),
                        None => name,
                    };
                    add(&full);
                }
            }
        }
        graph.insert(module.clone(), deps);
    }
    graph
}

#[test]
fn no_import_circles_among_the_edges_modules() {
    let mut files = Vec::new();
    sources(&root(), &mut files);
    let modules: BTreeMap<String, String> = files
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(f).expect("read");
            // Tests may reach back into their parent module.
            let code = text
                .split("#[cfg(test)]")
                .next()
                .unwrap_or_default()
                .to_string();
            (module_of(f), code)
        })
        .filter(|(m, _)| m != "crate")
        .collect();
    let graph = imports(&modules);
    // A module is in a circle when it reaches itself.
    let mut circles = Vec::new();
    for start in graph.keys() {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<&String> = graph[start].iter().collect();
        while let Some(next) = stack.pop() {
            if next == start {
                circles.push(start.clone());
                break;
            }
            if seen.insert(next.clone()) {
                stack.extend(graph.get(next).into_iter().flatten());
            }
        }
    }
    assert!(circles.is_empty(), "modules in import circles: {circles:?}");
}
