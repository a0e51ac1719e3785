//! Contexts besides the build's own: `--build-context NAME=DIR|docker-image://REF`.

use crate::support::{Project, import_busybox, text};

/// `#N CACHED` lines of a plain log, by the instruction of step N.
fn cached(log: &str, instruction: &str) -> bool {
    let step = log
        .lines()
        .find(|l| l.contains(instruction) && l.contains(" ["))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("no step `{instruction}` in:\n{log}"))
        .to_owned();
    log.lines().any(|l| l == format!("{step} CACHED"))
}

#[test]
fn a_directory_context_is_read_by_copy_from_and_replaces_a_stage_of_its_name() {
    let p = Project::new();
    let docs = p.path("docs");
    fs_err::create_dir_all(docs.join("guide")).unwrap();
    fs_err::write(docs.join("guide/intro.txt"), "intro v1\n").unwrap();
    fs_err::write(docs.join("draft.md"), "not for the image\n").unwrap();
    fs_err::write(docs.join(".dockerignore"), "*.md\n").unwrap();
    // The stage `docs` would give `stage.txt`: the named context overrides it, so it is not
    // even built.
    p.file("stage.txt", "from the stage\n").file(
        "Dockerfile",
        "FROM scratch AS docs\nCOPY stage.txt /guide/intro.txt\nFROM scratch\nCOPY --from=docs /guide /guide\nCOPY --from=docs . /all/\n",
    );
    let ctx = format!("docs={}", docs.display());
    let args = [
        "build",
        "--progress",
        "plain",
        "--build-context",
        &ctx,
        "-o",
        "type=local,dest=../out",
        ".",
    ];
    let log = text(&p.ok(&args).stderr);
    assert_eq!(
        fs_err::read_to_string(p.path("out/guide/intro.txt")).unwrap(),
        "intro v1\n"
    );
    assert!(
        !p.path("out/all/draft.md").exists(),
        "the named context's .dockerignore was not applied"
    );
    assert!(
        !log.contains("COPY stage.txt"),
        "the replaced stage ran:\n{log}"
    );

    // The same files hit the cache; a changed one misses it.
    let log = text(&p.ok(&args).stderr);
    assert!(cached(&log, "COPY --from=docs /guide /guide"), "{log}");
    fs_err::write(docs.join("guide/intro.txt"), "intro v2\n").unwrap();
    let log = text(&p.ok(&args).stderr);
    assert!(!cached(&log, "COPY --from=docs /guide /guide"), "{log}");
    assert_eq!(
        fs_err::read_to_string(p.path("out/guide/intro.txt")).unwrap(),
        "intro v2\n"
    );
    // An ignored file changing changes nothing.
    fs_err::write(docs.join("draft.md"), "edited\n").unwrap();
    let log = text(&p.ok(&args).stderr);
    assert!(cached(&log, "COPY --from=docs . /all/"), "{log}");

    // Without the flag, `docs` is the stage again.
    p.ok(&["build", "-o", "type=local,dest=../plain", "."]);
    assert_eq!(
        fs_err::read_to_string(p.path("plain/guide/intro.txt")).unwrap(),
        "from the stage\n"
    );
}

#[test]
fn a_directory_context_cannot_reach_outside_itself() {
    let p = Project::new();
    fs_err::write(p.path("secret"), "host secret\n").unwrap();
    let extra = p.path("extra");
    fs_err::create_dir_all(&extra).unwrap();
    std::os::unix::fs::symlink(p.path("secret"), extra.join("link")).unwrap();
    std::os::unix::fs::symlink(p.dir.path(), extra.join("up")).unwrap();
    let ctx = format!("extra={}", extra.display());
    for copy in [
        "COPY --from=extra link /x",
        "COPY --from=extra up/secret /x",
        "COPY --from=extra ../secret /x",
    ] {
        p.file("Dockerfile", &format!("FROM scratch\n{copy}\n"));
        let out = p.rbuild(&[
            "build",
            "--build-context",
            &ctx,
            "-o",
            "type=local,dest=../out",
            ".",
        ]);
        assert!(!out.status.success(), "`{copy}` read outside the context");
        let err = text(&out.stderr);
        assert!(err.contains("not found in"), "{copy}: {err}");
        assert!(err.contains("line 2"), "{copy}: {err}");
        assert!(!p.path("out/x").exists());
    }
}

#[test]
fn a_directory_context_binds_into_run() {
    let p = Project::new();
    import_busybox(&p.root());
    let data = p.path("data");
    fs_err::create_dir_all(&data).unwrap();
    fs_err::write(data.join("n.txt"), "41\n").unwrap();
    p.file(
        "Dockerfile",
        "FROM busybox\nRUN --mount=from=data,target=/d cat /d/n.txt > /seen\n",
    );
    let ctx = format!("data={}", data.display());
    let args = [
        "build",
        "--progress",
        "plain",
        "--build-context",
        &ctx,
        "-o",
        "type=local,dest=../out",
        ".",
    ];
    p.ok(&args);
    assert_eq!(fs_err::read_to_string(p.path("out/seen")).unwrap(), "41\n");
    let log = text(&p.ok(&args).stderr);
    assert!(cached(&log, "RUN --mount"), "{log}");
    fs_err::write(data.join("n.txt"), "42\n").unwrap();
    let log = text(&p.ok(&args).stderr);
    assert!(
        !cached(&log, "RUN --mount"),
        "a changed bound file hit the cache:\n{log}"
    );
    assert_eq!(fs_err::read_to_string(p.path("out/seen")).unwrap(), "42\n");
}

#[test]
fn an_image_context_stands_for_the_name_in_from_and_copy_from() {
    let p = Project::new();
    import_busybox(&p.root());
    p.file(
        "Dockerfile",
        "FROM base\nCOPY --from=tools /bin/busybox /opt/echo\nRUN /opt/echo ok > /ran\n",
    );
    // Neither `base` nor `tools` is an image anyone has.
    let err = text(&p.rbuild(&["build", "."]).stderr);
    assert!(err.contains("base"), "{err}");
    p.ok(&[
        "build",
        "--build-context",
        "base=docker-image://busybox:latest",
        "--build-context",
        "TOOLS=docker-image://busybox",
        "-o",
        "type=local,dest=../out",
        ".",
    ]);
    assert_eq!(fs_err::read_to_string(p.path("out/ran")).unwrap(), "ok\n");
    assert!(p.path("out/opt/echo").is_file());
}

#[test]
fn bad_build_contexts_are_refused_with_the_reason() {
    let p = Project::new();
    p.file("Dockerfile", "FROM site\n");
    fs_err::create_dir_all(p.path("site")).unwrap();
    let site = format!("site={}", p.path("site").display());
    for (flag, expected) in [
        ("nodir=../missing", "is not a directory"),
        ("=x", "expected NAME=VALUE"),
        ("x=ftp://host/x", "`ftp://` contexts are not supported"),
        ("x=docker-image://UPPER/Case", "invalid --build-context"),
        (site.as_str(), "FROM the directory context `site`"),
    ] {
        let out = p.rbuild(&["build", "--build-context", flag, "."]);
        assert!(!out.status.success(), "{flag} was taken");
        let err = text(&out.stderr);
        assert!(err.contains(expected), "{flag}: {err}");
    }
}
