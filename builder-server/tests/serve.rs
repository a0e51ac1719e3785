//! The `rbuild-server` binary end to end: started on 127.0.0.1, a context with RUN posted over a
//! socket (RUN's sandbox helper is the server binary re-executed), events read as they stream.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{Server, connect, context_tar, free_port, running, start_with};

/// The server binary on a free port of 127.0.0.1, with a store of its own.
fn start() -> (tempfile::TempDir, Server, u16) {
    start_with(&[], &[])
}

#[test]
fn the_server_builds_a_posted_context_with_run_and_streams_events() {
    let (_root, _server, port) = start();
    let mut stream = connect(port);
    let ctx = context_tar(
        b"FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox echo served > /made && /bin/busybox echo ran-in-sandbox\"]\n",
    );
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

#[test]
fn a_client_going_away_cancels_its_build_and_kills_the_run() {
    let (_root, _server, port) = start();
    let mut stream = connect(port);
    let ctx = context_tar(
        b"FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"sleep\", \"3737\"]\n",
    );
    write!(
        stream,
        "POST /v1/build HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        ctx.len()
    )
    .unwrap();
    stream.write_all(&ctx).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !running("sleep 3737") {
        assert!(Instant::now() < deadline, "the RUN never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(stream);
    let deadline = Instant::now() + Duration::from_secs(10);
    while running("sleep 3737") {
        assert!(Instant::now() < deadline, "the RUN outlived its client");
        std::thread::sleep(Duration::from_millis(50));
    }
    // The server still serves.
    let mut stream = connect(port);
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
}

/// POSTs `ctx` to `/v1/build?query` and reads the whole response.
fn post(port: u16, query: &str, ctx: &[u8]) -> String {
    post_with(port, query, &[], ctx)
}

/// [`post`] with `headers` added.
fn post_with(port: u16, query: &str, headers: &[(&str, &str)], ctx: &[u8]) -> String {
    let mut stream = connect(port);
    write!(
        stream,
        "POST /v1/build?{query} HTTP/1.1\r\nHost: localhost\r\n"
    )
    .unwrap();
    for (k, v) in headers {
        write!(stream, "{k}: {v}\r\n").unwrap();
    }
    write!(
        stream,
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        ctx.len()
    )
    .unwrap();
    stream.write_all(ctx).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// Issue 10, findings 4 and 6: a posted context's Dockerfile is read inside it (a link to a
/// host file is not quoted back, a link to `/dev/zero` is refused at once); a RUN cannot reach
/// the service's own port; `network=host` is refused without `--allow-network-host`.
#[test]
fn issue_10_a_posted_build_reads_and_reaches_nothing_of_the_host() {
    let (_root, _server, port) = start();
    let secret = tempfile::NamedTempFile::new().unwrap();
    fs_err::write(secret.path(), "FROM host-secret-5b1c\n").unwrap();
    for target in [secret.path().to_str().unwrap(), "/dev/zero"] {
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        b.append_link(&mut h, "Dockerfile", target).unwrap();
        let started = Instant::now();
        let response = post(port, "t=x:1", &b.into_inner().unwrap());
        assert!(response.starts_with("HTTP/1.1 400"), "{target}: {response}");
        assert!(!response.contains("host-secret"), "{target}: {response}");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{target}: read without end"
        );
    }
    let ctx = context_tar(
        format!(
            "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox printf 'GET /v1/images HTTP/1.0\\r\\n\\r\\n' | /bin/busybox nc -w 3 127.0.0.1 {port} || /bin/busybox echo service-unreachable\"]\n"
        )
        .as_bytes(),
    );
    let response = post(port, "t=net:1", &ctx);
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(response.contains("service-unreachable"), "{response}");
    let response = post(port, "t=net:1&network=host", &ctx);
    assert!(response.starts_with("HTTP/1.1 400"), "{response}");
    assert!(response.contains("--allow-network-host"), "{response}");
}

#[test]
fn at_start_the_server_repairs_what_a_crash_left_in_its_store() {
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    // A tag naming a manifest that never landed, a snapshot without its completion record, and
    // a killed build's work directory (no owner holds it).
    for d in ["tags", "blobs/sha256", "tmp/build-dead", "snapshots"] {
        fs_err::create_dir_all(r.join(d)).unwrap();
    }
    let missing = format!("sha256:{}", "ab".repeat(32));
    fs_err::write(r.join("tags/broken%3A1"), format!("{missing}\n")).unwrap();
    let half = r.join("snapshots").join("cd".repeat(32));
    fs_err::create_dir_all(half.join("rootfs/etc")).unwrap();
    fs_err::write(r.join("tmp/build-dead/junk"), b"junk").unwrap();
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rbuild-server"))
        .args(["--listen", &format!("127.0.0.1:{port}"), "--root"])
        .arg(r)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut log = String::new();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    while !log.contains("listening") {
        let mut line = String::new();
        if std::io::BufRead::read_line(&mut stderr, &mut line).unwrap() == 0 {
            break;
        }
        log.push_str(&line);
    }
    let _server = Server(child);
    assert!(
        log.contains(&format!("store check: tag `broken:1` → manifest {missing}"))
            && log.contains("(removed)"),
        "{log}"
    );
    assert!(log.contains("has no completion record"), "{log}");
    assert!(!r.join("tags/broken%3A1").exists());
    assert!(!half.exists());
    assert!(!r.join("tmp/build-dead").exists());
}

/// The last JSON line of a build response.
fn result_line(response: &str) -> serde_json::Value {
    let last = response
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {response}"))
}

#[test]
fn two_builds_posted_at_once_run_a_shared_step_once() {
    let (root, _server, port) = start();
    // A slow RUN that counts its runs in a cache mount (outside the image, kept between runs).
    let ctx = context_tar(
        b"FROM scratch\nCOPY busybox /bin/busybox\n\
          RUN --mount=type=cache,target=/count [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox echo run >> /count/runs && /bin/busybox sleep 2 && /bin/busybox echo made > /made\"]\n",
    );
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| post(port, "t=twice:a&network=none", &ctx));
        let b = s.spawn(|| post(port, "t=twice:b&network=none", &ctx));
        (a.join().unwrap(), b.join().unwrap())
    });
    let (ra, rb) = (result_line(&a), result_line(&b));
    assert_eq!(ra["type"], "result", "{a}");
    assert_eq!(rb["type"], "result", "{b}");
    assert_eq!(ra["manifest_digest"], rb["manifest_digest"]);
    let mut runs = Vec::new();
    let mut stack = vec![root.path().join("cache-mounts")];
    while let Some(d) = stack.pop() {
        for e in fs_err::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                stack.push(e.path());
            } else if e.file_name() == "runs" {
                runs.push(fs_err::read_to_string(e.path()).unwrap());
            }
        }
    }
    assert_eq!(runs, ["run\n"], "the RUN ran {runs:?}:\n{a}\n{b}");
}

