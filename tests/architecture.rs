//! The promises of `docs/architecture.md`, checked on the sources: which module may name which, where a backend
//! may be chosen, and how long a file may grow. A failure names the file, the line and the promise it breaks.

use std::path::{Path, PathBuf};

/// Files over [`MAX_LINES`] lines, each with why it stays whole. Empty: every file holds one idea today; a file
/// that must grow past the limit is added here with its reason, in the commit that grows it.
const LONG_FILES: &[(&str, &str)] = &[];

const MAX_LINES: usize = 700;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every `.rs` file under `src/<under>` (a directory or a single file), relative to the crate root.
fn sources(under: &str) -> Vec<(String, String)> {
    let path = root().join("src").join(under);
    let mut files = Vec::new();
    if path.is_file() {
        files.push(path);
    } else {
        rust_files(&path, &mut files);
    }
    files.sort();
    files
        .into_iter()
        .map(|p| {
            let text =
                std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            let rel = p.strip_prefix(root()).unwrap_or(&p).display().to_string();
            (rel, text)
        })
        .collect()
}

/// The code of a line: nothing of a comment (doc comments name modules in links, which is not a dependency).
fn code(line: &str) -> &str {
    let trimmed = line.trim_start();
    if trimmed.starts_with("//") {
        return "";
    }
    match line.find("//") {
        // A `//` inside a string literal (a URL) is kept: only cut when no quote precedes it.
        Some(at) if !line[..at].contains('"') => &line[..at],
        _ => line,
    }
}

/// The top-level crate modules a line names: `crate::x`, and every `x` of `crate::{x, y::z}`.
fn crate_modules(line: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("crate::") {
        let after = &rest[at + "crate::".len()..];
        if let Some(group) = after.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    names.push(name);
                }
            }
        } else {
            let name: String = after
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                names.push(name);
            }
        }
        rest = after;
    }
    names
}

/// Lines of `under` naming a top-level module for which `forbidden` is true.
fn violations(under: &str, forbidden: impl Fn(&str) -> bool) -> Vec<String> {
    let mut found = Vec::new();
    for (file, text) in sources(under) {
        for (i, line) in text.lines().enumerate() {
            for module in crate_modules(code(line)) {
                if forbidden(&module) {
                    found.push(format!(
                        "{file}:{}: crate::{module}: {}",
                        i + 1,
                        line.trim()
                    ));
                }
            }
        }
    }
    found
}

fn assert_none(promise: &str, found: Vec<String>) {
    assert!(
        found.is_empty(),
        "{promise} (docs/architecture.md), broken at:\n{}",
        found.join("\n")
    );
}

#[test]
fn checkers_read_only_the_history_and_the_model() {
    assert_none(
        "src/check/ never names crate::broker or crate::pipeline",
        violations("check", |m| m == "broker" || m == "pipeline"),
    );
}

#[test]
fn the_client_side_takes_its_own_config_types() {
    assert!(
        root().join("src/client").is_dir(),
        "src/client/ is the harness's client side"
    );
    assert_none(
        "the client side (src/client/) never names crate::scenario",
        violations("client", |m| m == "scenario"),
    );
}

#[test]
fn the_embedded_cluster_does_not_know_the_backends() {
    assert_none(
        "src/broker/ never names crate::topology",
        violations("broker", |m| m == "topology"),
    );
}

#[test]
fn the_neutral_floor_imports_nothing_above_it() {
    let floor = ["clock", "rng", "model", "history"];
    for under in ["clock.rs", "rng.rs", "model", "history"] {
        assert!(
            root().join("src").join(under).exists(),
            "src/{under} is on the floor"
        );
        assert_none(
            "the neutral floor (clock, rng, model, history) names nothing above it",
            violations(under, |m| !floor.contains(&m)),
        );
    }
}

#[test]
fn a_backend_is_chosen_only_in_topology_and_the_cli() {
    let allowed = ["src/topology/", "src/scenario/", "src/cli/", "src/main.rs"];
    let mut found = Vec::new();
    for (file, text) in sources("") {
        if allowed.iter().any(|a| file.starts_with(a)) {
            continue;
        }
        // A module's unit tests (inline after `#[cfg(test)]`, or its `tests.rs` declared `#[cfg(test)] mod
        // tests;`) may build scenarios for any backend.
        let mut in_tests = file.ends_with("/tests.rs");
        for (i, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("#[cfg(test)]") {
                in_tests = true;
            }
            let code = code(line);
            if !in_tests
                && [
                    "Backend::Embedded",
                    "Backend::Local",
                    "Backend::Containers",
                    "Backend::External",
                ]
                .iter()
                .any(|v| code.contains(v))
            {
                found.push(format!("{file}:{}: {}", i + 1, line.trim()));
            }
        }
    }
    assert_none(
        "no Backend:: variant outside src/topology/, src/scenario/ and the CLI",
        found,
    );
}

#[test]
fn no_source_file_holds_more_than_one_idea() {
    let mut found = Vec::new();
    for (file, text) in sources("") {
        let lines = text.lines().count();
        if lines > MAX_LINES && !LONG_FILES.iter().any(|(f, _)| *f == file) {
            found.push(format!("{file}: {lines} lines"));
        }
    }
    assert_none(
        "no file under src/ is over 700 lines unless the allow-list says why",
        found,
    );
    for (file, reason) in LONG_FILES {
        let path = root().join(file);
        let lines = std::fs::read_to_string(&path)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        assert!(
            lines > MAX_LINES,
            "{file} is on the allow-list ({reason}) but has {lines} lines: take it off the list"
        );
    }
}

#[test]
fn the_scanner_sees_grouped_and_plain_paths() {
    assert_eq!(
        crate_modules("use crate::{broker::Cluster, history, pipeline::flat};"),
        ["broker", "history", "pipeline"]
    );
    assert_eq!(
        crate_modules("let x = crate::scenario::Acks::All;"),
        ["scenario"]
    );
    assert!(crate_modules(code("//! see [`crate::broker`]")).is_empty());
    assert!(crate_modules(code("let a = 1; // crate::broker")).is_empty());
}
