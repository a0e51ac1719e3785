//! Issue 18: builds where namespaces are not allowed. `rbuild build` runs inside a podman
//! container with Docker's default capabilities (no `CAP_SYS_ADMIN`), Docker's default seccomp
//! profile (moby's `default.json`, from Debian) and no user namespace; `--isolation auto` falls
//! back to chroot there and makes the same image as the namespaced sandbox on the host.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::interop::podman;
use crate::support::{Project, import_busybox, text};

const EPOCH: &str = "1700000000";

/// Docker's default capabilities (moby's `oci/caps/defaults.go`): no `CAP_SYS_ADMIN`.
const DOCKER_CAPS: &str = "CHOWN,DAC_OVERRIDE,FSETID,FOWNER,MKNOD,NET_RAW,SETGID,SETUID,SETFCAP,\
SETPCAP,NET_BIND_SERVICE,SYS_CHROOT,KILL,AUDIT_WRITE";

/// Docker's default seccomp profile: `.ci/run` unpacks moby's `profiles/seccomp/default.json`
/// from Debian's golang-github-docker-docker-dev (fixtures/seccomp/docker-default.sh) and names
/// it in `RBUILD_TEST_DOCKER_SECCOMP`. Not podman's own (containers-common's), which allows
/// `unshare(2)` and `mount(2)` to every container.
fn docker_seccomp() -> PathBuf {
    let path = std::env::var_os("RBUILD_TEST_DOCKER_SECCOMP").map_or_else(
        || "/var/tmp/rbuild-docker-seccomp/default.json".into(),
        PathBuf::from,
    );
    assert!(
        path.is_file(),
        "no Docker seccomp profile at {}: run fixtures/seccomp/docker-default.sh (.ci/run does)",
        path.display()
    );
    path
}

/// The Dockerfile both builds run: COPY, RUN with a cache mount and a secret mount, and a RUN
/// whose layer needs overlayfs's rules (a file replaced by a directory, a hard link).
const DOCKERFILE: &str = "\
FROM busybox
COPY a /app/a
RUN --mount=type=cache,target=/root/.cache --mount=type=secret,id=tok \\
    echo cached > /root/.cache/c && cp /root/.cache/c /app/from-cache \\
 && sha256sum /run/secrets/tok > /app/secret-sum && id > /app/id && ls /app > /app/ls
RUN rm -rf /app/a && mkdir -p /app/a/b && echo n > /app/a/b/n && ln /app/ls /app/ls2
";

/// `binary` copied to `rel` in `root`, with the libraries it links (`ldd`) where they are here.
fn copy_with_libraries(binary: &Path, root: &Path, rel: &str) {
    let to = root.join(rel);
    fs_err::create_dir_all(to.parent().unwrap()).unwrap();
    fs_err::copy(binary, to).unwrap();
    let ldd = Command::new("ldd").arg(binary).output().unwrap();
    for lib in text(&ldd.stdout)
        .split_whitespace()
        .filter(|w| w.starts_with('/'))
    {
        let to = root.join(lib.trim_start_matches('/'));
        fs_err::create_dir_all(to.parent().unwrap()).unwrap();
        fs_err::copy(fs_err::canonicalize(lib).unwrap(), to).unwrap();
    }
}

/// A root filesystem for the container: rbuild and the libraries it links, busybox, a store at
/// `/store` with busybox imported, and `ctx` at `/ctx`.
fn container_root(p: &Project, ctx: &Path) -> PathBuf {
    let root = p.path("container");
    for d in ["bin", "tmp", "etc", "proc", "sys", "dev"] {
        fs_err::create_dir_all(root.join(d)).unwrap();
    }
    let rbuild = Path::new(env!("CARGO_BIN_EXE_rbuild"));
    copy_with_libraries(rbuild, &root, "bin/rbuild");
    fs_err::copy("/bin/busybox", root.join("bin/busybox")).unwrap();
    import_busybox(&root.join("store"));
    let st = Command::new("cp")
        .arg("-a")
        .arg(ctx)
        .arg(root.join("ctx"))
        .status()
        .unwrap();
    assert!(st.success());
    root
}

