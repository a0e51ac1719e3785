//! Issue 12, requirement 5: registry calls are bounded in time, credentials go only where they
//! may, and the system's trust store is trusted. The tests that need a host that is not
//! loopback run in a network namespace of their own (`unshare --net`) where `10.231.0.1` is an
//! address of its loopback device: nothing leaves the machine.

use std::io::Read as _;
use std::net::TcpListener;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::support::{Project, import_busybox, text, tool};

/// A registry that accepts the connection and never answers: `pull` fails within the timeout
/// (its retries included), names the registry, and leaves the store free for the next command.
#[test]
fn issue_12_a_registry_that_never_answers_fails_the_pull_in_time() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            held.push(conn); // read nothing, answer nothing
        }
    });
    let p = Project::new();
    let host = format!("127.0.0.1:{port}");
    let start = Instant::now();
    let out = p.rbuild(&["--registry-timeout", "2", "pull", &format!("{host}/app:v1")]);
    let took = start.elapsed();
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains(&host), "the error names the registry: {err}");
    // 4 attempts of 2 s and their backoff (0.25 + 0.5 + 1 s), with room for a slow machine.
    assert!(took < Duration::from_secs(30), "took {took:?}: {err}");
    assert!(
        took >= Duration::from_secs(2),
        "no timeout was waited for: {took:?}"
    );
    // The store lock went with the process.
    let start = Instant::now();
    p.ok(&["prune"]);
    assert!(start.elapsed() < Duration::from_secs(10));
}

/// Runs `script` with bash in a new network namespace whose loopback also has 10.231.0.1.
fn in_netns(dir: &Path, script: &str) -> std::process::Output {
    let path = dir.join("script.sh");
    fs_err::write(
        &path,
        format!("set -euo pipefail\nip link set lo up\nip addr add 10.231.0.1/32 dev lo\n{script}"),
    )
    .unwrap();
    tool("unshare", "util-linux")
        .args(["--net", "bash"])
        .arg(&path)
        .env("RBUILD", env!("CARGO_BIN_EXE_rbuild"))
        .env("DIR", dir)
        .env_remove("SOURCE_DATE_EPOCH")
        .output()
        .unwrap()
}

/// A stub registry on 127.0.0.1 whose token realm is `REALM`, and a token server that records
/// every request's `Authorization` header and refuses them all.
const STUB: &str = r#"
import http.server, sys, threading
log = open(sys.argv[1], "a", buffering=1)
def registry(realm):
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(401)
            self.send_header("WWW-Authenticate", f'Bearer realm="{realm}",service="stub"')
            self.send_header("Content-Length", "0")
            self.end_headers()
        do_HEAD = do_GET
        def log_message(self, *a): pass
    return H
def token(name):
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            log.write(f"{name} {self.path.split('?')[0]} {self.headers.get('Authorization', '-')}\n")
            body = b'{"errors":[{"code":"DENIED","message":"no"}]}'
            self.send_response(401)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        do_POST = do_GET
        def log_message(self, *a): pass
    return H
servers = [
    (("127.0.0.1", 5001), registry("http://10.231.0.1:8081/token")),
    (("127.0.0.1", 5002), registry("http://127.0.0.1:8082/token")),
    (("10.231.0.1", 8081), token("other-host")),
    (("127.0.0.1", 8082), token("loopback")),
]
for addr, handler in servers:
    s = http.server.ThreadingHTTPServer(addr, handler)
    threading.Thread(target=s.serve_forever, daemon=True).start()
open(sys.argv[2], "w").close()
threading.Event().wait()
"#;

