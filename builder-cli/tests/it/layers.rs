//! Issue 16: the per-layer snapshotter. Each layer is one directory of its own changes, stacked
//! by overlayfs; the merged-tree snapshotter (`RBUILD_SNAPSHOTTER=copy`) stays as the fallback;
//! both give the images the builder gave before either existed, and a RUN on a copy of the
//! tree (the copy fallback, chroot isolation) gives the same layers as one on an overlay.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::support::{Project, import_busybox, text};

const EPOCH: &str = "1700000000";

/// A build whose layers exercise what a stack must get right: deletions (whiteouts), a
/// directory replaced (opaque), a hard link to a file of a lower layer, a mode change,
/// `WORKDIR`, and a second stage copying a tree out of the first.
const DOCKERFILE: &str = "\
FROM busybox AS base
COPY a /app/a
COPY tree /app/tree
RUN rm /app/tree/gone && rm -rf /app/tree/dir && mkdir /app/tree/dir \\
 && echo new > /app/tree/dir/n && ln /app/a /app/hard && chmod 0600 /app/a && rm /etc/group
WORKDIR /app/work
RUN test ! -e /app/tree/gone && test ! -e /app/tree/dir/old && test ! -e /etc/group \\
 && cat /app/hard /app/tree/dir/n > out && ls /app/tree/dir > ls
FROM busybox
COPY --from=base /app /copied
RUN find /copied | sort > /listing && cat /copied/work/out >> /listing
";

/// The layers this build adds above the base, as the builder made them before the per-layer
/// snapshotter existed (commit 942e5e9, `SOURCE_DATE_EPOCH=1700000000`): they depend on the
/// Dockerfile and the context only, not on the busybox binary.
const EXPECTED: [&str; 7] = [
    "sha256:7b6ca67ace63450667a936598570549df746d2b4a6e0a6782d02c932226f8960", // COPY a
    "sha256:dfa2e20c4516853483514ca3c0efa41deeab0e7c728596347bef0a556b44b599", // COPY tree
    "sha256:232ca5c4edcbef692e3481c211cc71b9c8fea7147e9c6725f75258663f1e927f", // RUN rm …
    "sha256:1273ef8c8f78796a602eb784261fd41a035a14522032893a20e9d146e964b415", // WORKDIR
    "sha256:11fa744468063ce9878e52c00a8c29d600911c5f060c1b392d5955b7f2a682c8", // RUN test …
    "sha256:3f54e8f028d8b09839e453f3f6470638cdc1352646efd384c77d3d0be39f8cc2", // COPY --from
    "sha256:a3225ab40d596781c969d0170efe1a60398838e8cce5b84d8149776b25cca737", // RUN find …
];

fn project() -> Project {
    let p = Project::new();
    import_busybox(&p.root());
    p.file("a", "a\n")
        .file("tree/gone", "gone\n")
        .file("tree/keep", "keep\n")
        .file("tree/dir/old", "old\n")
        .file("Dockerfile", DOCKERFILE);
    p
}

fn build(p: &Project, root: &Path, envs: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    let mut cmd = p.command_in(
        root,
        &[&["build", "--progress", "plain"], args, &["."]].concat(),
    );
    cmd.env("SOURCE_DATE_EPOCH", EPOCH);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("rbuild runs");
    assert!(out.status.success(), "build failed:\n{}", text(&out.stderr));
    out
}

/// Mount points below `dir` in this process's namespace (the builder mounts in the same one).
fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = fs_err::canonicalize(dir).unwrap();
    fs_err::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_owned))
        .filter(|m| Path::new(m).starts_with(&dir))
        .collect()
}

/// The layers of both stages, base excluded.
fn built_layers(p: &Project, root: &Path) -> Vec<String> {
    let base = p.diff_ids_in(root, "busybox").len();
    let mut first = p.diff_ids_in(root, "stage0");
    first.drain(..base);
    let mut last = p.diff_ids_in(root, "final");
    last.drain(..base);
    first.extend(last);
    first
}