/// `podman run` of `args` in `root` as a CI runner's pod would have it: Docker's capabilities
/// and seccomp profile, no user namespace, `network` (`none`, or slirp4netns's user-mode
/// network of its own: no bridge), `SOURCE_DATE_EPOCH` fixed.
fn in_container(p: &Project, root: &Path, network: &str, args: &[&str]) -> Output {
    podman_run(p, network)
        .arg("--rootfs")
        .arg(root)
        .args(args)
        .output()
        .expect("podman runs")
}

/// `podman run` as [`in_container`] has it, up to the root filesystem and the command.
fn podman_run(p: &Project, network: &str) -> Command {
    let mut cmd = podman(p);
    cmd.args(["run", "--rm", "--network", network])
        .args([
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=4096:4096",
        ])
        .args(["--cap-drop", "ALL", "--cap-add", DOCKER_CAPS])
        .arg("--security-opt")
        .arg(format!("seccomp={}", docker_seccomp().display()))
        .args(["-e", &format!("SOURCE_DATE_EPOCH={EPOCH}")]);
    cmd
}

/// The manifest digest and diff IDs of `image` in the store `root`.
fn digest(p: &Project, root: &Path, image: &str) -> (String, Vec<String>) {
    let out = p.rbuild_in(root, &["inspect", image]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ids = v["Config"]["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_owned())
        .collect();
    (v["Digest"].as_str().unwrap().to_owned(), ids)
}

#[test]
fn issue_18_a_container_without_namespaces_builds_the_namespaced_image() {
    let p = Project::new();
    p.file("a", "a\n")
        .file("tok", "s3cr3t\n")
        .file("Dockerfile", DOCKERFILE);
    let root = container_root(&p, &p.ctx());
    // The container is what the issue says: no CAP_SYS_ADMIN, a seccomp filter, no namespaces.
    let status = in_container(
        &p,
        &root,
        "none",
        &["/bin/busybox", "cat", "/proc/self/status"],
    );
    assert!(status.status.success(), "{}", text(&status.stderr));
    let status = text(&status.stdout);
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .map(str::trim)
            .unwrap()
            .to_owned()
    };
    let cap_eff = u64::from_str_radix(&field("CapEff:"), 16).unwrap();
    assert_eq!(cap_eff & (1 << 21), 0, "no CAP_SYS_ADMIN: {status}");
    assert_eq!(field("Seccomp:"), "2", "a seccomp filter: {status}");
    // Docker's profile, not podman's: not even a user namespace (which needs no capability).
    let userns = in_container(
        &p,
        &root,
        "none",
        &["/bin/busybox", "unshare", "-U", "/bin/busybox", "true"],
    );
    assert!(
        !userns.status.success(),
        "unshare -U must be refused: {}",
        text(&userns.stderr)
    );

    let build = [
        "/bin/rbuild",
        "--root",
        "/store",
        "build",
        "--progress",
        "plain",
        "--secret",
        "id=tok,src=/ctx/tok",
        "-t",
        "app:1",
        "/ctx",
    ];
    let out = in_container(&p, &root, "none", &build);
    let log = text(&out.stderr);
    assert!(
        out.status.success(),
        "the build fails in the container:\n{log}"
    );
    assert!(
        log.contains("RUN runs with chroot isolation: this process cannot make namespaces")
            && log.contains("no pid namespace"),
        "auto says it picked chroot, and what is weaker:\n{log}"
    );
    assert_eq!(
        log.matches("chroot isolation").count(),
        1,
        "said once:\n{log}"
    );
    // The cache mount's directory went back to the store, with what the RUN wrote.
    let caches: Vec<_> = fs_err::read_dir(root.join("store/cache-mounts"))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .collect();
    assert_eq!(caches.len(), 1);
    assert_eq!(
        fs_err::read_to_string(caches[0].path().join("c")).unwrap(),
        "cached\n"
    );

    // The namespaced sandbox, on the host, with a store of its own.
    let host = p.path("host-store");
    import_busybox(&host);
    let out = p
        .command_in(
            &host,
            &["build", "--progress", "plain", "--secret", "id=tok,src=tok"],
        )
        .args(["-t", "app:1", "."])
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .output()
        .unwrap();
    let host_log = text(&out.stderr);
    assert!(out.status.success(), "{host_log}");
    assert!(
        !host_log.contains("chroot isolation"),
        "as root here, auto picks the namespaced sandbox:\n{host_log}"
    );
    assert_eq!(
        digest(&p, &root.join("store"), "app:1"),
        digest(&p, &host, "app:1"),
        "the same image, byte for byte"
    );

    // The cache is shared: the container's store, built again on the host, is all CACHED.
    let out = p
        .command_in(
            &root.join("store"),
            &["build", "--progress", "plain", "--secret", "id=tok,src=tok"],
        )
        .args(["-t", "app:2", "."])
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .output()
        .unwrap();
    let again = text(&out.stderr);
    assert!(out.status.success(), "{again}");
    assert_eq!(again.matches("CACHED").count(), 4, "{again}");
}

/// `--isolation none`, kaniko's model, in the same container: RUN runs in the container's own
/// root, made the stage's filesystem around the store, the context and the binary, and the
/// image is again the namespaced build's. (Never run outside a container of the test's own: it
/// replaces the root it runs in.)
#[test]
fn issue_18_isolation_none_in_the_container_builds_the_same_image() {
    let p = Project::new();
    p.file("a", "a\n")
        .file("tok", "s3cr3t\n")
        .file("Dockerfile", DOCKERFILE);
    let root = container_root(&p, &p.ctx());
    let build = [
        "/bin/rbuild",
        "--root",
        "/store",
        "build",
        "--isolation",
        "none",
        "--progress",
        "plain",
        "--secret",
        "id=tok,src=/ctx/tok",
        "-t",
        "app:1",
        "/ctx",
    ];
    let out = in_container(&p, &root, "none", &build);
    let log = text(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("--isolation none: RUN runs in the builder's own root"),
        "{log}"
    );
    // The container's root is now the last stage's: busybox's, with the RUN's files; the
    // libraries rbuild was started with are gone, the store and the context are not.
    assert!(root.join("app/from-cache").is_file());
    assert!(
        !root.join("lib64").exists(),
        "the container's own files were replaced"
    );
    assert!(root.join("store").is_dir() && root.join("ctx/Dockerfile").is_file());

    let host = p.path("host-store");
    import_busybox(&host);
    let out = p
        .command_in(
            &host,
            &["build", "--progress", "plain", "--secret", "id=tok,src=tok"],
        )
        .args(["-t", "app:1", "."])
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        digest(&p, &root.join("store"), "app:1"),
        digest(&p, &host, "app:1"),
        "the same image as the namespaced sandbox's"
    );
}

