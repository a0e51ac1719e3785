//! RUN in the sandbox, on the busybox base.

use crate::support::{Project, import_busybox, text};

fn project(dockerfile: &str) -> Project {
    let p = Project::new();
    import_busybox(&p.root());
    p.file("Dockerfile", dockerfile);
    p
}

fn build_log(p: &Project, extra: &[&str]) -> String {
    build_log_with_env(p, extra, &[])
}

/// [`build_log`] with environment variables set for rbuild.
fn build_log_with_env(p: &Project, extra: &[&str], vars: &[(&str, &str)]) -> String {
    let mut args = vec![
        "build",
        "--progress",
        "plain",
        "-t",
        "r:1",
        "-o",
        "type=local,dest=../out",
    ];
    args.extend_from_slice(extra);
    args.push(".");
    let out = p
        .command_in(&p.root(), &args)
        .envs(vars.iter().copied())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    crate::support::untimed(&text(&out.stderr))
}

/// Paths in the image's layers, from `rbuild save`: what each layer holds.
fn layer_listings(p: &Project) -> Vec<Vec<String>> {
    let saved = p.path("saved.tar");
    p.ok(&[
        "save",
        "--format",
        "docker",
        "-o",
        saved.to_str().unwrap(),
        "r:1",
    ]);
    let dir = p.path("saved");
    fs_err::create_dir_all(&dir).unwrap();
    assert!(
        std::process::Command::new("tar")
            .arg("-xf")
            .arg(&saved)
            .arg("-C")
            .arg(&dir)
            .status()
            .unwrap()
            .success()
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs_err::read(dir.join("manifest.json")).unwrap()).unwrap();
    manifest[0]["Layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let out = std::process::Command::new("tar")
                .arg("-tf")
                .arg(dir.join(l.as_str().unwrap()))
                .output()
                .unwrap();
            text(&out.stdout).lines().map(str::to_owned).collect()
        })
        .collect()
}

#[test]
fn run_changes_become_a_layer_with_whiteouts() {
    let p = project(
        "FROM busybox\nRUN mkdir -p /data/sub && echo x > /data/sub/f && ln -s /data/sub/f /data/link && ln /data/sub/f /data/hard && rm /etc/os-release && chmod 700 /data\nRUN rm -rf /data/sub && mkdir /data/sub && echo y > /data/sub/g\nRUN true\n",
    );
    build_log(&p, &[]);
    assert_eq!(
        fs_err::read_to_string(p.path("out/data/sub/g")).unwrap(),
        "y\n"
    );
    assert!(!p.path("out/data/sub/f").exists());
    assert!(!p.path("out/etc/os-release").exists());
    let layers = layer_listings(&p);
    assert_eq!(
        layers.len(),
        3,
        "busybox + two RUNs (RUN true changes nothing: no layer)"
    );
    let first = &layers[1];
    assert!(
        first.contains(&"etc/.wh.os-release".to_owned()),
        "{first:?}"
    );
    assert!(
        first.contains(&"data/link".to_owned()) && first.contains(&"data/hard".to_owned()),
        "{first:?}"
    );
    let second = &layers[2];
    assert!(
        second.contains(&"data/sub/.wh..wh..opq".to_owned()),
        "a replaced directory is opaque: {second:?}"
    );
    assert!(
        !second
            .iter()
            .any(|e| e.starts_with("proc") || e.starts_with("dev") || e == "etc/hosts"),
        "{second:?}"
    );
}

#[test]
fn run_sees_user_workdir_env_and_args() {
    let p = project(
        "FROM busybox\nARG GREETING=hi\nENV WHO=world\nUSER nobody\nWORKDIR /tmp\nRUN echo \"$GREETING $WHO $(id -u) $(pwd)\" > /tmp/out.txt\n",
    );
    build_log(&p, &["--build-arg", "GREETING=hello"]);
    assert_eq!(
        fs_err::read_to_string(p.path("out/tmp/out.txt")).unwrap(),
        "hello world 65534 /tmp\n"
    );
    // Build args are seen by RUN but not stored in the image.
    let v: serde_json::Value = serde_json::from_slice(&p.ok(&["inspect", "r:1"]).stdout).unwrap();
    let env = v["Config"]["config"]["Env"].to_string();
    assert!(!env.contains("GREETING"), "{env}");
}

