//! The module dependency table of `../shared/DESIGN.md` §2, enforced: each module of
//! `builder-core/src/<module>/` may import (`crate::x`) only what its row allows; no two files of
//! one module and no two modules import each other, even through others; the binaries use only
//! the fronts of the library's modules; the solver's executors see their inputs, never the
//! build's job; and `unsafe` appears only in `exec/sys.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// module → the crate modules it may import.
fn allowed() -> BTreeMap<&'static str, &'static [&'static str]> {
    BTreeMap::from([
        // `fs` (paths resolved inside a root) is the one helper every tree reader uses.
        ("fs", &[][..]),
        ("dockerfile", &[][..]),
        // `compose` (Compose files for `rbuild bake`) describes builds: a leaf.
        ("compose", &[][..]),
        // `cancel` (a build's cancel token) is a leaf, like `digest`.
        ("exec", &["fs", "cancel"][..]),
        ("context", &["digest", "fs"][..]),
        ("store", &["digest", "fs"][..]),
        ("snapshot", &["digest", "store", "fs"][..]),
        ("oci", &["digest", "store", "fs"][..]),
        ("registry", &["digest", "store", "oci", "fs", "cancel"][..]),
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

/// Who imports whom: node → the nodes it names.
type Graph = BTreeMap<String, BTreeSet<String>>;

/// The strongly connected parts of `graph` with more than one node (or a node naming itself):
/// every import cycle, each as its members in order (Tarjan's algorithm).
fn cycles(graph: &Graph) -> Vec<Vec<String>> {
    struct Walk<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        found: Vec<Vec<String>>,
    }
    impl<'g> Walk<'g> {
        fn visit(&mut self, node: &'g str) {
            let n = self.index.len();
            self.index.insert(node, n);
            self.low.insert(node, n);
            self.stack.push(node);
            self.on_stack.insert(node);
            for next in self.graph.get(node).into_iter().flatten() {
                let next = next.as_str();
                if !self.index.contains_key(next) {
                    self.visit(next);
                    let l = self.low[next].min(self.low[node]);
                    self.low.insert(node, l);
                } else if self.on_stack.contains(next) {
                    let l = self.index[next].min(self.low[node]);
                    self.low.insert(node, l);
                }
            }
            if self.low[node] == self.index[node] {
                let mut part = Vec::new();
                while let Some(top) = self.stack.pop() {
                    self.on_stack.remove(top);
                    part.push(top.to_owned());
                    if top == node {
                        break;
                    }
                }
                let selfish = self.graph.get(node).is_some_and(|n| n.contains(node));
                if part.len() > 1 || selfish {
                    part.reverse();
                    self.found.push(part);
                }
            }
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        found: Vec::new(),
    };
    for node in graph.keys() {
        if !walk.index.contains_key(node.as_str()) {
            walk.visit(node);
        }
    }
    walk.found
}

/// The code of a file without its comments and its test module: doc links are not imports,
/// and tests may reach anywhere.
fn code(text: &str) -> String {
    let body = text.split("#[cfg(test)]").next().unwrap_or(text);
    body.lines()
        .map(|l| match l.find("//") {
            Some(i) if !l[..i].contains('"') => &l[..i],
            _ => l,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first name of each path in `use x::{a, b::c, d as e}` or `x::a`.
fn heads(group: &str) -> Vec<String> {
    let inner = group.trim_start_matches('{').trim_end_matches('}');
    inner
        .split(',')
        .filter_map(|item| {
            let name: String = item
                .trim()
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            (!name.is_empty()).then_some(name)
        })
        .collect()
}

/// The import graph between the files of one module folder: `super::x` and `crate::<module>::x`
/// name file `x`, or the file `mod.rs` re-exports `x` from, or else `mod.rs` itself; `mod.rs`
/// names a file by using it (its `pub use` re-exports are its front, not a dependency).
fn file_graph(dir: &Path, module: &str) -> Graph {
    let mut texts = BTreeMap::new();
    for entry in fs_err::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
            texts.insert(stem, code(&fs_err::read_to_string(&path).unwrap()));
        }
    }
    let front = texts.get("mod").cloned().unwrap_or_default();
    let reexport =
        regex::Regex::new(r"\bpub(?:\([^)]*\))?\s+use\s+(?:self::)?(\w+)::(\{[^}]*\}|\w+)")
            .unwrap();
    let mut exported_from: BTreeMap<String, String> = BTreeMap::new();
    for c in reexport.captures_iter(&front) {
        for name in c[2].trim_matches(|ch| ch == '{' || ch == '}').split(',') {
            let name = name.split(" as ").last().unwrap_or("").trim();
            if !name.is_empty() {
                exported_from.insert(name.to_owned(), c[1].to_owned());
            }
        }
    }
    let up =
        regex::Regex::new(&format!(r"\b(?:super|crate::{module})::(\{{[^}}]*\}}|\w+)")).unwrap();
    let down = regex::Regex::new(r"\b(?:self::)?(\w+)::").unwrap();
    let mut graph = Graph::new();
    for (file, text) in &texts {
        let edges = graph.entry(file.clone()).or_default();
        if file == "mod" {
            let used: String = text
                .lines()
                .filter(|l| !reexport.is_match(l) && !l.trim_start().starts_with("mod "))
                .collect::<Vec<_>>()
                .join("\n");
            for c in down.captures_iter(&used) {
                if c[1] != *"mod" && texts.contains_key(&c[1]) {
                    edges.insert(c[1].to_owned());
                }
            }
            continue;
        }
        for c in up.captures_iter(text) {
            for name in heads(&c[1]) {
                let target = if name == "super" || name == "self" {
                    continue;
                } else if texts.contains_key(&name) {
                    name
                } else if let Some(from) = exported_from.get(&name) {
                    from.clone()
                } else {
                    "mod".to_owned()
                };
                if target != *file {
                    edges.insert(target);
                }
            }
        }
    }
    graph
}

fn module_dirs() -> Vec<(String, PathBuf)> {
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut out = Vec::new();
    for entry in fs_err::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.push((
                path.file_name().unwrap().to_string_lossy().into_owned(),
                path,
            ));
        }
    }
    out.sort();
    out
}

#[test]
fn no_two_files_of_a_module_import_each_other() {
    let mut found = Vec::new();
    for (module, dir) in module_dirs() {
        let graph = file_graph(&dir, &module);
        for part in cycles(&graph) {
            let edges: Vec<String> = part
                .iter()
                .flat_map(|from| {
                    graph[from]
                        .iter()
                        .filter(|to| part.contains(to))
                        .map(move |to| format!("{from} → {to}"))
                })
                .collect();
            found.push(format!("{module}: {}", edges.join(", ")));
        }
    }
    assert!(
        found.is_empty(),
        "import cycles between files:\n{}",
        found.join("\n")
    );
}

#[test]
fn no_two_modules_import_each_other() {
    // The crate's modules, and the files at its root (`error.rs`, `digest.rs`) as `crate::Error`
    // and `crate::digest` name them.
    let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let node = |name: &str| match name {
        "Error" | "Result" => "error".to_owned(),
        other => other.to_owned(),
    };
    let mut graph = Graph::new();
    for (module, dir) in module_dirs() {
        let mut files = Vec::new();
        rust_files(&dir, &mut files);
        let edges = graph.entry(module.clone()).or_default();
        for file in files {
            for name in imports(&code(&fs_err::read_to_string(&file).unwrap())) {
                if node(&name) != module {
                    edges.insert(node(&name));
                }
            }
        }
    }
    for entry in fs_err::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.is_file() && stem != "lib" {
            let text = code(&fs_err::read_to_string(&path).unwrap());
            let edges = graph.entry(stem.clone()).or_default();
            edges.extend(
                imports(&text)
                    .iter()
                    .map(|n| node(n))
                    .filter(|n| *n != stem),
            );
        }
    }
    let found = cycles(&graph);
    assert!(found.is_empty(), "import cycles between modules: {found:?}");
}

#[test]
fn the_cycle_checker_fails_on_a_cycle_it_is_fed() {
    let dir = std::env::temp_dir().join(format!("rbuild-arch-{}", std::process::id()));
    let _ = fs_err::remove_dir_all(&dir);
    fs_err::create_dir_all(&dir).unwrap();
    let write = |name: &str, text: &str| fs_err::write(dir.join(name), text).unwrap();
    write(
        "mod.rs",
        "mod a;\nmod b;\nmod c;\npub use c::Thing;\npub struct Event;\n",
    );
    write("a.rs", "use super::b::run;\n");
    write(
        "b.rs",
        "use super::{c::helper, Thing};\nfn f() { crate::m::a::g(); }\n",
    );
    write("c.rs", "use super::Event;\n// super::a is only a comment\n");
    let graph = file_graph(&dir, "m");
    fs_err::remove_dir_all(&dir).unwrap();
    assert_eq!(graph["b"], BTreeSet::from(["a".to_owned(), "c".to_owned()]));
    assert_eq!(graph["c"], BTreeSet::from(["mod".to_owned()]));
    assert!(graph["mod"].is_empty(), "a re-export is not a dependency");
    assert_eq!(cycles(&graph), [["a", "b"]]);
    // Through three files, and a file naming itself.
    let graph: Graph = [("x", "y"), ("y", "z"), ("z", "x"), ("z", "w"), ("v", "v")]
        .into_iter()
        .fold(Graph::new(), |mut g, (from, to)| {
            g.entry(from.into()).or_default().insert(to.into());
            g
        });
    assert_eq!(cycles(&graph), [vec!["v"], vec!["x", "y", "z"]]);
}

#[test]
fn the_binaries_use_only_the_fronts_of_the_librarys_modules() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut violations = Vec::new();
    // A module's files are private: what it offers is what its `mod.rs` (or `lib.rs`) exports.
    for (module, dir) in module_dirs() {
        let front = code(&fs_err::read_to_string(dir.join("mod.rs")).unwrap());
        for line in front.lines() {
            let l = line.trim_start();
            if l.starts_with("pub mod ") || l.starts_with("#[doc(hidden)]") {
                violations.push(format!("src/{module}/mod.rs: `{}`", l.trim()));
            }
        }
    }
    let inner = regex::Regex::new(r"\bbuilder_core::(\w+)::([a-z_][a-z0-9_]*)::").unwrap();
    for binary in ["builder-cli/src", "builder-server/src"] {
        let mut files = Vec::new();
        rust_files(&root.join("..").join(binary), &mut files);
        for file in files {
            let text = code(&fs_err::read_to_string(&file).unwrap());
            for c in inner.captures_iter(&text) {
                violations.push(format!(
                    "{}: reaches into `builder_core::{}::{}`",
                    file.display(),
                    &c[1],
                    &c[2]
                ));
            }
        }
    }
    assert!(violations.is_empty(), "{}", violations.join("\n"));
}