/// What `auto` picks on this machine as root: the namespaced sandbox (its own hostname and
/// `/proc`); `--isolation chroot` gives neither, and says so.
#[test]
fn issue_18_auto_is_the_namespaced_sandbox_here_and_chroot_is_asked_for_by_name() {
    let p = Project::new();
    import_busybox(&p.root());
    p.file(
        "Dockerfile",
        "FROM busybox\nRUN (hostname; if test -e /proc/self/status; then echo proc; fi) > /seen\n",
    );
    let seen = |isolation: &str| {
        let dest = p.path(&format!("out-{isolation}"));
        let out = p.rbuild(&[
            "build",
            "--no-cache",
            "--progress",
            "plain",
            "--isolation",
            isolation,
            "-o",
            &format!("type=local,dest={}", dest.display()),
            ".",
        ]);
        let log = text(&out.stderr);
        assert!(out.status.success(), "{log}");
        (fs_err::read_to_string(dest.join("seen")).unwrap(), log)
    };
    let (auto, log) = seen("auto");
    assert_eq!(auto, "buildkitsandbox\nproc\n", "{log}");
    assert!(!log.contains("chroot"), "{log}");
    let (chroot, log) = seen("chroot");
    assert_ne!(chroot, auto, "no UTS namespace, no /proc under chroot");
    assert!(!chroot.contains("proc"), "{chroot}");
    assert!(
        log.contains("RUN runs with chroot isolation (--isolation chroot)"),
        "{log}"
    );
    let out = p.rbuild(&["build", "--isolation", "jail", "."]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr)
            .contains("--isolation is `auto`, `namespaces` (or `oci`), `chroot` or `none`"),
        "{}",
        text(&out.stderr)
    );
}