/// A token realm over plain HTTP on another host never receives the password: the token is
/// asked for without credentials, and the refusal says why. A realm on loopback gets them (the
/// control that shows the stub would have seen them).
#[test]
fn issue_12_credentials_never_go_in_the_clear_to_another_host() {
    let p = Project::new();
    let dir = p.path("netns");
    fs_err::create_dir_all(dir.join("docker")).unwrap();
    fs_err::write(dir.join("stub.py"), STUB).unwrap();
    // base64("ann:hunter2")
    let auth = "YW5uOmh1bnRlcjI=";
    fs_err::write(
        dir.join("docker/config.json"),
        format!(
            r#"{{"auths":{{"127.0.0.1:5001":{{"auth":"{auth}"}},"127.0.0.1:5002":{{"auth":"{auth}"}}}}}}"#
        ),
    )
    .unwrap();
    let out = in_netns(
        &dir,
        r#"python3 "$DIR/stub.py" "$DIR/log" "$DIR/ready" &
stub=$!
for _ in $(seq 100); do [ -e "$DIR/ready" ] && break; sleep 0.1; done
export DOCKER_CONFIG="$DIR/docker"
"$RBUILD" --root "$DIR/root" pull 127.0.0.1:5001/app:v1 > "$DIR/other.out" 2>&1 || true
"$RBUILD" --root "$DIR/root" pull 127.0.0.1:5002/app:v1 > "$DIR/loopback.out" 2>&1 || true
kill $stub
"#,
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let log = fs_err::read_to_string(dir.join("log")).unwrap();
    let other: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("other-host"))
        .collect();
    assert!(!other.is_empty(), "the realm was never asked: {log}");
    assert!(
        other.iter().all(|l| l.ends_with(" -")),
        "credentials went to another host over HTTP: {log}"
    );
    assert!(
        log.lines()
            .any(|l| l.starts_with("loopback") && l.ends_with(&format!("Basic {auth}"))),
        "the control realm on loopback got no credentials: {log}"
    );
    let said = fs_err::read_to_string(dir.join("other.out")).unwrap();
    assert!(said.contains("did not send it your credentials"), "{said}");
}

/// A registry whose certificate is signed by a CA of the system's store
/// (`update-ca-certificates`) is trusted with no `certs.d`; before the CA is installed, the
/// same push fails on the certificate.
#[test]
fn issue_12_the_systems_trust_store_is_trusted() {
    tool("update-ca-certificates", "ca-certificates");
    tool("docker-registry", "docker-registry");
    let p = Project::new();
    let dir = p.path("netns");
    fs_err::create_dir_all(dir.join("empty-certs")).unwrap();
    import_busybox(&dir.join("root"));
    let name = format!("rbuild-test-{}.crt", std::process::id());
    let out = in_netns(
        &dir,
        &format!(
            r#"cd "$DIR"
printf 'subjectAltName=IP:10.231.0.1\nextendedKeyUsage=serverAuth\n' > server.ext
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=rbuild-system-ca -keyout ca.key -out ca.crt 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN=10.231.0.1 -keyout server.key -out server.csr 2>/dev/null
openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 -extfile server.ext -out server.cert 2>/dev/null
cat > config.yml <<YAML
version: 0.1
log: {{level: error, accesslog: {{disabled: true}}}}
storage: {{filesystem: {{rootdirectory: $DIR/data}}}}
http: {{addr: "10.231.0.1:5443", tls: {{certificate: $DIR/server.cert, key: $DIR/server.key}}}}
YAML
docker-registry serve config.yml > registry.log 2>&1 &
reg=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/10.231.0.1/5443) 2>/dev/null && break; sleep 0.1; done
export RBUILD_CERTS_DIR="$DIR/empty-certs"
if "$RBUILD" --root "$DIR/root" --registry-timeout 10 push busybox:latest 10.231.0.1:5443/bb:v1 > before.out 2>&1; then
  echo "pushed before the CA was trusted" >&2; kill $reg; exit 1
fi
trap 'rm -f /usr/local/share/ca-certificates/{name}; update-ca-certificates > /dev/null 2>&1; kill $reg' EXIT
cp ca.crt /usr/local/share/ca-certificates/{name}
update-ca-certificates > /dev/null 2>&1
"$RBUILD" --root "$DIR/root" --registry-timeout 10 push busybox:latest 10.231.0.1:5443/bb:v1 > after.out 2>&1
"#
        ),
    );
    let show = |f: &str| fs_err::read_to_string(dir.join(f)).unwrap_or_default();
    assert!(
        out.status.success(),
        "{}\nbefore: {}\nafter: {}",
        text(&out.stderr),
        show("before.out"),
        show("after.out")
    );
    let mut bundle = String::new();
    fs_err::File::open("/etc/ssl/certs/ca-certificates.crt")
        .unwrap()
        .read_to_string(&mut bundle)
        .unwrap();
    let ca = show("ca.crt");
    let body = ca.lines().nth(1).unwrap_or("none");
    assert!(
        !bundle.contains(body),
        "the test CA was left in the system store"
    );
    assert!(
        !Path::new("/usr/local/share/ca-certificates")
            .join(&name)
            .exists(),
        "the test CA file was left behind"
    );
}

