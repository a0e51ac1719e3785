//! The `rbuild-server` binary end to end: started on 127.0.0.1, a context with RUN posted over a
//! socket (RUN's sandbox helper is the server binary re-executed), events read as they stream.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn context_tar() -> Vec<u8> {
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
    add(
        "Dockerfile",
        0o644,
        b"FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox echo served > /made && /bin/busybox echo ran-in-sandbox\"]\n",
    );
    add("busybox", 0o755, &fs_err::read(busybox).unwrap());
    b.into_inner().unwrap()
}

#[test]
fn the_server_builds_a_posted_context_with_run_and_streams_events() {
    let root = tempfile::tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let _server = Server(
        Command::new(env!("CARGO_BIN_EXE_rbuild-server"))
            .args(["--listen", &format!("127.0.0.1:{port}"), "--root"])
            .arg(root.path())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut stream = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => break s,
            Err(e) => {
                assert!(Instant::now() < deadline, "the server did not start: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    };
    let ctx = context_tar();
    write!(
        stream,
        "POST /v1/build?t=served:v1 HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        ctx.len()
    )
    .unwrap();
    stream.write_all(&ctx).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(
        response.contains("ran-in-sandbox"),
        "RUN's output is streamed:\n{response}"
    );
    assert!(response.contains(r#""type":"result""#), "{response}");
    // The image is in the server's store.
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .write_all(b"GET /v1/images HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut listing = String::new();
    stream.read_to_string(&mut listing).unwrap();
    assert!(listing.contains("served:v1"), "{listing}");
}
