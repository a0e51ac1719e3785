//! Issue 15, item 3: a fleet. PostgreSQL (Debian's, in a temporary directory, or the suite's),
//! one registry, and two replica processes with separate stores on loopback share one queue,
//! one history and one step cache.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

mod common;
use common::{Api, Server, context_tar, database, registry, start_in};

fn replica(root: &Path, name: &str, db: &str, reg: &str, space: &str) -> (Server, u16) {
    let contexts = format!("{reg}/{space}/contexts");
    let cache = format!("{reg}/{space}/cache:steps");
    start_in(
        root,
        &[
            "--database",
            db,
            "--context-store",
            &contexts,
            "--cache-registry",
            &cache,
            "--replica-name",
            name,
            "--max-builds",
            "1",
            "--lease-seconds",
            "2",
        ],
        &[],
    )
}

/// A context whose RUN sleeps `secs` and prints `job-N` (`N` a build arg, so each differs).
fn job(secs: &str) -> Vec<u8> {
    let df = format!(
        "FROM scratch\nCOPY busybox /bin/busybox\nARG N\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"sleep {secs}; echo job-$N > /n\"]\n"
    );
    context_tar(df.as_bytes())
}

/// Waits until `ok(record)` for build `id`.
fn wait_for(api: &Api, id: &str, what: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let b = api.json(&format!("/v1/builds/{id}"));
        if ok(&b) {
            return b;
        }
        assert!(Instant::now() < deadline, "build {id} never {what}: {b}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn issue_15_two_replicas_share_the_queue_survive_a_kill_and_share_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _pg) = database(dir.path());
    let (reg, _registry) = registry(dir.path());
    let space = format!("fleet{}", std::process::id());
    let (root_a, root_b) = (dir.path().join("a"), dir.path().join("b"));
    let (mut a, port_a) = replica(&root_a, "a", &db, &reg, &space);
    let (mut b, port_b) = replica(&root_b, "b", &db, &reg, &space);
    let a_api = Api::new(port_a, None);
    let b_api = Api::new(port_b, None);

    // 12 builds posted to A alone run on both replicas (the records say where).
    let ids: Vec<String> = (0..12)
        .map(|i| a_api.submit(&format!("buildarg=N={i}"), job("1")))
        .collect();
    let mut ran_on = BTreeSet::new();
    for id in &ids {
        let b = wait_for(&a_api, id, "ended", |b| {
            !matches!(b["state"].as_str(), Some("queued" | "running"))
        });
        assert_eq!(b["state"], "succeeded", "{b}");
        ran_on.insert(b["replica"].as_str().unwrap().to_owned());
    }
    assert_eq!(ran_on, BTreeSet::from(["a".to_owned(), "b".to_owned()]));
    // Its events reach a client of the other replica.
    let events = b_api.events(&ids[0], None);
    assert_eq!(events.last().unwrap().1["type"], "result");

    // Two long builds: one runs on each; B is killed mid-RUN, and its build finishes on A.
    let long: Vec<String> = (0..2)
        .map(|i| a_api.submit(&format!("buildarg=N=long{i}"), job("6")))
        .collect();
    let on_b = {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let found = long.iter().find(|id| {
                let r = a_api.json(&format!("/v1/builds/{id}"));
                r["state"] == "running" && r["replica"] == "b"
            });
            if let Some(id) = found {
                break id.clone();
            }
            assert!(Instant::now() < deadline, "no long build ran on B");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    std::thread::sleep(Duration::from_secs(1));
    b.0.kill().unwrap(); // SIGKILL
    b.0.wait().unwrap();
    drop(b);
    let moved = wait_for(&a_api, &on_b, "finished on A", |r| {
        r["state"] == "succeeded"
    });
    assert_eq!(moved["replica"], "a", "{moved}");
    let other = long.iter().find(|id| **id != on_b).unwrap();
    wait_for(&a_api, other, "succeeded", |r| r["state"] == "succeeded");

    // The same context posted again runs all CACHED wherever it runs, the step cache being the
    // registry's: here on a new replica with an empty store, A stopped so that it must.
    let built_on = a_api.json(&format!("/v1/builds/{}", ids[3]))["replica"].clone();
    a.0.kill().unwrap();
    a.0.wait().unwrap();
    drop(a);
    let root_c = dir.path().join("c");
    let (c, port_c) = replica(&root_c, "c", &db, &reg, &space);
    let c_api = Api::new(port_c, None);
    let again = c_api.submit("buildarg=N=3", job("1"));
    let r = wait_for(&c_api, &again, "ended", |b| {
        !matches!(b["state"].as_str(), Some("queued" | "running"))
    });
    assert_eq!(r["state"], "succeeded", "{r}");
    assert_eq!(r["replica"], "c");
    assert_eq!(
        r["cached_count"], r["step_count"],
        "all CACHED on c (first built on {built_on}): {r}"
    );
    drop(c);
    let (_a, port_a) = replica(&root_a, "a", &db, &reg, &space);
    let a_api = Api::new(port_a, None);
    let (_b, port_b) = replica(&root_b, "b", &db, &reg, &space);
    let b_api = Api::new(port_b, None);

    // Either replica lists every build.
    let listed = |api: &Api| -> BTreeSet<String> {
        api.json("/v1/builds?limit=500")["builds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (from_a, from_b) = (listed(&a_api), listed(&b_api));
    assert_eq!(from_a.len(), 15);
    assert_eq!(from_a, from_b);
}
