//! The step cache: keyed by content, not by time.

use std::os::unix::fs::PermissionsExt;

use crate::support::{Project, text};

fn project() -> Project {
    let p = Project::new();
    p.file("deps/lock.txt", "v1\n")
        .file("src/main.txt", "main\n")
        .file("Dockerfile", "FROM scratch\nCOPY deps/ /deps/\nENV MODE=prod\nCOPY src/ /src/\nCMD [\"/src/main.txt\"]\n");
    p
}

/// (step, instruction) lines and which of them were cached.
fn steps(log: &str) -> Vec<(String, bool)> {
    // Stages run at once interleave their lines: `#N CACHED` belongs to step N.
    let mut out: Vec<(String, String, bool)> = Vec::new();
    for line in log.lines() {
        if let Some(rest) = line.strip_prefix('#') {
            let (n, what) = rest.split_once(' ').unwrap_or((rest, ""));
            if what.starts_with('[') {
                out.push((n.to_owned(), format!("{n} {what}"), false));
            } else if what == "CACHED" {
                if let Some(step) = out.iter_mut().find(|s| s.0 == n) {
                    step.2 = true;
                }
            }
        }
    }
    out.into_iter()
        .map(|(_, what, cached)| (what, cached))
        .collect()
}

fn build(p: &Project) -> (String, Vec<(String, bool)>) {
    let out = p.ok(&["build", "--progress", "plain", "-t", "c:1", "."]);
    let log = text(&out.stderr);
    (log.clone(), steps(&log))
}

#[test]
fn unchanged_rebuild_is_all_cached_and_reads_nothing() {
    let p = project();
    let (first, _) = build(&p);
    assert!(first.contains("context files read"), "{first}");
    let (log, steps) = build(&p);
    assert_eq!(steps.len(), 5);
    assert!(steps.iter().all(|(_, cached)| *cached), "{log}");
    assert!(log.contains("5 cached, 0 context files read"), "{log}");
}

#[test]
fn content_change_misses_from_that_copy_on() {
    let p = project();
    build(&p);
    p.file("src/main.txt", "changed\n");
    let (log, steps) = build(&p);
    let cached: Vec<bool> = steps.iter().map(|s| s.1).collect();
    assert_eq!(cached, [true, true, true, false, false], "{log}");
}

#[test]
fn reset_mtime_still_misses() {
    let p = project();
    build(&p);
    let f = p.ctx().join("deps/lock.txt");
    let mtime = fs_err::metadata(&f).unwrap().modified().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    fs_err::write(&f, "v2\n").unwrap();
    fs_err::File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let (log, steps) = build(&p);
    assert!(
        !steps[1].1,
        "a content change with the old mtime was served from cache:\n{log}"
    );
}

#[test]
fn mode_change_misses_and_touch_does_not() {
    let p = project();
    build(&p);
    let f = p.ctx().join("src/main.txt");
    fs_err::File::options()
        .write(true)
        .open(&f)
        .unwrap()
        .set_modified(std::time::SystemTime::now())
        .unwrap();
    let (log, steps) = build(&p);
    assert!(
        steps.iter().all(|s| s.1),
        "touch invalidated the cache:\n{log}"
    );
    fs_err::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
    let (log, steps) = build(&p);
    assert!(!steps[3].1, "a mode change was served from cache:\n{log}");
}

#[test]
fn no_cache_runs_everything() {
    let p = project();
    build(&p);
    let out = p.ok(&["build", "--progress", "plain", "--no-cache", "."]);
    let log = text(&out.stderr);
    assert!(
        !log.contains("CACHED") || steps(&log).iter().skip(1).all(|s| !s.1),
        "{log}"
    );
}