/// A layer that decompresses to far more than any real layer of its size (200 MiB of zeros in
/// a few kilobytes of zstd) is refused while it is unpacked, and nothing of it stays in the store.
#[test]
fn issue_12_a_decompression_bomb_is_refused() {
    use crate::registry::{curl, sha256, upload_blob};
    tool("zstd", "zstd");
    let reg = crate::registry_server::Registry::start(&crate::registry_server::Auth::None);
    let host = reg.host();
    let p = Project::new();
    import_busybox(&p.root());
    p.ok(&["push", "busybox:latest", &format!("{host}/bomb:v1")]);
    let bomb = p.path("bomb.zst");
    let made = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "head -c 200M /dev/zero | zstd -19 -q -c > {0} && head -c 200M /dev/zero | sha256sum",
            bomb.display()
        ))
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", text(&made.stderr));
    let diff_id = format!(
        "sha256:{}",
        text(&made.stdout).split_whitespace().next().unwrap()
    );
    let bomb_bytes = fs_err::read(&bomb).unwrap();
    assert!(bomb_bytes.len() < 1 << 20, "{} bytes", bomb_bytes.len());
    let bomb_digest = sha256(&bomb_bytes);
    upload_blob(&host, "bomb", &bomb, &bomb_digest);
    let base = format!("http://{host}/v2/bomb");
    let oci = "application/vnd.oci.image.manifest.v1+json";
    let mut manifest: serde_json::Value = serde_json::from_slice(&curl(&[
        "-H",
        &format!("Accept: {oci}"),
        &format!("{base}/manifests/v1"),
    ]))
    .unwrap();
    let config_digest = manifest["config"]["digest"].as_str().unwrap().to_owned();
    let mut config: serde_json::Value =
        serde_json::from_slice(&curl(&[&format!("{base}/blobs/{config_digest}")])).unwrap();
    config["rootfs"]["diff_ids"]
        .as_array_mut()
        .unwrap()
        .push(diff_id.into());
    let config = serde_json::to_vec(&config).unwrap();
    let config_path = p.path("config.json");
    fs_err::write(&config_path, &config).unwrap();
    let new_config = sha256(&config);
    upload_blob(&host, "bomb", &config_path, &new_config);
    manifest["config"]["digest"] = new_config.into();
    manifest["config"]["size"] = config.len().into();
    manifest["layers"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.layer.v1.tar+zstd",
            "digest": bomb_digest,
            "size": bomb_bytes.len(),
        }));
    let manifest_path = p.path("manifest.json");
    fs_err::write(&manifest_path, serde_json::to_vec(&manifest).unwrap()).unwrap();
    curl(&[
        "-X",
        "PUT",
        "-H",
        &format!("Content-Type: {oci}"),
        "--data-binary",
        &format!("@{}", manifest_path.display()),
        &format!("{base}/manifests/v2"),
    ]);
    let fresh = p.path("fresh");
    let out = p.rbuild_in(&fresh, &["pull", &format!("{host}/bomb:v2")]);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "the bomb was pulled: {err}");
    assert!(err.contains("decompresses to more than"), "{err}");
    let du = std::process::Command::new("du")
        .args(["-sb"])
        .arg(&fresh)
        .output()
        .unwrap();
    let bytes: u64 = text(&du.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(bytes < 50 << 20, "the store kept {bytes} bytes of it");
}
