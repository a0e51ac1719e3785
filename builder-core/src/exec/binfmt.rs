//! Foreign architectures: RUN of an arm64 binary on an amd64 host goes through the kernel's
//! `binfmt_misc` and QEMU's user-mode emulator (Debian's `qemu-user-static`). rbuild only reads
//! the handlers; registering them changes the whole machine, so it happens only when asked
//! ([`install`], `rbuild binfmt --install`).

use std::path::{Path, PathBuf};

/// Where `binfmt_misc` is mounted.
pub const BINFMT_DIR: &str = "/proc/sys/fs/binfmt_misc";
/// Where `qemu-user-static` puts its registrations (systemd's binfmt.d format).
pub(super) const QEMU_CONF_DIR: &str = "/usr/lib/binfmt.d";

/// Why a handler cannot be had or installed.
#[derive(Debug, thiserror::Error)]
pub enum BinfmtError {
    /// No registration for the architecture: QEMU is not installed.
    #[error(
        "no QEMU registration for {arch} in {QEMU_CONF_DIR}: apt-get install qemu-user-static binfmt-support"
    )]
    NoQemu {
        /// The architecture (OCI's name).
        arch: String,
    },
    /// Mounting `binfmt_misc` or writing a registration failed.
    #[error("cannot {what}")]
    Io {
        /// What was tried.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// QEMU's name for an OCI architecture (`arm64` → `aarch64`).
pub(super) fn qemu_name(arch: &str) -> &str {
    match arch {
        "arm64" => "aarch64",
        "amd64" => "x86_64",
        "386" => "i386",
        "ppc64le" => "ppc64le",
        "arm" => "arm",
        other => other,
    }
}

/// Whether RUN of `arch` binaries works here: the host's own, or a handler is enabled for it.
pub fn can_run(arch: &str) -> bool {
    arch == host_arch() || handler_enabled(arch)
}

/// The host's architecture, as OCI names it.
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        other => other,
    }
}

/// Whether `binfmt_misc` has an enabled handler for `arch` (`qemu-aarch64` for arm64).
pub(super) fn handler_enabled(arch: &str) -> bool {
    let path = Path::new(BINFMT_DIR).join(format!("qemu-{}", qemu_name(arch)));
    fs_err::read_to_string(path).is_ok_and(|s| s.lines().next() == Some("enabled"))
}

/// What to do when `arch` cannot run: the packages, then the command.
pub fn missing_help(arch: &str) -> String {
    format!(
        "RUN for {arch} needs a binfmt_misc handler for qemu-{}: apt-get install qemu-user-static binfmt-support, then `rbuild binfmt --install` (as root)",
        qemu_name(arch)
    )
}

/// Registers QEMU's handlers for `arches` (mounting `binfmt_misc` first if it is not), from
/// `qemu-user-static`'s own registrations, with the `F` flag (the emulator is opened now, so
/// RUN finds it inside the step's root). Returns the handlers registered (those already there
/// are left alone).
///
/// # Errors
/// QEMU is not installed, or the kernel refuses (not root).
pub fn install(arches: &[&str]) -> Result<Vec<String>, BinfmtError> {
    let dir = Path::new(BINFMT_DIR);
    if !dir.join("register").exists() {
        nix::mount::mount(
            Some("binfmt_misc"),
            dir,
            Some("binfmt_misc"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .map_err(|e| BinfmtError::Io {
            what: format!("mount binfmt_misc on {BINFMT_DIR}"),
            source: e.into(),
        })?;
    }
    let mut done = Vec::new();
    for arch in arches {
        let name = format!("qemu-{}", qemu_name(arch));
        if dir.join(&name).exists() {
            continue;
        }
        let conf = PathBuf::from(QEMU_CONF_DIR).join(format!("{name}.conf"));
        let line = fs_err::read_to_string(&conf).map_err(|_| BinfmtError::NoQemu {
            arch: (*arch).to_owned(),
        })?;
        let line = with_fix_flag(line.trim());
        fs_err::write(dir.join("register"), line.as_bytes()).map_err(|source| BinfmtError::Io {
            what: format!("register {name}"),
            source,
        })?;
        done.push(name);
    }
    Ok(done)
}

/// A registration line (`:name:type:offset:magic:mask:interpreter:flags`) with `F` among its
/// flags.
fn with_fix_flag(line: &str) -> String {
    let mut parts: Vec<String> = line.split(':').map(str::to_owned).collect();
    if let Some(flags) = parts.last_mut() {
        if !flags.contains('F') {
            flags.push('F');
        }
    }
    parts.join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fix_flag_is_added_once() {
        assert_eq!(
            with_fix_flag(":qemu-aarch64:M::ab:ff:/q:OP"),
            ":qemu-aarch64:M::ab:ff:/q:OPF"
        );
        assert_eq!(
            with_fix_flag(":qemu-aarch64:M::ab:ff:/q:OPF"),
            ":qemu-aarch64:M::ab:ff:/q:OPF"
        );
        assert_eq!(qemu_name("arm64"), "aarch64");
    }
}
