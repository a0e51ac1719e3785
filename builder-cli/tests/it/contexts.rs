//! Contexts besides the build's own: `--build-context NAME=DIR|docker-image://REF`.

use std::os::unix::process::CommandExt;

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

/// A git repository served by `git daemon` on 127.0.0.1, stopped when dropped.
pub(crate) struct GitServer {
    daemon: std::process::Child,
    base: std::path::PathBuf,
    port: u16,
}

impl GitServer {
    /// Serves `base`'s repositories; `repo` is made there with `files` as its first commit.
    pub(crate) fn start(p: &Project) -> Self {
        let base = p.path("served");
        fs_err::create_dir_all(&base).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        // git-daemon itself (`git daemon` would run it as a child a kill leaves behind), in a
        // process group of its own so the connections it forks go with it, and with no
        // descriptor of the test's: a straggler cannot hold the test's output open.
        let exec_path = crate::support::tool("git", "git")
            .arg("--exec-path")
            .output()
            .unwrap();
        let daemon = std::process::Command::new(
            std::path::Path::new(text(&exec_path.stdout).trim()).join("git-daemon"),
        )
        .args([
            "--reuseaddr",
            "--export-all",
            "--listen=127.0.0.1",
            "--init-timeout=10",
            "--timeout=60",
        ])
        .arg(format!("--port={port}"))
        .arg(format!("--base-path={}", base.display()))
        .arg(&base)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "git daemon did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        Self { daemon, base, port }
    }

    pub(crate) fn url(&self, repo: &str) -> String {
        format!("git://127.0.0.1:{}/{repo}", self.port)
    }

    /// `git ARGS` in repository `repo` (made on first use), by a fixed author.
    fn git(&self, repo: &str, args: &[&str]) -> String {
        let dir = self.base.join(repo);
        if !dir.join(".git").exists() && args[0] != "init" {
            fs_err::create_dir_all(&dir).unwrap();
            self.git(repo, &["init", "-q", "-b", "main"]);
        }
        let out = std::process::Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "git {args:?}: {}", text(&out.stderr));
        text(&out.stdout).trim().to_owned()
    }

    /// Writes `files` into `repo` and commits them; returns the commit.
    pub(crate) fn commit(&self, repo: &str, files: &[(&str, &str)]) -> String {
        self.git(repo, &["status", "-s"]);
        for (rel, content) in files {
            let path = self.base.join(repo).join(rel);
            fs_err::create_dir_all(path.parent().unwrap()).unwrap();
            fs_err::write(path, content).unwrap();
        }
        self.git(repo, &["add", "-A"]);
        self.git(repo, &["commit", "-qm", "change"]);
        self.git(repo, &["rev-parse", "HEAD"])
    }
}

impl Drop for GitServer {
    fn drop(&mut self) {
        // The whole group: the daemon and every connection it forked.
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.daemon.id())])
            .status();
        let _ = self.daemon.wait();
    }
}

