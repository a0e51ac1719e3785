//! Issue 11: never a stale cache hit. Each test is a build that gave the old image (or a
//! wrong explanation) before its rule existed.

use std::os::unix::fs::PermissionsExt;

use crate::support::{Project, import_busybox, text, untimed};

fn project(dockerfile: &str) -> Project {
    let p = Project::new();
    import_busybox(&p.root());
    p.file("Dockerfile", dockerfile);
    p
}

fn build(p: &Project, extra: &[&str]) -> String {
    let mut args = vec!["build", "--progress", "plain"];
    args.extend_from_slice(extra);
    args.push(".");
    untimed(&text(&p.ok(&args).stderr))
}

/// A build arg the RUN's text never names still reaches it through the environment: a new
/// value reruns the RUN (BuildKit's rule), and the image says so.
#[test]
fn issue_11_a_changed_build_arg_reruns_every_run_that_sees_it() {
    let p = project("FROM busybox\nARG V\nCOPY s.sh /s.sh\nRUN /s.sh\n");
    p.file("s.sh", "#!/bin/sh\necho \"v=$V\" > /v.txt\n");
    fs_err::set_permissions(p.ctx().join("s.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    for v in ["one", "two", "one"] {
        let arg = format!("V={v}");
        let log = build(&p, &["--build-arg", &arg, "-t", "v:1"]);
        let out = p.ok(&["run", "v:1", "cat", "/v.txt"]);
        assert_eq!(text(&out.stdout), format!("v={v}\n"), "{log}");
    }
    // The explanation names the variable.
    let log = build(&p, &["--build-arg", "V=three", "-t", "v:1"]);
    assert!(log.contains("V one → three"), "{log}");
}

/// `RUN --network=$NET` is expanded before it is used: `NET=none` gives only a loopback, and a
/// value that is no network is an error naming the flag and the line.
#[test]
fn issue_11_run_network_is_expanded_before_use() {
    let p = project(
        "FROM busybox\nARG NET=none\nRUN --network=$NET cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' ' | sed 's/^/if=/'\n",
    );
    let log = build(&p, &[]);
    let ifaces: Vec<&str> = log.lines().filter(|l| l.contains(" if=")).collect();
    assert_eq!(ifaces, ["#3 if=lo"], "{log}");
    let out = p.rbuild(&["build", "--build-arg", "NET=bogus", "."]);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("--network") && err.contains("bogus"), "{err}");
    assert!(err.contains("line 3") || err.contains(":3"), "{err}");
}

/// Requirement 3: mount options that take numbers are expanded too (BuildKit expands every
/// mount option) and read after expansion; a value that is no number then is an error naming
/// the option.
#[test]
fn issue_11_mount_numbers_are_expanded_before_use() {
    let p = project(
        "FROM busybox\nARG U=1234\nARG M=0750\nARG S=1m\n\
         RUN --mount=type=cache,target=/c,uid=$U,gid=${U},mode=$M \\\n\
             --mount=type=tmpfs,target=/t,size=$S \\\n\
             echo \"got=$(stat -c '%u:%g:%a' /c) $(df -k /t | tail -1 | awk '{print $2}')\"\n",
    );
    let log = build(&p, &[]);
    assert!(log.contains("got=1234:1234:750 1024"), "{log}");
    let out = p.rbuild(&["build", "--build-arg", "M=rwx", "."]);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("--mount") && err.contains("mode=rwx"), "{err}");
}

/// The key holds no source position: lines added above a heredoc RUN and an ONBUILD trigger
/// leave every step CACHED.
#[test]
fn issue_11_comments_above_a_heredoc_and_an_onbuild_change_no_key() {
    let body = "FROM busybox AS base\nONBUILD RUN echo trig > /t\nRUN <<EOF\necho hi > /h\nEOF\nFROM base\nRUN cat /t /h\n";
    let p = project(body);
    let first = build(&p, &[]);
    assert!(first.contains("cache miss"), "{first}");
    p.file(
        "Dockerfile",
        &format!(
            "# a comment\n\n{}",
            body.replace("RUN <<EOF", "# another\n\nRUN <<EOF")
        ),
    );
    let second = build(&p, &[]);
    assert!(!second.contains("cache miss"), "a step missed:\n{second}");
}

/// A miss caused by the network says so.
#[test]
fn issue_11_a_network_miss_is_explained_as_the_network() {
    let p = project("FROM busybox\nRUN echo x\n");
    build(&p, &[]);
    let log = build(&p, &["--network", "none"]);
    assert!(log.contains("network private → none"), "{log}");
    let log = build(&p, &["--network", "none"]);
    assert!(log.contains("#2 CACHED"), "{log}");
}