/// Attacks on chroot isolation, each failing were its rule switched off: RUN cannot chroot
/// again (`CAP_SYS_CHROOT` dropped), a read-only bind is a copy (the context is not written),
/// a cache directory turned into a symlink never leads the next RUN out, processes left running
/// are killed, and `--network=none` is refused rather than given the builder's network.
#[test]
fn issue_18_chroot_isolation_keeps_its_rules() {
    let p = Project::new();
    import_busybox(&p.root());
    let outside = p.path("outside");
    fs_err::create_dir_all(&outside).unwrap();
    let victim = p.path("victim");
    fs_err::create_dir_all(victim.join("x/kept")).unwrap();
    fs_err::write(victim.join("x/kept/file"), "mine\n").unwrap();
    p.file("a", "context\n").file(
        "Dockerfile",
        &format!(
            "FROM busybox\n\
             RUN if chroot / /bin/true 2>/dev/null; then echo escaped > /chrooted; fi\n\
             RUN --mount=type=bind,target=/ctx echo changed > /ctx/a 2>/dev/null; true\n\
             RUN --mount=type=cache,target=/cache,id=c rm -rf /cache && ln -s {} /cache\n\
             RUN --mount=type=tmpfs,target=/y/kept rm -rf /y && ln -s {} /y\n\
             RUN (sleep 4242 &) ; echo left\n",
            outside.display(),
            victim.join("x").display(),
        ),
    );
    // A process left running would hold the build's output open: bounded, not a hang.
    let log_file = p.path("build.log");
    let mut child = p
        .command_in(
            &p.root(),
            &[
                "build",
                "--isolation",
                "chroot",
                "--progress",
                "plain",
                "-o",
                &format!("type=local,dest={}", p.path("out").display()),
                ".",
            ],
        )
        .stdout(std::process::Stdio::null())
        .stderr(fs_err::File::create(&log_file).unwrap().into_file())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = Command::new("pkill").args(["-f", "sleep 4242"]).status();
            panic!("the build did not end: a process of a RUN outlived it");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let log = fs_err::read_to_string(&log_file).unwrap();
    assert!(status.success(), "{log}");
    assert!(
        !p.path("out/chrooted").exists(),
        "RUN chrooted again:\n{log}"
    );
    assert_eq!(
        fs_err::read_to_string(victim.join("x/kept/file")).unwrap_or_default(),
        "mine\n",
        "taking a mount out went through a link the RUN made, to the builder's own files"
    );
    assert_eq!(
        fs_err::read_to_string(p.ctx().join("a")).unwrap(),
        "context\n",
        "a read-only bind wrote to the context"
    );
    // The cache is shared with the namespaced sandbox, whose bind would follow a symlink of
    // the store's on the host.
    p.file(
        "Dockerfile",
        "FROM busybox\nRUN --mount=type=cache,target=/cache,id=c echo into > /cache/f\n",
    );
    let out = p.rbuild(&["build", "--isolation", "namespaces", "."]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        fs_err::read_dir(&outside).unwrap().next().is_none(),
        "a cache symlink planted under chroot led a RUN outside the root"
    );
    let cache = p.root().join("cache-mounts");
    for e in fs_err::read_dir(&cache).unwrap().filter_map(Result::ok) {
        assert!(
            !e.file_type().unwrap().is_symlink(),
            "a symlink was moved into the store: {}",
            e.path().display()
        );
    }
    assert!(!running("sleep 4242"), "a process of the RUN outlived it");

    // A RUN that kills its helper: what it left is killed all the same.
    p.file(
        "Dockerfile",
        "FROM busybox\nRUN (sleep 4343 &) ; kill -9 $PPID; sleep 5\n",
    );
    let out = p.rbuild(&["build", "--isolation", "chroot", "."]);
    assert!(!out.status.success(), "{}", text(&out.stderr));
    assert!(
        !running("sleep 4343"),
        "a process outlived the helper its RUN killed"
    );

    p.file(
        "Dockerfile",
        "FROM busybox\nRUN --network=none echo offline\n",
    );
    let out = p.rbuild(&["build", "--isolation", "chroot", "."]);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("RUN --network=none needs a network namespace") && err.contains("line 2"),
        "{err}"
    );
}