#[test]
fn the_sandbox_holds() {
    let marker = format!("/tmp/rbuild-host-marker-{}", std::process::id());
    fs_err::write(&marker, "host").unwrap();
    let p = project(&format!(
        "FROM busybox\nRUN test ! -e {marker} && echo no-host-files\nRUN ps -o pid | tail -n +2 | sort -n | tail -1\nRUN grep CapEff /proc/self/status\nRUN mount -t tmpfs none /mnt 2>&1 || echo mount-refused\nRUN echo 1 > /proc/sys/kernel/hostname 2>&1 || echo proc-sys-refused\nRUN --network=none cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '\nRUN grep '^Seccomp:' /proc/self/status && (unshare -m true || echo unshare-refused) && (nsenter -t 1 -m true || echo setns-refused)\n"
    ));
    let log = build_log(&p, &[]);
    fs_err::remove_file(&marker).unwrap();
    assert!(log.contains("#2 no-host-files"), "{log}");
    let highest: u32 = log
        .lines()
        .find_map(|l| l.strip_prefix("#3 ").and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        highest < 10,
        "processes outside the build are visible (pid {highest}):\n{log}"
    );
    assert!(
        log.contains("#4 CapEff:\t00000000a80425fb"),
        "not Docker's default capabilities:\n{log}"
    );
    assert!(
        log.contains("#5 mount-refused") || log.contains("Operation not permitted"),
        "{log}"
    );
    assert!(log.contains("proc-sys-refused"), "{log}");
    let net: Vec<&str> = log
        .lines()
        .filter_map(|l| l.strip_prefix("#7 "))
        .filter(|l| !l.starts_with('[') && !l.starts_with("DONE") && !l.starts_with("cache miss"))
        .collect();
    assert_eq!(net, ["lo"], "{log}");
    assert!(log.contains("#8 Seccomp:\t2"), "no seccomp filter:\n{log}");
    assert!(
        log.contains("#8 unshare-refused") && log.contains("#8 setns-refused"),
        "{log}"
    );
}

#[test]
fn a_failing_run_says_where_and_what_and_stores_nothing() {
    let p = project("FROM busybox\nRUN echo first line && echo the last words && exit 3\n");
    let out = p.rbuild(&["build", "-t", "r:1", "."]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("RUN failed (Dockerfile line 2)"), "{err}");
    assert!(err.contains("the command exited with status 3"), "{err}");
    assert!(err.contains("the last words"), "{err}");
    assert!(
        !p.root().join("tags/r%3A1").exists(),
        "a failed build was tagged"
    );
    p.file("Dockerfile", "FROM busybox\nRUN echo fine\n");
    p.ok(&["build", "-t", "r:1", "."]);
}

#[test]
fn run_results_are_cached() {
    let p = project("FROM busybox\nRUN date +%N > /stamp\n");
    build_log(&p, &[]);
    let first = fs_err::read_to_string(p.path("out/stamp")).unwrap();
    let log = build_log(&p, &[]);
    assert!(log.contains("#2 CACHED"), "{log}");
    assert_eq!(
        fs_err::read_to_string(p.path("out/stamp")).unwrap(),
        first,
        "a cached RUN ran again"
    );
}

#[test]
fn rbuild_run_smoke_tests_an_image() {
    let p = project(
        "FROM busybox\nENV GREETING=hi\nWORKDIR /srv\nRUN echo built > /srv/built.txt\nCMD [\"cat\", \"/srv/built.txt\"]\n",
    );
    p.ok(&["build", "-t", "r:1", "."]);
    let out = p.rbuild(&["run", "r:1"]);
    assert_eq!(text(&out.stdout), "built\n", "{}", text(&out.stderr));
    let share = p.path("share");
    fs_err::create_dir_all(&share).unwrap();
    fs_err::write(share.join("in.txt"), "from host").unwrap();
    let vol = format!("{}:/mnt/share:ro", share.display());
    let out = p.rbuild(&[
        "run", "-e", "EXTRA=1", "-v", &vol, "-w", "/mnt/share", "-u", "nobody", "--network", "none", "r:1", "sh", "-c",
        "echo $GREETING $EXTRA $(id -u) $(pwd) $(cat in.txt); touch x 2>/dev/null || echo read-only; exit 7",
    ]);
    assert_eq!(out.status.code(), Some(7), "{}", text(&out.stderr));
    assert_eq!(
        text(&out.stdout),
        "hi 1 65534 /mnt/share from host\nread-only\n"
    );
    // What the container wrote is gone, and the image is untouched.
    let out = p.rbuild(&[
        "run",
        "r:1",
        "sh",
        "-c",
        "echo changed > /srv/built.txt && cat /srv/built.txt",
    ]);
    assert_eq!(text(&out.stdout), "changed\n");
    assert_eq!(text(&p.rbuild(&["run", "r:1"]).stdout), "built\n");
}

