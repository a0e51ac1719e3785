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
    let mut out = Vec::new();
    for line in log.lines() {
        if let Some(rest) = line.strip_prefix('#') {
            let (n, what) = rest.split_once(' ').unwrap_or((rest, ""));
            if what.starts_with('[') {
                out.push((format!("{n} {what}"), false));
            } else if what == "CACHED" {
                out.last_mut().unwrap().1 = true;
            }
        }
    }
    out
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
