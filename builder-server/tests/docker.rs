//! Issue 15, item 1: the real `docker` CLI (Debian's `docker.io`, the client only: no daemon)
//! builds and manages images through rbuild-server with `DOCKER_HOST=tcp://…` and
//! `DOCKER_BUILDKIT=0`, its token in the CLI's `HttpHeaders`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

mod common;
use common::{registry, start_with};

/// Debian's docker CLI (20.10, API 1.41). `/usr/local/bin/docker`, where a newer one lives on
/// some machines, is not the one under test.
const DOCKER: &str = "/usr/bin/docker";
const TOKEN: &str = "token-of-the-docker-cli-0123456789";

struct Cli {
    host: String,
    config: PathBuf,
}

impl Cli {
    /// The CLI against `port`, with `token` (if any) in its `config.json`'s `HttpHeaders`.
    fn new(dir: &Path, port: u16, token: Option<&str>, name: &str) -> Self {
        assert!(
            Path::new(DOCKER).is_file(),
            "the docker CLI is not installed: apt-get install -y docker.io (.ci/run does)"
        );
        let config = dir.join(name);
        fs_err::create_dir_all(&config).unwrap();
        let headers = token.map_or(
            serde_json::json!({}),
            |t| serde_json::json!({ "Authorization": format!("Bearer {t}") }),
        );
        fs_err::write(
            config.join("config.json"),
            serde_json::json!({ "HttpHeaders": headers }).to_string(),
        )
        .unwrap();
        Self {
            host: format!("tcp://127.0.0.1:{port}"),
            config,
        }
    }

