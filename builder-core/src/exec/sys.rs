//! The only place with `unsafe`: the raw system calls nix does not wrap safely (`fork`, the
//! new mount API, `close_range`, interface flags), each behind a safe function. The sequence
//! that uses them is `sandbox.rs`.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::path::Path;

use nix::unistd::ForkResult;

/// Exit code for a sandbox that could not be set up (docker's 125).
pub(super) const SETUP_FAILED: i32 = 125;

/// `fork(2)` for a process with one thread (the sandbox helper, or `main` before it starts
/// any): fails with `EDEADLK` otherwise, as the child of a threaded process may only call
/// async-signal-safe functions and would deadlock on a lock another thread held.
pub(super) fn fork_single() -> nix::Result<ForkResult> {
    let threads = fs_err::read_dir("/proc/self/task").map_or(0, Iterator::count);
    if threads != 1 {
        return Err(nix::errno::Errno::EDEADLK);
    }
    // SAFETY: this process has exactly one thread (counted just above, and only this thread,
    // which is here, could start another), so the child may run any code after fork.
    unsafe { nix::unistd::fork() }
}

/// `struct mount_attr` of `<linux/mount.h>`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const AT_RECURSIVE: nix::libc::c_uint = 0x8000;
const OPEN_TREE_CLONE: nix::libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: nix::libc::c_uint = 0x4;

fn c_path(path: &Path) -> nix::Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(path.as_os_str().as_bytes()).map_err(|_| nix::errno::Errno::EINVAL)
}

/// `mount_setattr(2)` on `dirfd`/`path` with `flags`.
fn mount_setattr(
    dirfd: std::os::fd::RawFd,
    path: &std::ffi::CStr,
    flags: nix::libc::c_uint,
    attr: &MountAttr,
) -> nix::Result<()> {
    // SAFETY: `path` is a NUL-terminated string and `attr` a `struct mount_attr` that both
    // outlive the call; the size passed is the struct's, and the kernel only reads them.
    let r = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_mount_setattr,
            dirfd,
            path.as_ptr(),
            flags,
            std::ptr::from_ref(attr),
            std::mem::size_of::<MountAttr>(),
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(nix::errno::Errno::last())
    }
}

/// Sets `nodev` (and read-only if `readonly`) on the mount at `target` and every mount under
/// it (`mount_setattr(2)` with `AT_RECURSIVE`, Linux 5.12). ENOSYS where the kernel lacks it.
pub(super) fn set_tree_attrs(target: &Path, readonly: bool) -> nix::Result<()> {
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_NODEV | if readonly { MOUNT_ATTR_RDONLY } else { 0 },
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    mount_setattr(nix::libc::AT_FDCWD, &c_path(target)?, AT_RECURSIVE, &attr)
}

/// A detached copy of the mount tree at `src` (`open_tree(2)` with `OPEN_TREE_CLONE`, the
/// mounts below it too if `recursive`), id-mapped through `userns`: a file owned by `n` on
/// disk shows as owned by `n` inside that user namespace, and one made there by its `n` is
/// stored as `n`. `nodev`, and read-only if asked. EINVAL where the filesystem cannot be
/// id-mapped, ENOSYS before Linux 5.12.
pub(super) fn idmapped_tree(
    src: &Path,
    userns: std::os::fd::BorrowedFd<'_>,
    recursive: bool,
    readonly: bool,
) -> nix::Result<std::os::fd::OwnedFd> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    let path = c_path(src)?;
    let rec = if recursive { AT_RECURSIVE } else { 0 };
    // SAFETY: `path` is a NUL-terminated string that outlives the call, which only reads it.
    let fd = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_open_tree,
            nix::libc::AT_FDCWD,
            path.as_ptr(),
            OPEN_TREE_CLONE | nix::libc::O_CLOEXEC as nix::libc::c_uint | rec,
        )
    };
    if fd < 0 {
        return Err(nix::errno::Errno::last());
    }
    let fd = i32::try_from(fd).map_err(|_| nix::errno::Errno::EBADF)?;
    // SAFETY: `fd` is a descriptor open_tree just returned, owned by nothing else.
    let tree = unsafe { OwnedFd::from_raw_fd(fd) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP
            | MOUNT_ATTR_NODEV
            | if readonly { MOUNT_ATTR_RDONLY } else { 0 },
        attr_clr: 0,
        propagation: 0,
        userns_fd: u64::try_from(userns.as_raw_fd()).map_err(|_| nix::errno::Errno::EBADF)?,
    };
    mount_setattr(
        tree.as_raw_fd(),
        c"",
        nix::libc::AT_EMPTY_PATH as nix::libc::c_uint | rec,
        &attr,
    )?;
    Ok(tree)
}