/// The functions of `text` (outside its test module) with their lengths in lines, from the
/// `fn` line to the closing brace. Braces in strings, characters and comments are skipped.
fn function_lengths(text: &str) -> Vec<(String, usize)> {
    let code = code(text);
    let lines: Vec<&str> = code.lines().collect();
    let starts_fn =
        regex::Regex::new(r"^\s*(pub(\([^)]*\))?\s+)?(const\s+)?(unsafe\s+)?fn\s+(\w+)").unwrap();
    let mut out = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        let Some(c) = starts_fn.captures(lines[i]) else {
            i += 1;
            continue;
        };
        let name = c[5].to_owned();
        let (mut depth, mut opened, mut j) = (0i32, false, i);
        'scan: while j < lines.len() {
            let mut chars = lines[j].chars().peekable();
            let mut in_str = false;
            while let Some(ch) = chars.next() {
                match ch {
                    '\\' if in_str => {
                        chars.next();
                    }
                    '"' => in_str = !in_str,
                    '\'' if !in_str => {
                        // A char literal ('{', '\n') or a lifetime ('a): skip the literal.
                        let rest: String = chars.clone().take(3).collect();
                        if rest.starts_with('\\') || rest.chars().nth(1) == Some('\'') {
                            for c in chars.by_ref() {
                                if c == '\'' {
                                    break;
                                }
                            }
                        }
                    }
                    '{' if !in_str => {
                        depth += 1;
                        opened = true;
                    }
                    '}' if !in_str => {
                        depth -= 1;
                        if opened && depth == 0 {
                            break 'scan;
                        }
                    }
                    ';' if !in_str && !opened => break 'scan,
                    _ => {}
                }
            }
            j += 1;
        }
        if opened {
            out.push((name, j - i + 1));
        }
        i += 1;
    }
    out
}

