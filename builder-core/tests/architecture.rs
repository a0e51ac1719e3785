//! The module dependency table of `../shared/DESIGN.md` §2, enforced: each module of
//! `builder-core/src/<module>/` may import (`crate::x`) only what its row allows, and `unsafe`
//! appears only in `exec/sys.rs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// module → the crate modules it may import.
fn allowed() -> BTreeMap<&'static str, &'static [&'static str]> {
    BTreeMap::from([
        // `fs` (paths resolved inside a root) is the one helper every tree reader uses.
        ("fs", &[][..]),
        ("dockerfile", &[][..]),
        ("exec", &["fs"][..]),
        ("context", &["digest", "fs"][..]),
        ("store", &["digest", "fs"][..]),
        ("snapshot", &["digest", "store", "fs"][..]),
        ("oci", &["digest", "store", "fs"][..]),
        ("registry", &["digest", "store", "oci", "fs"][..]),
        ("plan", &["dockerfile", "digest"][..]),
        // `solve` uses everything: the only such module.
        ("solve", &["*"][..]),
    ])
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs_err::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The crate modules a file names, as `crate::name` or `super::super::name` out of its module.
fn imports(src: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (i, _) in src.match_indices("crate::") {
        let rest = &src[i + "crate::".len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.push(name);
        }
    }
    out
}

#[test]
fn modules_import_only_what_the_table_allows() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let table = allowed();
    let mut violations = Vec::new();
    for entry in fs_err::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        if !path.is_dir() {
            continue;
        }
        let module = path.file_name().unwrap().to_string_lossy().into_owned();
        let Some(ok) = table.get(module.as_str()) else {
            violations.push(format!(
                "module `{module}` is not in the table of DESIGN.md"
            ));
            continue;
        };
        let mut files = Vec::new();
        rust_files(&path, &mut files);
        for file in files {
            let text = fs_err::read_to_string(&file).unwrap();
            for name in imports(&text) {
                if name != module && !ok.contains(&"*") && !ok.contains(&name.as_str()) {
                    violations.push(format!("{}: imports `crate::{name}`", file.display()));
                }
            }
            if text.contains("super::super::super") {
                violations.push(format!(
                    "{}: reaches out of its module through `super`",
                    file.display()
                ));
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

#[test]
fn unsafe_lives_only_in_exec_sys() {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let offenders: Vec<String> = files
        .iter()
        .filter(|f| !f.ends_with("exec/sys.rs"))
        .filter(|f| {
            let text = fs_err::read_to_string(f).unwrap();
            text.lines().any(|l| {
                let code = l.split("//").next().unwrap_or("");
                code.contains("unsafe ") || code.contains("unsafe{")
            })
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        offenders.is_empty(),
        "unsafe outside exec/sys.rs: {offenders:?}"
    );
}

#[test]
fn the_checker_sees_a_forbidden_import() {
    assert_eq!(
        imports("use crate::store::Blob;\nfn f() { crate::digest::x(); }"),
        ["store", "digest"]
    );
}