/// Whether a process whose command line is `args` is running (`ps -eo args`).
fn running(args: &str) -> bool {
    let ps = Command::new("ps").args(["-eo", "args"]).output().unwrap();
    text(&ps.stdout).lines().any(|l| l.trim() == args)
}

/// The real-world apt build (a Debian package on a debootstrap base) under chroot isolation in
/// the same container, given slirp4netns's network of its own to reach Debian's mirror.
#[test]
fn issue_18_apt_get_install_works_under_chroot_in_the_container() {
    crate::support::tool("debootstrap", "debootstrap");
    crate::support::tool("slirp4netns", "slirp4netns");
    let p = Project::new();
    let ctx =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/context/apt-hello");
    let root = container_root(&p, &ctx);
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/base/debian.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(env!("CARGO_BIN_EXE_rbuild"))
        .arg("--root")
        .arg(root.join("store"))
        .output()
        .unwrap();
    assert!(out.status.success(), "debian.sh: {}", text(&out.stderr));
    let out = in_container(
        &p,
        &root,
        "slirp4netns",
        &[
            "/bin/rbuild",
            "--root",
            "/store",
            "build",
            "--progress",
            "plain",
            "--isolation",
            "chroot",
            "-t",
            "apt-hello:1",
            "/ctx",
        ],
    );
    let log = text(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("Setting up hello"), "{log}");
    // The image runs: rbuild's own `run` on the host prints hello's greeting.
    let out = p.rbuild_in(&root.join("store"), &["run", "apt-hello:1"]);
    assert_eq!(
        text(&out.stdout),
        "Hello, world!\n",
        "{}",
        text(&out.stderr)
    );
}

/// The Dockerfile of the repository the deploy examples build.
const APP: &str = "\
FROM busybox
COPY msg /msg
RUN --mount=type=cache,target=/var/cache/app cp /msg /built && echo run > /var/cache/app/ran
";

/// git and what it runs (its libraries, its exec path), copied into the container's root as the
/// builder image (deploy/builder/Dockerfile) installs Debian's git.
fn add_git(root: &Path) {
    copy_with_libraries(Path::new("/usr/bin/git"), root, "usr/bin/git");
    fs_err::create_dir_all(root.join("usr/lib")).unwrap();
    fs_err::create_dir_all(root.join("usr/share")).unwrap();
    for (from, to) in [
        ("/usr/lib/git-core", "usr/lib/git-core"),
        ("/usr/share/git-core", "usr/share/git-core"),
    ] {
        let st = Command::new("cp")
            .arg("-a")
            .arg(from)
            .arg(root.join(to))
            .status()
            .unwrap();
        assert!(st.success());
    }
}