/// One instruction of the small grammar the property below draws Dockerfiles from.
fn instruction(kind: u8, i: usize) -> String {
    match kind % 7 {
        0 => format!("ENV E{i}=v{i}"),
        1 => format!("LABEL l{i}=x{i}"),
        2 => format!("WORKDIR /w{i}"),
        3 => format!("RUN echo {i} > /f{i}"),
        4 => format!("RUN <<EOF\necho h{i} > /h{i}\nEOF"),
        5 => format!("COPY f.txt /c{i}"),
        _ => format!("RUN echo $E{} \\\n  > /g{i}", i.saturating_sub(1)),
    }
}

/// The RUN steps of `lines` (the Dockerfile's instructions, one a string).
fn runs(lines: &[String]) -> usize {
    lines.iter().filter(|l| l.starts_with("RUN")).count()
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 8, ..Default::default() })]

    /// For Dockerfiles from a small grammar: blank and comment lines inserted anywhere between
    /// instructions change no step's key (the rebuild is all CACHED), and a new value of the
    /// build arg every RUN sees reruns every RUN.
    #[test]
    fn issue_11_positions_never_key_and_every_run_sees_the_args(
        kinds in proptest::collection::vec(0u8..7, 1..7),
        gaps in proptest::collection::vec(0u8..3, 8),
    ) {
        let mut lines = vec!["FROM busybox".to_owned(), "ARG A".to_owned()];
        lines.extend(kinds.iter().enumerate().map(|(i, k)| instruction(*k, i)));
        let p = project(&(lines.join("\n") + "\n"));
        p.file("f.txt", "f\n");
        let first = build(&p, &["--network", "none", "--build-arg", "A=1"]);
        let mut spaced = String::new();
        for (i, l) in lines.iter().enumerate() {
            match gaps.get(i).copied().unwrap_or(0) {
                1 => spaced.push_str("\n\n"),
                2 => spaced.push_str("# a comment\n  # another\n"),
                _ => {}
            }
            spaced.push_str(l);
            spaced.push('\n');
        }
        p.file("Dockerfile", &spaced);
        let again = build(&p, &["--network", "none", "--build-arg", "A=1"]);
        proptest::prop_assert!(!again.contains("cache miss"), "{spaced}\n{first}\n{again}");
        let changed = build(&p, &["--network", "none", "--build-arg", "A=2"]);
        let misses = changed.lines().filter(|l| l.contains("cache miss: RUN")).count();
        proptest::prop_assert_eq!(misses, runs(&lines), "{}\n{}", spaced, changed);
    }
}