#[test]
fn add_of_a_git_url_checks_out_its_commit_and_is_keyed_by_it() {
    let p = Project::new();
    let server = GitServer::start(&p);
    let first = server.commit("repo.git", &[("README", "one\n"), ("app/main.txt", "v1\n")]);
    server.git("repo.git", &["tag", "-a", "v1", "-m", "v1"]);
    let url = server.url("repo.git");
    p.file(
        "Dockerfile",
        &format!("FROM scratch\nADD --keep-git-dir=true {url}#v1:app /app\nADD {url}#main /src\n"),
    );
    let args = [
        "build",
        "--progress",
        "plain",
        "-o",
        "type=local,dest=../out",
        ".",
    ];
    p.ok(&args);
    assert_eq!(
        fs_err::read_to_string(p.path("out/src/README")).unwrap(),
        "one\n"
    );
    assert!(
        !p.path("out/src/.git").exists(),
        "a .git without --keep-git-dir"
    );
    assert_eq!(
        fs_err::read_to_string(p.path("out/app/main.txt")).unwrap(),
        "v1\n"
    );
    assert!(
        p.path("out/app/.git").exists()
            || p.path("out/.git").exists()
            || p.path("out/app").is_dir()
    );

    // The same commit: both steps hit. A new commit on main: the first misses, the tag's hits.
    let log = text(&p.ok(&args).stderr);
    assert!(cached(&log, &format!("ADD {url}#main /src")), "{log}");
    let second = server.commit("repo.git", &[("README", "two\n")]);
    let log = text(&p.ok(&args).stderr);
    assert!(
        !cached(&log, &format!("ADD {url}#main /src")),
        "a new commit hit the cache:\n{log}"
    );
    assert!(
        log.contains(&second),
        "the miss does not name the commit:\n{log}"
    );
    assert!(
        log.contains(&first),
        "the miss does not name the commit:\n{log}"
    );
    assert!(cached(&log, "--keep-git-dir"), "{log}");
    assert_eq!(
        fs_err::read_to_string(p.path("out/src/README")).unwrap(),
        "two\n"
    );

    // --checksum pins the commit: a full id that matches builds, another is refused.
    p.file(
        "Dockerfile",
        &format!("FROM scratch\nADD --checksum={second} {url}#main /src\n"),
    );
    p.ok(&args);
    p.file(
        "Dockerfile",
        &format!("FROM scratch\nADD --checksum={first} {url}#main /src\n"),
    );
    let err = text(&p.rbuild(&args).stderr);
    assert!(
        err.contains(&format!("not the `--checksum` {first}")),
        "{err}"
    );
}

#[test]
fn keep_git_dir_keeps_a_repository_at_the_commit() {
    let p = Project::new();
    let server = GitServer::start(&p);
    let commit = server.commit("r.git", &[("f", "x\n")]);
    p.file(
        "Dockerfile",
        &format!(
            "FROM scratch\nADD --keep-git-dir=true {}#main /r\n",
            server.url("r.git")
        ),
    );
    p.ok(&["build", "-o", "type=local,dest=../out", "."]);
    assert_eq!(fs_err::read_to_string(p.path("out/r/f")).unwrap(), "x\n");
    let head = std::process::Command::new("git")
        .args(["-C"])
        .arg(p.path("out/r"))
        .args(["rev-parse", "HEAD"])
        .output()
        .unwrap();
    assert_eq!(text(&head.stdout).trim(), commit);
}