#[test]
fn issue_16_both_snapshotters_give_the_images_of_before() {
    let p = project();
    for (name, envs, expected) in [
        ("layers", &[][..], EXPECTED),
        // On a copy the layer is the diff of two trees, told apart as overlayfs would record
        // them (`snapshot::overlay_diff`): the same bytes.
        ("copy", &[("RBUILD_SNAPSHOTTER", "copy")][..], EXPECTED),
    ] {
        let root = p.path(&format!("root-{name}"));
        import_busybox(&root);
        build(&p, &root, envs, &["--target", "base", "-t", "stage0"]);
        let out = build(&p, &root, envs, &["-t", "final"]);
        let log = text(&out.stderr);
        assert!(
            !log.contains("overlayfs is not available") || name == "copy",
            "{log}"
        );
        assert_eq!(
            built_layers(&p, &root),
            expected,
            "{name}: the layers changed\n{log}"
        );
        assert!(
            mounts_under(&root).is_empty(),
            "{name}: mounts left after the build: {:?}",
            mounts_under(&root)
        );
        let layerfs = root.join("layerfs").is_dir();
        let snapshots = root.join("snapshots").is_dir();
        match name {
            "layers" => assert!(layerfs && !snapshots, "layers mode made merged snapshots"),
            _ => assert!(snapshots && !layerfs, "copy mode made layer directories"),
        }
    }
}

#[test]
fn issue_16_each_layer_directory_holds_only_its_own_changes() {
    let p = project();
    build(&p, &p.root(), &[], &["-t", "final"]);
    let layerfs = p.root().join("layerfs");
    let dirs: Vec<_> = fs_err::read_dir(&layerfs)
        .unwrap()
        .map(|e| e.unwrap().path().join("rootfs"))
        .collect();
    // busybox, the first stage's five layers (read by COPY --from) and the second stage's
    // COPY (read by its RUN). The last RUN's layer is read by no step: no directory is made.
    assert_eq!(dirs.len(), 7, "{dirs:?}");
    let with_busybox = dirs
        .iter()
        .filter(|d| d.join("bin/busybox").exists())
        .count();
    assert_eq!(
        with_busybox, 1,
        "the base's files were copied into other layers"
    );
    // The RUN that removed files holds whiteouts (character devices 0/0), not a copy of the
    // tree without them.
    let rm = dirs
        .iter()
        .find(|d| d.join("app/tree/dir/n").exists())
        .expect("the RUN rm layer");
    let gone = fs_err::symlink_metadata(rm.join("app/tree/gone")).unwrap();
    assert!(gone.file_type().is_char_device() && gone.rdev() == 0);
    assert!(
        !rm.join("app/tree/keep").exists(),
        "an unchanged file was copied up"
    );
    // The replaced directory's old content is hidden (the layer's opaque marker, applied
    // through the overlay, whites out what was below).
    let old = fs_err::symlink_metadata(rm.join("app/tree/dir/old")).unwrap();
    assert!(old.file_type().is_char_device() && old.rdev() == 0);
    // A second build reads through the same directories: nothing is unpacked again.
    let before: Vec<_> = dirs
        .iter()
        .map(|d| fs_err::metadata(d).unwrap().ino())
        .collect();
    let out = build(&p, &p.root(), &[], &["--no-cache", "-t", "again"]);
    let after: Vec<_> = dirs
        .iter()
        .map(|d| fs_err::metadata(d).unwrap().ino())
        .collect();
    assert_eq!(before, after, "{}", text(&out.stderr));
}

