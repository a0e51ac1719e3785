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
