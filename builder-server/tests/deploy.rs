//! Issue 15, item 4: `deploy/`. The Kubernetes manifests validate against the Kubernetes schema
//! (`kubernetes-validate --strict`), the ECS task definition holds what the EC2 launch type
//! needs, and `deploy/Dockerfile` builds with rbuild into an image whose server answers
//! `/healthz` under `rbuild run`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{Server, free_port};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// `kubernetes-validate` (PyPI): `RBUILD_KUBERNETES_VALIDATE`, else on `PATH`.
fn validator() -> PathBuf {
    if let Some(p) = std::env::var_os("RBUILD_KUBERNETES_VALIDATE") {
        return p.into();
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("kubernetes-validate"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("kubernetes-validate is not installed: python3 -m venv V && V/bin/pip install kubernetes-validate, then RBUILD_KUBERNETES_VALIDATE=V/bin/kubernetes-validate (.ci/run does)")
        })
}

/// What `kubernetes-validate --strict` says of `manifest` (stdout, then stderr); fails the test
/// unless it passed.
fn validated(manifest: &std::path::Path) -> String {
    let out = Command::new(validator())
        .arg("--strict")
        .arg(manifest)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    text
}

#[test]
fn issue_15_the_kubernetes_manifests_validate_and_the_ecs_task_is_complete() {
    let manifest = repo().join("deploy/kubernetes/rbuild-server.yaml");
    let text = validated(&manifest);
    for kind in [
        "secret",
        "configmap",
        "deployment",
        "service",
        "poddisruptionbudget",
    ] {
        assert!(
            text.contains(&format!("passed for resource {kind}/rbuild-server")),
            "{text}"
        );
    }
    // The check can fail: a misspelt field is refused.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.yaml");
    let src = fs_err::read_to_string(&manifest).unwrap();
    fs_err::write(&broken, src.replace("readinessProbe:", "readinesProbe:")).unwrap();
    let out = Command::new(validator())
        .arg("--strict")
        .arg(&broken)
        .output()
        .unwrap();
    assert!(!out.status.success(), "a misspelt field passed");

    let task: serde_json::Value = serde_json::from_str(
        &fs_err::read_to_string(repo().join("deploy/ecs/task-definition.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        task["requiresCompatibilities"][0], "EC2",
        "Fargate cannot run the sandbox"
    );
    let c = &task["containerDefinitions"][0];
    assert_eq!(c["privileged"], true);
    assert!(
        c["healthCheck"]["command"]
            .to_string()
            .contains("--health-check")
    );
    let secrets: Vec<&str> = c["secrets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(secrets, ["RBUILD_TOKENS", "RBUILD_DATABASE"]);
}

/// Issue 18: the one-shot build job for places that may not make namespaces. The Kubernetes
/// Job validates and asks for no privilege (the runtime's seccomp profile, no added
/// capability, not privileged); the Fargate task is a Fargate one, unprivileged; both build a
/// git URL with `--isolation auto` and push. (Running their commands in a podman container
/// with Docker's capabilities and seccomp profile, against a git daemon and a registry on
/// 127.0.0.1, is `builder-cli/tests/it/chroot.rs`.)
#[test]
fn issue_18_the_build_job_and_the_fargate_task_need_no_privilege() {
    let manifest = repo().join("deploy/kubernetes/build-job.yaml");
    let text = validated(&manifest);
    for resource in ["secret/rbuild-push", "job/rbuild-app"] {
        assert!(
            text.contains(&format!("passed for resource {resource}")),
            "{text}"
        );
    }
    let yaml = fs_err::read_to_string(&manifest).unwrap();
    let setting = |line: &str| yaml.lines().any(|l| l.trim() == line);
    assert!(
        setting("type: RuntimeDefault"),
        "the default seccomp profile"
    );
    assert!(setting("privileged: false") && !yaml.contains("privileged: true"));
    assert!(setting("allowPrivilegeEscalation: false"));
    assert!(!yaml.contains("add:"), "no capability is added");
    assert!(!yaml.contains("Unconfined"));
    assert!(setting("- --isolation=auto") && setting("- --push"));
    assert!(setting("- https://git.example.com/org/app.git#main"));

    let task: serde_json::Value = serde_json::from_str(
        &fs_err::read_to_string(repo().join("deploy/ecs/build-task-fargate.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(task["requiresCompatibilities"][0], "FARGATE");
    assert_eq!(task["networkMode"], "awsvpc", "Fargate's only mode");
    let c = &task["containerDefinitions"][0];
    assert_eq!(c["privileged"], false);
    assert!(c["linuxParameters"].get("capabilities").is_none());
    let command = c["command"][0].as_str().unwrap();
    assert!(
        command.contains("build --isolation=auto") && command.contains("--push"),
        "{command}"
    );
    let env: Vec<(&str, &str)> = c["environment"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e["value"].as_str().unwrap()))
        .collect();
    assert!(env.contains(&("CONTEXT", "https://git.example.com/org/app.git#main")));
}

/// The `rbuild` CLI built beside this package's server.
fn rbuild() -> PathBuf {
    let server = PathBuf::from(env!("CARGO_BIN_EXE_rbuild-server"));
    let cli = server.with_file_name("rbuild");
    assert!(
        cli.is_file(),
        "`rbuild` is not built: run `cargo test --workspace`"
    );
    cli
}

#[test]
fn issue_15_rbuild_builds_the_servers_own_image_and_it_answers_healthz() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("store");
    // The Debian base (debootstrap, cached in /var/tmp after the first run).
    let out = Command::new("bash")
        .arg(repo().join("fixtures/base/debian.sh"))
        .arg(rbuild())
        .arg("--root")
        .arg(&root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "debian.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // deploy/ as the README says to use it: the Dockerfile and the server binary beside it.
    let ctx = dir.path().join("deploy");
    fs_err::create_dir_all(&ctx).unwrap();
    fs_err::copy(repo().join("deploy/Dockerfile"), ctx.join("Dockerfile")).unwrap();
    fs_err::copy(
        env!("CARGO_BIN_EXE_rbuild-server"),
        ctx.join("rbuild-server"),
    )
    .unwrap();
    let out = Command::new(rbuild())
        .arg("--root")
        .arg(&root)
        .args([
            "build",
            "-q",
            "-t",
            "rbuild-server:test",
            "--build-arg",
            "BASE=debian:bookworm",
        ])
        .arg(&ctx)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let _running = Server(
        Command::new(rbuild())
            .arg("--root")
            .arg(&root)
            .args(["run", "--network", "host", "rbuild-server:test", "--"])
            .args(["--root", "/var/lib/rbuild", "--listen", &listen])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    let url = format!("http://{listen}/healthz");
    let health = loop {
        if let Ok(r) = reqwest::blocking::get(&url) {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "the image's server never answered {url}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(health.status(), 200);
    let body: serde_json::Value = health.json().unwrap();
    assert_eq!(body["status"], "ok");
    // The image's own health check command agrees.
    let check = Command::new(env!("CARGO_BIN_EXE_rbuild-server"))
        .args(["--health-check", "--listen", &listen])
        .status()
        .unwrap();
    assert!(check.success());
}