/// Attaches a detached mount tree at `target` (`move_mount(2)`).
pub(super) fn attach(tree: &std::os::fd::OwnedFd, target: &Path) -> nix::Result<()> {
    use std::os::fd::AsRawFd;
    let to = c_path(target)?;
    // SAFETY: the empty source path and `to` are NUL-terminated strings that outlive the
    // call; `tree` is an open mount descriptor.
    let r = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            nix::libc::AT_FDCWD,
            to.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(nix::errno::Errno::last())
    }
}

/// Sets `lo` up in this network namespace (`SIOCGIFFLAGS`/`SIOCSIFFLAGS` on a datagram
/// socket): what `ip link set lo up` does, without needing `ip` on the host.
pub(super) fn loopback_up() -> nix::Result<()> {
    use nix::libc;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
    // SAFETY: socket takes no pointers; the descriptor it returns is owned by `sock` at once.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(nix::errno::Errno::last());
    }
    // SAFETY: `raw` is a descriptor just returned to us and owned by nothing else.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: `ifreq` is plain data for which all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = libc::c_char::try_from(*src).unwrap_or(0);
    }
    // SAFETY: SIOCGIFFLAGS reads the name from and writes the flags into `req`, which lives
    // across the call; the socket is open.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &raw mut req) } < 0 {
        return Err(nix::errno::Errno::last());
    }
    // SAFETY: the kernel filled `ifru_flags`, the union member SIOCGIFFLAGS writes.
    unsafe {
        #[allow(clippy::cast_possible_truncation)]
        let up = libc::IFF_UP as libc::c_short;
        req.ifr_ifru.ifru_flags |= up;
    }
    // SAFETY: as above; SIOCSIFFLAGS only reads `req`.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &raw mut req) } < 0 {
        return Err(nix::errno::Errno::last());
    }
    Ok(())
}

/// Closes every descriptor from 3 up (`close_range(2)`), so only standard input, output and
/// error reach the command; where the kernel lacks it, each open one by `/proc/self/fd`.
pub(super) fn close_from_3() {
    // SAFETY: close_range takes no pointers; closing descriptors this process owns is safe
    // here because nothing after it (up to exec) uses one above 2.
    let r = unsafe { nix::libc::syscall(nix::libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    if r != 0 {
        let open: Vec<i32> = fs_err::read_dir("/proc/self/fd")
            .map(|d| {
                d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        for fd in open.into_iter().filter(|fd| *fd > 2) {
            let _ = nix::unistd::close(fd);
        }
    }
}

/// Makes `/dev/null` the standard input: a RUN reads nothing, as under BuildKit (the helper's
/// own input was the builder's pipe).
pub(super) fn stdin_from_null() {
    use std::os::fd::AsRawFd;
    if let Ok(null) = fs_err::File::open("/dev/null") {
        // SAFETY: dup2 on two descriptors this process owns; fd 0 is replaced atomically and
        // `null` is closed when dropped.
        unsafe {
            nix::libc::dup2(null.as_raw_fd(), 0);
        }
    }
}

/// Sends SIGKILL to `pid` (the helper, past a RUN's timeout). The caller makes sure the
/// process is not reaped yet, so the pid cannot belong to another.
pub(super) fn kill(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(pid),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// Sleeps until one of `fds` is readable (or hung up), giving its index, or until `timeout`
/// passes (`None`; without a timeout it never does).
pub(super) fn wait_readable(
    fds: &[std::os::fd::BorrowedFd<'_>],
    timeout: Option<std::time::Duration>,
) -> Option<usize> {
    use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
    let deadline = timeout.map(|t| std::time::Instant::now() + t);
    let mut polled: Vec<PollFd<'_>> = fds
        .iter()
        .map(|fd| PollFd::new(*fd, PollFlags::POLLIN))
        .collect();
    loop {
        let wait = match deadline {
            None => PollTimeout::NONE,
            Some(d) => {
                let left = d.saturating_duration_since(std::time::Instant::now());
                // poll(2) takes at most i32::MAX ms; a longer wait wakes and sleeps again.
                PollTimeout::try_from(left.min(std::time::Duration::from_secs(86_400)))
                    .unwrap_or(PollTimeout::MAX)
            }
        };
        match poll(&mut polled, wait) {
            Ok(0) if deadline.is_some_and(|d| std::time::Instant::now() >= d) => return None,
            Ok(0) | Err(nix::errno::Errno::EINTR) => {}
            Ok(_) => return polled.iter().position(|p| p.any().unwrap_or(true)),
            // A descriptor poll cannot watch: end the wait as if it fired.
            Err(_) => return Some(fds.len()),
        }
    }
}

/// Waits until the child `pid` has exited, without reaping it (`waitid` with `WNOWAIT`).
pub(super) fn wait_exited(pid: u32) {
    use nix::sys::wait::{Id, WaitPidFlag, waitid};
    let Ok(pid) = i32::try_from(pid) else { return };
    let pid = nix::unistd::Pid::from_raw(pid);
    while let Err(nix::errno::Errno::EINTR) =
        waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT)
    {}
}
