//! A real registry for the tests: Debian's `docker-registry` (distribution) on 127.0.0.1, one
//! per test with its own storage, without auth, with htpasswd basic auth, or with token auth
//! whose token server is here (tokens are JWTs signed by `openssl` with a key whose certificate
//! the registry trusts). Also a proxy in front of a registry that can cut or corrupt blobs.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

use crate::support::tool;

/// The one user the authenticated registries know.
pub(crate) const USER: &str = "ci-user";
pub(crate) const PASSWORD: &str = "s3cret-pass";
/// The `OAuth2` refresh token the token server accepts (docker's `identitytoken`).
pub(crate) const REFRESH_TOKEN: &str = "refresh-me-7f3a";

pub(crate) enum Auth {
    None,
    Htpasswd,
    Token,
}

pub(crate) struct Registry {
    /// The process, when this test started it (not the suite's shared one).
    child: Option<Child>,
    pub(crate) port: u16,
    _dir: Option<tempfile::TempDir>,
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "registry on port {port} did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Certificates for a registry that speaks TLS and wants client certificates: a test CA, a
/// server certificate for 127.0.0.1 and a client certificate, all signed by the CA.
pub(crate) struct Tls {
    pub(crate) dir: PathBuf,
}

impl Tls {
    pub(crate) fn make(dir: &Path) -> Self {
        let openssl = |args: &[&str]| {
            let out = tool("openssl", "openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                crate::support::text(&out.stderr)
            );
        };
        fs_err::write(
            dir.join("server.ext"),
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        )
        .unwrap();
        fs_err::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").unwrap();
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=rbuild-test-ca",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
        ]);
        for (name, cn) in [("server", "127.0.0.1"), ("client", "rbuild-test-client")] {
            openssl(&[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-subj",
                &format!("/CN={cn}"),
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
            ]);
            openssl(&[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-extfile",
                &format!("{name}.ext"),
                "-out",
                &format!("{name}.cert"),
            ]);
        }
        Self {
            dir: dir.to_owned(),
        }
    }
}

impl Registry {
    pub(crate) fn start(auth: &Auth) -> Self {
        Self::start_with(auth, None)
    }

    /// The registry `.ci/run` started for the suite (`RBUILD_TEST_REGISTRY`, no auth), else one
    /// of this test's own. Tests sharing it use repository names of their own.
    pub(crate) fn shared() -> Self {
        match std::env::var("RBUILD_TEST_REGISTRY") {
            Ok(host) => {
                let port = host
                    .rsplit_once(':')
                    .and_then(|(_, p)| p.parse().ok())
                    .expect("RBUILD_TEST_REGISTRY is 127.0.0.1:PORT");
                wait_for(port);
                Self {
                    child: None,
                    port,
                    _dir: None,
                }
            }
            Err(_) => Self::start(&Auth::None),
        }
    }

    /// A registry on TLS, trusting client certificates signed by the test CA (and wanting one).
    pub(crate) fn start_tls(tls: &Tls) -> Self {
        Self::start_with(&Auth::None, Some(tls))
    }

    fn start_with(auth: &Auth, tls: Option<&Tls>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let auth_yaml = match auth {
            Auth::None => String::new(),
            Auth::Htpasswd => {
                let out = tool("htpasswd", "apache2-utils")
                    .args(["-Bbn", USER, PASSWORD])
                    .output()
                    .unwrap();
                assert!(out.status.success());
                let file = dir.path().join("htpasswd");
                fs_err::write(&file, &out.stdout).unwrap();
                format!(
                    "auth:\n  htpasswd:\n    realm: rbuild-test\n    path: {}\n",
                    file.display()
                )
            }
            Auth::Token => {
                let tokens = TokenServer::start(dir.path());
                format!(
                    "auth:\n  token:\n    realm: http://127.0.0.1:{}/token\n    service: rbuild-registry\n    issuer: rbuild-test\n    rootcertbundle: {}\n",
                    tokens.port,
                    tokens.cert.display()
                )
            }
        };
        let tls_yaml = tls.map_or_else(String::new, |t| {
            format!(
                "  tls:\n    certificate: {0}/server.cert\n    key: {0}/server.key\n    clientcas:\n      - {0}/ca.crt\n",
                t.dir.display()
            )
        });
        let config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n{tls_yaml}{auth_yaml}",
            dir.path().join("data").display()
        );
        let config_path = dir.path().join("config.yml");
        fs_err::write(&config_path, config).unwrap();
        let child = tool("docker-registry", "docker-registry")
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for(port);
        Self {
            child: Some(child),
            port,
            _dir: Some(dir),
        }
    }

    /// `127.0.0.1:PORT`.
    pub(crate) fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

