//! What the server's integration tests share: the server binary started on a free port,
//! contexts, and a look at the processes running.
#![allow(dead_code)] // Each test file uses some of these.

use std::io::BufRead;
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::blocking::{Client, Response};
use serde_json::Value;

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
    tar_of(&[
        ("Dockerfile", 0o644, dockerfile),
        ("busybox", 0o755, &fs_err::read(busybox).unwrap()),
    ])
}

/// A tar of `files` (path, mode, content), owned by root, time 0.
pub(crate) fn tar_of(files: &[(&str, u32, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, mode, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(*mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        b.append_data(&mut h, path, *data).unwrap();
    }
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

/// The service at `port`, as one tenant.
pub(crate) struct Api {
    base: String,
    http: Client,
    pub(crate) token: Option<&'static str>,
}

impl Api {
    pub(crate) fn new(port: u16, token: Option<&'static str>) -> Self {
        drop(connect(port));
        Self {
            base: format!("http://127.0.0.1:{port}"),
            http: Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .unwrap(),
            token,
        }
    }

    pub(crate) fn req(
        &self,
        method: reqwest::Method,
        path: &str,
    ) -> reqwest::blocking::RequestBuilder {
        let r = self.http.request(method, format!("{}{path}", self.base));
        match self.token {
            Some(t) => r.bearer_auth(t),
            None => r,
        }
    }

    pub(crate) fn post(&self, query: &str, ctx: Vec<u8>) -> Response {
        self.req(reqwest::Method::POST, &format!("/v1/builds?{query}"))
            .body(ctx)
            .send()
            .unwrap()
    }

    /// Posts and gives the new build's id (the post must be accepted).
    pub(crate) fn submit(&self, query: &str, ctx: Vec<u8>) -> String {
        let res = self.post(query, ctx);
        assert_eq!(res.status(), 202, "{:?}", res.text());
        let body: Value = res.json().unwrap();
        assert_eq!(body["state"], "queued", "{body}");
        body["id"].as_str().unwrap().to_owned()
    }

    pub(crate) fn get(&self, path: &str) -> Response {
        self.req(reqwest::Method::GET, path).send().unwrap()
    }

    pub(crate) fn json(&self, path: &str) -> Value {
        let res = self.get(path);
        assert!(res.status().is_success(), "{path}: {}", res.status());
        res.json().unwrap()
    }

    /// Waits for build `id` to reach a final state; gives its record.
    pub(crate) fn wait_done(&self, id: &str) -> Value {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let b = self.json(&format!("/v1/builds/{id}"));
            if !matches!(b["state"].as_str(), Some("queued" | "running")) {
                return b;
            }
            assert!(Instant::now() < deadline, "build {id} never ended: {b}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The build's server-sent events after `after` (none: from the start), to the stream's end:
    /// `(id, data)` pairs.
    pub(crate) fn events(&self, id: &str, after: Option<u64>) -> Vec<(u64, Value)> {
        let mut req = self.req(reqwest::Method::GET, &format!("/v1/builds/{id}/events"));
        if let Some(n) = after {
            req = req.header("Last-Event-ID", n.to_string());
        }
        let res = req.send().unwrap();
        assert_eq!(res.status(), 200);
        assert_eq!(res.headers()["content-type"], "text/event-stream");
        let mut out = Vec::new();
        let mut n = None;
        for line in std::io::BufReader::new(res).lines() {
            let line = line.unwrap();
            if let Some(v) = line.strip_prefix("id:") {
                n = Some(v.trim().parse().unwrap());
            } else if let Some(v) = line.strip_prefix("data:") {
                out.push((n.take().unwrap(), serde_json::from_str(v.trim()).unwrap()));
            }
        }
        out
    }
}

/// A registry on loopback: the suite's (`RBUILD_TEST_REGISTRY`) or one of this test's own.
pub(crate) fn registry(dir: &std::path::Path) -> (String, Option<Server>) {
    if let Ok(host) = std::env::var("RBUILD_TEST_REGISTRY") {
        return (host, None);
    }
    let port = free_port();
    let config = dir.join("registry.yml");
    fs_err::write(
        &config,
        format!(
            "version: 0.1\nlog: {{level: error, accesslog: {{disabled: true}}}}\nstorage: {{filesystem: {{rootdirectory: {}}}}}\nhttp: {{addr: 127.0.0.1:{port}}}\n",
            dir.join("registry-data").display()
        ),
    )
    .unwrap();
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker-registry is installed (apt-get install -y docker-registry)");
    let server = Server(child);
    drop(connect(port));
    (format!("127.0.0.1:{port}"), Some(server))
}

/// A PostgreSQL database of this test's own: on the suite's server (`RBUILD_TEST_DATABASE`,
/// which `.ci/run` starts) or on one this test starts in `dir`. Gives its URL.
pub(crate) fn database(dir: &std::path::Path) -> (String, Option<Server>) {
    let (server_url, server) = match std::env::var("RBUILD_TEST_DATABASE") {
        Ok(url) => (url, None),
        Err(_) => {
            let (url, s) = start_postgres(dir);
            (url, Some(s))
        }
    };
    let name = format!("rbuild_test_{}_{}", std::process::id(), free_port());
    let mut admin = postgres::Client::connect(&server_url, postgres::NoTls)
        .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {server_url}: {e}"));
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    let base = server_url
        .rsplit_once('/')
        .map_or(server_url.as_str(), |(b, _)| b);
    (format!("{base}/{name}"), server)
}

/// Debian's PostgreSQL server, run as its `postgres` user on a free port of 127.0.0.1 with its
/// data in `dir` (trust auth; loopback only).
fn start_postgres(dir: &std::path::Path) -> (String, Server) {
    use std::os::unix::process::CommandExt as _;
    let bin = fs_err::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL is installed (apt-get install -y postgresql; .ci/run does)")
        .flatten()
        .map(|e| e.path().join("bin"))
        .find(|b| b.join("postgres").is_file())
        .expect("a PostgreSQL server binary under /usr/lib/postgresql/*/bin");
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("a `postgres` user")
    };
    let (uid, gid) = (id("-u"), id("-g"));
    let data = dir.join("pg");
    fs_err::create_dir_all(&data).unwrap();
    // The test's temporary directory is root's: its parents must let postgres through.
    let mut p = Some(dir);
    while let Some(d) =
        p.filter(|d| d.starts_with(std::env::temp_dir()) && *d != std::env::temp_dir())
    {
        let _ = Command::new("chmod").arg("a+x").arg(d).status();
        p = d.parent();
    }
    assert!(
        Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&data)
            .status()
            .unwrap()
            .success()
    );
    let init = Command::new(bin.join("initdb"))
        .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
        .arg(&data)
        .uid(uid)
        .gid(gid)
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "initdb: {}",
        String::from_utf8_lossy(&init.stderr)
    );
    let port = free_port();
    let child = Command::new(bin.join("postgres"))
        .arg("-D")
        .arg(&data)
        .arg("-k")
        .arg(&data)
        .args([
            "-p",
            &port.to_string(),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
        ])
        .uid(uid)
        .gid(gid)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let server = Server(child);
    drop(connect(port));
    let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    let deadline = Instant::now() + Duration::from_secs(30);
    while postgres::Client::connect(&url, postgres::NoTls).is_err() {
        assert!(Instant::now() < deadline, "PostgreSQL did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    (url, server)
}
