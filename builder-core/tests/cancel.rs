//! A build's cancel token reaches what can take long besides RUN (the server's tests cover a
//! RUN): an `ADD <url>` download and a base-image pull, each from a server on loopback that
//! trickles a body far too large to finish, stop at the cancel and the build fails with
//! `Cancelled`. Without the token in their reads, both would run for hours: the trickle keeps
//! every read timeout from firing.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use builder_core::cancel::Cancel;
use builder_core::digest::Digest;
use builder_core::solve::{BuildRequest, Builder, Error, Store};

/// Reads one request's head; gives its method and path.
fn request(conn: &mut TcpStream) -> Option<(String, String)> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if conn.read(&mut byte).ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head);
    let mut words = text.split_whitespace();
    Some((words.next()?.to_owned(), words.next()?.to_owned()))
}

fn answer(conn: &mut TcpStream, content_type: &str, body: &[u8], head_only: bool) {
    let _ = write!(
        conn,
        "HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nDocker-Content-Digest: {}\r\n\r\n",
        body.len(),
        Digest::of(body)
    );
    if !head_only {
        let _ = conn.write_all(body);
    }
}

/// Announces 100 MB and sends 1 KiB every 20 ms, counting what it sent, until the reader goes.
fn trickle(conn: &mut TcpStream, sent: &AtomicU64) {
    let _ = write!(
        conn,
        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: 100000000\r\n\r\n"
    );
    let chunk = [0x1fu8; 1024];
    while conn.write_all(&chunk).is_ok() {
        sent.fetch_add(chunk.len() as u64, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A server on loopback: `routes` answers a request (`true` when it did), anything else
/// trickles. Gives its port and the count of trickled bytes.
fn serve(
    routes: impl Fn(&mut TcpStream, &str, &str) -> bool + Send + Sync + 'static,
) -> (u16, Arc<AtomicU64>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let sent = Arc::new(AtomicU64::new(0));
    let routes = Arc::new(routes);
    {
        let sent = Arc::clone(&sent);
        std::thread::spawn(move || {
            for mut conn in listener.incoming().flatten() {
                let (sent, routes) = (Arc::clone(&sent), Arc::clone(&routes));
                std::thread::spawn(move || {
                    while let Some((method, path)) = request(&mut conn) {
                        if !routes(&mut conn, &method, &path) {
                            trickle(&mut conn, &sent);
                            return;
                        }
                    }
                });
            }
        });
    }
    (port, sent)
}

/// Builds `dockerfile`, cancels once the trickle has started, and gives the build's result.
/// The build runs on a thread of its own, so a build that ignores the cancel fails the test
/// (within 30 s) instead of hanging it.
fn cancelled_build(dockerfile: &str, sent: &AtomicU64) -> Result<(), Error> {
    let root = tempfile::tempdir().unwrap();
    let context = root.path().join("ctx");
    fs_err::create_dir_all(&context).unwrap();
    fs_err::write(context.join("Dockerfile"), dockerfile).unwrap();
    let builder = Builder::new(Store::open(root.path().join("store")).unwrap());
    let cancel = Cancel::new();
    let req = BuildRequest {
        context,
        cancel: cancel.clone(),
        ..BuildRequest::default()
    };
    let (done, result) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _root = root;
        let _ = done.send(builder.build(&req, &mut |_| {}).map(|_| ()));
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while sent.load(Ordering::SeqCst) < 4096 {
        if let Ok(r) = result.try_recv() {
            panic!("the build ended before the trickle: {r:?}");
        }
        assert!(Instant::now() < deadline, "the trickle never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    cancel.cancel();
    result
        .recv_timeout(Duration::from_secs(30))
        .expect("the build went on after its cancel")
}

#[test]
fn a_cancel_stops_an_add_download_mid_body() {
    let (port, sent) = serve(|_, _, _| false);
    let result = cancelled_build(
        &format!("FROM scratch\nADD http://127.0.0.1:{port}/big.bin /big.bin\n"),
        &sent,
    );
    assert!(matches!(result, Err(Error::Cancelled)), "{result:?}");
}

#[test]
fn a_cancel_stops_a_base_image_pull_mid_layer() {
    let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:0000000000000000000000000000000000000000000000000000000000000000"]},"config":{}}"#;
    let config_digest = Digest::of(config);
    let manifest = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","size":100000000}}]}}"#,
        config.len()
    );
    let (port, sent) = serve(move |conn, method, path| {
        let head = method == "HEAD";
        if path == "/v2/" {
            answer(conn, "application/json", b"{}", head);
        } else if path.contains("/manifests/") {
            let media = "application/vnd.oci.image.manifest.v1+json";
            answer(conn, media, manifest.as_bytes(), head);
        } else if path.ends_with(&config_digest.to_string()) {
            answer(conn, "application/octet-stream", config, head);
        } else {
            return false;
        }
        true
    });
    let result = cancelled_build(&format!("FROM 127.0.0.1:{port}/app:v1\nRUN true\n"), &sent);
    assert!(matches!(result, Err(Error::Cancelled)), "{result:?}");
}