/// The longest function a module of the build core may have.
const LONGEST: usize = 100;

#[test]
fn no_function_of_the_build_core_is_longer_than_a_hundred_lines() {
    let mut long = Vec::new();
    for (module, dir) in module_dirs() {
        if !["plan", "solve", "exec"].contains(&module.as_str()) {
            continue;
        }
        let mut files = Vec::new();
        rust_files(&dir, &mut files);
        for file in files {
            for (name, len) in function_lengths(&fs_err::read_to_string(&file).unwrap()) {
                if len >= LONGEST {
                    long.push(format!("{}: `{name}` has {len} lines", file.display()));
                }
            }
        }
    }
    assert!(
        long.is_empty(),
        "functions of {LONGEST} lines or more:\n{}",
        long.join("\n")
    );
}

#[test]
fn the_length_check_measures_functions_and_ignores_braces_in_text() {
    let body = "    let x = \"{\";\n".repeat(120);
    let text =
        format!("fn short() {{\n    let c = '{{';\n}}\n\npub(crate) fn long() {{\n{body}}}\n");
    let lengths = function_lengths(&text);
    assert_eq!(lengths, [("short".to_owned(), 3), ("long".to_owned(), 122)]);
}

/// The executors of `solve/` and what of the solver they must not name: the build's job (its
/// tables, store and events), the table of built stages, a stage's state. They get their op
/// and its inputs as paths.
const EXECUTORS: &[(&str, &[&str])] = &[
    ("copy", &["Job", "job", "Built", "StageState"]),
    ("run", &["Job", "job", "Built", "StageState"]),
    ("config", &["Job", "job", "Built"]),
    ("download", &["Job", "job", "Built", "StageState"]),
];

/// What of `forbidden` the code of `text` names as a word.
fn named(text: &str, forbidden: &[&str]) -> Vec<String> {
    let code = code(text);
    forbidden
        .iter()
        .filter(|w| {
            regex::Regex::new(&format!(r"\b{w}\b"))
                .unwrap()
                .is_match(&code)
        })
        .map(|w| (*w).to_owned())
        .collect()
}

#[test]
fn executors_get_their_inputs_never_the_build_job() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/solve");
    let mut found = Vec::new();
    for (file, forbidden) in EXECUTORS {
        let text = fs_err::read_to_string(dir.join(format!("{file}.rs"))).unwrap();
        for w in named(&text, forbidden) {
            found.push(format!("solve/{file}.rs names `{w}`"));
        }
    }
    assert!(found.is_empty(), "{}", found.join("\n"));
}

#[test]
fn the_executor_check_sees_a_job_passed_in() {
    let fed = "use super::job::Job;\npub(crate) fn run(job: &Job<'_>) {}\n// Job in a comment\n";
    assert_eq!(named(fed, &["Job", "job", "Built"]), ["Job", "job"]);
    assert!(named("fn run(inputs: &Inputs) {} // a Job", &["Job"]).is_empty());
}
