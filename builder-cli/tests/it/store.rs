//! The store: prune, history, corruption never served.

use crate::support::{Project, text};

fn blob_count(p: &Project) -> usize {
    fs_err::read_dir(p.root().join("blobs/sha256"))
        .unwrap()
        .count()
}

#[test]
fn prune_keeps_what_tags_and_cache_need() {
    let p = Project::new();
    p.file("a.txt", "a")
        .file("Dockerfile", "FROM scratch\nCOPY a.txt /a\nLABEL x=1\n");
    p.ok(&["build", "-t", "keep:1", "."]);
    let before = blob_count(&p);
    let out = p.ok(&["prune"]);
    assert!(
        text(&out.stdout).contains("Deleted 0 cache records and 0 blobs"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(blob_count(&p), before);
    p.ok(&["rmi", "keep:1"]);
    p.ok(&["prune"]);
    // The layer stays for the step cache; manifest and config go.
    assert!(blob_count(&p) < before && blob_count(&p) > 0);
    let out = p.ok(&["build", "--progress", "plain", "-t", "keep:1", "."]);
    assert!(
        text(&out.stderr).contains("3 steps, 3 cached"),
        "{}",
        text(&out.stderr)
    );
    p.ok(&["rmi", "keep:1"]);
    let out = p.ok(&["prune", "--all"]);
    assert!(
        text(&out.stdout).contains("cache records"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(blob_count(&p), 0);
}

#[test]
fn history_lists_each_instruction() {
    let p = Project::new();
    p.file("a.txt", "a").file(
        "Dockerfile",
        "FROM scratch\nCOPY a.txt /a\nENV A=1\nCMD [\"x\"]\n",
    );
    p.ok(&["build", "-t", "h:1", "."]);
    let out = text(&p.ok(&["history", "h:1"]).stdout);
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("CREATED"), "{out}");
    assert!(
        lines[1].contains("CMD [\"x\"]")
            && lines[2].contains("ENV A=1")
            && lines[3].contains("COPY a.txt /a"),
        "{out}"
    );
    assert!(
        lines[3].trim_end().ends_with("kB") || lines[3].trim_end().ends_with('B'),
        "{out}"
    );
}

#[test]
fn a_corrupt_blob_is_never_served() {
    let p = Project::new();
    p.file("a.txt", "a")
        .file("Dockerfile", "FROM scratch\nCOPY a.txt /a\n");
    p.ok(&["build", "-t", "c:1", "."]);
    // Corrupt every blob; exporting must fail loudly rather than write bad bytes.
    for e in fs_err::read_dir(p.root().join("blobs/sha256")).unwrap() {
        let path = e.unwrap().path();
        let mut bytes = fs_err::read(&path).unwrap();
        bytes.push(b'!');
        fs_err::write(&path, bytes).unwrap();
    }
    let out = p.rbuild(&["save", "-o", p.path("x.tar").to_str().unwrap(), "c:1"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("corrupt"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        !p.path("x.tar").exists(),
        "a partial archive was left behind"
    );
}
