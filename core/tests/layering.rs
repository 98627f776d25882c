//! The one-way dependency rule of core's folders (docs/ARCHITECTURE.md):
//! every top-level module of `core/src` sits on a layer, and a module only
//! uses modules of lower layers (or its own). Read from the sources: every
//! `crate::…` path outside comments counts, in `use` lines and inline.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Core's top-level modules, lowest layer first. A module may use the
/// modules of any layer before its own.
const LAYERS: &[&[&str]] = &[
    &["error", "lifecycle"],
    &["drivers"],
    &["settings", "monitor"],
    &["flow"],
    &["app"],
    &["stream"],
    &["table", "agent"],
    &["cluster"],
    &["runtime"],
];

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level modules a line of code names through `crate::`.
fn crate_refs(line: &str, out: &mut BTreeSet<String>) {
    let mut rest = line;
    while let Some(i) = rest.find("crate::") {
        rest = &rest[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            // `crate::{a, b::c}`: the first name of each item at depth 1.
            let mut depth = 0;
            let mut item_start = true;
            let mut name = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => item_start = true,
                    c if item_start && (c.is_alphanumeric() || c == '_') => name.push(c),
                    _ => {
                        if !name.is_empty() {
                            out.insert(std::mem::take(&mut name));
                            item_start = false;
                        }
                    }
                }
            }
            if !name.is_empty() {
                out.insert(name);
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
}

#[test]
fn lower_layers_never_use_upper_ones() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let rank: BTreeMap<&str, usize> = LAYERS
        .iter()
        .enumerate()
        .flat_map(|(i, layer)| layer.iter().map(move |m| (*m, i)))
        .collect();
    // Names the crate root re-exports (`pub use agent::{Agent, …};`) count
    // as uses of the module they come from.
    let lib = std::fs::read_to_string(src.join("lib.rs")).unwrap_or_default();
    let mut reexported: BTreeMap<String, String> = BTreeMap::new();
    for line in lib.lines() {
        let Some(path) = line.trim().strip_prefix("pub use ") else {
            continue;
        };
        let Some((module, items)) = path.split_once("::") else {
            continue;
        };
        if !rank.contains_key(module) {
            continue;
        }
        for name in items.split(|c: char| !(c.is_alphanumeric() || c == '_')) {
            if !name.is_empty() {
                reexported.insert(name.to_string(), module.to_string());
            }
        }
    }
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    assert!(files.len() > 10, "read core's sources from {src:?}");
    let mut wrong = Vec::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap_or(&file);
        let first = rel
            .components()
            .next()
            .map(|c| {
                c.as_os_str()
                    .to_string_lossy()
                    .trim_end_matches(".rs")
                    .to_string()
            })
            .unwrap_or_default();
        if first == "lib" {
            continue;
        }
        let Some(&own) = rank.get(first.as_str()) else {
            wrong.push(format!(
                "{}: module {first:?} is on no layer",
                rel.display()
            ));
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        for (n, line) in text.lines().enumerate() {
            let code = line.trim_start();
            if code.starts_with("//") {
                continue;
            }
            let mut refs = BTreeSet::new();
            crate_refs(code, &mut refs);
            for r in refs {
                let r = reexported.get(&r).cloned().unwrap_or(r);
                if r == first {
                    continue;
                }
                match rank.get(r.as_str()) {
                    Some(&other) if other < own => {}
                    Some(_) => wrong.push(format!(
                        "{}:{}: {first} uses {r}, which is not below it",
                        rel.display(),
                        n + 1
                    )),
                    // Items of the crate root (re-exports).
                    None => {}
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} uses against the layering:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[test]
fn crate_paths_are_read_from_use_lines_and_groups() {
    let mut refs = BTreeSet::new();
    crate_refs(
        "use crate::{app::App, drivers::{codec::CodecChain, url}, error};",
        &mut refs,
    );
    crate_refs("let x = crate::stream::Stream::new();", &mut refs);
    assert_eq!(
        refs.into_iter().collect::<Vec<_>>(),
        vec!["app", "drivers", "error", "stream"]
    );
}