#[test]
fn run_mounts_cache_bind_tmpfs_and_secret() {
    let p = project(
        "FROM busybox\nRUN --mount=type=cache,target=/var/cache/app echo run >> /var/cache/app/log && wc -l < /var/cache/app/log > /runs\nRUN --mount=type=bind,source=data,target=/src cat /src/in.txt > /copied && (touch /src/x 2>/dev/null || echo ro)\nRUN --mount=type=tmpfs,target=/scratch,size=1m echo t > /scratch/t && cat /scratch/t > /tmpfs-ok\nRUN --mount=type=secret,id=token,required cat /run/secrets/token > /dev/null && echo seen > /secret-seen\nRUN --mount=type=secret,id=token,env=TOKEN echo \"$TOKEN\" | grep -q 3cr3 && echo env-ok > /secret-env\n",
    );
    p.file("data/in.txt", "bound\n");
    fs_err::write(p.path("token"), "s3cr3t").unwrap();
    let secret = format!("id=token,src={}", p.path("token").display());
    let log = build_log(&p, &["--secret", &secret]);
    assert_eq!(fs_err::read_to_string(p.path("out/runs")).unwrap(), "1\n");
    assert_eq!(
        fs_err::read_to_string(p.path("out/copied")).unwrap(),
        "bound\n"
    );
    assert!(log.contains("#3 ro"), "a bind mount was writable:\n{log}");
    assert_eq!(
        fs_err::read_to_string(p.path("out/tmpfs-ok")).unwrap(),
        "t\n"
    );
    assert_eq!(
        fs_err::read_to_string(p.path("out/secret-seen")).unwrap(),
        "seen\n"
    );
    assert_eq!(
        fs_err::read_to_string(p.path("out/secret-env")).unwrap(),
        "env-ok\n"
    );
    // Mount points the sandbox made are not in the image, nor is the secret.
    assert!(
        !p.path("out/src").exists()
            && !p.path("out/scratch").exists()
            && !p.path("out/run/secrets").exists()
    );
    let layers = layer_listings(&p).concat();
    assert!(
        !layers
            .iter()
            .any(|l| l.contains("secrets") || l.starts_with("var/cache/app/")),
        "{layers:?}"
    );
    let saved = fs_err::read(p.path("saved.tar")).unwrap();
    assert!(
        !saved.windows(6).any(|w| w == b"s3cr3t"),
        "the secret is in the image"
    );
    // The cache mount persists across builds (the RUN itself reruns: its input changed).
    p.file("data/in.txt", "changed\n");
    build_log(&p, &["--secret", &secret, "--no-cache"]);
    assert_eq!(fs_err::read_to_string(p.path("out/runs")).unwrap(), "2\n");
    // A required secret that is not given is a clear error.
    let out = p.rbuild(&["build", "--no-cache", "."]);
    assert!(
        text(&out.stderr).contains("secret `token` is required"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn base_layers_are_unpacked_once_and_shared() {
    use std::os::unix::fs::MetadataExt;
    let p = project("FROM busybox\nRUN echo a > /a\n");
    p.ok(&["build", "."]);
    // Layer directories as root (the overlay snapshotter), merged snapshots elsewhere.
    let snaps = match p.root().join("layerfs") {
        l if l.is_dir() => l,
        _ => p.root().join("snapshots"),
    };
    let listing = |dir: &std::path::Path| -> Vec<(String, u64)> {
        let mut v: Vec<(String, u64)> = fs_err::read_dir(dir)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (
                    e.file_name().to_string_lossy().into_owned(),
                    e.metadata().unwrap().ino(),
                )
            })
            .collect();
        v.sort();
        v
    };
    let before = listing(&snaps);
    p.file("Dockerfile", "FROM busybox\nRUN echo b > /b\n");
    p.ok(&["build", "."]);
    let after = listing(&snaps);
    for entry in &before {
        assert!(after.contains(entry), "snapshot {entry:?} was made again");
    }
    assert!(
        !after.iter().any(|(n, _)| n.starts_with(".tmp-")),
        "{after:?}"
    );
    // Nothing a build does writes into a shared snapshot.
    let base = v_diff_id(&p, "busybox");
    let base = snaps.join(&base).join("rootfs");
    assert!(
        base.join("bin/busybox").is_file(),
        "not a snapshot: {}",
        base.display()
    );
    assert!(!base.join("a").exists() && !base.join("b").exists());
}

fn v_diff_id(p: &Project, image: &str) -> String {
    let v: serde_json::Value = serde_json::from_slice(&p.ok(&["inspect", image]).stdout).unwrap();
    v["Config"]["rootfs"]["diff_ids"][0]
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_owned()
}

#[test]
fn a_killed_build_leaves_no_process_behind() {
    // As root, and as another user: a change of ids clears the parent-death signal, which
    // the sandbox must arm again.
    for user in ["0", "1000"] {
        killed_build_leaves_nothing(&format!(
            "FROM busybox\nUSER {user}\nRUN sleep 4242 & sleep 4343\n"
        ));
    }
}

fn killed_build_leaves_nothing(dockerfile: &str) {
    let p = project(dockerfile);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rbuild"))
        .arg("--root")
        .arg(p.root())
        .args(["build", "--progress", "quiet", "."])
        .current_dir(p.ctx())
        .spawn()
        .unwrap();
    let running = || {
        let out = std::process::Command::new("ps")
            .args(["-eo", "args"])
            .output()
            .unwrap();
        text(&out.stdout)
            .lines()
            .filter(|l| l.starts_with("sleep 4242") || l.starts_with("sleep 4343"))
            .count()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while running() < 2 {
        assert!(
            std::time::Instant::now() < deadline,
            "the RUN never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while running() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the RUN's processes outlived the build:\n{dockerfile}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn independent_stages_run_at_the_same_time_and_the_schedule_changes_nothing() {
    let p = project(
        "FROM busybox AS a\nRUN cut -d' ' -f1 /proc/uptime > /start && sleep 1 && cut -d' ' -f1 /proc/uptime > /end\nFROM busybox AS b\nRUN cut -d' ' -f1 /proc/uptime > /start && sleep 1 && cut -d' ' -f1 /proc/uptime > /end && echo b > /who\nFROM busybox AS unused\nRUN exit 1\nFROM scratch\nCOPY --from=a /start /a.start\nCOPY --from=a /end /a.end\nCOPY --from=b /start /b.start\nCOPY --from=b /end /b.end\n",
    );
    let out = p.ok(&[
        "build",
        "--jobs",
        "2",
        "--progress",
        "plain",
        "-t",
        "par:1",
        "-o",
        "type=local,dest=../out",
        ".",
    ]);
    assert!(
        text(&out.stderr).contains("skipping stage unused"),
        "{}",
        text(&out.stderr)
    );
    let read = |f: &str| -> f64 {
        fs_err::read_to_string(p.path("out").join(f))
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    let (a0, a1, b0, b1) = (
        read("a.start"),
        read("a.end"),
        read("b.start"),
        read("b.end"),
    );
    assert!(
        a0 < b1 && b0 < a1,
        "stages a [{a0}, {a1}] and b [{b0}, {b1}] did not overlap"
    );
    // One at a time, from the same cache: the same image, byte for byte.
    let id = |args: &[&str]| {
        let mut all = vec!["build", "-q"];
        all.extend_from_slice(args);
        all.push(".");
        text(&p.ok(&all).stdout)
    };
    assert_eq!(id(&["--jobs", "1"]), id(&["--jobs", "4"]));
}

#[test]
fn without_overlayfs_a_copied_rootfs_and_a_tree_diff_give_the_same_changes() {
    let dockerfile = "FROM busybox\nRUN mkdir -p /data && echo x > /data/f && rm /etc/os-release && ln -s /data/f /data/l\n";
    let p = project(dockerfile);
    let overlay = build_log(&p, &[]);
    assert!(!overlay.contains("overlayfs is not available"), "{overlay}");
    let with_overlay = layer_listings(&p);
    // The same build, forced onto the fallback.
    let q = project(dockerfile);
    let log = build_log_with_env(&q, &[], &[("RBUILD_SNAPSHOTTER", "copy")]);
    assert!(
        log.contains("overlayfs is not available here"),
        "the fallback is not said in the log"
    );
    assert_eq!(fs_err::read_to_string(q.path("out/data/f")).unwrap(), "x\n");
    assert!(!q.path("out/etc/os-release").exists());
    let mut a = with_overlay[1].clone();
    let mut b = layer_listings(&q)[1].clone();
    a.sort();
    b.sort();
    assert_eq!(a, b, "the fallback found other changes than overlayfs");
}

#[test]
fn a_rootless_build_runs_and_its_files_are_root_in_the_image() {
    // As `nobody` (setpriv, from util-linux), on the single mapping (what a user without
    // subordinate ids gets): RUN gets a user namespace with nobody as root.
    let p = project(
        "FROM busybox\nRUN echo hi > /made && id -u > /uid && rm /etc/os-release\nRUN cat /made\n",
    );
    let tar = p.path("rootfs.tar");
    let dest = format!("type=tar,dest={}", tar.display());
    let out = p.rbuild_as_nobody_with(
        &[("RBUILD_ROOTLESS_IDS", "single")],
        &["build", "--progress", "plain", "-o", &dest, "."],
    );
    let log = text(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("hi"),
        "the second RUN did not see the first's file:\n{log}"
    );
    let listing = crate::support::tar_listing(&tar);
    let made = listing
        .lines()
        .find(|l| l.ends_with(" made"))
        .unwrap_or_else(|| panic!("/made is not in the image:\n{listing}"));
    assert!(made.contains(" 0/0 "), "not owned by root: {made}");
    assert!(!listing.contains("etc/os-release"), "the removal was lost");
    let dir = p.path("x");
    fs_err::create_dir_all(&dir).unwrap();
    assert!(
        std::process::Command::new("tar")
            .arg("-xf")
            .arg(&tar)
            .arg("-C")
            .arg(&dir)
            .arg("uid")
            .status()
            .unwrap()
            .success()
    );
    assert_eq!(fs_err::read_to_string(dir.join("uid")).unwrap(), "0\n");
}

/// Gives `nobody` subordinate ids (as `usermod --add-subuids` would), once.
fn nobody_has_subordinate_ids() {
    for file in ["/etc/subuid", "/etc/subgid"] {
        let now = fs_err::read_to_string(file).unwrap_or_default();
        if !now.lines().any(|l| l.starts_with("nobody:")) {
            let mut f = fs_err::OpenOptions::new()
                .create(true)
                .append(true)
                .open(file)
                .unwrap();
            std::io::Write::write_all(&mut f, b"nobody:300000:65536\n").unwrap();
        }
    }
}

#[test]
fn a_rootless_build_with_subordinate_ids_keeps_owners_and_runs_as_other_users() {
    crate::support::tool("newuidmap", "uidmap");
    nobody_has_subordinate_ids();
    let p = project(
        "FROM busybox\n\
         RUN mkdir -m 0700 /data && chown 1000:1000 /data && echo root > /by-root\n\
         USER 1000:1000\n\
         RUN id -u > /data/uid && id -g >> /data/uid && echo private > /data/secret && chmod 0600 /data/secret\n\
         USER root\n\
         RUN cat /data/uid /data/secret\n",
    );
    let tar = p.path("rootfs.tar");
    let dest = format!("type=tar,dest={}", tar.display());
    let out = p.rbuild_as_nobody(&["build", "--progress", "plain", "-o", &dest, "."]);
    let log = text(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("1000\n") || log.contains(" 1000"), "{log}");
    assert!(log.contains("private"), "{log}");
    let listing = crate::support::tar_listing(&tar);
    let owner = |name: &str| {
        listing
            .lines()
            .find(|l| l.ends_with(name))
            .unwrap_or_else(|| panic!("{name} is not in the image:\n{listing}"))
            .to_owned()
    };
    assert!(owner(" by-root").contains(" 0/0 "), "{}", owner(" by-root"));
    assert!(
        owner(" data/uid").contains(" 1000/1000 "),
        "{}",
        owner(" data/uid")
    );
    assert!(
        owner(" data/secret").starts_with("-rw-------"),
        "{}",
        owner(" data/secret")
    );
    assert!(owner(" data/").starts_with("drwx------") && owner(" data/").contains(" 1000/1000 "));
    // The store holds files owned by subordinate ids; a prune (as nobody) still removes them.
    let out = p.rbuild_as_nobody(&["prune", "--all"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn a_bind_mount_from_an_image_reads_it_and_its_digest_keys_the_cache() {
    let p = project(
        "FROM busybox\nRUN --mount=type=bind,from=lib:1,source=/data,target=/m cat /m/in.txt > /from-image\n",
    );
    let lib = |content: &str| {
        p.file("lib/data/in.txt", content)
            .file("lib/Dockerfile", "FROM scratch\nCOPY data /data\n");
        let out = p.rbuild(&["build", "-t", "lib:1", "-f", "lib/Dockerfile", "lib"]);
        assert!(out.status.success(), "{}", text(&out.stderr));
    };
    lib("one\n");
    build_log(&p, &[]);
    assert_eq!(
        fs_err::read_to_string(p.path("out/from-image")).unwrap(),
        "one\n"
    );
    lib("two\n");
    let log = build_log(&p, &[]);
    assert_eq!(
        fs_err::read_to_string(p.path("out/from-image")).unwrap(),
        "two\n"
    );
    assert!(log.contains("image `lib:1` changed"), "{log}");
}

#[test]
fn a_run_past_its_timeout_is_killed_with_everything_it_started() {
    let p = project("FROM busybox\nRUN echo started; sleep 5151 & sleep 5252\n");
    let out = p.rbuild(&["build", "--run-timeout", "1", "."]);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("longer than 1s and was killed"), "{err}");
    assert!(err.contains("Dockerfile line 2"), "{err}");
    assert!(
        err.contains("started"),
        "the last output is not shown:\n{err}"
    );
    // The build returned, so the helper is gone; the namespace's processes follow it.
    let ps = std::process::Command::new("ps")
        .args(["-eo", "args"])
        .output()
        .unwrap();
    let left: Vec<String> = text(&ps.stdout)
        .lines()
        .filter(|l| l.starts_with("sleep 5151") || l.starts_with("sleep 5252"))
        .map(str::to_owned)
        .collect();
    assert!(left.is_empty(), "left running: {left:?}");
    // Within its time the same RUN is fine.
    p.file("Dockerfile", "FROM busybox\nRUN sleep 0.1\n");
    p.ok(&["build", "--run-timeout", "30", "."]);
}

#[test]
fn run_heredocs_as_a_script_a_shebang_file_and_inside_a_command() {
    let dockerfile = |first: &str| {
        format!(
            "FROM busybox\nRUN <<EOF\necho {first} > /one\nEOF\nRUN cat > /two <<A && cat > /three <<-B\ntwo\nA\n\tthree\n\tB\nRUN <<EOF\n#!/bin/sh -e\necho \"$0\" > /shebang\nEOF\n"
        )
    };
    let p = project(&dockerfile("one"));
    build_log(&p, &[]);
    let read = |f: &str| fs_err::read_to_string(p.path(&format!("out/{f}"))).unwrap();
    assert_eq!(read("one"), "one\n");
    assert_eq!(read("two"), "two\n");
    assert_eq!(read("three"), "three\n");
    assert_eq!(read("shebang"), "/dev/pipes/EOF\n");
    assert!(!p.path("out/dev/pipes").exists());
    // The body is part of the step: changing it misses the cache from there on.
    p.file("Dockerfile", &dockerfile("uno"));
    let log = build_log(&p, &[]);
    assert_eq!(read("one"), "uno\n");
    assert!(!log.contains("#2 CACHED"), "{log}");
}