#[test]
fn changed_build_arg_misses_only_where_used() {
    let p = Project::new();
    p.file("a.txt", "a").file(
        "Dockerfile",
        "FROM scratch\nARG V=1\nCOPY a.txt /a\nLABEL v=$V\nCOPY a.txt /b\n",
    );
    p.ok(&["build", "."]);
    let out = p.ok(&["build", "--progress", "plain", "--build-arg", "V=2", "."]);
    let st = steps(&text(&out.stderr));
    let cached: Vec<bool> = st.iter().map(|s| s.1).collect();
    assert_eq!(
        cached,
        [true, true, true, false, false],
        "{}",
        text(&out.stderr)
    );
}

fn misses(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| l.split_once(" cache miss: ").map(|(_, m)| m.to_owned()))
        .collect()
}

#[test]
fn misses_say_what_changed() {
    let p = Project::new();
    p.file("app/main.go", "package main\n")
        .file("app/util.go", "package main\n")
        .file("Dockerfile", "FROM scratch\nARG VERSION=1.2\nCOPY app/ /app/\nLABEL version=$VERSION\nCOPY app/main.go /main.go\n");
    let (first, _) = build(&p);
    assert!(
        misses(&first)
            .iter()
            .all(|m| m.ends_with("no earlier build of this step")),
        "{first}"
    );
    // A file changes: that COPY names it, the next ones say an earlier step changed.
    p.file("app/main.go", "package main // v2\n");
    let (log, _) = build(&p);
    assert_eq!(
        misses(&log),
        [
            "COPY app/ /app/ (Dockerfile:3): app/main.go changed",
            "LABEL version=$VERSION (Dockerfile:4): an earlier step changed (line 3)",
            "COPY app/main.go /main.go (Dockerfile:5): app/main.go changed",
        ],
        "{log}"
    );
    assert!(
        log.contains("cache misses:\n  COPY app/ /app/ (Dockerfile:3): app/main.go changed"),
        "{log}"
    );
    // A build arg changes: named, with old and new values, at its first use.
    let out = p.ok(&[
        "build",
        "--progress",
        "plain",
        "--build-arg",
        "VERSION=1.3",
        ".",
    ]);
    let log = text(&out.stderr);
    assert_eq!(
        misses(&log)[0],
        "LABEL version=$VERSION (Dockerfile:4): VERSION 1.2 → 1.3",
        "{log}"
    );
    // A file appears.
    p.file("app/new.go", "package main\n");
    let out = p.ok(&[
        "build",
        "--progress",
        "plain",
        "--build-arg",
        "VERSION=1.3",
        ".",
    ]);
    assert_eq!(
        misses(&text(&out.stderr))[0],
        "COPY app/ /app/ (Dockerfile:3): app/new.go added"
    );
}

#[test]
fn a_changed_base_image_is_named() {
    let p = Project::new();
    p.file("a.txt", "a")
        .file("Dockerfile", "FROM scratch\nCOPY a.txt /a\n");
    p.ok(&["build", "-t", "base:1", "."]);
    let child = p.path("child");
    fs_err::create_dir_all(&child).unwrap();
    fs_err::write(child.join("Dockerfile"), "FROM base:1\nLABEL x=1\n").unwrap();
    let run = |p: &Project| {
        text(
            &p.rbuild(&["build", "--progress", "plain", child.to_str().unwrap()])
                .stderr,
        )
    };
    run(&p);
    p.file("a.txt", "b");
    p.ok(&["build", "-t", "base:1", "."]);
    let log = run(&p);
    assert_eq!(
        misses(&log),
        ["LABEL x=1 (Dockerfile:2): FROM: base `base:1` changed"],
        "{log}"
    );
}

