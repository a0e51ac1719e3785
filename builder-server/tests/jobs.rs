//! Issue 14's build jobs end to end, over real sockets with a real HTTP client (`reqwest`):
//! post, follow the events, download and `skopeo inspect` the image, cancel, restart after
//! `kill -9`, tenants' queues, and the posts that must be refused.

use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use serde_json::Value;

mod common;
use common::{Api, connect, context_tar, running, start_in, start_with, tar_of};

fn skopeo_inspect(transport: &str, file: &std::path::Path) -> Value {
    let out = std::process::Command::new("skopeo")
        .args(["inspect", "--raw"])
        .arg(format!("{transport}:{}", file.display()))
        .output()
        .expect("skopeo is installed (apt-get install skopeo; .ci/run does)");
    assert!(
        out.status.success(),
        "skopeo inspect {transport}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn issue_14_a_job_is_followed_logged_downloaded_and_inspected_by_skopeo() {
    let (_root, _server, port) = start_with(&[], &[]);
    let api = Api::new(port, None);
    let ctx = context_tar(
        b"FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox echo job-said-hello; /bin/busybox echo made > /made\"]\n",
    );
    let res = api.post("t=jobs:v1", ctx.clone());
    assert_eq!(res.status(), 202);
    let location = res.headers()["location"].to_str().unwrap().to_owned();
    let accepted: Value = res.json().unwrap();
    let id = accepted["id"].as_str().unwrap().to_owned();
    assert_eq!(location, format!("/v1/builds/{id}"));
    assert_eq!(
        accepted["links"]["events"],
        format!("/v1/builds/{id}/events")
    );

    // Followed from the start: every event, numbered, the RUN's line among them, the result last.
    let events = api.events(&id, None);
    let numbers: Vec<u64> = events.iter().map(|(n, _)| *n).collect();
    assert_eq!(numbers, (1..=events.len() as u64).collect::<Vec<_>>());
    assert!(
        events
            .iter()
            .any(|(_, e)| e["type"] == "log" && e["line"] == "job-said-hello"),
        "{events:?}"
    );
    let (_, last) = events.last().unwrap();
    assert_eq!(last["type"], "result", "{last}");
    // A late subscriber resuming after event 2 gets the rest only.
    let rest = api.events(&id, Some(2));
    assert_eq!(rest.first().unwrap().0, 3);
    assert_eq!(rest.len(), events.len() - 2);

    let b = api.wait_done(&id);
    assert_eq!(b["state"], "succeeded", "{b}");
    assert_eq!(b["tags"][0], "jobs:v1");
    assert_eq!(b["result"]["manifest_digest"], last["manifest_digest"]);
    assert!(b["result"]["size"].as_u64().unwrap() > 0, "{b}");
    assert_eq!(b["steps"].as_array().unwrap().len(), 3, "{b}");
    assert!(
        b["steps"][2]["miss"].as_str().is_some(),
        "a first build's miss says why: {b}"
    );
    assert!(
        b["duration_seconds"].as_f64().is_some() && b["started"].is_string(),
        "{b}"
    );
    let logs = api.get(&format!("/v1/builds/{id}/logs")).text().unwrap();
    assert!(
        logs.contains("job-said-hello") && logs.contains("#2 "),
        "{logs}"
    );

    // The image, in both formats, read by skopeo.
    let dir = tempfile::tempdir().unwrap();
    for (format, transport) in [("oci", "oci-archive"), ("docker", "docker-archive")] {
        let res = api.get(&format!("/v1/builds/{id}/image?format={format}"));
        assert_eq!(res.status(), 200);
        let file = dir.path().join(format!("{format}.tar"));
        fs_err::write(&file, res.bytes().unwrap()).unwrap();
        let manifest = skopeo_inspect(transport, &file);
        assert_eq!(
            manifest["layers"].as_array().unwrap().len(),
            2,
            "{manifest}"
        );
        // The image the build made: its config is the build's image id.
        let config = manifest["config"]["digest"]
            .as_str()
            .or(manifest["config"].as_str())
            .map(str::to_owned);
        if format == "oci" {
            assert_eq!(config.as_deref(), last["image_id"].as_str(), "{manifest}");
        }
    }
    let res = api.get(&format!("/v1/builds/{id}/image?format=zip"));
    assert_eq!(res.status(), 400);

    // The same post again: every step CACHED in the record.
    let again = api.submit("t=jobs:v1", ctx);
    let b = api.wait_done(&again);
    let steps = b["steps"].as_array().unwrap();
    assert!(steps.iter().all(|s| s["cached"] == true), "{b}");
    assert_eq!(
        (b["step_count"].as_i64(), b["cached_count"].as_i64()),
        (Some(3), Some(3))
    );
    // Listed newest first, filtered by tag and state.
    let page = api.json("/v1/builds?tag=jobs:v1&state=succeeded");
    let ids: Vec<&str> = page["builds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [again.as_str(), id.as_str()]);
    let page = api.json("/v1/builds?limit=1");
    assert_eq!(page["builds"].as_array().unwrap().len(), 1);
    let next = api.json(page["next"].as_str().unwrap());
    assert_eq!(next["builds"][0]["id"], id);
    assert!(
        api.json("/v1/builds?tag=other:v1")["builds"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn issue_14_deleting_a_job_kills_its_run_and_a_queued_one_never_starts() {
    let (_root, _server, port) = start_with(&["--max-builds", "1", "--max-queued", "1"], &[]);
    let api = Api::new(port, None);
    let sleeper = api.submit(
        "",
        context_tar(b"FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"sleep\", \"4141\"]\n"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !running("sleep 4141") {
        assert!(Instant::now() < deadline, "the RUN never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    let waiting = api.submit(
        "",
        context_tar(b"FROM scratch\nCOPY busybox /bin/busybox\n"),
    );
    assert_eq!(
        api.json(&format!("/v1/builds/{waiting}"))["state"],
        "queued"
    );
    // One running and one queued: the tenant's queue (of one) is full.
    let res = api.post("", context_tar(b"FROM scratch\n"));
    assert_eq!(res.status(), 429);
    assert!(res.headers().contains_key("retry-after"));
    // Refused before its body was read: the connection is not to be reused.
    assert_eq!(res.headers()["connection"], "close");
    let err: Value = res.json().unwrap();
    assert!(
        err["error"].as_str().unwrap().contains("--max-queued"),
        "{err}"
    );

    let res = api
        .req(reqwest::Method::DELETE, &format!("/v1/builds/{waiting}"))
        .send()
        .unwrap();
    assert_eq!(res.status(), 202);
    assert_eq!(api.wait_done(&waiting)["state"], "cancelled");
    let res = api
        .req(reqwest::Method::DELETE, &format!("/v1/builds/{sleeper}"))
        .send()
        .unwrap();
    assert_eq!(res.status(), 202);
    let deadline = Instant::now() + Duration::from_secs(10);
    while running("sleep 4141") {
        assert!(Instant::now() < deadline, "the RUN outlived its cancel");
        std::thread::sleep(Duration::from_millis(50));
    }
    let b = api.wait_done(&sleeper);
    assert_eq!(b["state"], "cancelled", "{b}");
    assert!(
        b["started"].is_string() && b["error"]["error"].is_string(),
        "{b}"
    );
    // Ended: a second DELETE is a conflict, an unknown id a 404 with a JSON error.
    let res = api
        .req(reqwest::Method::DELETE, &format!("/v1/builds/{sleeper}"))
        .send()
        .unwrap();
    assert_eq!(res.status(), 409);
    let res = api.get("/v1/builds/0123456789abcdef0123");
    assert_eq!(res.status(), 404);
    assert!(
        res.json::<Value>().unwrap()["error"]
            .as_str()
            .unwrap()
            .contains("no build")
    );
    // The slot is free again.
    let next = api.submit(
        "",
        context_tar(b"FROM scratch\nCOPY busybox /bin/busybox\n"),
    );
    assert_eq!(api.wait_done(&next)["state"], "succeeded");
}

#[test]
fn issue_14_after_kill_9_the_history_is_kept_and_the_running_build_is_interrupted() {
    let root = tempfile::tempdir().unwrap();
    let (mut server, port) = start_in(root.path(), &[], &[]);
    let api = Api::new(port, None);
    let done = api.submit(
        "t=before:v1",
        context_tar(b"FROM scratch\nCOPY busybox /bin/busybox\n"),
    );
    assert_eq!(api.wait_done(&done)["state"], "succeeded");
    let events_before = api.events(&done, None);
    let cut = api.submit(
        "",
        context_tar(b"FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"sleep\", \"4343\"]\n"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !running("sleep 4343") {
        assert!(Instant::now() < deadline, "the RUN never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    server.0.kill().unwrap(); // SIGKILL
    server.0.wait().unwrap();
    drop(server);
    // The sandbox dies with its server.
    let deadline = Instant::now() + Duration::from_secs(10);
    while running("sleep 4343") {
        assert!(
            Instant::now() < deadline,
            "the RUN outlived a killed server"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let (_server, port) = start_in(root.path(), &[], &[]);
    let api = Api::new(port, None);
    let b = api.json(&format!("/v1/builds/{cut}"));
    assert_eq!(b["state"], "interrupted", "{b}");
    assert!(
        b["error"]["error"]
            .as_str()
            .unwrap()
            .contains("interrupted"),
        "{b}"
    );
    assert_eq!(
        b["steps"].as_array().unwrap().len(),
        3,
        "the steps it had begun are recorded: {b}"
    );
    assert_eq!(
        b["steps"][2]["millis"],
        Value::Null,
        "the RUN never finished: {b}"
    );
    let kept = api.json(&format!("/v1/builds/{done}"));
    assert_eq!(kept["state"], "succeeded");
    assert_eq!(api.events(&done, None), events_before);
    let page = api.json("/v1/builds");
    assert_eq!(page["builds"].as_array().unwrap().len(), 2, "{page}");
    // The interrupted build's events end: nothing more will come.
    assert!(api.events(&cut, None).len() >= 2);
    // The service goes on.
    let next = api.submit(
        "",
        context_tar(b"FROM scratch\nCOPY busybox /bin/busybox\n"),
    );
    assert_eq!(api.wait_done(&next)["state"], "succeeded");
}

const TOKEN_A: &str = "token-a-jobs-0123456789";
const TOKEN_B: &str = "token-b-jobs-9876543210";

#[test]
fn issue_14_tenants_are_served_round_robin_and_see_only_their_own_builds() {
    let tokens = format!("{TOKEN_A} team-a\n{TOKEN_B} team-b\n");
    let (_root, _server, port) = start_with(
        &["--max-builds", "1"],
        &[("RBUILD_TOKENS", tokens.as_str())],
    );
    let a = Api::new(port, Some(TOKEN_A));
    let b = Api::new(port, Some(TOKEN_B));
    // A's first build holds the only slot while A queues 19 more, then B posts one.
    let mut a_ids = vec![a.submit(
        "",
        context_tar(
            b"FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"sleep\", \"3\"]\n",
        ),
    )];
    for i in 1..20 {
        let df = format!(
            "FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"echo\", \"a{i}\"]\n"
        );
        a_ids.push(a.submit("", context_tar(df.as_bytes())));
    }
    let b_id = b.submit(
        "",
        context_tar(
            b"FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"echo\", \"b\"]\n",
        ),
    );
    assert_eq!(
        a.json(&format!("/v1/builds/{}", a_ids[0]))["state"],
        "running",
        "the test needs A's first build still running when B posts"
    );
    for id in &a_ids {
        assert_eq!(a.wait_done(id)["state"], "succeeded");
    }
    let b_build = b.wait_done(&b_id);
    assert_eq!(b_build["state"], "succeeded");
    // The order read from the records: B's build started before A's last five.
    let b_order = b_build["start_order"].as_i64().unwrap();
    for id in &a_ids[15..] {
        let order = a.json(&format!("/v1/builds/{id}"))["start_order"]
            .as_i64()
            .unwrap();
        assert!(
            b_order < order,
            "B started {b_order}th, after A's {id} ({order}th)"
        );
    }

    // Each tenant sees its own builds only: another's id is a 404, its list holds its own.
    assert_eq!(b.get(&format!("/v1/builds/{}", a_ids[0])).status(), 404);
    assert_eq!(
        b.get(&format!("/v1/builds/{}/events", a_ids[0])).status(),
        404
    );
    assert_eq!(
        b.get(&format!("/v1/builds/{}/image", a_ids[0])).status(),
        404
    );
    assert_eq!(
        b.req(reqwest::Method::DELETE, &format!("/v1/builds/{}", a_ids[0]))
            .send()
            .unwrap()
            .status(),
        404
    );
    let mine = b.json("/v1/builds");
    let listed: Vec<&Value> = mine["builds"].as_array().unwrap().iter().collect();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["tenant"], "team-b");
    assert!(
        b.json("/v1/builds?tenant=team-a")["builds"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        a.json("/v1/builds?limit=500")["builds"]
            .as_array()
            .unwrap()
            .len(),
        20
    );
    // No token and a wrong one: 401, and the server keeps serving.
    let nobody = Api::new(port, None);
    assert_eq!(nobody.get("/v1/builds").status(), 401);
    assert_eq!(
        nobody.post("", context_tar(b"FROM scratch\n")).status(),
        401
    );
    let wrong = Api::new(port, Some("not-a-token-at-all"));
    assert_eq!(wrong.get(&format!("/v1/builds/{b_id}")).status(), 401);
    assert_eq!(b.json(&format!("/v1/builds/{b_id}"))["state"], "succeeded");
}

/// A tar of raw members (path, kind, link target, data), written by hand so `../` and absolute
/// names get through.
fn raw_tar(members: &[(&str, u8, &str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (path, kind, link, data) in members {
        let mut h = [0u8; 512];
        h[..path.len()].copy_from_slice(path.as_bytes());
        h[100..108].copy_from_slice(b"0000644\0");
        h[108..116].copy_from_slice(b"0000000\0");
        h[116..124].copy_from_slice(b"0000000\0");
        h[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
        h[136..148].copy_from_slice(b"00000000000\0");
        h[156] = *kind;
        h[157..157 + link.len()].copy_from_slice(link.as_bytes());
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        out.extend_from_slice(&h);
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

#[test]
fn issue_14_bad_posts_are_4xx_with_a_json_error_and_keep_nothing() {
    let (root, _server, port) = start_with(&["--max-context-size", "64k"], &[]);
    let api = Api::new(port, None);
    let df: &[u8] = b"FROM scratch\nCOPY a /a\n";
    let good = raw_tar(&[("Dockerfile", b'0', "", df), ("a", b'0', "", b"a")]);
    let cases: Vec<(&str, &str, Vec<u8>, u16, &str)> = vec![
        (
            "truncated tar (cut in a header)",
            "",
            good[..1100].to_vec(),
            400,
            "tar",
        ),
        (
            "not a tar",
            "",
            b"this is not a tar at all".repeat(40),
            400,
            "tar",
        ),
        (
            "a ../ member",
            "",
            raw_tar(&[("Dockerfile", b'0', "", df), ("../escape", b'0', "", b"x")]),
            400,
            "",
        ),
        (
            "an absolute member",
            "",
            raw_tar(&[
                ("Dockerfile", b'0', "", df),
                ("/etc/escape", b'0', "", b"x"),
            ]),
            400,
            "",
        ),
        (
            "a symlink out",
            "",
            raw_tar(&[
                ("Dockerfile", b'0', "", df),
                ("out", b'2', "/tmp", b""),
                ("out/rbuild-escape-14", b'0', "", b"x"),
            ]),
            400,
            "",
        ),
        (
            "over the size limit",
            "",
            vec![0u8; 100 << 10],
            413,
            "--max-context-size",
        ),
        (
            "no Dockerfile",
            "",
            raw_tar(&[("other", b'0', "", b"x")]),
            400,
            "no Dockerfile",
        ),
        (
            "a bad Dockerfile",
            "",
            raw_tar(&[("Dockerfile", b'0', "", b"FROM scratch\nRUNN x\n")]),
            400,
            "invalid Dockerfile",
        ),
        (
            "an unknown option",
            "frobnicate=1",
            good.clone(),
            400,
            "unknown parameter",
        ),
        (
            "a bad option value",
            "nocache=maybe",
            good.clone(),
            400,
            "boolean",
        ),
    ];
    for (what, query, body, status, says) in cases {
        let res = api.post(query, body);
        assert_eq!(res.status().as_u16(), status, "{what}");
        let err: Value = res
            .json()
            .unwrap_or_else(|e| panic!("{what}: not JSON: {e}"));
        let text = err["error"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: {err}"));
        assert!(text.contains(says), "{what}: {err}");
    }
    assert!(!std::path::Path::new("/tmp/rbuild-escape-14").exists());
    assert!(!std::path::Path::new("/etc/escape").exists());
    // Nothing was recorded, nothing is left in the store, and the store verifies.
    assert!(
        api.json("/v1/builds")["builds"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let tmp = root.path().join("tmp");
    let left: Vec<_> = fs_err::read_dir(&tmp)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "work directories left: {left:?}");
    let store = builder_core::solve::Store::open(root.path()).unwrap();
    let report = builder_core::solve::fsck(
        &store,
        builder_core::solve::FsckOptions {
            repair: false,
            quick: false,
        },
    )
    .unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    // And a good post still builds.
    let id = api.submit("", good);
    assert_eq!(api.wait_done(&id)["state"], "succeeded");
}

#[test]
fn issue_14_a_stalled_body_is_refused_with_408() {
    use std::io::{Read, Write};
    let (_root, _server, port) = start_with(&["--body-timeout", "1"], &[]);
    let mut stream = connect(port);
    write!(
        stream,
        "POST /v1/builds HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    // Half a tar header, then nothing.
    let tar = raw_tar(&[("Dockerfile", b'0', "", b"FROM scratch\n")]);
    stream.write_all(&tar[..300]).unwrap();
    let started = Instant::now();
    let mut bytes = Vec::new();
    // The server may close (even reset) the connection once it has answered.
    let _ = stream.read_to_end(&mut bytes);
    let response = String::from_utf8_lossy(&bytes);
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(response.contains("sent nothing"), "{response}");
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn issue_14_with_a_certificate_the_server_speaks_tls_only() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .args([
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let (_root, _server, port) = start_with(
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
        &[],
    );
    drop(connect(port));
    let ca = reqwest::Certificate::from_pem(&fs_err::read(&cert).unwrap()).unwrap();
    let https = Client::builder().add_root_certificate(ca).build().unwrap();
    let res = https
        .get(format!("https://127.0.0.1:{port}/healthz"))
        .send()
        .unwrap();
    assert_eq!(res.status(), 200);
    let ctx = context_tar(b"FROM scratch\nCOPY busybox /bin/busybox\n");
    let res = https
        .post(format!("https://127.0.0.1:{port}/v1/builds"))
        .body(ctx)
        .send()
        .unwrap();
    assert_eq!(res.status(), 202);
    // Plain HTTP gets no answer from it.
    let plain = Client::new()
        .get(format!("http://127.0.0.1:{port}/healthz"))
        .send();
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
}

/// A context of busybox and `payload.bin`: `size` bytes that do not compress, from `seed`.
fn payload_context(seed: u8, size: usize) -> Vec<u8> {
    // xorshift: fast, incompressible enough, the same for the same seed.
    let mut x = 0x9e37_79b9_7f4a_7c15_u64 ^ u64::from(seed);
    let data: Vec<u8> = (0..size)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()[0]
        })
        .collect();
    tar_of(&[
        (
            "Dockerfile",
            0o644,
            b"FROM scratch\nCOPY busybox /bin/busybox\nCOPY payload.bin /\n",
        ),
        ("busybox", 0o755, &fs_err::read("/bin/busybox").unwrap()),
        ("payload.bin", 0o644, &data),
    ])
}

/// Issue 14, item 2: past `--cache-max-size` the step cache is pruned least recently used
/// first: the build used again just before survives, the one not used since goes.
#[test]
fn issue_14_the_step_cache_is_pruned_least_recently_used_to_its_size() {
    let (_root, _server, port) = start_with(&["--cache-max-size", "6m", "--max-builds", "1"], &[]);
    let api = Api::new(port, None);
    let build = |seed: u8| {
        let id = api.submit("", payload_context(seed, 1_500_000));
        let b = api.wait_done(&id);
        assert_eq!(b["state"], "succeeded", "{b}");
        b["steps"][2]["cached"] == true
    };
    assert!(!build(1), "first build of payload 1");
    assert!(!build(2), "first build of payload 2");
    // Payload 1 used again: now it is the more recently used.
    assert!(build(1), "payload 1 is still cached (under the size)");
    // A third payload passes 6 MB: the least recently used record (payload 2) goes.
    assert!(!build(3));
    assert!(build(1), "the recently used payload 1 was kept");
    assert!(!build(2), "the least recently used payload 2 was pruned");
}

#[test]
fn issue_14_a_failed_job_records_its_error_with_the_dockerfile_line() {
    let (_root, _server, port) = start_with(&[], &[]);
    let api = Api::new(port, None);
    let id = api.submit(
        "",
        context_tar(
            b"FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"false\"]\n",
        ),
    );
    let b = api.wait_done(&id);
    assert_eq!(b["state"], "failed", "{b}");
    assert_eq!(b["error"]["location"]["line"], 3, "{b}");
    assert!(b["result"].is_null());
    let (_, last) = api.events(&id, None).pop().unwrap();
    assert_eq!(last["type"], "error");
    let res = api.get(&format!("/v1/builds/{id}/image"));
    assert_eq!(res.status(), 409, "a failed build has no image");
    assert!(
        api.get(&format!("/v1/builds/{id}/logs"))
            .text()
            .unwrap()
            .contains("ERROR")
    );
}

#[test]
fn issue_14_sigterm_interrupts_queued_jobs_at_once_and_running_ones_past_the_grace() {
    let root = tempfile::tempdir().unwrap();
    let (mut server, port) = start_in(root.path(), &["--max-builds", "1", "--grace", "1"], &[]);
    let api = Api::new(port, None);
    let sleeper = api.submit(
        "",
        context_tar(b"FROM scratch\nCOPY busybox /bin/busybox\nRUN [\"/bin/busybox\", \"sleep\", \"4545\"]\n"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while !running("sleep 4545") {
        assert!(Instant::now() < deadline, "the RUN never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    let waiting = api.submit(
        "",
        context_tar(b"FROM scratch\nCOPY busybox /bin/busybox\n"),
    );
    let pid = server.0.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.0.try_wait().unwrap().is_none() {
        assert!(
            Instant::now() < deadline,
            "the server did not exit after its grace"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!running("sleep 4545"), "the RUN outlived the shutdown");
    drop(server);
    let (_server, port) = start_in(root.path(), &[], &[]);
    let api = Api::new(port, None);
    // Each says what ended it: the drain (queued), the grace (running) — not the restart.
    let b = api.json(&format!("/v1/builds/{waiting}"));
    assert_eq!(b["state"], "interrupted");
    assert!(
        b["error"]["error"]
            .as_str()
            .unwrap()
            .contains("before the build started"),
        "{b}"
    );
    let b = api.json(&format!("/v1/builds/{sleeper}"));
    assert_eq!(b["state"], "interrupted");
    assert!(
        b["error"]["error"]
            .as_str()
            .unwrap()
            .contains("shut down before the build finished"),
        "{b}"
    );
}