#[test]
fn a_git_repository_cannot_reach_the_builders_disk() {
    let p = Project::new();
    let server = GitServer::start(&p);
    fs_err::write(p.path("host-secret"), "secret\n").unwrap();
    server.commit("evil.git", &[("ok.txt", "fine\n")]);
    let repo = server.base.join("evil.git");
    std::os::unix::fs::symlink(p.path("host-secret"), repo.join("leak")).unwrap();
    std::os::unix::fs::symlink("/", repo.join("root")).unwrap();
    server.git("evil.git", &["add", "-A"]);
    server.git("evil.git", &["commit", "-qm", "links"]);
    let url = server.url("evil.git");
    // A symlink in the repository stays a symlink: the host's file is not read.
    p.file("Dockerfile", &format!("FROM scratch\nADD {url}#main /r\n"));
    p.ok(&["build", "-o", "type=local,dest=../out", "."]);
    let leak = p.path("out/r/leak");
    assert!(
        fs_err::symlink_metadata(&leak)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    // A subdirectory through a symlink out of the checkout is refused, as a context and in ADD.
    for spec in [format!("{url}#main:root"), format!("{url}#main:root/etc")] {
        p.file("Dockerfile", &format!("FROM scratch\nADD {spec} /r\n"));
        let err = text(
            &p.rbuild(&["build", "-o", "type=local,dest=../out2", "."])
                .stderr,
        );
        assert!(
            err.contains("is not a directory inside the repository"),
            "{spec}: {err}"
        );
        let out = p.rbuild(&["build", "-o", "type=local,dest=../out3", &spec]);
        assert!(
            !out.status.success(),
            "a context outside the checkout was built"
        );
        assert!(
            text(&out.stderr).contains("inside the repository"),
            "{}",
            text(&out.stderr)
        );
    }
    // A local repository is not a git source: `file://` is refused by git, a path is the context's.
    for source in [
        format!("file://{}", repo.display()),
        "ext::sh -c id".to_owned(),
    ] {
        p.file(
            "Dockerfile",
            &format!("FROM scratch\nADD [\"{source}\", \"/r\"]\n"),
        );
        let out = p.rbuild(&["build", "-o", "type=local,dest=../out4", "."]);
        assert!(!out.status.success(), "`{source}` was read");
    }
    // An option where the ref goes is refused before git runs.
    p.file(
        "Dockerfile",
        &format!("FROM scratch\nADD {url}#--upload-pack=touch${{IFS}}/tmp/x /r\n"),
    );
    let err = text(&p.rbuild(&["build", "."]).stderr);
    assert!(err.contains("invalid ref"), "{err}");
}

#[test]
fn a_git_url_is_a_build_context_and_a_named_context() {
    let p = Project::new();
    let server = GitServer::start(&p);
    let first = server.commit(
        "app.git",
        &[
            (
                "app/Dockerfile",
                "FROM scratch\nCOPY --from=lib lib.txt /lib.txt\nCOPY hello.txt /hello.txt\n",
            ),
            ("app/hello.txt", "hello v1\n"),
            ("outside.txt", "not in the context\n"),
        ],
    );
    server.commit("lib.git", &[("lib.txt", "lib\n")]);
    let ctx = format!("{}#main:app", server.url("app.git"));
    let lib = format!("lib={}", server.url("lib.git"));
    let args = [
        "build",
        "--progress",
        "plain",
        "--build-context",
        &lib,
        "-o",
        "type=local,dest=../out",
        &ctx,
    ];
    let log = text(&p.ok(&args).stderr);
    assert!(log.contains(&format!("at commit {first}")), "{log}");
    assert_eq!(
        fs_err::read_to_string(p.path("out/hello.txt")).unwrap(),
        "hello v1\n"
    );
    assert_eq!(
        fs_err::read_to_string(p.path("out/lib.txt")).unwrap(),
        "lib\n"
    );
    let log = text(&p.ok(&args).stderr);
    assert!(
        cached(&log, "COPY hello.txt"),
        "the same commit missed:\n{log}"
    );
    server.commit("app.git", &[("app/hello.txt", "hello v2\n")]);
    let log = text(&p.ok(&args).stderr);
    assert!(
        !cached(&log, "COPY hello.txt"),
        "a changed file hit:\n{log}"
    );
    assert!(cached(&log, "COPY --from=lib"), "{log}");
    assert_eq!(
        fs_err::read_to_string(p.path("out/hello.txt")).unwrap(),
        "hello v2\n"
    );
}

#[test]
fn a_tarball_over_http_is_a_build_context() {
    let p = Project::new();
    let src = p.path("src");
    fs_err::create_dir_all(&src).unwrap();
    fs_err::write(src.join("Dockerfile"), "FROM scratch\nCOPY a.txt /a.txt\n").unwrap();
    fs_err::write(src.join("a.txt"), "from the tarball\n").unwrap();
    let tarball = p.path("ctx.tar.gz");
    let st = std::process::Command::new("tar")
        .arg("-czf")
        .arg(&tarball)
        .arg("-C")
        .arg(&src)
        .arg(".")
        .status()
        .unwrap();
    assert!(st.success());
    let body: &'static [u8] = Box::leak(fs_err::read(&tarball).unwrap().into_boxed_slice());
    let (url, _) = crate::build::serve(body);
    p.ok(&["build", "-o", "type=local,dest=../out", &url]);
    assert_eq!(
        fs_err::read_to_string(p.path("out/a.txt")).unwrap(),
        "from the tarball\n"
    );
    // Bounded as ADD <url> is: a cut archive is refused, not built from half.
    let out = p.rbuild(&[
        "build",
        "--max-download",
        "20",
        "-o",
        "type=local,dest=../out2",
        &url,
    ]);
    assert!(!out.status.success(), "a truncated context was built");
    assert!(!p.path("out2/a.txt").exists());
}
