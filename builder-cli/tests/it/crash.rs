//! The store under kill -9, concurrent writers and prune; `rbuild fsck`; damaged snapshots.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Project, import_busybox, text};

const EPOCH: &str = "1700000000";

fn rbuild(root: &std::path::Path, ctx: &std::path::Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rbuild"));
    cmd.arg("--root")
        .arg(root)
        .args(args)
        .current_dir(ctx)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    cmd
}

fn ok(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    out
}

fn manifest_digest(root: &std::path::Path, ctx: &std::path::Path, tag: &str) -> String {
    let out = ok(&mut rbuild(root, ctx, &["inspect", tag]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["Digest"].as_str().unwrap().to_owned()
}

/// A context with files to COPY and a Dockerfile with COPY and RUN steps (RUN makes snapshots).
fn chaos_project() -> Project {
    let p = Project::new();
    import_busybox(&p.root());
    for i in 0..60 {
        let body = format!("file {i}\n").repeat(200 + i * 37);
        p.file(&format!("data/{:02}/f{i}.txt", i % 7), &body);
    }
    p.file("a.txt", "a\n");
    p.file(
        "Dockerfile",
        "FROM busybox\nARG N=0\nRUN echo $N > /n\nCOPY data/ /data/\n\
         RUN cat /data/*/* | md5sum > /sum && mkdir -p /out && cp -r /data/00 /out/\n\
         COPY a.txt /a.txt\nRUN ls -lR /data > /listing && rm -rf /out/00/f0.txt\n",
    );
    p
}

fn fsck_clean(root: &std::path::Path, ctx: &std::path::Path) {
    let out = rbuild(root, ctx, &["fsck"]).output().unwrap();
    let stdout = text(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("no problems"),
        "fsck found problems:\n{stdout}\n{}",
        text(&out.stderr)
    );
}

#[test]
fn chaos_kill_9_while_a_build_and_prune_run_leaves_a_whole_store() {
    let p = chaos_project();
    let root = p.root();
    let ctx = p.ctx();
    let done = std::sync::atomic::AtomicBool::new(false);
    let start = Instant::now();
    let (steady, prunes) = std::thread::scope(|s| {
        // The second build and prune, over and over while builds are killed beside them.
        let bystander = s.spawn(|| {
            let (mut builds, mut prunes) = (0, 0);
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                ok(rbuild(
                    &root,
                    &ctx,
                    &["build", "-q", "--network", "none", "-t", "steady", "."],
                )
                .arg("--build-arg")
                .arg(format!("N=steady{builds}")));
                builds += 1;
                let out = ok(&mut rbuild(&root, &ctx, &["prune"]));
                assert!(
                    text(&out.stdout).contains("Deleted"),
                    "{}",
                    text(&out.stdout)
                );
                prunes += 1;
            }
            (builds, prunes)
        });
        // 30 builds, each with new steps (N differs), killed at spread-out moments.
        let mut seed: u64 = 7;
        for i in 0..30 {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let delay = Duration::from_millis(20 + (seed >> 33) % 1500);
            let mut child = rbuild(
                &root,
                &ctx,
                &["build", "-q", "--network", "none", "-t", "victim", "."],
            )
            .arg("--build-arg")
            .arg(format!("N={i}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
            std::thread::sleep(delay);
            let _ = child.kill();
            let _ = child.wait();
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        bystander.join().unwrap()
    });
    assert!(
        steady > 0 && prunes > 0,
        "the second build and prune never ran"
    );
    eprintln!(
        "chaos: 30 kills, {steady} builds and {prunes} prunes beside them, {:?}",
        start.elapsed()
    );
    fsck_clean(&root, &ctx);
    // The next build works and gives what a fresh store gives.
    ok(rbuild(
        &root,
        &ctx,
        &["build", "-q", "--network", "none", "-t", "final", "."],
    )
    .arg("--build-arg")
    .arg("N=final"));
    let fresh = p.path("fresh");
    import_busybox(&fresh);
    ok(rbuild(
        &fresh,
        &ctx,
        &["build", "-q", "--network", "none", "-t", "final", "."],
    )
    .arg("--build-arg")
    .arg("N=final"));
    assert_eq!(
        manifest_digest(&root, &ctx, "final"),
        manifest_digest(&fresh, &ctx, "final")
    );
    // A prune after it all leaves no work directory behind.
    ok(&mut rbuild(&root, &ctx, &["prune"]));
    let left: Vec<_> = fs_err::read_dir(root.join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    fsck_clean(&root, &ctx);
}

/// The snapshot directory whose tree holds `rel`, the longest chain first.
fn snapshot_with(root: &std::path::Path, rel: &str) -> std::path::PathBuf {
    // Layer directories (the overlay snapshotter) or merged snapshots (the copy fallback).
    let mut found: Vec<_> = ["layerfs", "snapshots"]
        .iter()
        .filter_map(|d| fs_err::read_dir(root.join(d)).ok())
        .flatten()
        .map(|e| e.unwrap().path())
        .filter(|d| d.join("rootfs").join(rel).exists())
        .collect();
    found.sort_by_key(|d| {
        std::cmp::Reverse(
            fs_err::read_to_string(d.join("complete"))
                .ok()
                .and_then(|r| serde_json::from_str::<serde_json::Value>(&r).ok())
                .and_then(|v| v["entries"].as_u64())
                .unwrap_or(0),
        )
    });
    found
        .into_iter()
        .next()
        .expect("a snapshot holding the file")
}

#[test]
fn a_damaged_snapshot_is_noticed_and_rebuilt() {
    let p = Project::new();
    import_busybox(&p.root());
    p.file("big.txt", &"0123456789\n".repeat(5000));
    p.file(
        "Dockerfile",
        "FROM busybox\nCOPY big.txt /big.txt\nRUN wc -c /big.txt > /size && /bin/busybox true\n",
    );
    let (root, ctx) = (p.root(), p.ctx());
    let build = |tag: &str| {
        ok(&mut rbuild(
            &root,
            &ctx,
            &[
                "build",
                "-q",
                "--no-cache",
                "--network",
                "none",
                "-t",
                tag,
                ".",
            ],
        ));
        manifest_digest(&root, &ctx, tag)
    };
    let first = build("snap:1");

    // 1. A file truncated and the completion record gone: as a crash mid-unpack leaves it.
    let snap = snapshot_with(&root, "big.txt");
    fs_err::OpenOptions::new()
        .write(true)
        .open(snap.join("rootfs/big.txt"))
        .unwrap()
        .set_len(10)
        .unwrap();
    fs_err::remove_file(snap.join("complete")).unwrap();
    let out = rbuild(&root, &ctx, &["fsck", "--quick"]).output().unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stdout).contains("has no completion record"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(build("snap:2"), first, "the damaged snapshot was used");
    let snap = snapshot_with(&root, "big.txt");
    assert_eq!(
        fs_err::metadata(snap.join("rootfs/big.txt")).unwrap().len(),
        55_000
    );

    // 2. The busybox binary truncated with every record in place: the listing tells. (With
    // merged snapshots its inode is shared by hard links with the base image's snapshot, which
    // is damaged too; with layer directories it is the base layer's.)
    let snap = snapshot_with(&root, "bin/busybox");
    let f = fs_err::OpenOptions::new()
        .write(true)
        .open(snap.join("rootfs/bin/busybox"))
        .unwrap();
    let mtime = f.metadata().unwrap().modified().unwrap();
    f.set_len(100).unwrap();
    f.set_modified(mtime).unwrap();
    drop(f);
    let out = rbuild(&root, &ctx, &["fsck"]).output().unwrap();
    let stdout = text(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains("its files differ from its completion record"),
        "{stdout}"
    );
    assert_eq!(build("snap:3"), first, "a damaged snapshot was used");
    fsck_clean(&root, &ctx);
}

#[test]
fn fsck_finds_a_flipped_byte_and_repair_removes_what_it_breaks() {
    let p = Project::new();
    p.file("a.txt", "hello\n")
        .file("Dockerfile", "FROM scratch\nCOPY a.txt /a\n");
    let (root, ctx) = (p.root(), p.ctx());
    ok(&mut rbuild(&root, &ctx, &["build", "-q", "-t", "f:1", "."]));
    fsck_clean(&root, &ctx);
    let v: serde_json::Value =
        serde_json::from_slice(&ok(&mut rbuild(&root, &ctx, &["inspect", "f:1"])).stdout).unwrap();
    let layer = v["Config"]["rootfs"]["diff_ids"][0]
        .as_str()
        .unwrap()
        .to_owned();
    let path = root
        .join("blobs/sha256")
        .join(layer.trim_start_matches("sha256:"));
    let mut bytes = fs_err::read(&path).unwrap();
    bytes[600] ^= 0x20;
    fs_err::write(&path, bytes).unwrap();

    let out = rbuild(&root, &ctx, &["fsck"]).output().unwrap();
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains(&format!("blob {layer} is corrupt")) && stdout.contains("--repair"),
        "{stdout}"
    );
    let out = ok(&mut rbuild(&root, &ctx, &["fsck", "--repair"]));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains(&format!("blob {layer} is corrupt")) && stdout.contains("(removed)"),
        "{stdout}"
    );
    // What named the blob went with it: the tag and the step-cache record.
    assert!(stdout.contains("tag `f:1`"), "{stdout}");
    assert!(stdout.contains("step-cache record"), "{stdout}");
    assert!(!path.exists());
    fsck_clean(&root, &ctx);
    ok(&mut rbuild(&root, &ctx, &["build", "-q", "-t", "f:1", "."]));
    assert!(path.is_file(), "the next build did not recreate the layer");
    fsck_clean(&root, &ctx);
}

/// Holds the store's exclusive lock (as a prune does) from another process until dropped.
struct Holder(std::process::Child);

impl Holder {
    fn exclusive(root: &std::path::Path) -> Self {
        fs_err::create_dir_all(root).unwrap();
        let script = format!(
            "exec 8>>'{r}/lock.gate' 9>>'{r}/lock'; flock -x 8; flock -x 9; echo held; exec sleep 60",
            r = root.display()
        );
        let mut child = Command::new("bash")
            .args(["-c", &script])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line.trim(), "held");
        Self(child)
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn every_writer_takes_the_store_lock() {
    let p = Project::new();
    p.file("a.txt", "a\n")
        .file("Dockerfile", "FROM scratch\nCOPY a.txt /a\n");
    let (root, ctx) = (p.root(), p.ctx());
    ok(&mut rbuild(&root, &ctx, &["build", "-q", "-t", "w:1", "."]));
    let archive = p.path("w.tar");
    ok(&mut rbuild(
        &root,
        &ctx,
        &["save", "-o", archive.to_str().unwrap(), "w:1"],
    ));
    let rootfs = p.path("rootfs.tar");
    assert!(
        Command::new("tar")
            .arg("-cf")
            .arg(&rootfs)
            .arg("-C")
            .arg(&ctx)
            .arg("a.txt")
            .status()
            .unwrap()
            .success()
    );
    let _held = Holder::exclusive(&root);
    let save_to = p.path("again.tar");
    let writers: [&[&str]; 9] = [
        &["build", "-q", "-t", "w:2", "."],
        // `rbuild [globals] -t x .` is a build too (docker's form).
        &["-q", "-t", "w:5", "."],
        &["tag", "w:1", "w:3"],
        &["rmi", "w:1"],
        &["load", "-i", archive.to_str().unwrap()],
        &["import", rootfs.to_str().unwrap(), "w:4"],
        &["save", "-o", save_to.to_str().unwrap(), "w:1"],
        &["prune"],
        &["fsck"],
    ];
    for args in writers {
        let start = Instant::now();
        let out = rbuild(&root, &ctx, &["--lock-timeout", "1"])
            .args(args)
            .output()
            .unwrap();
        let stderr = text(&out.stderr);
        assert!(
            !out.status.success(),
            "`{}` ran without the lock",
            args.join(" ")
        );
        assert!(
            stderr.contains("is busy: waited 1 s") && stderr.contains("--lock-timeout"),
            "`{}`: {stderr}",
            args.join(" ")
        );
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
    }
}

#[test]
fn prune_waits_for_a_running_build_and_a_killed_ones_work_dir_goes_at_the_next_start() {
    let p = Project::new();
    import_busybox(&p.root());
    p.file(
        "Dockerfile",
        "FROM busybox\nRUN sleep 4 && echo done > /done\n",
    );
    let (root, ctx) = (p.root(), p.ctx());
    let other = p.path("other");
    fs_err::create_dir_all(&other).unwrap();
    fs_err::write(other.join("Dockerfile"), "FROM busybox\nRUN sleep 60\n").unwrap();
    let work_dirs = || -> Vec<String> {
        fs_err::read_dir(root.join("tmp"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("build-") && !n.contains(".owner"))
            .collect()
    };
    let wait_for = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while work_dirs().len() < n {
            assert!(Instant::now() < deadline, "no work directory appeared");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let live = rbuild(
        &root,
        &ctx,
        &["build", "-q", "--network", "none", "-t", "slow", "."],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    wait_for(1);
    let live_dir = work_dirs();
    let mut victim = rbuild(&root, &other, &["build", "-q", "--network", "none", "."])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(2);
    victim.kill().unwrap();
    victim.wait().unwrap();
    // A prune that may not wait long enough says who it waits for, and touches nothing.
    let out = rbuild(&root, &ctx, &["--lock-timeout", "1", "prune"])
        .output()
        .unwrap();
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("is busy") && stderr.contains(&format!("pid {}", live.id())),
        "{stderr}"
    );
    // The next start (any command) removes the killed build's directory, not the live one's.
    ok(&mut rbuild(&root, &ctx, &["images"]));
    assert_eq!(work_dirs(), live_dir);
    // A prune that waits gets in once the build is done, and the build was not disturbed.
    ok(&mut rbuild(&root, &ctx, &["prune"]));
    let out = live.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(work_dirs().is_empty());
}
