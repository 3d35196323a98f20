//! The documentation against the tree it describes: the README's layout names every module and
//! every document, `src/lib.rs`'s module map names every module it declares, every file a
//! document or comment points at exists, and nothing points outside the repository.

use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The names in a directory of the repository, sorted.
fn names(rel: &str) -> Vec<(String, bool)> {
    let mut out: Vec<(String, bool)> = std::fs::read_dir(root().join(rel))
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
        .map(|e| {
            let e = e.expect("entry");
            let is_dir = e.file_type().expect("type").is_dir();
            (e.file_name().to_string_lossy().into_owned(), is_dir)
        })
        .collect();
    out.sort();
    out
}

/// The README's "Layout" block.
fn layout() -> String {
    let readme = read("README.md");
    let section = readme
        .split_once("\n## Layout\n")
        .map(|(_, rest)| rest)
        .expect("README.md has a Layout section");
    let block = section
        .split_once("```\n")
        .and_then(|(_, rest)| rest.split_once("\n```"))
        .map(|(block, _)| block)
        .expect("the Layout section opens with a code block");
    block.to_owned()
}

#[test]
fn the_readme_layout_names_every_module_and_document() {
    let layout = layout();
    let mut missing = Vec::new();
    for (name, is_dir) in names("src") {
        let shown = if is_dir {
            format!("src/{name}/")
        } else if name.ends_with(".rs") {
            format!("src/{name}")
        } else {
            continue; // the dashboard's page and other data live in module directories
        };
        if !layout.contains(&shown) {
            missing.push(shown);
        }
    }
    for (name, _) in names("docs") {
        if !layout.contains(&name) {
            missing.push(format!("docs/{name}"));
        }
    }
    assert!(
        missing.is_empty(),
        "README.md's Layout does not name {missing:?}"
    );
}

#[test]
fn the_module_map_names_every_module() {
    let lib = read("src/lib.rs");
    let map: Vec<&str> = lib.lines().filter(|l| l.starts_with("//! * `")).collect();
    let declared: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|m| m.trim_end_matches(';'))
        .collect();
    assert!(declared.len() > 10, "{declared:?}");
    for m in declared {
        assert!(
            map.iter().any(|l| l.starts_with(&format!("//! * `{m}`"))),
            "src/lib.rs declares `{m}` but its module map does not describe it"
        );
    }
}

/// Text files of the repository, without build output, fuzzing corpora and the lock files.
fn text_files() -> Vec<PathBuf> {
    const SKIP_DIRS: [&str; 5] = [".git", "target", "corpus", "artifacts", "node_modules"];
    const TEXT: [&str; 14] = [
        "rs", "md", "yaml", "yml", "toml", "py", "sh", "conf", "html", "json", "txt", "service",
        "vcl", "Makefile",
    ];
    let mut out = Vec::new();
    let mut todo = vec![root().to_path_buf()];
    while let Some(dir) = todo.pop() {
        for e in std::fs::read_dir(&dir).expect("read_dir") {
            let path = e.expect("entry").path();
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            if path.is_dir() {
                if !SKIP_DIRS.contains(&name.as_str()) && !name.starts_with("target-") {
                    todo.push(path);
                }
                continue;
            }
            let ext = path
                .extension()
                .map(|x| x.to_string_lossy().into_owned())
                .unwrap_or(name.clone());
            let is_script = path.parent() == Some(&root().join("deploy")) && !name.contains('.');
            if TEXT.contains(&ext.as_str()) || is_script || name == "Dockerfile" {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn rel(path: &Path) -> String {
    path.strip_prefix(root())
        .unwrap_or(path)
        .display()
        .to_string()
}

#[test]
fn nothing_points_outside_the_repository() {
    // Spelled in pieces, so that this file does not find itself.
    let outside = [
        ["ERP", "_FACTS"].concat(),
        ["../", "shared"].concat(),
        ["/work", "/"].concat(),
        ["DESIGN", ".md"].concat(),
        ["STYLE", ".md"].concat(),
    ];
    let mut found = Vec::new();
    let files = text_files();
    assert!(files.len() > 100, "walked {} files", files.len());
    for path in files {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            for needle in &outside {
                if line.contains(needle.as_str()) {
                    found.push(format!("{}:{}: {}", rel(&path), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "references to files outside the repository (docs/ERP.md holds what the project \
         knows of the ERP):\n{}",
        found.join("\n")
    );
}

#[test]
fn every_document_cited_exists() {
    // `docs/<name>.md` or `docs/<name>.yaml` anywhere, and relative links in Markdown.
    let cited = regex::Regex::new(r"docs/[A-Za-z_]+\.(?:md|yaml)").expect("regex");
    let link = regex::Regex::new(r"\]\(([^)#\s]+)(?:#[^)]*)?\)").expect("regex");
    let mut missing = Vec::new();
    for path in text_files() {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        for m in cited.find_iter(&text) {
            if !root().join(m.as_str()).exists() {
                missing.push(format!("{}: {}", rel(&path), m.as_str()));
            }
        }
        if path.extension().is_some_and(|x| x == "md") {
            for c in link.captures_iter(&text) {
                let target = &c[1];
                if target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                let dir = path.parent().unwrap_or(root());
                if !dir.join(target).exists() {
                    missing.push(format!("{}: link {target}", rel(&path)));
                }
            }
        }
    }
    missing.sort();
    missing.dedup();
    assert!(
        missing.is_empty(),
        "cited but missing:\n{}",
        missing.join("\n")
    );
}