fn config_env(p: &Project, image: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_slice(&p.ok(&["inspect", image]).stdout).unwrap();
    v["Config"]["config"]["Env"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Rule 1: every Linux image config has a PATH, BuildKit's default where the base has none.
#[test]
fn issue_11_a_stage_from_scratch_gets_the_default_path() {
    let p = Project::new();
    p.file("a", "a\n")
        .file("Dockerfile", "FROM scratch\nENV X=1\nCOPY a /a\n");
    p.ok(&["build", "-t", "s:1", "."]);
    assert_eq!(
        config_env(&p, "s:1"),
        [
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "X=1"
        ]
    );
}

/// Rule 2: `ENV a=new b=$a` expands every value against the environment before it.
#[test]
fn issue_11_env_expands_against_the_environment_before_the_instruction() {
    let p = project("FROM busybox\nENV a=old\nENV a=new b=$a\nRUN echo \"a=$a b=$b\" > /r\n");
    p.ok(&["build", "-t", "e:1", "."]);
    let env = config_env(&p, "e:1");
    assert!(env.contains(&"b=old".to_owned()), "{env:?}");
    assert!(env.contains(&"a=new".to_owned()), "{env:?}");
    let out = p.ok(&["run", "e:1", "cat", "/r"]);
    assert_eq!(text(&out.stdout), "a=new b=old\n");
}

/// Rule 3: `USER 4321` with no passwd entry runs as 4321:0; a user name the image does not
/// have is an error, not root.
#[test]
fn issue_11_user_resolves_as_the_runtime_does() {
    let p = project("FROM busybox\nUSER 4321\nRUN echo \"ids=$(id -u):$(id -g)\"\n");
    let log = build(&p, &[]);
    assert!(log.contains("ids=4321:0"), "{log}");
    p.file("Dockerfile", "FROM busybox\nUSER ghost\nRUN id -u\n");
    let out = p.rbuild(&["build", "."]);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "ran as someone:\n{err}");
    assert!(err.contains("unable to find user ghost"), "{err}");
}

/// Rule 7: destinations resolve through symlinks already in the image, inside the image's root:
/// `WORKDIR /w/sub` where `/w` links to `/real`, then `COPY a.txt .`, lands in `/real/sub`; a
/// link to an absolute path is the image's path, never the host's.
#[test]
fn issue_11_destinations_resolve_through_the_images_links() {
    let host = tempfile::tempdir().unwrap();
    let p = project(&format!(
        "FROM busybox\nRUN mkdir /real && ln -s /real /w && ln -s {} /abs\n\
         WORKDIR /w/sub\nCOPY a.txt .\nCOPY a.txt /abs/b.txt\n",
        host.path().display()
    ));
    p.file("a.txt", "a\n");
    p.ok(&["build", "-t", "l:1", "."]);
    let out = p.ok(&[
        "run",
        "l:1",
        "sh",
        "-c",
        "readlink /w; cat /real/sub/a.txt; find / -name b.txt -xdev",
    ]);
    assert_eq!(
        text(&out.stdout),
        format!("/real\na\n{}/b.txt\n", host.path().display())
    );
    assert!(
        !host.path().join("b.txt").exists(),
        "COPY wrote on the host"
    );
}

/// Rule 9: a stage name used twice is a warning, and a reference is to the last stage of it.
#[test]
fn issue_11_a_stage_name_used_twice_warns_and_the_last_wins() {
    let p = project(
        "FROM busybox AS x\nRUN echo one > /n\nFROM busybox AS X\nRUN echo two > /n\nFROM busybox\nCOPY --from=x /n /n\nRUN cat /n\n",
    );
    let log = build(&p, &[]);
    assert!(
        log.contains("warning: duplicate stage name `x` (first defined on line 1) (Dockerfile:3)"),
        "{log}"
    );
    assert!(log.contains("#5 two"), "{log}");
    let out = p.ok(&["parse", "--check"]);
    assert!(
        text(&out.stderr).contains("duplicate stage name"),
        "{}",
        text(&out.stderr)
    );
}

/// Rule 10: errors BuildKit gives — `COPY --from` with a stage-level variable, a destination
/// through a file of the image, an unknown STOPSIGNAL — each naming what and where.
#[test]
fn issue_11_errors_buildkit_gives() {
    let p = project("FROM busybox\n");
    p.file("a.txt", "a\n");
    for (dockerfile, expect) in [
        (
            "FROM busybox\nARG S=busybox\nCOPY --from=$S /bin/sh /x\n",
            "variable expansion is not supported for --from",
        ),
        (
            "FROM busybox\nRUN touch /f\nCOPY a.txt /f/x\n",
            "cannot make `/f` a directory: not a directory",
        ),
        (
            "FROM busybox\nSTOPSIGNAL SIGBOGUS\n",
            "invalid STOPSIGNAL value `SIGBOGUS`",
        ),
    ] {
        p.file("Dockerfile", dockerfile);
        let out = p.rbuild(&["build", "."]);
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{dockerfile}: built");
        assert!(err.contains(expect), "{dockerfile}: {err}");
        let line = dockerfile.lines().count();
        assert!(
            err.contains(&format!("line {line}")) || err.contains(&format!(":{line}:")),
            "{dockerfile}: no line in {err}"
        );
    }
    // A global ARG in --from is expanded, as BuildKit does.
    p.file(
        "Dockerfile",
        "ARG S=busybox\nFROM busybox\nCOPY --from=$S /bin/busybox /x\n",
    );
    p.ok(&["build", "."]);
}

/// Rules 4–6: a source with `..` is clamped to the context root; a symlink named as a source
/// is followed and the copy keeps the link's name; hard links between context files are not
/// kept (each is a file of its own: the layer has no link entry).
#[test]
fn issue_11_context_sources_as_buildkit_reads_them() {
    let p = project(
        "FROM busybox\nCOPY ../a.txt /clamped/\nCOPY link.txt /named/\nCOPY a.txt hard.txt /hard/\n\
         RUN cat /clamped/a.txt /named/link.txt && ls /named && test ! -L /named/link.txt && echo not-a-link\n",
    );
    p.file("a.txt", "A\n");
    std::os::unix::fs::symlink("a.txt", p.ctx().join("link.txt")).unwrap();
    fs_err::hard_link(p.ctx().join("a.txt"), p.ctx().join("hard.txt")).unwrap();
    let fs_tar = p.path("fs.tar");
    let output = format!("type=tar,dest={}", fs_tar.display());
    let log = build(&p, &["-o", &output]);
    for expect in ["#5 A", "#5 link.txt", "#5 not-a-link"] {
        assert!(log.contains(expect), "no `{expect}`:\n{log}");
    }
    let listing = crate::support::tar_listing(&fs_tar);
    assert!(listing.contains("hard/hard.txt"), "{listing}");
    assert!(
        !listing.contains(" link to "),
        "a hard link was kept:\n{listing}"
    );
}

/// Rule 8: ADD of a local archive: entries are 0:0 (the archive's owners are not kept), a
/// directory the image has keeps its mode and owner (`/tmp` stays 1777), and a file named
/// like an archive that is none is copied as it is.
#[test]
fn issue_11_add_of_a_local_archive_as_buildkit_extracts_it() {
    let p = project(
        "FROM busybox\nADD a.tar /\nADD fake.tar.gz /f/\n\
         RUN stat -c '%n %a %u:%g' /tmp /tmp/x /opt/y && cat /f/fake.tar.gz\n",
    );
    let mut b = tar::Builder::new(Vec::new());
    for (path, mode, data) in [
        ("tmp/", 0o755, &b""[..]),
        ("tmp/x", 0o644, &b"x\n"[..]),
        ("opt/y", 0o644, &b"y\n"[..]),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(if path.ends_with('/') {
            tar::EntryType::Directory
        } else {
            tar::EntryType::Regular
        });
        h.set_mode(mode);
        h.set_uid(1000);
        h.set_gid(1000);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, path, data).unwrap();
    }
    fs_err::write(p.ctx().join("a.tar"), b.into_inner().unwrap()).unwrap();
    p.file("fake.tar.gz", "not an archive\n");
    let log = build(&p, &[]);
    for expect in [
        "#4 /tmp 1777 0:0",
        "#4 /tmp/x 644 0:0",
        "#4 /opt/y 644 0:0",
        "#4 not an archive",
    ] {
        assert!(log.contains(expect), "no `{expect}`:\n{log}");
    }
}