/// Reads a request head; gives (request line, headers, body).
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<(String, Vec<String>, Vec<u8>)> {
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    if line.is_empty() {
        return None;
    }
    let mut headers = Vec::new();
    let mut length = 0;
    loop {
        let mut h = String::new();
        reader.read_line(&mut h).ok()?;
        let h = h.trim_end().to_owned();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().unwrap_or(0);
            }
        }
        headers.push(h);
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some((line.trim_end().to_owned(), headers, body))
}

fn url_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 3 <= b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("");
                if let Ok(v) = u8::from_str_radix(hex, 16) {
                    out.push(v);
                    i += 3;
                    continue;
                }
                out.push(b'%');
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Issues tokens for [`USER`]/[`PASSWORD`]; anonymous requests get tokens granting nothing.
struct TokenServer {
    port: u16,
    cert: PathBuf,
}

impl TokenServer {
    fn start(dir: &Path) -> Self {
        let key = dir.join("token.key");
        let cert = dir.join("token.pem");
        let out = tool("openssl", "openssl")
            .args([
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            ])
            .args(["-subj", "/CN=rbuild-test-token"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            crate::support::text(&out.stderr)
        );
        let der = Command::new("openssl")
            .args(["x509", "-outform", "DER", "-in"])
            .arg(&cert)
            .output()
            .unwrap()
            .stdout;
        let x5c = STANDARD.encode(der);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let Some((line, headers, body)) = read_request(&mut reader) else {
                    continue;
                };
                let target = line.split(' ').nth(1).unwrap_or("");
                // GET with the scopes in the query (docker's token flow), or POST with a form
                // (OAuth2, for refresh tokens).
                let form = String::from_utf8_lossy(&body).into_owned();
                let query = if line.starts_with("POST ") {
                    form.as_str()
                } else {
                    target.split_once('?').map_or("", |(_, q)| q)
                };
                let field = |name: &str| {
                    query
                        .split('&')
                        .filter_map(|kv| kv.split_once('='))
                        .find(|(k, _)| *k == name)
                        .map(|(_, v)| url_decode(v))
                };
                let refresh = field("refresh_token");
                let scopes: Vec<String> = query
                    .split('&')
                    .filter_map(|kv| kv.split_once('='))
                    .filter(|(k, _)| *k == "scope")
                    .map(|(_, v)| url_decode(v))
                    .collect();
                let basic = headers.iter().find_map(|h| {
                    let (k, v) = h.split_once(':')?;
                    if !k.eq_ignore_ascii_case("authorization") {
                        return None;
                    }
                    let v = v.trim().strip_prefix("Basic ")?;
                    String::from_utf8(STANDARD.decode(v).ok()?).ok()
                });
                let mut conn = conn;
                let authed = match (basic, refresh) {
                    (_, Some(r))
                        if r == REFRESH_TOKEN
                            && field("grant_type").as_deref() == Some("refresh_token") =>
                    {
                        true
                    }
                    (Some(b), None) if b == format!("{USER}:{PASSWORD}") => true,
                    (Some(_), _) | (None, Some(_)) => {
                        let body = r#"{"errors":[{"code":"UNAUTHORIZED","message":"invalid user name or password"}]}"#;
                        let _ = write!(
                            conn,
                            "HTTP/1.1 401 Unauthorized\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        );
                        continue;
                    }
                    (None, None) => false,
                };
                let access: Vec<serde_json::Value> = if authed {
                    scopes
                        .iter()
                        .filter_map(|s| {
                            let mut parts = s.splitn(3, ':');
                            let (t, n, a) = (parts.next()?, parts.next()?, parts.next()?);
                            Some(serde_json::json!({"type": t, "name": n, "actions": a.split(',').collect::<Vec<_>>()}))
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                let token = sign_jwt(&key, &x5c, authed, &access);
                let body =
                    serde_json::json!({"token": token, "access_token": token, "expires_in": 300})
                        .to_string();
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        Self { port, cert }
    }
}

fn sign_jwt(key: &Path, x5c: &str, authed: bool, access: &[serde_json::Value]) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = serde_json::json!({"typ": "JWT", "alg": "RS256", "x5c": [x5c]});
    let claims = serde_json::json!({
        "iss": "rbuild-test",
        "sub": if authed { USER } else { "" },
        "aud": "rbuild-registry",
        "exp": now + 300,
        "nbf": now - 10,
        "iat": now,
        "jti": format!("{now}-{}", std::process::id()),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig = crate::support::with_stdin(
        Command::new("openssl")
            .args(["dgst", "-sha256", "-sign"])
            .arg(key),
        signing_input.as_bytes(),
    )
    .stdout;
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// What the proxy does to blob downloads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Passes everything.
    None,
    /// Sends half of each blob, then closes the connection (the registry "stopped").
    Cut,
    /// Changes one byte in the middle of each blob.
    Corrupt,
    /// Answers the next blob request `503 Service Unavailable`, then passes everything.
    BusyOnce,
}

/// A proxy on 127.0.0.1 in front of a registry, one request per connection.
pub(crate) struct Proxy {
    pub(crate) port: u16,
    pub(crate) fault: Arc<Mutex<Fault>>,
}

impl Proxy {
    pub(crate) fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let fault = Arc::new(Mutex::new(Fault::None));
        let f = fault.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let f = f.clone();
                std::thread::spawn(move || {
                    let _ = proxy_one(conn, upstream, &f);
                });
            }
        });
        Self { port, fault }
    }

    pub(crate) fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub(crate) fn set(&self, fault: Fault) {
        *self.fault.lock().unwrap() = fault;
    }
}

fn proxy_one(conn: TcpStream, upstream: u16, shared: &Mutex<Fault>) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let Some((line, headers, body)) = read_request(&mut reader) else {
        return Ok(());
    };
    let is_blob = line.starts_with("GET ") && line.contains("/blobs/sha256:");
    let fault = {
        let mut f = shared.lock().unwrap();
        let now = *f;
        if now == Fault::BusyOnce && is_blob {
            *f = Fault::None;
        }
        now
    };
    if fault == Fault::BusyOnce && is_blob {
        let mut conn = conn;
        return conn.write_all(
            b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 0\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        );
    }
    let mut up = TcpStream::connect(("127.0.0.1", upstream))?;
    let mut head = format!("{line}\r\n");
    for h in headers
        .iter()
        .filter(|h| !h.to_ascii_lowercase().starts_with("connection:"))
    {
        head.push_str(h);
        head.push_str("\r\n");
    }
    head.push_str("Connection: close\r\n\r\n");
    up.write_all(head.as_bytes())?;
    up.write_all(&body)?;
    let mut response = Vec::new();
    up.read_to_end(&mut response)?;
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(response.len(), |i| i + 4);
    let (resp_head, resp_body) = response.split_at(split);
    let ok = resp_head.starts_with(b"HTTP/1.1 200");
    let mut conn = conn;
    conn.write_all(resp_head)?;
    match fault {
        Fault::Cut if is_blob && ok => {
            conn.write_all(&resp_body[..resp_body.len() / 2])?;
            conn.flush()?;
            // Close without the rest: the client sees the body end early.
            let _ = conn.shutdown(std::net::Shutdown::Both);
        }
        Fault::Corrupt if is_blob && ok && !resp_body.is_empty() => {
            let mut b = resp_body.to_vec();
            let mid = b.len() / 2;
            b[mid] ^= 0xff;
            conn.write_all(&b)?;
        }
        _ => conn.write_all(resp_body)?,
    }
    Ok(())
}