#[test]
fn issue_16_a_chain_past_the_mount_option_limit_merges_its_oldest_layers() {
    let p = Project::new();
    import_busybox(&p.root());
    // A layer directory's path is about 100 bytes here and the kernel takes one page of
    // options: 45 layers are past it.
    let runs = (0..45)
        .map(|i| format!("RUN echo {i} > /f{i}"))
        .collect::<Vec<_>>()
        .join("\n");
    let dockerfile = format!("FROM busybox\n{runs}\nRUN cat /f0 /f22 /f44 > /all\n");
    p.file("Dockerfile", &dockerfile);
    let out = build(&p, &p.root(), &[], &["-t", "deep"]);
    assert!(
        p.root().join("snapshots").is_dir(),
        "no merged prefix was made:\n{}",
        text(&out.stderr)
    );
    let out = p.rbuild(&["run", "deep", "--", "cat", "/all"]);
    assert_eq!(text(&out.stdout), "0\n22\n44\n", "{}", text(&out.stderr));
    assert!(mounts_under(&p.root()).is_empty());
}

#[test]
fn issue_16_a_killed_builds_overlay_views_are_detached_at_the_next_start() {
    let p = Project::new();
    import_busybox(&p.root());
    p.file(
        "Dockerfile",
        "FROM busybox\nRUN echo 1 > /one\nRUN echo $((6 * 7))-ready && sleep 60\n",
    );
    let mut child = p
        .command_in(&p.root(), &["build", "--progress", "plain", "."])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    assert!(
        // The command's output, not the step's header that quotes it.
        lines.any(|l| l.is_ok_and(|l| l.ends_with(" 42-ready"))),
        "the RUN did not start"
    );
    assert!(
        !mounts_under(&p.root()).is_empty(),
        "the running build has no view mounted (is the layer snapshotter in use?)"
    );
    // kill -9: no destructor runs, the views stay mounted.
    let _ = Command::new("kill")
        .args(["-9", &child.id().to_string()])
        .status();
    let _ = child.wait();
    let _ = Command::new("pkill")
        .args(["-9", "-f", "sleep 60"])
        .status();
    p.file("Dockerfile", "FROM busybox\nRUN echo 1 > /one\n");
    build(&p, &p.root(), &[], &[]);
    assert!(
        mounts_under(&p.root()).is_empty(),
        "{:?}",
        mounts_under(&p.root())
    );
    let out = p.rbuild(&["fsck"]);
    assert!(out.status.success(), "{}", text(&out.stdout));
}

/// One-pass COPY: a layer a later step reads has its directory written with its tar, so
/// every file of the directory was made before the blob was committed (an unpack after the
/// fact makes them after), and the directory reads as the blob unpacked.
#[test]
fn issue_16_a_copy_read_later_writes_its_layer_directory_with_its_tar() {
    let p = project();
    build(&p, &p.root(), &[], &["--target", "base", "-t", "stage0"]);
    let layerfs = p.root().join("layerfs");
    let tree = fs_err::read_dir(&layerfs)
        .unwrap()
        .map(|e| e.unwrap().path().join("rootfs"))
        .find(|d| d.join("app/tree/keep").is_file() && !d.join("app/tree/dir/n").exists())
        .expect("the COPY tree layer's directory");
    // The ctime of the blob is its rename into the store, the commit.
    let blob = fs_err::metadata(p.root().join("blobs/sha256").join(&EXPECTED[1][7..])).unwrap();
    let committed = (blob.ctime(), blob.ctime_nsec());
    for f in ["app/tree/keep", "app/tree/gone", "app/tree/dir/old"] {
        let born = fs_err::symlink_metadata(tree.join(f))
            .unwrap()
            .created()
            .expect("the filesystem keeps birth times")
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        let born = (
            i64::try_from(born.as_secs()).unwrap(),
            i64::from(born.subsec_nanos()),
        );
        assert!(
            born < committed,
            "{f} was unpacked after the blob was stored"
        );
    }
    assert_eq!(
        fs_err::read_to_string(tree.join("app/tree/keep")).unwrap(),
        "keep\n"
    );
    let out = p.rbuild(&["fsck"]);
    assert!(out.status.success(), "{}", text(&out.stdout));
}