/// `GET path` with `token` as bearer (none: no header); the status line and the body.
fn get_as(port: u16, path: &str, token: Option<&str>) -> String {
    let mut stream = connect(port);
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

const TOKEN_A: &str = "token-of-team-a-0123456789";
const TOKEN_B: &str = "token-of-team-b-9876543210";

/// Issue 14, tokens: with `--tokens`, no token and a wrong one get 401 with
/// `WWW-Authenticate`, a known one is served, health checks need none, and the server keeps
/// serving through refusals; `RBUILD_TOKENS` works the same.
#[test]
fn issue_14_tokens_guard_every_route_but_health() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens");
    fs_err::write(&file, format!("# CI\n{TOKEN_A} team-a\n{TOKEN_B} team-b\n")).unwrap();
    let (_root, _server, port) = start_with(&["--tokens", file.to_str().unwrap()], &[]);
    for _ in 0..3 {
        let none = get_as(port, "/v1/images", None);
        assert!(none.starts_with("HTTP/1.1 401"), "{none}");
        assert!(
            none.to_lowercase().contains("www-authenticate: bearer"),
            "{none}"
        );
        let wrong = get_as(port, "/v1/images", Some("token-of-team-a-012345678X"));
        assert!(wrong.starts_with("HTTP/1.1 401"), "{wrong}");
        let prefix = get_as(port, "/v1/images", Some(&TOKEN_A[..20]));
        assert!(prefix.starts_with("HTTP/1.1 401"), "{prefix}");
    }
    for t in [TOKEN_A, TOKEN_B] {
        let ok = get_as(port, "/v1/images", Some(t));
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    }
    let health = get_as(port, "/healthz", None);
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    // A build posted without a token never starts.
    let mut stream = connect(port);
    let ctx = context_tar(b"FROM scratch\nCOPY busybox /bin/busybox\n");
    write!(
        stream,
        "POST /v1/build?t=x:1 HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        ctx.len()
    )
    .unwrap();
    let _ = stream.write_all(&ctx);
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 401"), "{response}");
    let images = get_as(port, "/v1/images", Some(TOKEN_A));
    assert!(!images.contains("\"x:1\""), "{images}");

    let (_root, _server, port) = start_with(&[], &[("RBUILD_TOKENS", &format!("{TOKEN_A} a\n"))]);
    assert!(get_as(port, "/v1/images", None).starts_with("HTTP/1.1 401"));
    assert!(get_as(port, "/v1/images", Some(TOKEN_A)).starts_with("HTTP/1.1 200"));
}

