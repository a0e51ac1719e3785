//! `rbuild build`: images without RUN, reproducible to the byte, errors that name the line.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use crate::support::{Project, text};

fn demo() -> Project {
    let p = Project::new();
    p.file("app/hello.txt", "hello\n")
        .file("app/sub/w.txt", "world\n")
        .file("notes.md", "ignored\n")
        .file(".dockerignore", "*.md\n")
        .file(
            "Dockerfile",
            "FROM scratch AS base\nCOPY app/ /app/\nENV GREETING=hello\nFROM base\nWORKDIR /srv\nCOPY --chmod=0755 app/hello.txt ./hello\nCOPY --from=base /app/sub/w.txt /copied.txt\nCOPY <<EOF /etc/motd\ngreeting is ${GREETING}\nEOF\nLABEL org.example=yes\nEXPOSE 8080 9000-9001/UDP\nCMD [\"/srv/hello\"]\n",
        );
    p
}

fn inspect(p: &Project, image: &str) -> serde_json::Value {
    let out = p.ok(&["inspect", image]);
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn builds_tags_and_records_the_config() {
    let p = demo();
    let out = p.ok(&["build", "-t", "demo:v1", "--progress", "plain", "."]);
    let log = text(&out.stderr);
    assert!(
        log.contains("#2 [base 2/11] COPY app/ /app/ (line 2)"),
        "{log}"
    );
    assert!(log.contains("naming to demo:v1"), "{log}");
    let img = inspect(&p, "demo:v1");
    let cfg = &img["Config"]["config"];
    // BuildKit's PATH first (the base is scratch), then the Dockerfile's.
    assert_eq!(
        cfg["Env"][0],
        "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    );
    assert_eq!(cfg["Env"][1], "GREETING=hello");
    assert_eq!(cfg["WorkingDir"], "/srv");
    assert_eq!(cfg["Cmd"][0], "/srv/hello");
    assert_eq!(cfg["Labels"]["org.example"], "yes");
    let ports: Vec<&String> = cfg["ExposedPorts"].as_object().unwrap().keys().collect();
    assert_eq!(ports, ["8080/tcp", "9000/udp", "9001/udp"]);
    assert_eq!(img["Config"]["created"], "2000-01-01T00:00:00Z");
    let history = img["Config"]["history"].as_array().unwrap();
    let layers = img["Config"]["rootfs"]["diff_ids"].as_array().unwrap();
    let non_empty = history.iter().filter(|h| h["empty_layer"] != true).count();
    assert_eq!(non_empty, layers.len(), "history and layers disagree");
    let listing = text(&p.ok(&["images"]).stdout);
    assert!(
        listing.contains("demo") && listing.contains("v1"),
        "{listing}"
    );
}

#[test]
fn two_roots_give_identical_archives_and_mtimes_change_nothing() {
    let p = demo();
    let oci = |root: &str, out: &str| {
        let spec_oci = format!("type=oci,dest={}", p.path(out).display());
        let spec_docker = format!("type=docker,dest={}.docker", p.path(out).display());
        let o = p.rbuild_in(
            &p.path(root),
            &[
                "build",
                "-q",
                "-t",
                "demo:v1",
                "-o",
                &spec_oci,
                "-o",
                &spec_docker,
                ".",
            ],
        );
        assert!(o.status.success(), "{}", text(&o.stderr));
        text(&o.stdout).trim().to_owned()
    };
    let id1 = oci("root-a", "a.tar");
    let id2 = oci("root-b", "b.tar");
    assert_eq!(id1, id2);
    assert_eq!(
        fs_err::read(p.path("a.tar")).unwrap(),
        fs_err::read(p.path("b.tar")).unwrap(),
        "OCI archives differ"
    );
    assert_eq!(
        fs_err::read(p.path("a.tar.docker")).unwrap(),
        fs_err::read(p.path("b.tar.docker")).unwrap(),
        "docker archives differ"
    );
    // Only mtimes change: no digest changes.
    let t = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    fs_err::File::options()
        .write(true)
        .open(p.ctx().join("app/hello.txt"))
        .unwrap()
        .set_modified(t)
        .unwrap();
    assert_eq!(
        oci("root-c", "c.tar"),
        id1,
        "touching a file changed the image"
    );
    // One byte changes: that COPY's layer and no earlier one.
    let layers = |tag_root: &str| p.diff_ids_in(&p.path(tag_root), "demo:v1");
    let before = layers("root-a");
    p.file("app/sub/w.txt", "World\n");
    oci("root-a", "d.tar");
    let after = layers("root-a");
    assert_ne!(before[0], after[0], "the changed COPY kept its layer");
    assert_eq!(
        before[1..3],
        after[1..3],
        "layers that do not read the file changed"
    );
}

#[test]
fn source_date_epoch_sets_the_times() {
    let p = demo();
    p.ok(&[
        "build",
        "-q",
        "-t",
        "demo:sde",
        "--source-date-epoch",
        "1700000000",
        ".",
    ]);
    assert_eq!(
        inspect(&p, "demo:sde")["Config"]["created"],
        "2023-11-14T22:13:20Z"
    );
}

#[test]
fn missing_source_names_it_and_the_line() {
    let p = Project::new();
    p.file("Dockerfile", "FROM scratch\nCOPY nope.txt /x\n");
    let out = p.rbuild(&["build", "."]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("COPY failed (Dockerfile line 2)"), "{err}");
    assert!(
        err.contains("`nope.txt` not found in the build context"),
        "{err}"
    );
    assert!(err.contains("2 | COPY nope.txt /x"), "{err}");
}

#[test]
fn sources_outside_the_context_are_refused() {
    let p = Project::new();
    fs_err::write(p.path("secret"), "s").unwrap();
    // `..` stops at the context's root, as BuildKit reads it: the context's own `secret`.
    p.file("Dockerfile", "FROM scratch\nCOPY ../secret /x\n");
    let err = text(&p.rbuild(&["build", "."]).stderr);
    assert!(err.contains("not found in the build context"), "{err}");
    p.file("secret", "inside");
    p.ok(&["build", "-o", "type=local,dest=../clamped", "."]);
    assert_eq!(
        fs_err::read_to_string(p.path("clamped/x")).unwrap(),
        "inside"
    );
    fs_err::remove_file(p.ctx().join("secret")).unwrap();
    std::os::unix::fs::symlink(p.path("secret"), p.ctx().join("link")).unwrap();
    p.file("Dockerfile", "FROM scratch\nCOPY link /x\n");
    let out = p.rbuild(&["build", "-o", "type=local,dest=../out", "."]);
    let err = text(&out.stderr);
    assert!(
        !out.status.success(),
        "a symlink out of the context was followed"
    );
    assert!(err.contains("not found in the build context"), "{err}");
}

#[test]
fn dockerignored_files_are_not_sources() {
    let p = demo();
    p.file("Dockerfile", "FROM scratch\nCOPY notes.md /\n");
    let err = text(&p.rbuild(&["build", "."]).stderr);
    assert!(err.contains("excluded by .dockerignore"), "{err}");
    p.file("Dockerfile", "FROM scratch\nCOPY . /all/\n");
    p.ok(&["build", "-o", "type=local,dest=../out", "."]);
    assert!(p.path("out/all/app/hello.txt").is_file());
    assert!(
        !p.path("out/all/notes.md").exists(),
        "an ignored file was copied"
    );
}

#[test]
fn run_without_a_shell_says_so() {
    let p = Project::new();
    p.file("Dockerfile", "FROM scratch\nRUN echo hi\n");
    let out = p.rbuild(&["build", "."]);
    let err = text(&out.stderr);
    assert!(err.contains("RUN failed (Dockerfile line 2)"), "{err}");
    assert!(err.contains("exited with status 127"), "{err}");
    assert!(
        err.contains("exec /bin/sh") && err.contains("No such file"),
        "{err}"
    );
}

#[test]
fn chown_names_come_from_the_image() {
    let p = Project::new();
    p.file(
        "etc/passwd",
        "root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n",
    )
    .file("etc/group", "root:x:0:\napp:x:1001:\nstaff:x:50:\n")
    .file("data.txt", "d")
    .file("Dockerfile", "FROM scratch\nCOPY etc/ /etc/\n");
    p.ok(&["build", "-t", "base:1", "."]);
    p.file(
        "Dockerfile",
        "FROM base:1\nCOPY --chown=app data.txt /a\nCOPY --chown=app:staff data.txt /b\nCOPY --chown=nobody:ghosts data.txt /c\nCOPY --chmod=u=rwX,go=rX data.txt /d\n",
    );
    p.ok(&["build", "-o", "type=local,dest=../out", "."]);
    let owner = |f: &str| {
        let m = fs_err::metadata(p.path("out").join(f)).unwrap();
        (m.uid(), m.gid(), m.mode() & 0o7777)
    };
    assert_eq!(owner("a"), (1000, 1001, 0o644));
    assert_eq!(owner("b"), (1000, 50, 0o644));
    assert_eq!(owner("c"), (0, 0, 0o644));
    assert_eq!(owner("d").2, 0o644);
}

#[test]
fn add_extracts_local_archives() {
    let p = Project::new();
    let tar_path = p.ctx().join("files.tar.gz");
    {
        let f = fs_err::File::create(&tar_path).unwrap();
        let gz = flate2::write::GzEncoder::new(f, flate2::Compression::default());
        let mut b = tar::Builder::new(gz);
        let mut h = tar::Header::new_ustar();
        h.set_path("inner/x.txt").unwrap();
        h.set_size(2);
        h.set_mode(0o600);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        b.append(&h, &b"hi"[..]).unwrap();
        b.into_inner().unwrap().finish().unwrap();
    }
    p.file(
        "Dockerfile",
        "FROM scratch\nADD files.tar.gz /opt/\nCOPY files.tar.gz /raw/\n",
    );
    p.ok(&["build", "-o", "type=local,dest=../out", "."]);
    assert_eq!(
        fs_err::read_to_string(p.path("out/opt/inner/x.txt")).unwrap(),
        "hi"
    );
    assert!(
        p.path("out/raw/files.tar.gz").is_file(),
        "COPY must not extract"
    );
}

#[test]
fn unused_stages_are_skipped_and_target_picks_a_stage() {
    let p = Project::new();
    p.file("a.txt", "a")
        .file("Dockerfile", "FROM scratch AS one\nCOPY a.txt /one\nFROM scratch AS broken\nCOPY missing /x\nFROM one\nCOPY a.txt /two\n");
    let out = p.ok(&["build", "--progress", "plain", "."]);
    assert!(
        text(&out.stderr).contains("skipping stage broken"),
        "{}",
        text(&out.stderr)
    );
    let out = p.rbuild(&["build", "--target", "broken", "."]);
    assert!(!out.status.success());
    let out = p.rbuild(&["build", "--target", "nope", "."]);
    assert!(
        text(&out.stderr).contains("target stage `nope` not found; stages: one, broken, 2"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn builds_on_the_busybox_base() {
    let p = Project::new();
    crate::support::import_busybox(&p.root());
    let hello = crate::support::hello_fixture();
    let dest = format!("type=local,dest={}", p.path("out").display());
    let out = p.rbuild(&[
        "build",
        "-t",
        "hello:v1",
        "-o",
        &dest,
        hello.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let m = fs_err::metadata(p.path("out/app/hello.sh")).unwrap();
    assert_eq!((m.uid(), m.gid(), m.mode() & 0o7777), (65534, 65534, 0o755));
    assert_eq!(
        fs_err::read_to_string(p.path("out/etc/motd")).unwrap(),
        "hello from rbuild\n"
    );
    assert!(
        fs_err::symlink_metadata(p.path("out/bin/sh"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    // The base is byte-reproducible: importing again gives the same image.
    let first = text(&p.ok(&["inspect", "busybox"]).stdout);
    crate::support::import_busybox(&p.path("root2"));
    let second = text(
        &p.rbuild_in(&p.path("root2"), &["inspect", "busybox"])
            .stdout,
    );
    assert_eq!(first, second);
}

#[test]
fn context_as_a_tar_on_standard_input() {
    let p = demo();
    let tar = std::process::Command::new("tar")
        .arg("-C")
        .arg(p.ctx())
        .args(["-cf", "-", "."])
        .output()
        .unwrap();
    assert!(tar.status.success());
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rbuild"))
        .arg("--root")
        .arg(p.root())
        .args(["build", "-q", "-t", "stdin:v1", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &tar.stdout).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Same content as building the directory: same image.
    let dir_build = p.ok(&["build", "-q", "."]);
    assert_eq!(text(&out.stdout), text(&dir_build.stdout));
}

#[test]
fn onbuild_triggers_run_in_the_child_and_are_not_inherited() {
    let p = Project::new();
    p.file("Dockerfile", "FROM scratch\nONBUILD COPY --chmod=0600 trigger.txt /from-trigger\nONBUILD LABEL built-by=trigger\n");
    p.ok(&["build", "-t", "onbase:1", "."]);
    let base = inspect(&p, "onbase:1");
    assert_eq!(
        base["Config"]["config"]["OnBuild"][0],
        "COPY --chmod=0600 trigger.txt /from-trigger"
    );
    p.file("trigger.txt", "t")
        .file("Dockerfile", "FROM onbase:1\nENV X=1\n");
    let out = p.ok(&[
        "build",
        "--progress",
        "plain",
        "-t",
        "onchild:1",
        "-o",
        "type=local,dest=../out",
        ".",
    ]);
    assert!(
        text(&out.stderr).contains("ONBUILD COPY --chmod=0600 trigger.txt /from-trigger"),
        "{}",
        text(&out.stderr)
    );
    let m = fs_err::metadata(p.path("out/from-trigger")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o600);
    let child = inspect(&p, "onchild:1");
    assert_eq!(child["Config"]["config"]["Labels"]["built-by"], "trigger");
    assert!(
        child["Config"]["config"]["OnBuild"].is_null(),
        "triggers were inherited"
    );
}

/// A tar of `files` (path, body) made by the system tar, then compressed by `compress` (a
/// shell command reading stdin), written to `dest`.
fn archive(p: &Project, dest: &str, files: &[(&str, &str)], compress: Option<&str>) {
    let staging = p.path("staging");
    let _ = fs_err::remove_dir_all(&staging);
    for (path, body) in files {
        let f = staging.join(path);
        fs_err::create_dir_all(f.parent().unwrap()).unwrap();
        fs_err::write(f, body).unwrap();
    }
    let tar = format!("tar -C {} -cf - .", staging.display());
    let cmd = match compress {
        Some(c) => format!("{tar} | {c} > {}", p.ctx().join(dest).display()),
        None => format!("{tar} > {}", p.ctx().join(dest).display()),
    };
    let st = std::process::Command::new("sh")
        .arg("-c")
        .arg(cmd)
        .status()
        .unwrap();
    assert!(st.success());
}

#[test]
fn add_extracts_every_compression() {
    let p = Project::new();
    archive(&p, "plain.tar", &[("p/x", "plain")], None);
    archive(&p, "a.tar.gz", &[("g/x", "gzip")], Some("gzip -c"));
    archive(&p, "a.tar.bz2", &[("b/x", "bzip2")], Some("bzip2 -c"));
    archive(&p, "a.tar.xz", &[("x/x", "xz")], Some("xz -c"));
    archive(&p, "a.tar.zst", &[("z/x", "zstd")], Some("zstd -q -c"));
    p.file("Dockerfile", "FROM scratch\nADD plain.tar a.tar.gz a.tar.bz2 a.tar.xz a.tar.zst /out/\nADD --unpack=false a.tar.gz /kept/\n");
    p.ok(&["build", "-o", "type=local,dest=../res", "."]);
    for (f, body) in [
        ("p/x", "plain"),
        ("g/x", "gzip"),
        ("b/x", "bzip2"),
        ("x/x", "xz"),
        ("z/x", "zstd"),
    ] {
        assert_eq!(
            fs_err::read_to_string(p.path("res/out").join(f)).unwrap(),
            body,
            "{f}"
        );
    }
    assert!(p.path("res/kept/a.tar.gz").is_file());
}

#[test]
fn hostile_archives_write_nothing_outside() {
    let p = Project::new();
    // Entries that climb out: `../`, absolute paths, a symlink then a write through it, a hard
    // link to a file outside.
    let outside = p.path("outside");
    fs_err::create_dir_all(&outside).unwrap();
    let tar_path = p.ctx().join("evil.tar");
    {
        let f = fs_err::File::create(&tar_path).unwrap();
        let mut b = tar::Builder::new(f);
        let mut add = |path: &str, kind: tar::EntryType, link: Option<&str>, body: &[u8]| {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(0);
            // Bypass the builder's own path checks: write the raw name.
            let name = path.as_bytes();
            h.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name);
            if let Some(l) = link {
                h.set_link_name(l).unwrap();
            }
            h.set_cksum();
            b.append(&h, body).unwrap();
        };
        let up = "../../outside/climbed".to_owned();
        add(&up, tar::EntryType::Regular, None, b"x");
        add(
            &format!("{}/absolute", outside.display()),
            tar::EntryType::Regular,
            None,
            b"x",
        );
        add(
            "link",
            tar::EntryType::Symlink,
            Some(outside.to_str().unwrap()),
            b"",
        );
        add("link/through", tar::EntryType::Regular, None, b"x");
        add(
            "hard",
            tar::EntryType::Link,
            Some(outside.join("secret").to_str().unwrap()),
            b"",
        );
        b.finish().unwrap();
    }
    fs_err::write(outside.join("secret"), "s").unwrap();
    p.file("Dockerfile", "FROM scratch\nADD evil.tar /dest/\n");
    let _ = p.rbuild(&["build", "-o", "type=local,dest=../res", "."]);
    let mut names: Vec<String> = fs_err::read_dir(&outside)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["secret"], "something was written outside the layer");
    assert_eq!(fs_err::read_to_string(outside.join("secret")).unwrap(), "s");
}

#[test]
fn a_corrupt_archive_in_add_is_a_clear_error() {
    // An archive is what holds a tar header once decompressed (BuildKit's rule): a gzip whose
    // stream is broken from the start is no archive, and is copied as it is.
    let p = Project::new();
    let mut bytes = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    bytes.extend_from_slice(b"this is not deflate data at all");
    fs_err::write(p.ctx().join("broken.tar.gz"), &bytes).unwrap();
    p.file("Dockerfile", "FROM scratch\nADD broken.tar.gz /x/\n");
    p.ok(&["build", "-o", "type=local,dest=../out", "."]);
    assert_eq!(fs_err::read(p.path("out/x/broken.tar.gz")).unwrap(), bytes);
    // One that starts as a tar and breaks off later is an archive, and a clear error.
    let made = std::process::Command::new("bash")
        .arg("-c")
        .arg("head -c 100000 /dev/urandom > big && tar -cf - big | gzip -c | head -c 3000 > cut.tar.gz && rm big")
        .current_dir(p.ctx())
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", text(&made.stderr));
    p.file("Dockerfile", "FROM scratch\nADD cut.tar.gz /x/\n");
    let out = p.rbuild(&["build", "."]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("ADD failed (Dockerfile line 2)"), "{err}");
    assert!(err.contains("cannot extract archive"), "{err}");
}

/// A one-file HTTP server on 127.0.0.1 for as many requests as come; gives its URL and a
/// request counter.
pub(crate) fn serve(
    body: &'static [u8],
) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/files/tool.bin", listener.local_addr().unwrap());
    let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = hits.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            // Read the request head.
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                line.clear();
            }
            counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(body);
        }
    });
    (url, hits)
}

/// Issue 12: an `ADD <url>` body is bounded (`--max-download`); past the bound the download
/// stops and the step fails naming the URL and the bound.
#[test]
fn add_downloads_are_bounded() {
    static BIG: [u8; 100_000] = [b'x'; 100_000];
    let (url, _) = serve(&BIG);
    let p = Project::new();
    p.file("Dockerfile", &format!("FROM scratch\nADD {url} /big\n"));
    let out = p.rbuild(&["build", "--max-download", "50000", "."]);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&url) && err.contains("larger than 50000 bytes"),
        "{err}"
    );
    p.ok(&[
        "build",
        "--max-download",
        "100000",
        "-o",
        "type=local,dest=../out",
        ".",
    ]);
    assert_eq!(fs_err::metadata(p.path("out/big")).unwrap().len(), 100_000);
}

#[test]
fn add_fetches_urls_checks_checksums_and_never_extracts() {
    // A gzip header: a local file like this would be extracted; a remote one never is.
    static BODY: &[u8] = b"\x1f\x8b remote bytes";
    let (url, hits) = serve(BODY);
    let p = Project::new();
    let good = {
        use sha2::Digest as _;
        format!("sha256:{}", hex::encode(sha2::Sha256::digest(BODY)))
    };
    p.file(
        "Dockerfile",
        &format!("FROM scratch\nADD {url} /dl/\nADD --checksum={good} {url} /checked\n"),
    );
    p.ok(&["build", "-t", "dl:1", "-o", "type=local,dest=../res", "."]);
    assert_eq!(fs_err::read(p.path("res/dl/tool.bin")).unwrap(), BODY);
    let m = fs_err::metadata(p.path("res/checked")).unwrap();
    assert_eq!(m.mode() & 0o7777, 0o600, "remote files are 0600");
    let fetched = hits.load(std::sync::atomic::Ordering::SeqCst);
    assert!(fetched >= 1);
    // With a checksum, a cached rebuild does not fetch what it can name.
    p.file(
        "Dockerfile",
        &format!("FROM scratch\nADD --checksum={good} {url} /checked\n"),
    );
    p.ok(&["build", "."]);
    let before = hits.load(std::sync::atomic::Ordering::SeqCst);
    let out = p.ok(&["build", "--progress", "plain", "."]);
    assert!(
        text(&out.stderr).contains("2 cached"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        hits.load(std::sync::atomic::Ordering::SeqCst),
        before,
        "a checksummed cached ADD fetched again"
    );
    // A wrong checksum is refused, by name.
    let bad = format!("sha256:{}", "0".repeat(64));
    p.file(
        "Dockerfile",
        &format!("FROM scratch\nADD --checksum={bad} {url} /x\n"),
    );
    let out = p.rbuild(&["build", "--no-cache", "."]);
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("checksum mismatch") && err.contains(&good),
        "{err}"
    );
}

#[test]
fn an_unreadable_file_is_named() {
    // Root reads anything, so the build runs as `nobody` (setpriv, from util-linux), and on the
    // single mapping: with subordinate ids the builder runs as root of its user namespace, where
    // (as in `buildah unshare`) it may read the user's own mode-000 files.
    let p = Project::new();
    p.file("ok.txt", "ok")
        .file("secret.txt", "s")
        .file("Dockerfile", "FROM scratch\nCOPY ok.txt secret.txt /x/\n");
    let secret = p.ctx().join("secret.txt");
    fs_err::set_permissions(&secret, std::fs::Permissions::from_mode(0o000)).unwrap();
    let out = p.rbuild_as_nobody_with(&[("RBUILD_ROOTLESS_IDS", "single")], &["build", "."]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("secret.txt"),
        "the unreadable file is not named:\n{err}"
    );
    assert!(err.contains("Permission denied"), "{err}");
    assert!(err.contains("COPY failed (Dockerfile line 2)"), "{err}");
}

#[test]
fn rootfs_tarball_and_docker_save() {
    let p = demo();
    let tar_dest = format!("type=tar,dest={}", p.path("rootfs.tar").display());
    p.ok(&["build", "-t", "demo:v1", "-o", &tar_dest, "."]);
    let list = std::process::Command::new("tar")
        .arg("-tvf")
        .arg(p.path("rootfs.tar"))
        .output()
        .unwrap();
    let listing = text(&list.stdout);
    let names: Vec<&str> = listing
        .lines()
        .map(|l| l.rsplit(' ').next().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "app/",
            "app/hello.txt",
            "app/sub/",
            "app/sub/w.txt",
            "copied.txt",
            "etc/",
            "etc/motd",
            "srv/",
            "srv/hello"
        ],
        "{listing}"
    );
    assert!(
        listing
            .lines()
            .all(|l| l.contains("0/0") && l.contains("2000-01-01")),
        "{listing}"
    );
    assert!(listing.contains("-rwxr-xr-x"), "{listing}");
    let saved = p.path("saved.docker.tar");
    p.ok(&[
        "save",
        "--format",
        "docker",
        "-o",
        saved.to_str().unwrap(),
        "demo:v1",
    ]);
    let manifest = std::process::Command::new("tar")
        .arg("-xOf")
        .arg(&saved)
        .arg("manifest.json")
        .output()
        .unwrap();
    let m: serde_json::Value = serde_json::from_slice(&manifest.stdout).unwrap();
    assert_eq!(m[0]["RepoTags"][0], "demo:v1");
    assert_eq!(m[0]["Layers"].as_array().unwrap().len(), 5);
    // And it loads back as the same image.
    let out = p.rbuild_in(&p.path("root2"), &["load", "-i", saved.to_str().unwrap()]);
    assert_eq!(text(&out.stdout).trim(), "Loaded image: demo:v1");
    let id = |root: &std::path::Path| {
        let o = p.rbuild_in(root, &["inspect", "demo:v1"]);
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["Id"].clone()
    };
    assert_eq!(id(&p.root()), id(&p.path("root2")));
}

#[test]
fn a_copied_directory_goes_into_a_0755_destination_and_keeps_its_subdirectories_modes() {
    use std::os::unix::fs::PermissionsExt;
    // As BuildKit copies: the destination of `COPY dir/ /dest/` is made 0755 (an existing one
    // keeps its mode); the directories inside keep theirs, setgid included.
    let p = Project::new();
    p.file("files/sub/a.txt", "a")
        .file("Dockerfile", "FROM scratch\nCOPY files/ /new/\nWORKDIR /app\nCOPY files/ /app/\nCOPY --chmod=0700 files/ /locked/\n");
    for (dir, mode) in [("files/sub", 0o2775), ("files", 0o555)] {
        fs_err::set_permissions(p.ctx().join(dir), std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let tar = p.path("rootfs.tar");
    p.ok(&[
        "build",
        "-o",
        &format!("type=tar,dest={}", tar.display()),
        ".",
    ]);
    let listing = crate::support::tar_listing(&tar);
    let mode_of = |name: &str| {
        listing
            .lines()
            .find(|l| l.trim_end_matches('/').ends_with(&format!(" {name}")))
            .unwrap_or_else(|| panic!("{name} not in:\n{listing}"))
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned()
    };
    assert_eq!(mode_of("new"), "drwxr-xr-x", "{listing}");
    assert_eq!(
        mode_of("app"),
        "drwxr-xr-x",
        "WORKDIR made it; COPY keeps it:\n{listing}"
    );
    assert_eq!(mode_of("new/sub"), "drwxrwsr-x", "{listing}");
    assert_eq!(
        mode_of("locked"),
        "drwx------",
        "--chmod applies to the directory copied into"
    );
}
