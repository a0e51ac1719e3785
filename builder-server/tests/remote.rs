//! Issue 15, item 2: `rbuild build --host` builds on the service and loads the image into the
//! local store with the ID a local build gives. The `rbuild` binary is the workspace's
//! (`cargo test --workspace` builds it beside `rbuild-server`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

mod common;
use common::{Api, free_port, start_with};

/// The `rbuild` CLI built beside this package's server.
fn rbuild() -> PathBuf {
    let server = PathBuf::from(env!("CARGO_BIN_EXE_rbuild-server"));
    let cli = server.with_file_name("rbuild");
    assert!(
        cli.is_file(),
        "`rbuild` is not built next to `{}`: run `cargo test --workspace` (or `cargo build -p builder-cli`)",
        server.display()
    );
    cli
}

fn run(root: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    Command::new(rbuild())
        .arg("--root")
        .arg(root)
        .args(args)
        .envs(envs.iter().copied())
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "rbuild failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// A context: busybox, a RUN that prints, an app file, and a large file `.dockerignore` leaves
/// out; a second Dockerfile outside the context.
fn context(dir: &Path) -> (PathBuf, PathBuf) {
    let ctx = dir.join("ctx");
    fs_err::create_dir_all(ctx.join("app")).unwrap();
    fs_err::copy("/bin/busybox", ctx.join("busybox")).unwrap();
    fs_err::write(ctx.join("app/main.txt"), "hello from the context\n").unwrap();
    fs_err::write(ctx.join("big.bin"), vec![7u8; 3 << 20]).unwrap();
    fs_err::write(ctx.join(".dockerignore"), "big.bin\n").unwrap();
    fs_err::write(
        ctx.join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nCOPY . /ctx/\nRUN [\"/bin/busybox\", \"echo\", \"remote-run-said-hi\"]\n",
    )
    .unwrap();
    let outside = dir.join("Other.dockerfile");
    fs_err::write(
        &outside,
        "FROM scratch\nCOPY busybox /bin/busybox\nCOPY app /app\nLABEL from=outside\n",
    )
    .unwrap();
    (ctx, outside)
}

#[test]
fn issue_15_build_host_builds_remotely_and_loads_the_same_image_a_local_build_makes() {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, outside) = context(dir.path());
    let ctx_s = ctx.to_str().unwrap();
    let (_root, _server, port) = start_with(&[], &[]);
    let api = Api::new(port, None);
    let host = format!("http://127.0.0.1:{port}");
    let (here, local) = (dir.path().join("here"), dir.path().join("local"));

    let out = run(
        &here,
        &[
            "build",
            "--host",
            &host,
            "--progress",
            "plain",
            "-t",
            "remote:v1",
            ctx_s,
        ],
        &[],
    );
    ok(&out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("remote-run-said-hi"),
        "the RUN's output is shown:\n{stderr}"
    );
    assert!(stderr.contains("building on http://127.0.0.1"), "{stderr}");
    // The image is in the local store under its tag, with the ID a local build of the same
    // context gives.
    let inspected: serde_json::Value =
        serde_json::from_str(&ok(&run(&here, &["inspect", "remote:v1"], &[]))).unwrap();
    let remote_id = inspected["Id"].as_str().unwrap().to_owned();
    let local_id = ok(&run(&local, &["build", "-q", "-t", "local:v1", ctx_s], &[]));
    assert_eq!(remote_id, local_id);
    // `.dockerignore` was applied here: the 3 MiB file never went over the wire.
    let page = api.json("/v1/builds");
    let sent = page["builds"][0]["context_bytes"].as_i64().unwrap();
    assert!(sent < 2 << 20, "{sent} bytes sent: big.bin went too");

    // A Dockerfile outside the context, and -q printing the ID.
    let id = ok(&run(
        &here,
        &[
            "build",
            "--host",
            &host,
            "-q",
            "-f",
            outside.to_str().unwrap(),
            "-t",
            "outside:v1",
            ctx_s,
        ],
        &[],
    ));
    let local_outside = ok(&run(
        &local,
        &["build", "-q", "-f", outside.to_str().unwrap(), ctx_s],
        &[],
    ));
    assert_eq!(
        id, local_outside,
        "the injected Dockerfile never reached the context"
    );

    // RBUILD_HOST, a dead replica first in the list: the client moves on.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let hosts = format!("{dead},{host}");
    ok(&run(
        &here,
        &["build", "-q", ctx_s],
        &[("RBUILD_HOST", hosts.as_str())],
    ));

    // A failing RUN: non-zero, the error and the Dockerfile line shown.
    let bad = dir.path().join("bad");
    fs_err::create_dir_all(&bad).unwrap();
    fs_err::copy("/bin/busybox", bad.join("busybox")).unwrap();
    fs_err::write(
        bad.join("Dockerfile"),
        "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"false\"]\n",
    )
    .unwrap();
    let out = run(
        &here,
        &["build", "--host", &host, bad.to_str().unwrap()],
        &[],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("Dockerfile:3") || stderr.contains(":3:"),
        "{stderr}"
    );
}

#[test]
fn issue_15_build_host_sends_the_token_and_a_bad_one_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (ctx, _) = context(dir.path());
    let token = "token-of-the-remote-cli-0123456789";
    let tokens = format!("{token} cli-team\n");
    let (_root, _server, port) = start_with(&[], &[("RBUILD_TOKENS", tokens.as_str())]);
    let host = format!("http://127.0.0.1:{port}");
    let here = dir.path().join("here");
    let args = [
        "build",
        "--host",
        host.as_str(),
        "-q",
        ctx.to_str().unwrap(),
    ];
    let out = run(&here, &args, &[("RBUILD_TOKEN", "wrong-token-0123456789")]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Bearer"),
        "{out:?}"
    );
    ok(&run(&here, &args, &[("RBUILD_TOKEN", token)]));
}
