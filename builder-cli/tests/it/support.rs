//! Helpers: the `rbuild` command and the fixture paths.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

pub(crate) fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/dockerfile")
}

/// `rbuild` run in the fixtures folder, without colour.
pub(crate) fn rbuild(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rbuild"));
    cmd.args(args)
        .current_dir(fixtures())
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    cmd
}

pub(crate) fn run(args: &[&str]) -> Output {
    rbuild(args).output().expect("rbuild runs")
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Runs `cmd` with `input` on its standard input, capturing its output.
pub(crate) fn with_stdin(cmd: &mut Command, input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the command starts");
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(input)
        .expect("the command reads its input");
    child.wait_with_output().expect("the command ends")
}

/// `tar --numeric-owner -tvf ARCHIVE`: one line per entry, with mode and numeric owners.
pub(crate) fn tar_listing(archive: &std::path::Path) -> String {
    let out = Command::new("tar")
        .args(["--numeric-owner", "-tvf"])
        .arg(archive)
        .output()
        .expect("tar runs");
    text(&out.stdout)
}

/// A plain progress log without the seconds on output lines: `#3 0.104 hi` reads `#3 hi`.
pub(crate) fn untimed(log: &str) -> String {
    let mut out = String::with_capacity(log.len());
    for line in log.lines() {
        let mut parts = line.splitn(3, ' ');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(step), Some(secs), rest)
                if step.starts_with('#') && secs.contains('.') && secs.parse::<f64>().is_ok() =>
            {
                out.push_str(step);
                out.push(' ');
                out.push_str(rest.unwrap_or(""));
            }
            _ => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

/// A temporary project: a context directory and a store root of its own.
pub(crate) struct Project {
    pub(crate) dir: tempfile::TempDir,
}

impl Project {
    pub(crate) fn new() -> Self {
        let p = Self {
            dir: tempfile::tempdir().expect("temp dir"),
        };
        fs_err::create_dir_all(p.ctx()).unwrap();
        p
    }

    pub(crate) fn ctx(&self) -> PathBuf {
        self.dir.path().join("ctx")
    }

    pub(crate) fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub(crate) fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Writes a context file (parents created).
    pub(crate) fn file(&self, rel: &str, content: &str) -> &Self {
        let p = self.ctx().join(rel);
        fs_err::create_dir_all(p.parent().unwrap()).unwrap();
        fs_err::write(p, content).unwrap();
        self
    }

    /// `rbuild --root <root> ARGS` run in the context directory.
    pub(crate) fn rbuild_in(&self, root: &std::path::Path, args: &[&str]) -> Output {
        self.command_in(root, args).output().expect("rbuild runs")
    }

    /// The command `rbuild_in` runs, for callers that add to it (environment variables).
    pub(crate) fn command_in(&self, root: &std::path::Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rbuild"));
        cmd.arg("--root")
            .arg(root)
            .args(args)
            .current_dir(self.ctx())
            .env("NO_COLOR", "1")
            .env_remove("SOURCE_DATE_EPOCH")
            .stdin(Stdio::null());
        cmd
    }

    /// The diff IDs of `image` in the store `root`, base first.
    pub(crate) fn diff_ids_in(&self, root: &std::path::Path, image: &str) -> Vec<String> {
        let out = self.rbuild_in(root, &["inspect", image]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["Config"]["rootfs"]["diff_ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap().to_owned())
            .collect()
    }

    pub(crate) fn rbuild(&self, args: &[&str]) -> Output {
        self.rbuild_in(&self.root(), args)
    }

    /// Gives the whole project to `nobody` and runs `rbuild ARGS` as `nobody` (setpriv, from
    /// util-linux): root reads anything and owns everything, so some checks need another user.
    pub(crate) fn rbuild_as_nobody(&self, args: &[&str]) -> Output {
        self.rbuild_as_nobody_with(&[], args)
    }

    /// [`Self::rbuild_as_nobody`] with more environment variables.
    pub(crate) fn rbuild_as_nobody_with(&self, envs: &[(&str, &str)], args: &[&str]) -> Output {
        use std::os::unix::fs::PermissionsExt;
        let st = Command::new("chown")
            .arg("-R")
            .arg("65534:65534")
            .arg(self.dir.path())
            .status()
            .unwrap();
        assert!(st.success());
        fs_err::set_permissions(self.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        tool("setpriv", "util-linux")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_rbuild"))
            .arg("--root")
            .arg(self.root())
            .args(args)
            .current_dir(self.ctx())
            .env("NO_COLOR", "1")
            .env_remove("SOURCE_DATE_EPOCH")
            .envs(envs.iter().copied())
            .stdin(Stdio::null())
            .output()
            .expect("rbuild runs")
    }

    /// Runs rbuild and insists it succeeds.
    pub(crate) fn ok(&self, args: &[&str]) -> Output {
        let out = self.rbuild(args);
        assert!(
            out.status.success(),
            "rbuild {args:?} failed:\n{}",
            text(&out.stderr)
        );
        out
    }
}

/// A peer tool, or a failure that says how to install it.
pub(crate) fn tool(name: &str, package: &str) -> Command {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()));
    assert!(
        found,
        "`{name}` is not installed: apt-get install -y {package} (.ci/run installs it)"
    );
    Command::new(name)
}

/// Imports `busybox:latest` (fixtures/base/busybox.sh) into `root`.
pub(crate) fn import_busybox(root: &std::path::Path) {
    tool("busybox", "busybox-static");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/base/busybox.sh");
    let out = Command::new("bash")
        .arg(&script)
        .arg(env!("CARGO_BIN_EXE_rbuild"))
        .arg("--root")
        .arg(root)
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "busybox.sh failed: {}",
        text(&out.stderr)
    );
}

/// The hello fixture's context directory.
pub(crate) fn hello_fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/context/hello")
}
