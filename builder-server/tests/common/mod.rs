//! What the server's integration tests share: the server binary started on a free port,
//! contexts, and a look at the processes running.
#![allow(dead_code)] // Each test file uses some of these.

use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The server process, killed when dropped.
pub(crate) struct Server(pub(crate) Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port of 127.0.0.1 free just now.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn connect(port: u16) -> TcpStream {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => return s,
            Err(e) => {
                assert!(Instant::now() < deadline, "the server did not start: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

pub(crate) fn context_tar(dockerfile: &[u8]) -> Vec<u8> {
    let busybox = std::path::Path::new("/bin/busybox");
    assert!(
        busybox.is_file(),
        "`busybox` is not installed: apt-get install -y busybox-static (.ci/run installs it)"
    );
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |path: &str, mode: u32, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        b.append_data(&mut h, path, data).unwrap();
    };
    add("Dockerfile", 0o644, dockerfile);
    add("busybox", 0o755, &fs_err::read(busybox).unwrap());
    b.into_inner().unwrap()
}

/// Whether a process whose command line holds `needle` is running.
pub(crate) fn running(needle: &str) -> bool {
    fs_err::read_dir("/proc").unwrap().flatten().any(|e| {
        fs_err::read(e.path().join("cmdline")).is_ok_and(|c| {
            String::from_utf8_lossy(&c)
                .replace('\0', " ")
                .contains(needle)
        })
    })
}

/// The server on a free loopback port with `args` (and `envs`) added.
pub(crate) fn start_with(args: &[&str], envs: &[(&str, &str)]) -> (tempfile::TempDir, Server, u16) {
    let root = tempfile::tempdir().unwrap();
    let (server, port) = start_in(root.path(), args, envs);
    (root, server, port)
}

/// The server over the store at `root` (again, after a restart) on a free port.
pub(crate) fn start_in(
    root: &std::path::Path,
    args: &[&str],
    envs: &[(&str, &str)],
) -> (Server, u16) {
    let port = free_port();
    let server = Server(
        Command::new(env!("CARGO_BIN_EXE_rbuild-server"))
            .args(["--listen", &format!("127.0.0.1:{port}"), "--root"])
            .arg(root)
            .args(args)
            .envs(envs.iter().copied())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    (server, port)
}
