//! Our archives read by the real tools: skopeo and umoci.

use std::os::unix::fs::MetadataExt;

use crate::support::{Project, text, tool};

fn project() -> Project {
    let p = Project::new();
    p.file("app/bin/tool", "#!/bin/sh\necho tool\n")
        .file("app/etc/conf", "k=v\n")
        .file("Dockerfile", "FROM scratch\nCOPY --chmod=0755 app/bin/ /usr/local/bin/\nCOPY --chown=12:34 app/etc/conf /etc/app.conf\nWORKDIR /work\nENV A=1\nCMD [\"tool\"]\n");
    p
}

#[test]
fn skopeo_and_umoci_read_our_oci_archive() {
    let p = project();
    let dest = format!("type=oci,dest={}", p.path("img.tar").display());
    p.ok(&["build", "-t", "interop:v1", "-o", &dest, "."]);
    let out = tool("skopeo", "skopeo")
        .arg("inspect")
        .arg(format!("oci-archive:{}", p.path("img.tar").display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["Layers"].as_array().unwrap().len(), 3);
    assert_eq!(info["Env"][1], "A=1", "after the default PATH");
    // skopeo copy accepts it too.
    let copy = tool("skopeo", "skopeo")
        .args(["copy", "--quiet"])
        .arg(format!("oci-archive:{}", p.path("img.tar").display()))
        .arg(format!("oci:{}:copied", p.path("layout").display()))
        .output()
        .unwrap();
    assert!(copy.status.success(), "{}", text(&copy.stderr));
    // umoci unpacks exactly the files, modes and owners we put in.
    fs_err::create_dir_all(p.path("unpacked")).unwrap();
    let st = std::process::Command::new("tar")
        .arg("-xf")
        .arg(p.path("img.tar"))
        .arg("-C")
        .arg(p.path("unpacked"))
        .status()
        .unwrap();
    assert!(st.success());
    let bundle = p.path("bundle");
    let out = tool("umoci", "umoci")
        .arg("unpack")
        .arg("--image")
        .arg(format!("{}:v1", p.path("unpacked").display()))
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rootfs = bundle.join("rootfs");
    let meta = |f: &str| {
        let m = fs_err::symlink_metadata(rootfs.join(f)).unwrap();
        (m.mode() & 0o7777, m.uid(), m.gid())
    };
    assert_eq!(meta("usr/local/bin/tool"), (0o755, 0, 0));
    assert_eq!(meta("etc/app.conf"), (0o644, 12, 34));
    assert_eq!(meta("work"), (0o755, 0, 0));
    let mut all: Vec<String> = walk(&rootfs);
    all.sort();
    assert_eq!(
        all,
        [
            "etc",
            "etc/app.conf",
            "usr",
            "usr/local",
            "usr/local/bin",
            "usr/local/bin/tool",
            "work"
        ]
    );
}

fn walk(root: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(d) = stack.pop() {
        for e in fs_err::read_dir(&d).unwrap() {
            let path = e.unwrap().path();
            out.push(
                path.strip_prefix(root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            );
            if path.is_dir() {
                stack.push(path);
            }
        }
    }
    out
}

#[test]
fn skopeo_reads_our_docker_archive() {
    let p = project();
    let dest = format!("type=docker,dest={}", p.path("img.docker.tar").display());
    p.ok(&["build", "-t", "interop:v1", "-o", &dest, "."]);
    let out = tool("skopeo", "skopeo")
        .arg("inspect")
        .arg(format!(
            "docker-archive:{}",
            p.path("img.docker.tar").display()
        ))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(info["Layers"].as_array().unwrap().len(), 3);
    let copy = tool("skopeo", "skopeo")
        .args(["copy", "--quiet"])
        .arg(format!(
            "docker-archive:{}",
            p.path("img.docker.tar").display()
        ))
        .arg(format!("oci:{}:x", p.path("layout2").display()))
        .output()
        .unwrap();
    assert!(copy.status.success(), "{}", text(&copy.stderr));
}

/// podman with a store of the test's own, the runtime that works on these machines (runc: crun
/// refuses hybrid cgroups) and no network.
pub(crate) fn podman(p: &Project) -> std::process::Command {
    let mut cmd = tool("podman", "podman");
    cmd.arg("--root")
        .arg(p.path("podman/root"))
        .arg("--runroot")
        .arg(p.path("podman/run"))
        .args(["--storage-driver", "vfs", "--runtime", "runc"]);
    cmd
}

/// `podman run`, as this machine allows it: no bridge, and rlimits it may not raise set to what
/// it has (no `CAP_SYS_RESOURCE` here; see `shared/peers/RESULTS.md`).
pub(crate) fn podman_run(p: &Project) -> std::process::Command {
    let mut cmd = podman(p);
    cmd.args([
        "run",
        "--rm",
        "--network",
        "none",
        "--ulimit",
        "nofile=20000:20000",
        "--ulimit",
        "nproc=4096:4096",
    ]);
    cmd
}

#[test]
fn podman_loads_both_archives_and_runs_the_image() {
    tool("runc", "runc");
    let p = Project::new();
    crate::support::import_busybox(&p.root());
    let hello = crate::support::hello_fixture();
    let docker = format!("type=docker,dest={}", p.path("hello.docker.tar").display());
    let oci = format!("type=oci,dest={}", p.path("hello.oci.tar").display());
    p.ok(&[
        "build",
        "-t",
        "hello:v1",
        "-o",
        &docker,
        "-o",
        &oci,
        "--compression",
        "zstd",
        hello.to_str().unwrap(),
    ]);
    for archive in ["hello.oci.tar", "hello.docker.tar"] {
        let out = podman(&p)
            .arg("load")
            .arg("-i")
            .arg(p.path(archive))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "podman load {archive}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stdout).contains("hello:v1"),
            "{}",
            text(&out.stdout)
        );
    }
    let out = podman_run(&p).arg("localhost/hello:v1").output().unwrap();
    assert!(out.status.success(), "podman run: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello from rbuild\n");
    let out = podman_run(&p)
        .args(["localhost/hello:v1", "id", "-u"])
        .output()
        .unwrap();
    assert_eq!(
        text(&out.stdout).trim(),
        "65534",
        "USER nobody not applied: {}",
        text(&out.stderr)
    );
}

#[test]
fn tarballs_written_by_skopeo_load_into_rbuild() {
    let p = project();
    let ours = p.path("ours.tar");
    p.ok(&[
        "build",
        "-t",
        "interop:v1",
        "-o",
        &format!("type=oci,dest={}", ours.display()),
        ".",
    ]);
    let id = inspect_id(&p, &p.root(), "interop:v1");
    for (i, target) in ["docker-archive", "oci-archive"].iter().enumerate() {
        let theirs = p.path(&format!("theirs-{i}.tar"));
        let dest = if *target == "docker-archive" {
            format!("docker-archive:{}:skopeo/copied:v2", theirs.display())
        } else {
            format!("oci-archive:{}:v2", theirs.display())
        };
        let copy = tool("skopeo", "skopeo")
            .args(["copy", "--quiet"])
            .arg(format!("oci-archive:{}", ours.display()))
            .arg(dest)
            .output()
            .unwrap();
        assert!(copy.status.success(), "{}", text(&copy.stderr));
        let root = p.path(&format!("root-{i}"));
        let out = p.rbuild_in(&root, &["load", "-i", theirs.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "load of skopeo's {target}: {}",
            text(&out.stderr)
        );
        let loaded = text(&out.stdout);
        let name = loaded
            .trim()
            .strip_prefix("Loaded image: ")
            .unwrap_or_else(|| panic!("{loaded}"))
            .to_owned();
        assert_eq!(
            inspect_id(&p, &root, &name),
            id,
            "{target}: the config changed on the way"
        );
        // And back out again, readable.
        let again = p.path(&format!("again-{i}.tar"));
        let out = p.rbuild_in(&root, &["save", "-o", again.to_str().unwrap(), &name]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let st = tool("skopeo", "skopeo")
            .arg("inspect")
            .arg(format!("oci-archive:{}", again.display()))
            .output()
            .unwrap();
        assert!(st.status.success(), "{}", text(&st.stderr));
    }
}

fn inspect_id(p: &Project, root: &std::path::Path, name: &str) -> String {
    let out = p.rbuild_in(root, &["inspect", name]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["Id"].as_str().unwrap().to_owned()
}

/// The real-world build: apt on a debootstrap base over the host's network, run under podman.
/// Slow the first time on a machine (debootstrap); the base tarball is cached in /var/tmp.
#[test]
fn apt_get_install_on_debian_runs_under_podman() {
    tool("debootstrap", "debootstrap");
    tool("runc", "runc");
    let p = Project::new();
    let script =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/base/debian.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .arg(env!("CARGO_BIN_EXE_rbuild"))
        .arg("--root")
        .arg(p.root())
        .output()
        .unwrap();
    assert!(out.status.success(), "debian.sh: {}", text(&out.stderr));
    let ctx =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/context/apt-hello");
    let dest = format!("type=docker,dest={}", p.path("apt.tar").display());
    p.ok(&[
        "build",
        "-t",
        "apt-hello:1",
        "-o",
        &dest,
        ctx.to_str().unwrap(),
    ]);
    let out = p.rbuild(&["run", "apt-hello:1"]);
    assert_eq!(
        text(&out.stdout),
        "Hello, world!\n",
        "{}",
        text(&out.stderr)
    );
    let out = podman(&p)
        .arg("load")
        .arg("-i")
        .arg(p.path("apt.tar"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = podman_run(&p)
        .arg("localhost/apt-hello:1")
        .output()
        .unwrap();
    assert!(out.status.success(), "podman run: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "Hello, world!\n");
}