/// The deploy examples' own commands (the Kubernetes Job's args after the builder image's
/// ENTRYPOINT, the Fargate task's shell command with its environment and secret), with only
/// the git URL and the registry replaced by ones on 127.0.0.1, run in the container a
/// Pod or a task gets (Docker's capabilities and seccomp profile; the host's network, to reach
/// them): each builds the git context under chroot isolation and pushes to a registry that
/// wants the credentials they are given, and both push the image the namespaced build of the
/// same git URL makes here.
#[test]
fn issue_18_the_deploy_job_and_task_build_a_git_context_and_push_from_such_a_container() {
    use crate::registry_server::{Auth, PASSWORD, Registry, USER};
    use base64::Engine as _;
    const EXAMPLE_CONTEXT: &str = "https://git.example.com/org/app.git#main";
    let p = Project::new();
    let server = crate::contexts::GitServer::start(&p);
    server.commit("app.git", &[("Dockerfile", APP), ("msg", "from git\n")]);
    let context = format!("{}#main", server.url("app.git"));
    let registry = Registry::start(&Auth::Htpasswd);
    let host = registry.host();
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    let config = format!(r#"{{"auths": {{"{host}": {{"auth": "{auth}"}}}}}}"#);

    let empty = p.path("empty");
    fs_err::create_dir_all(&empty).unwrap();
    let root = container_root(&p, &empty);
    add_git(&root);
    std::os::unix::fs::symlink("busybox", root.join("bin/sh")).unwrap();
    fs_err::create_dir_all(root.join("usr/local/bin")).unwrap();
    std::os::unix::fs::symlink("/bin/rbuild", root.join("usr/local/bin/rbuild")).unwrap();
    fs_err::create_dir_all(root.join("var/lib/rbuild")).unwrap();
    let deploy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    // The builder image's ENTRYPOINT and ENV (`ENV K=V` lines), as the runtime applies them.
    let image = fs_err::read_to_string(deploy.join("builder/Dockerfile")).unwrap();
    let entrypoint: Vec<String> = image
        .lines()
        .find_map(|l| l.strip_prefix("ENTRYPOINT "))
        .map(|e| serde_json::from_str(e).unwrap())
        .expect("the builder image has an ENTRYPOINT");
    let image_env: Vec<&str> = image
        .lines()
        .filter_map(|l| l.strip_prefix("ENV "))
        .collect();
    assert!(image_env.iter().all(|e| e.contains('=')), "{image_env:?}");

    // The Job: its container's args, env and volumes (the store; the push secret, read-only).
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(
        &fs_err::read_to_string(deploy.join("kubernetes/build-job.yaml")).unwrap(),
    )
    .unwrap();
    let job = docs.iter().find(|d| d["kind"] == "Job").unwrap();
    let c = &job["spec"]["template"]["spec"]["containers"][0];
    let mut replaced = 0;
    let args: Vec<String> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| match a.as_str().unwrap() {
            EXAMPLE_CONTEXT => {
                replaced += 1;
                context.clone()
            }
            t if t.starts_with("--tag=") => {
                replaced += 1;
                format!("--tag={host}/deploy/job:main")
            }
            a => a.to_owned(),
        })
        .collect();
    assert_eq!(replaced, 2, "the Job names a git URL and a tag: {args:?}");
    let mount = |name: &str| {
        c["volumeMounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["name"] == name)
            .unwrap()["mountPath"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let push = p.path("push-secret");
    fs_err::create_dir_all(&push).unwrap();
    fs_err::write(push.join("config.json"), &config).unwrap();
    let mut run = podman_run(&p, "host");
    for e in &image_env {
        run.args(["-e", e]);
    }
    for e in c["env"].as_array().unwrap() {
        run.arg("-e").arg(format!(
            "{}={}",
            e["name"].as_str().unwrap(),
            e["value"].as_str().unwrap()
        ));
    }
    let store = root.join("store");
    let out = run
        .arg("-v")
        .arg(format!("{}:{}", store.display(), mount("store")))
        .arg("-v")
        .arg(format!("{}:{}:ro", push.display(), mount("push")))
        .arg("--rootfs")
        .arg(&root)
        .args(&entrypoint)
        .args(&args)
        .output()
        .unwrap();
    let log = text(&out.stderr);
    assert!(out.status.success(), "the Job's build:\n{log}");
    assert!(
        log.contains("RUN runs with chroot isolation"),
        "auto picked chroot:\n{log}"
    );

    // The Fargate task: its shell command, its environment, its secret as the variable.
    let task: serde_json::Value = serde_json::from_str(
        &fs_err::read_to_string(deploy.join("ecs/build-task-fargate.json")).unwrap(),
    )
    .unwrap();
    let c = &task["containerDefinitions"][0];
    let mut run = podman_run(&p, "host");
    for e in &image_env {
        run.args(["-e", e]);
    }
    for e in c["environment"].as_array().unwrap() {
        let name = e["name"].as_str().unwrap();
        let value = match name {
            "CONTEXT" => context.clone(),
            "IMAGE" => format!("{host}/deploy/task:main"),
            _ => e["value"].as_str().unwrap().to_owned(),
        };
        run.arg("-e").arg(format!("{name}={value}"));
    }
    assert_eq!(c["secrets"][0]["name"], "REGISTRY_AUTH");
    let entry: Vec<&str> = c["entryPoint"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let out = run
        .arg("-e")
        .arg(format!("REGISTRY_AUTH={config}"))
        .arg("-v")
        .arg(format!("{}:/var/lib/rbuild", store.display()))
        .arg("--rootfs")
        .arg(&root)
        .args(&entry)
        .arg(c["command"][0].as_str().unwrap())
        .output()
        .unwrap();
    let log = text(&out.stderr);
    assert!(out.status.success(), "the Fargate task's build:\n{log}");

    // What they pushed is what the namespaced build of the same git URL pushes from here.
    let ours = p.path("host-store");
    import_busybox(&ours);
    let out = p
        .command_in(&ours, &["build", "--progress", "plain", "--push"])
        .arg(format!("--tag={host}/deploy/host:main"))
        .arg(&context)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .env("DOCKER_CONFIG", &push)
        .output()
        .unwrap();
    let log = text(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(!log.contains("chroot isolation"), "{log}");
    let pushed = |tag: &str| {
        let out = crate::support::tool("skopeo", "skopeo")
            .args(["inspect", "--tls-verify=false", "--creds"])
            .arg(format!("{USER}:{PASSWORD}"))
            .arg(format!("docker://{host}/deploy/{tag}:main"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{tag}: {}", text(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["Digest"].as_str().unwrap().to_owned()
    };
    let want = pushed("host");
    assert_eq!(pushed("job"), want, "the Job pushed the namespaced image");
    assert_eq!(pushed("task"), want, "the task pushed the namespaced image");
    // And the container's store holds the host's image, byte for byte.
    assert_eq!(
        digest(&p, &store, &format!("{host}/deploy/job:main")),
        digest(&p, &ours, &format!("{host}/deploy/host:main")),
    );
}

/// An ssh mount under chroot isolation: the forwarding socket is moved into the copy (a bound
/// socket stays connectable by its new name), the agent answers through it, nothing of it stays
/// in the layer, and the image is the namespaced build's.
#[test]
fn issue_18_an_ssh_mount_reaches_the_agent_under_chroot() {
    use crate::isolation::{AGENT_PROBE, Agent, compile};
    let p = Project::new();
    import_busybox(&p.root());
    compile(&p.ctx(), "agentprobe", AGENT_PROBE);
    let agent = Agent::start(p.dir.path(), "agent");
    p.file(
        "Dockerfile",
        "FROM busybox\nCOPY agentprobe /agentprobe\nRUN --mount=type=ssh /agentprobe > /seen && echo \"$SSH_AUTH_SOCK\" > /sock\n",
    );
    let ssh = format!("default={}", agent.1.display());
    let build = |isolation: &str, store: &Path| {
        import_busybox(store);
        let out = p
            .command_in(
                store,
                &["build", "--progress", "plain", "--isolation", isolation],
            )
            .args(["--ssh", &ssh, "-t", "ssh:1", "."])
            .env("SOURCE_DATE_EPOCH", EPOCH)
            .output()
            .unwrap();
        let log = text(&out.stderr);
        assert!(out.status.success(), "{isolation}: {log}");
        log
    };
    let chroot = p.path("chroot-store");
    let log = build("chroot", &chroot);
    assert!(log.contains("chroot isolation"), "{log}");
    let out = p.rbuild_in(&chroot, &["run", "ssh:1", "cat", "/seen", "/sock"]);
    assert_eq!(
        text(&out.stdout),
        "keys 1\ncomment rbuild-test-key\n/run/buildkit/ssh_agent.0\n",
        "{}",
        text(&out.stderr)
    );
    let out = p.rbuild_in(&chroot, &["run", "ssh:1", "ls", "-a", "/run"]);
    assert!(
        !text(&out.stdout).contains("buildkit"),
        "{}",
        text(&out.stdout)
    );
    let namespaced = p.path("namespaced-store");
    build("namespaces", &namespaced);
    assert_eq!(
        digest(&p, &chroot, "ssh:1"),
        digest(&p, &namespaced, "ssh:1"),
        "the same image"
    );
}