/// Issue 14, tokens: SIGHUP reads the file again (a token taken out stops working, a new one
/// starts); a file that became unusable keeps the tokens in force.
#[test]
fn issue_14_a_hangup_rereads_the_tokens_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("tokens");
    fs_err::write(&file, format!("{TOKEN_A} team-a\n")).unwrap();
    let (_root, server, port) = start_with(&["--tokens", file.to_str().unwrap()], &[]);
    assert!(get_as(port, "/v1/images", Some(TOKEN_A)).starts_with("HTTP/1.1 200"));
    let hangup = || {
        let ok = Command::new("kill")
            .args(["-HUP", &server.0.id().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok);
    };
    let until = |token: &str, status: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !get_as(port, "/v1/images", Some(token)).starts_with(status) {
            assert!(Instant::now() < deadline, "{token} never got {status}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    fs_err::write(&file, format!("{TOKEN_B} team-b\n")).unwrap();
    hangup();
    until(TOKEN_B, "HTTP/1.1 200");
    until(TOKEN_A, "HTTP/1.1 401");
    // Broken now: the tokens in force stay.
    fs_err::write(&file, "no-tenant-on-this-line\n").unwrap();
    hangup();
    std::thread::sleep(Duration::from_millis(300));
    assert!(get_as(port, "/v1/images", Some(TOKEN_B)).starts_with("HTTP/1.1 200"));
}

/// Issue 14, tokens: without tokens the server will not listen beyond loopback, and says how
/// to; `--insecure-no-auth` is the explicit way around.
#[test]
fn issue_14_without_tokens_only_loopback_is_served() {
    let root = tempfile::tempdir().unwrap();
    let port = free_port();
    let out = Command::new(env!("CARGO_BIN_EXE_rbuild-server"))
        .args(["--listen", &format!("0.0.0.0:{port}"), "--root"])
        .arg(root.path())
        .env_remove("RBUILD_TOKENS")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("--tokens") && err.contains("--insecure-no-auth"),
        "{err}"
    );
    let _server = Server(
        Command::new(env!("CARGO_BIN_EXE_rbuild-server"))
            .args([
                "--listen",
                &format!("0.0.0.0:{port}"),
                "--insecure-no-auth",
                "--root",
            ])
            .arg(root.path())
            .env_remove("RBUILD_TOKENS")
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert!(get_as(port, "/v1/images", None).starts_with("HTTP/1.1 200"));
}

/// A context tar of a Dockerfile that copies `big`, a file of `size` bytes that does not
/// compress.
fn big_context(size: usize) -> Vec<u8> {
    let mut data = vec![0u8; size];
    let mut x: u32 = 0x9e37_79b9;
    for b in &mut data {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = (x & 0xff) as u8;
    }
    let mut b = tar::Builder::new(Vec::new());
    for (path, body) in [
        ("Dockerfile", &b"FROM scratch\nCOPY big /big\n"[..]),
        ("big", &data[..]),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        b.append_data(&mut h, path, body).unwrap();
    }
    b.into_inner().unwrap()
}

/// Posts `ctx` chunked (no `Content-Length`: the size is known only as it streams).
fn post_chunked(port: u16, query: &str, ctx: &[u8], token: &str) -> String {
    let mut stream = connect(port);
    let _ = write!(
        stream,
        "POST /v1/build?{query} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {token}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    for chunk in ctx.chunks(64 << 10) {
        if write!(stream, "{:x}\r\n", chunk.len()).is_err()
            || stream.write_all(chunk).is_err()
            || stream.write_all(b"\r\n").is_err()
        {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n");
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
}

/// Issue 14, limits: a context past `--max-context-size` is a 413 naming the limit, whether
/// its `Content-Length` says so or it streams chunked; nothing is built or stored, and a
/// context under the limit still builds.
#[test]
fn issue_14_a_context_past_the_size_limit_is_refused_while_it_streams() {
    let tokens = format!("{TOKEN_A} a\n");
    let (_root, _server, port) =
        start_with(&["--max-context-size", "1m"], &[("RBUILD_TOKENS", &tokens)]);
    let big = big_context(3 << 20);
    let chunked = post_chunked(port, "t=big:1", &big, TOKEN_A);
    assert!(chunked.starts_with("HTTP/1.1 413"), "{chunked}");
    assert!(chunked.contains("--max-context-size"), "{chunked}");
    let mut stream = connect(port);
    let _ = write!(
        stream,
        "POST /v1/build?t=big:2 HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer {TOKEN_A}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        big.len()
    );
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    let small = post_chunked(port, "t=small:1", &big_context(100 << 10), TOKEN_A);
    assert!(small.starts_with("HTTP/1.1 200"), "{small}");
    assert!(small.contains("\"type\":\"result\""), "{small}");
    let images = get_as(port, "/v1/images", Some(TOKEN_A));
    assert!(images.contains("small:1"), "{images}");
    assert!(!images.contains("big:"), "{images}");
}

/// Posts `dockerfile` (with busybox) and gives the response, read line by line.
fn post_build(port: u16, dockerfile: &[u8]) -> std::io::BufReader<TcpStream> {
    let mut stream = connect(port);
    let ctx = context_tar(dockerfile);
    write!(
        stream,
        "POST /v1/build?t=graceful:1 HTTP/1.1\r\nHost: localhost\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        ctx.len()
    )
    .unwrap();
    stream.write_all(&ctx).unwrap();
    // A server that never ends the stream fails the test instead of hanging it.
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    std::io::BufReader::new(stream)
}

/// Reads lines until one holds one of `needles`; gives that line (`None` at the end).
fn read_until(r: &mut std::io::BufReader<TcpStream>, needles: &[&str]) -> Option<String> {
    use std::io::BufRead;
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if needles.iter().any(|n| line.contains(n)) {
            return Some(line);
        }
    }
}

const RESULT: &str = "\"type\":\"result\"";
const ERROR: &str = "\"type\":\"error\"";

/// Sends SIGTERM to the server.
fn terminate(server: &mut Server) {
    let ok = Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok);
}

fn exited_within(server: &mut Server, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if server.0.try_wait().unwrap().is_some() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Issue 14, graceful shutdown: on SIGTERM the server takes no new connection, lets a
/// running build finish within `--grace`, then exits.
#[test]
fn issue_14_sigterm_lets_a_running_build_finish_within_the_grace() {
    let (_root, mut server, port) = start_with(&["--grace", "60"], &[]);
    let mut response = post_build(
        port,
        b"FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"sleep\", \"2\"]\n",
    );
    read_until(&mut response, &["\"type\":\"miss\",\"number\":3"]).expect("the RUN started");
    terminate(&mut server);
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "a connection was taken after SIGTERM"
    );
    let last = read_until(&mut response, &[RESULT, ERROR]).expect("a last line");
    assert!(last.contains("\"type\":\"result\""), "{last}");
    assert!(exited_within(&mut server, Duration::from_secs(20)));
}

/// Issue 14, graceful shutdown: a build still running when the grace is over is cancelled
/// (its RUN killed) and told it was interrupted; the server exits.
#[test]
fn issue_14_past_the_grace_a_running_build_is_interrupted_and_its_run_killed() {
    let (_root, mut server, port) = start_with(&["--grace", "1"], &[]);
    let mut response = post_build(
        port,
        b"FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"sleep\", \"4242\"]\n",
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !running("sleep 4242") {
        assert!(Instant::now() < deadline, "the RUN never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    terminate(&mut server);
    let last = read_until(&mut response, &[RESULT, ERROR]).expect("a last line");
    assert!(
        last.contains("\"type\":\"error\"") && last.contains("interrupted"),
        "{last}"
    );
    assert!(!running("sleep 4242"), "the RUN outlived the shutdown");
    assert!(exited_within(&mut server, Duration::from_secs(20)));
}

/// Issue 14, secrets: a build's secrets come in the `X-Rbuild-Secrets` JSON header (a string
/// or base64), reach `RUN --mount=type=secret`, and appear in no event; a bad header is a 400.
#[test]
fn issue_14_secrets_come_in_a_header_and_reach_the_run_only() {
    let (_root, _server, port) = start();
    let ctx = context_tar(
        b"FROM scratch\nCOPY busybox /bin/busybox\n\
          RUN --mount=type=secret,id=token,required --mount=type=secret,id=bin,required [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox cat /run/secrets/token /run/secrets/bin | /bin/busybox sha256sum\"]\n",
    );
    // Every build runs its RUN: secrets are not in its key, so a cached one would not look.
    let send = |header: Option<&str>| {
        let headers: Vec<(&str, &str)> = header
            .map(|v| ("X-Rbuild-Secrets", v))
            .into_iter()
            .collect();
        post_with(port, "t=secret:1&nocache=1", &headers, &ctx)
    };
    // "b1n-9a2c" in base64.
    let ok = send(Some(
        r#"{"token": "s3cret-7f1e", "bin": {"base64": "YjFuLTlhMmM="}}"#,
    ));
    // The RUN printed the digest of both values, read from their files.
    let seen = "6901864c9f573ba30c791c0c7f6b3b8d229eed06040550d33da46c1ff7f412f1";
    assert!(ok.contains(seen) && ok.contains(RESULT), "{ok}");
    assert!(
        !ok.contains("s3cret-7f1e") && !ok.contains("b1n-9a2c"),
        "a secret reached the events: {ok}"
    );
    let missing = send(None);
    assert!(
        missing.contains(ERROR) && missing.contains("token"),
        "{missing}"
    );
    let bad = send(Some("not json"));
    assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");
    assert!(bad.contains("x-rbuild-secrets"), "{bad}");
}

/// Issue 14, limits: past `--build-timeout` a build is cancelled, its RUN killed, and its
/// stream says which limit it hit; the server's `--pids-limit` applies to every RUN.
#[test]
fn issue_14_the_servers_build_timeout_and_run_limits_apply_to_every_build() {
    let (_root, _server, port) = start_with(&["--build-timeout", "2", "--pids-limit", "12"], &[]);
    let mut response = post_build(
        port,
        b"FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"sleep\", \"4343\"]\n",
    );
    let last = read_until(&mut response, &[RESULT, ERROR]).expect("a last line");
    assert!(
        last.contains(ERROR) && last.contains("--build-timeout"),
        "{last}"
    );
    assert!(
        !running("sleep 4343"),
        "the RUN outlived its build's timeout"
    );
    // 30 background sleeps cannot all start under 12 processes.
    let mut response = post_build(
        port,
        b"FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"for i in $(/bin/busybox seq 30); do /bin/busybox sleep 1 & done; wait\"]\n",
    );
    let last = read_until(&mut response, &[RESULT, ERROR]).expect("a last line");
    assert!(last.contains(ERROR), "the pids limit did not apply: {last}");
}

/// Issue 14, observability: `/metrics` (behind the tokens) counts builds by tenant and final
/// state, the steps run and cached, and each tenant's context bytes, in the text format
/// Prometheus scrapes.
#[test]
fn issue_14_metrics_count_builds_by_tenant_and_state() {
    let tokens = format!("{TOKEN_A} team-a\n{TOKEN_B} team-b\n");
    let (_root, _server, port) = start_with(&[], &[("RBUILD_TOKENS", &tokens)]);
    assert!(get_as(port, "/metrics", None).starts_with("HTTP/1.1 401"));
    let ok =
        context_tar(b"FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"true\"]\n");
    let post_as = |token: &str, ctx: &[u8]| {
        let bearer = format!("Bearer {token}");
        post_with(port, "t=m:1", &[("Authorization", &bearer)], ctx)
    };
    assert!(post_as(TOKEN_A, &ok).contains(RESULT));
    assert!(post_as(TOKEN_A, &ok).contains(RESULT));
    let bad = context_tar(b"FROM scratch\nFROBNICATE\n");
    assert!(post_as(TOKEN_B, &bad).starts_with("HTTP/1.1 400"));
    let text = get_as(port, "/metrics", Some(TOKEN_B));
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    let has = |line: &str| text.lines().any(|l| l == line);
    assert!(
        has("rbuild_builds_total{tenant=\"team-a\",state=\"succeeded\"} 2"),
        "{text}"
    );
    // A post refused before building is no build: counted as refused, with its status.
    assert!(!text.contains("tenant=\"team-b\",state="), "{text}");
    assert!(
        has("rbuild_posts_refused_total{tenant=\"team-b\",status=\"400\"} 1"),
        "{text}"
    );
    assert!(has("rbuild_builds_queued 0"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("rbuild_store_blob_bytes ") && l != "rbuild_store_blob_bytes 0"),
        "{text}"
    );
    assert!(has("rbuild_builds_running 0"), "{text}");
    // The first build ran COPY and RUN (FROM is never run); the second ran nothing.
    assert!(has("rbuild_steps_run_total 2"), "{text}");
    assert!(has("rbuild_steps_cached_total 4"), "{text}");
    let bytes = |tenant: &str| -> u64 {
        let prefix = format!("rbuild_context_bytes_received_total{{tenant=\"{tenant}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    assert_eq!(bytes("team-a"), 2 * ok.len() as u64, "{text}");
    assert_eq!(bytes("team-b"), bad.len() as u64, "{text}");
    assert!(
        text.contains("rbuild_build_duration_seconds_count 2"),
        "{text}"
    );
}