/// Reproducible by default, RUN included: two fresh stores (different roots, builds seconds
/// apart) give the same image digest for a Dockerfile whose RUN reads what COPY wrote (the
/// directory times of the unpacked layer) and whose last RUN makes files, with and without
/// `SOURCE_DATE_EPOCH`. With `--no-reproducible` the RUN's files keep the clock's time.
///
/// The listing is of what the layers made (`/data`, `/etc`), not of `/`: `/proc` and the files
/// this very RUN is writing carry the running clock, which no builder can make reproducible
/// without faking it.
#[test]
fn issue_11_two_fresh_stores_give_the_same_image() {
    let dockerfile = "FROM busybox\nCOPY data/ /data/\n\
        RUN tar -cf /all.tar /data && ls -lR --full-time /data /etc > /listing\n\
        RUN mkdir -p /made/deep && echo x > /made/deep/f && touch /made/g\n";
    let p = project(dockerfile);
    for f in ["data/a.txt", "data/sub/b.txt", "data/sub/deeper/c.txt"] {
        p.file(f, f);
    }
    let digest = |root: &std::path::Path, sde: Option<&str>, extra: &[&str]| {
        let mut args = vec!["build", "--progress", "plain", "-t", "r:1"];
        args.extend_from_slice(extra);
        args.push(".");
        let mut cmd = p.command_in(root, &args);
        if let Some(s) = sde {
            cmd.env("SOURCE_DATE_EPOCH", s);
        }
        let out = cmd.output().unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        let v: serde_json::Value =
            serde_json::from_slice(&p.rbuild_in(root, &["inspect", "r:1"]).stdout).unwrap();
        v["Digest"].as_str().unwrap().to_owned()
    };
    for sde in [None, Some("1700000000")] {
        let (a, b) = (p.path(&format!("a{sde:?}")), p.path(&format!("b{sde:?}")));
        import_busybox(&a);
        let first = digest(&a, sde, &[]);
        std::thread::sleep(std::time::Duration::from_millis(1100));
        import_busybox(&b);
        let second = digest(&b, sde, &[]);
        assert_eq!(first, second, "SOURCE_DATE_EPOCH={sde:?}");
    }
    // Without the clamp a RUN's files keep the clock's time, so the image moves.
    let c = p.path("c");
    import_busybox(&c);
    let out = p.rbuild_in(
        &c,
        &[
            "build",
            "--no-reproducible",
            "-o",
            "type=local,dest=../out",
            ".",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let made = fs_err::metadata(p.path("out/made/g")).unwrap();
    let age = std::time::SystemTime::now()
        .duration_since(made.modified().unwrap())
        .unwrap();
    assert!(age.as_secs() < 600, "{age:?}");
    // And by default they are the epoch of the README: 2000-01-01T00:00:00Z.
    let out = p.rbuild_in(&c, &["build", "-o", "type=local,dest=../out2", "."]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for f in [
        "out2/made/g",
        "out2/made/deep",
        "out2/all.tar",
        "out2/data/sub",
    ] {
        let m = fs_err::symlink_metadata(p.path(f)).unwrap();
        let t = m
            .modified()
            .unwrap()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        assert_eq!(t.as_secs(), 946_684_800, "{f}");
    }
}
