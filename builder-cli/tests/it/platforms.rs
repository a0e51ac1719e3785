//! Multi-platform builds: `--platform linux/amd64,linux/arm64` builds each (arm64's RUN under
//! QEMU through `binfmt_misc`) and makes one OCI index, exported and pushed.

use crate::registry_server::Registry;
use crate::support::{Project, import_busybox, text, tool};

/// An arm64 busybox: `.ci/run` fetches Debian's busybox-static:arm64
/// (fixtures/base/busybox-arm64.sh) and names it in `RBUILD_TEST_ARM64_BUSYBOX`.
fn arm64_busybox() -> std::path::PathBuf {
    let path = std::env::var_os("RBUILD_TEST_ARM64_BUSYBOX").map_or_else(
        || "/var/tmp/rbuild-arm64/bin/busybox".into(),
        std::path::PathBuf::from,
    );
    assert!(
        path.is_file(),
        "no arm64 busybox at {}: run fixtures/base/busybox-arm64.sh (.ci/run does)",
        path.display()
    );
    path
}

/// `skopeo inspect --raw SOURCE` (an `oci-archive:` or a `docker://` on the loopback
/// registry), parsed.
fn raw(source: &str) -> serde_json::Value {
    let out = tool("skopeo", "skopeo")
        .args(["inspect", "--raw", "--tls-verify=false", source])
        .output()
        .unwrap();
    assert!(out.status.success(), "{source}: {}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The architectures of an index's manifests, in order.
fn arches(index: &serde_json::Value) -> Vec<&str> {
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["platform"]["architecture"].as_str().unwrap())
        .collect()
}

fn project() -> Project {
    let p = Project::new();
    import_busybox(&p.root());
    fs_err::copy(arm64_busybox(), p.ctx().join("busybox-arm64")).unwrap();
    fs_err::copy("/bin/busybox", p.ctx().join("busybox-amd64")).unwrap();
    // The first stage runs on the build's platform whatever the target: the cross-compiling
    // pattern. It does not read TARGET*, so both targets share it.
    p.file(
        "Dockerfile",
        "FROM --platform=$BUILDPLATFORM busybox AS build\nRUN echo build-stage-ran && uname -m > /built-on\nFROM scratch\nARG TARGETARCH\nCOPY busybox-${TARGETARCH} /bin/busybox\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox uname -m > /arch\"]\nCOPY --from=build /built-on /built-on\n",
    );
    // Asked for by name, as rbuild never registers a handler by itself.
    tool("qemu-aarch64-static", "qemu-user-static");
    let out = p.ok(&["binfmt", "--install", "arm64"]);
    assert!(
        text(&out.stdout).contains("arm64      yes"),
        "{}",
        text(&out.stdout)
    );
    p
}

#[test]
fn two_platforms_make_one_index_exported_and_pushed() {
    let p = project();
    let registry = Registry::shared();
    let tag = format!("{}/multi/busybox:1", registry.host());
    let out = p.ok(&[
        "--insecure-registry",
        &registry.host(),
        "build",
        "--progress",
        "plain",
        "--platform",
        "linux/amd64,linux/arm64",
        "-t",
        &tag,
        "--push",
        "-o",
        "type=oci,dest=../multi.tar",
        ".",
    ]);
    let log = text(&out.stderr);
    assert_eq!(
        log.matches(" build-stage-ran\n").count(),
        1,
        "the $BUILDPLATFORM stage did not run exactly once:\n{log}"
    );

    // The archive: an index of both manifests.
    let index = raw(&format!("oci-archive:{}", p.path("multi.tar").display()));
    assert_eq!(arches(&index), ["amd64", "arm64"], "{index}");

    // The registry has the index; podman pulls the arm64 image of it, which says aarch64.
    let pushed = raw(&format!("docker://{tag}"));
    assert_eq!(
        pushed["mediaType"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert_eq!(pushed["manifests"].as_array().unwrap().len(), 2);
    let podman_root = p.path("podman");
    let podman = |args: &[&str]| {
        tool("podman", "podman")
            .arg("--root")
            .arg(&podman_root)
            .arg("--runroot")
            .arg(p.path("podman-run"))
            .args(args)
            .output()
            .unwrap()
    };
    let pulled = podman(&[
        "pull",
        "--tls-verify=false",
        "--platform",
        "linux/arm64",
        &tag,
    ]);
    assert!(pulled.status.success(), "{}", text(&pulled.stderr));
    let arch = podman(&["image", "inspect", &tag, "--format", "{{.Architecture}}"]);
    assert_eq!(text(&arch.stdout).trim(), "arm64");

    // Each platform's files: the arm64 RUN ran as aarch64, both got the amd64 stage's file.
    p.ok(&[
        "build",
        "--platform",
        "linux/amd64,linux/arm64",
        "-o",
        "type=local,dest=../files",
        ".",
    ]);
    let read = |rel: &str| fs_err::read_to_string(p.path(&format!("files/{rel}"))).unwrap();
    assert_eq!(read("linux_arm64/arch"), "aarch64\n");
    assert_eq!(read("linux_amd64/arch"), "x86_64\n");
    assert_eq!(read("linux_arm64/built-on"), "x86_64\n");
    // The store's tag names the index: the host's image is what inspect shows.
    let inspect = p.ok(&["inspect", &tag]);
    let v: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    assert_eq!(v["Config"]["architecture"], "amd64");
}

#[test]
fn push_format_docker_pushes_a_manifest_list() {
    let p = project();
    let registry = Registry::shared();
    let tag = format!("{}/multi/list:1", registry.host());
    p.ok(&[
        "--insecure-registry",
        &registry.host(),
        "build",
        "--platform",
        "linux/amd64,linux/arm64",
        "--push-format",
        "docker",
        "-t",
        &tag,
        "--push",
        ".",
    ]);
    let list = raw(&format!("docker://{tag}"));
    assert_eq!(
        list["mediaType"],
        "application/vnd.docker.distribution.manifest.list.v2+json"
    );
    for m in list["manifests"].as_array().unwrap() {
        assert_eq!(
            m["mediaType"],
            "application/vnd.docker.distribution.manifest.v2+json"
        );
    }
    // skopeo copies the arm64 image out of the list and reads its config.
    let cfg = tool("skopeo", "skopeo")
        .args([
            "inspect",
            "--tls-verify=false",
            "--override-arch",
            "arm64",
            "--config",
        ])
        .arg(format!("docker://{tag}"))
        .output()
        .unwrap();
    let cfg: serde_json::Value = serde_json::from_slice(&cfg.stdout).unwrap();
    assert_eq!(cfg["architecture"], "arm64");
    // `rbuild push` of the index tag pushes every platform, then the index.
    let again = format!("{}/multi/list-again:1", registry.host());
    p.ok(&[
        "--insecure-registry",
        &registry.host(),
        "push",
        &tag,
        &again,
    ]);
    let index = raw(&format!("docker://{again}"));
    assert_eq!(
        index["manifests"].as_array().map(Vec::len),
        Some(2),
        "{index}"
    );
}

#[test]
fn a_docker_archive_of_two_platforms_is_refused() {
    let p = project();
    let out = p.rbuild(&[
        "build",
        "--platform",
        "linux/amd64,linux/arm64",
        "-o",
        "type=docker,dest=../d.tar",
        ".",
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("use -o type=oci"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn a_foreign_run_without_a_handler_says_what_to_install() {
    let p = Project::new();
    fs_err::copy("/bin/busybox", p.ctx().join("busybox")).unwrap();
    p.file(
        "Dockerfile",
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"true\"]\n",
    );
    // No handler is registered for s390x here (the tests register arm64 only).
    let out = p.rbuild(&["build", "--platform", "linux/s390x", "."]);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("binfmt_misc handler for qemu-s390x")
            && err.contains("apt-get install qemu-user-static")
            && err.contains("line 3"),
        "{err}"
    );
}

#[test]
fn a_base_that_is_an_index_gives_each_stage_its_platforms_image() {
    let p = project();
    // A two-platform base of our own, tagged in the store as an index.
    p.file(
        "Dockerfile",
        "FROM scratch\nARG TARGETARCH\nCOPY busybox-${TARGETARCH} /bin/busybox\n",
    );
    p.ok(&[
        "build",
        "--platform",
        "linux/amd64,linux/arm64",
        "-t",
        "twobox:1",
        ".",
    ]);
    p.file(
        "Dockerfile",
        "FROM --platform=$BUILDPLATFORM twobox:1 AS tools\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox uname -m > /tools\"]\nFROM twobox:1\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox uname -m > /target\"]\nCOPY --from=tools /tools /tools\n",
    );
    // The plan resolves each stage's base for its platform, offline, from the index.
    let plan = p.ok(&["plan", "--platform", "linux/arm64", "."]);
    let graph: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let digests: Vec<String> = graph["ops"]
        .as_array()
        .unwrap()
        .iter()
        // A source op's digest is of its form: the image's name and manifest digest.
        .filter(|o| o["op"] == "source")
        .filter_map(|o| o["digest"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(digests.len(), 2, "{graph}");
    assert_ne!(
        digests[0], digests[1],
        "both stages got one platform's image: {graph}"
    );
    p.ok(&[
        "build",
        "--platform",
        "linux/arm64",
        "-o",
        "type=local,dest=../out",
        ".",
    ]);
    let read = |rel: &str| fs_err::read_to_string(p.path(&format!("out/{rel}"))).unwrap();
    assert_eq!(read("target"), "aarch64\n");
    assert_eq!(read("tools"), "x86_64\n");
}

#[test]
fn bake_builds_a_services_platforms_into_one_index() {
    let p = project();
    let registry = Registry::shared();
    let host = registry.host();
    p.file(
        "compose.yaml",
        &format!(
            "services:\n  box:\n    image: {host}/multi/baked:1\n    build:\n      context: .\n      platforms: [linux/amd64, linux/arm64]\n"
        ),
    );
    p.ok(&["--insecure-registry", &host, "bake", "--push"]);
    let index = raw(&format!("docker://{host}/multi/baked:1"));
    assert_eq!(arches(&index), ["amd64", "arm64"], "{index}");
}