#[test]
fn no_cache_filter_reruns_only_that_stage() {
    let p = Project::new();
    p.file("a.txt", "a")
        .file("Dockerfile", "FROM scratch AS deps\nCOPY a.txt /a\nFROM scratch AS app\nCOPY --from=deps /a /b\nCOPY a.txt /c\n");
    p.ok(&["build", "."]);
    let out = p.ok(&[
        "build",
        "--progress",
        "plain",
        "--no-cache-filter",
        "app",
        ".",
    ]);
    let log = text(&out.stderr);
    // The stages run at once: read each step by its stage and instruction, not its place.
    let st = steps(&log);
    let cached = |stage: &str, what: &str| {
        st.iter()
            .find(|(s, _)| s.contains(&format!("[{stage} ")) && s.contains(what))
            .unwrap_or_else(|| panic!("no step {stage} {what}: {log}"))
            .1
    };
    assert!(cached("deps", "FROM scratch"), "{log}");
    assert!(cached("deps", "COPY a.txt /a"), "{log}");
    assert!(cached("app", "FROM scratch"), "{log}");
    assert!(!cached("app", "COPY --from=deps"), "{log}");
    assert!(!cached("app", "COPY a.txt /c"), "{log}");
    assert!(log.contains("(Dockerfile:4): --no-cache-filter"), "{log}");
    let out = p.rbuild(&["build", "--no-cache-filter", "nope", "."]);
    assert!(
        text(&out.stderr).contains("`nope` not found"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn explain_cache_names_every_changed_file_with_digests() {
    let p = Project::new();
    for i in 0..5 {
        p.file(&format!("src/f{i}.txt"), "v1");
    }
    p.file("Dockerfile", "FROM scratch\nCOPY src/ /src/\n");
    p.ok(&["build", "."]);
    for i in 0..5 {
        p.file(&format!("src/f{i}.txt"), "v3");
    }
    let short = text(&p.ok(&["build", "--progress", "plain", "."]).stderr);
    assert!(
        short.contains("src/f0.txt, src/f1.txt, src/f2.txt and 2 more changed"),
        "{short}"
    );
    for i in 0..5 {
        p.file(&format!("src/f{i}.txt"), "v4");
    }
    let full = text(
        &p.ok(&["build", "--progress", "plain", "--explain-cache", "."])
            .stderr,
    );
    let line = full
        .lines()
        .find(|l| l.contains("cache miss: COPY"))
        .unwrap_or_else(|| panic!("{full}"));
    assert!(
        line.contains("src/f4.txt (") && line.contains(" → ") && !line.contains("more"),
        "{line}"
    );
}

#[test]
fn a_step_whose_text_changed_is_rebuilt_as_its_history_records_the_text() {
    // Same meaning, other spacing: the history says what was written, so the cached result
    // (with the old text in its history) would be another image than a clean build gives.
    let p = Project::new();
    p.file("a.txt", "a")
        .file("Dockerfile", "FROM scratch\nCOPY   a.txt  /a\n");
    p.ok(&["build", "-q", "-t", "spaced", "."]);
    p.file("Dockerfile", "FROM scratch\nCOPY a.txt /a\n");
    let log = text(
        &p.ok(&["build", "--progress", "plain", "-t", "spaced", "."])
            .stderr,
    );
    assert!(!steps(&log)[1].1, "the step was a hit: {log}");
    let history = text(&p.ok(&["history", "spaced"]).stdout);
    assert!(history.contains("COPY a.txt /a"), "{history}");
    assert!(!history.contains("COPY   a.txt"), "{history}");
}

/// A hit makes its inputs the ones the next miss at that step is explained against (the record
/// is rewritten only when its key differs).
#[test]
fn a_miss_after_a_hit_is_explained_against_the_hit() {
    let p = Project::new();
    p.file("a.txt", "a").file(
        "Dockerfile",
        "FROM scratch\nARG V=1\nCOPY a.txt /a\nLABEL v=$V\n",
    );
    let with = |v: &str| {
        let out = p.ok(&[
            "build",
            "--progress",
            "plain",
            "--build-arg",
            &format!("V={v}"),
            ".",
        ]);
        text(&out.stderr)
    };
    with("1");
    with("2");
    // V=1 again: all hits; the record at the LABEL is V=1's once more.
    let log = with("1");
    assert!(misses(&log).is_empty(), "{log}");
    let log = with("3");
    assert_eq!(
        misses(&log)[0],
        "LABEL v=$V (Dockerfile:4): V 1 → 3",
        "{log}"
    );
}
