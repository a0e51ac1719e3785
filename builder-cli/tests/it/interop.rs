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
    assert_eq!(info["Env"][0], "A=1");
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