    fn run(&self, cwd: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
        Command::new(DOCKER)
            .args(args)
            .current_dir(cwd)
            .env("DOCKER_HOST", &self.host)
            .env("DOCKER_BUILDKIT", "0")
            .env("DOCKER_CONFIG", &self.config)
            .env_remove("DOCKER_API_VERSION")
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Runs and wants success; gives stdout.
    fn ok(&self, cwd: &Path, args: &[&str]) -> String {
        let out = self.run(cwd, args, &[]);
        assert!(
            out.status.success(),
            "docker {args:?} failed ({}):\n{}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// A context: busybox, a Dockerfile whose RUN prints and records a build arg, another
/// Dockerfile in `other/`, and one whose RUN fails in `fail/`.
fn context(dir: &Path) -> PathBuf {
    let ctx = dir.join("ctx");
    fs_err::create_dir_all(ctx.join("other")).unwrap();
    fs_err::create_dir_all(ctx.join("fail")).unwrap();
    fs_err::copy("/bin/busybox", ctx.join("busybox")).unwrap();
    fs_err::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nARG V=0\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo built-$V; echo built-$V > /v\"]\nCMD [\"/bin/busybox\", \"cat\", \"/v\"]\n",
    )
    .unwrap();
    fs_err::write(
        ctx.join("other/Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nLABEL which=other\n",
    )
    .unwrap();
    fs_err::write(
        ctx.join("fail/Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo about-to-fail; exit 3\"]\n",
    )
    .unwrap();
    ctx
}

fn podman(dir: &Path) -> Command {
    let mut cmd = Command::new("podman");
    cmd.arg("--root")
        .arg(dir.join("podman/root"))
        .arg("--runroot")
        .arg(dir.join("podman/run"))
        .args(["--storage-driver", "vfs", "--runtime", "runc"]);
    cmd
}

#[test]
fn issue_15_the_docker_cli_builds_and_manages_images_through_the_server() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(dir.path());
    let tokens = format!("{TOKEN} docker-team\n");
    let (_root, _server, port) = start_with(&[], &[("RBUILD_TOKENS", tokens.as_str())]);
    let docker = Cli::new(dir.path(), port, Some(TOKEN), "config");

    // No token, a wrong one: refused, saying why.
    for (name, token) in [("none", None), ("wrong", Some("not-the-token-0123456789"))] {
        let out = Cli::new(dir.path(), port, token, name).run(&ctx, &["images"], &[]);
        assert!(!out.status.success(), "{name}: {out:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("Bearer"), "{name}: {err}");
    }

    let out = docker.ok(&ctx, &["build", "-t", "app:v1", "."]);
    assert!(out.contains("Step 4/5 : RUN"), "{out}");
    assert!(out.contains("built-0"), "the RUN's output: {out}");
    assert!(
        out.contains("Successfully built ") && out.contains("Successfully tagged app:v1"),
        "{out}"
    );
    let out = docker.ok(
        &ctx,
        &["build", "-f", "other/Dockerfile", "-t", "other:v1", "."],
    );
    assert!(out.contains("Successfully tagged other:v1"), "{out}");
    let out = docker.ok(&ctx, &["build", "--build-arg", "V=7", "-t", "app:v7", "."]);
    assert!(out.contains("built-7"), "{out}");
    // Again: the classic builder's cache marks.
    let out = docker.ok(&ctx, &["build", "-t", "app:v1", "."]);
    assert!(out.contains("Using cache"), "{out}");
    let id = docker.ok(&ctx, &["build", "-q", "."]);
    assert!(
        id.trim().starts_with("sha256:") && id.trim().len() == 71,
        "-q prints the ID alone: {id}"
    );
    // A Dockerfile from outside the context: the CLI injects it; COPY . never sees it.
    let outside = dir.path().join("Outside.dockerfile");
    fs_err::write(&outside, "FROM scratch\nCOPY . /ctx/\n").unwrap();
    docker.ok(
        &ctx,
        &[
            "build",
            "-f",
            outside.to_str().unwrap(),
            "-t",
            "outside:v1",
            ".",
        ],
    );

    // A failing RUN: shown as docker shows it, and the CLI fails.
    let out = docker.run(&ctx, &["build", "-f", "fail/Dockerfile", "."], &[]);
    assert!(!out.status.success());
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(stdout.contains("about-to-fail"), "{stdout}");
    assert!(stderr.contains("line 3"), "{stderr}");

    let images = docker.ok(&ctx, &["images"]);
    for want in ["app", "v1", "v7", "other"] {
        assert!(images.contains(want), "{images}");
    }
    let history = docker.ok(&ctx, &["history", "app:v1"]);
    assert!(
        history.contains("RUN") && history.contains("COPY"),
        "{history}"
    );
    let inspect = docker.ok(&ctx, &["image", "inspect", "app:v1"]);
    let inspected: serde_json::Value = serde_json::from_str(&inspect).unwrap();
    assert_eq!(inspected[0]["Config"]["Cmd"][1], "cat", "{inspect}");
    docker.ok(&ctx, &["tag", "app:v1", "app:v2"]);
    assert!(docker.ok(&ctx, &["images", "app"]).contains("v2"));

    // save: a docker archive podman loads and runs.
    let tar = dir.path().join("app.tar");
    docker.ok(&ctx, &["save", "app:v1", "-o", tar.to_str().unwrap()]);
    let load = podman(dir.path())
        .arg("load")
        .arg("-i")
        .arg(&tar)
        .output()
        .unwrap();
    assert!(
        load.status.success(),
        "{}",
        String::from_utf8_lossy(&load.stderr)
    );
    let run = podman(dir.path())
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            "--ulimit",
            "nofile=20000:20000",
            "--ulimit",
            "nproc=4096:4096",
            "app:v1",
        ])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&run.stdout).trim(), "built-0");

    let out = docker.ok(&ctx, &["rmi", "app:v2"]);
    assert!(out.contains("Untagged: app:v2"), "{out}");
    assert!(!docker.ok(&ctx, &["images", "app"]).contains("v2"));
    docker.ok(&ctx, &["rmi", "app:v1"]);
    let out = docker.ok(&ctx, &["load", "-i", tar.to_str().unwrap()]);
    assert!(out.contains("Loaded image: app:v1"), "{out}");
    assert!(docker.ok(&ctx, &["images", "app"]).contains("v1"));

    // push to a loopback registry, then read back by skopeo.
    let (reg, _registry) = registry(dir.path());
    let remote = format!("{reg}/docker-cli/app:v1");
    docker.ok(&ctx, &["tag", "app:v1", &remote]);
    let out = docker.ok(&ctx, &["push", &remote]);
    assert!(out.contains("digest: sha256:"), "{out}");
    let inspected = Command::new("skopeo")
        .args([
            "inspect",
            "--tls-verify=false",
            &format!("docker://{remote}"),
        ])
        .output()
        .unwrap();
    assert!(
        inspected.status.success(),
        "{}",
        String::from_utf8_lossy(&inspected.stderr)
    );

    // A client newer than the API: docker's own refusal.
    let out = docker.run(&ctx, &["images"], &[("DOCKER_API_VERSION", "1.42")]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("is too new. Maximum supported API version is 1.41")
    );
}
