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
        text(&out.stdout).contains("Deleted 0 cache records, 0 blobs,"),
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

/// Every blob's bytes hash to its name (a build killed before it opened the store left none).
fn verify_store(root: &std::path::Path) {
    use sha2::Digest as _;
    let blobs = root.join("blobs/sha256");
    if !blobs.exists() {
        return;
    }
    for e in fs_err::read_dir(blobs).unwrap() {
        let path = e.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = fs_err::read(&path).unwrap();
        let actual = hex::encode(sha2::Sha256::digest(&bytes));
        assert_eq!(actual, name, "blob {} does not verify", path.display());
    }
}

fn big_context(p: &Project, files: usize, size: usize) {
    let mut seed: u64 = 42;
    for i in 0..files {
        let mut body = Vec::with_capacity(size);
        while body.len() < size {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            body.extend_from_slice(&seed.to_le_bytes());
        }
        let path = p.ctx().join(format!("data/{:03}/{i}.bin", i % 17));
        fs_err::create_dir_all(path.parent().unwrap()).unwrap();
        fs_err::write(path, &body).unwrap();
    }
}

#[test]
fn killed_builds_leave_a_store_that_verifies() {
    let p = Project::new();
    big_context(&p, 120, 256 * 1024);
    p.file(
        "Dockerfile",
        "FROM scratch\nCOPY data/ /data/\nCOPY data/000 /again/\n",
    );
    // Kill at spread-out moments, fixed so the test is repeatable.
    for (round, delay_ms) in [5u64, 40, 90, 150, 220, 20, 300, 60]
        .into_iter()
        .enumerate()
    {
        let dest = format!(
            "type=oci,dest={}",
            p.path(&format!("out-{round}.tar")).display()
        );
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rbuild"))
            .arg("--root")
            .arg(p.root())
            .args([
                "build",
                "--no-cache",
                "--progress",
                "quiet",
                "-t",
                "big:1",
                "-o",
                &dest,
                ".",
            ])
            .current_dir(p.ctx())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        verify_store(&p.root());
        if let Ok(d) = fs_err::read_to_string(p.root().join("tags/big%3A1")) {
            assert!(d.trim().starts_with("sha256:"), "torn tag file: {d:?}");
        }
    }
    // The store still works, and an interrupted export left no half-written archive.
    p.ok(&["build", "-t", "big:1", "."]);
    verify_store(&p.root());
    for e in fs_err::read_dir(p.dir.path()).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            !name.starts_with(".tmp"),
            "temp file left beside the outputs: {name}"
        );
    }
}

#[test]
fn two_builds_at_once_on_one_root() {
    let a = Project::new();
    big_context(&a, 40, 64 * 1024);
    a.file(
        "Dockerfile",
        "FROM scratch\nCOPY data/ /data/\nLABEL which=a\n",
    );
    let b_ctx = a.path("ctx-b");
    fs_err::create_dir_all(&b_ctx).unwrap();
    let st = std::process::Command::new("cp")
        .arg("-a")
        .arg(a.ctx().join("data"))
        .arg(&b_ctx)
        .status()
        .unwrap();
    assert!(st.success());
    fs_err::write(
        b_ctx.join("Dockerfile"),
        "FROM scratch\nCOPY data/ /data/\nLABEL which=b\n",
    )
    .unwrap();
    let spawn = |ctx: &std::path::Path, tag: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_rbuild"))
            .arg("--root")
            .arg(a.root())
            .args(["build", "--progress", "quiet", "-t", tag, "."])
            .current_dir(ctx)
            .output()
    };
    let (ra, rb) = std::thread::scope(|s| {
        let ha = s.spawn(|| spawn(&a.ctx(), "par:a"));
        let hb = s.spawn(|| spawn(&b_ctx, "par:b"));
        (ha.join().unwrap().unwrap(), hb.join().unwrap().unwrap())
    });
    assert!(ra.status.success(), "{}", text(&ra.stderr));
    assert!(rb.status.success(), "{}", text(&rb.stderr));
    verify_store(&a.root());
    let label = |tag: &str| {
        let v: serde_json::Value = serde_json::from_slice(&a.ok(&["inspect", tag]).stdout).unwrap();
        v["Config"]["config"]["Labels"]["which"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(
        (label("par:a"), label("par:b")),
        ("a".to_owned(), "b".to_owned())
    );
}
