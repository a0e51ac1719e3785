//! The user namespace a root build gives RUN (`--userns auto`), held by descriptor.

use std::io::Write;

use nix::sched::{CloneFlags, unshare};
use nix::sys::wait::waitpid;
use nix::unistd::ForkResult;

/// A user namespace for a root build's RUN, and the network, UTS and IPC namespaces it owns
/// (so RUN's root has its capabilities there, as under runc: port 80, raw sockets), made by
/// a short-lived child and held by descriptor.
pub(super) struct Userns {
    pub(super) user: std::os::fd::OwnedFd,
    pub(super) net: std::os::fd::OwnedFd,
    pub(super) uts: std::os::fd::OwnedFd,
    pub(super) ipc: std::os::fd::OwnedFd,
    pub(super) map: super::spec::IdMap,
}

/// Makes the [`Userns`] for `map`: a child unshares the namespaces and waits while this
/// process (root) writes its `uid_map` and `gid_map` and opens them.
pub(super) fn make_userns(map: super::spec::IdMap) -> Result<Userns, String> {
    use nix::fcntl::{OFlag, open};
    use nix::sys::stat::Mode;
    use std::io::Read;
    use std::os::fd::OwnedFd;
    let (mut made_r, mut made_w) = std::io::pipe().map_err(|e| e.to_string())?;
    let (mut done_r, done_w) = std::io::pipe().map_err(|e| e.to_string())?;
    match super::sys::fork_single() {
        Err(e) => Err(format!("fork: {e}")),
        Ok(ForkResult::Child) => {
            drop((made_r, done_w));
            let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
            let flags = CloneFlags::CLONE_NEWUSER
                | CloneFlags::CLONE_NEWNET
                | CloneFlags::CLONE_NEWUTS
                | CloneFlags::CLONE_NEWIPC;
            if unshare(flags).is_err() {
                std::process::exit(super::sys::SETUP_FAILED);
            }
            let _ = made_w.write_all(b"1");
            drop(made_w);
            // Until the parent has the namespaces open (it closes its end).
            let _ = done_r.read(&mut [0u8; 1]);
            std::process::exit(0);
        }
        Ok(ForkResult::Parent { child }) => {
            drop((made_w, done_r));
            let made = made_r.read_exact(&mut [0u8; 1]).is_ok();
            let result = (|| {
                if !made {
                    return Err("the child could not unshare a user namespace".to_owned());
                }
                let (uid_map, gid_map) = map.lines();
                for (file, content) in [("uid_map", uid_map), ("gid_map", gid_map)] {
                    fs_err::write(format!("/proc/{child}/{file}"), content)
                        .map_err(|e| e.to_string())?;
                }
                let ns = |name: &str| -> Result<OwnedFd, String> {
                    open(
                        format!("/proc/{child}/ns/{name}").as_str(),
                        OFlag::O_RDONLY | OFlag::O_CLOEXEC,
                        Mode::empty(),
                    )
                    .map_err(|e| format!("open ns/{name}: {e}"))
                };
                Ok(Userns {
                    user: ns("user")?,
                    net: ns("net")?,
                    uts: ns("uts")?,
                    ipc: ns("ipc")?,
                    map,
                })
            })();
            drop(done_w);
            let _ = waitpid(child, None);
            result
        }
    }
}
