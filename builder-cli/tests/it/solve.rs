//! How the stages of a build are scheduled.

use crate::support::{Project, import_busybox, text};

/// The first number of a `/proc/uptime` line a step wrote.
fn uptime(path: &std::path::Path) -> f64 {
    let text = fs_err::read_to_string(path).unwrap();
    text.split_whitespace().next().unwrap().parse().unwrap()
}

/// Builds `p` two stages at a time, its result's files put in a directory, which it gives.
fn build_two_at_once(p: &Project) -> std::path::PathBuf {
    let out = p.path("out");
    p.ok(&[
        "build",
        "-q",
        "--jobs",
        "2",
        "--network",
        "none",
        "-o",
        &format!("type=local,dest={}", out.display()),
        ".",
    ]);
    out
}

#[test]
fn a_stage_starts_when_what_it_uses_is_built_not_when_its_wave_is() {
    // A is slow, B fast, C uses only B: C's RUN must start while A still runs. Each step writes
    // the host's uptime (not namespaced), so the order is read from the steps themselves.
    let p = Project::new();
    import_busybox(&p.root());
    p.file(
        "Dockerfile",
        "FROM busybox AS a\nRUN sleep 3 && cat /proc/uptime > /a-end\n\
         FROM busybox AS b\nRUN echo b > /b\n\
         FROM b AS c\nRUN cat /proc/uptime > /c-start\n\
         FROM scratch\nCOPY --from=a /a-end /a-end\nCOPY --from=c /c-start /c-start\n",
    );
    let out = build_two_at_once(&p);
    let (a_end, c_start) = (uptime(&out.join("a-end")), uptime(&out.join("c-start")));
    assert!(
        c_start < a_end,
        "C started at {c_start} s, after A ended at {a_end} s"
    );
}

#[test]
fn a_step_starts_when_its_inputs_are_done_not_when_its_stage_could_start() {
    // C is built FROM busybox and copies from the slow A: its first RUN must not wait for A,
    // only its COPY --from=a does (ordering read from the uptimes the steps wrote).
    let p = Project::new();
    import_busybox(&p.root());
    p.file(
        "Dockerfile",
        "FROM busybox AS a\nRUN sleep 3 && cat /proc/uptime > /a-end\n\
         FROM busybox AS c\nRUN cat /proc/uptime > /c-start\nCOPY --from=a /a-end /a-end\n\
         FROM scratch\nCOPY --from=c /c-start /c-start\nCOPY --from=c /a-end /a-end\n",
    );
    let out = build_two_at_once(&p);
    let (a_end, c_start) = (uptime(&out.join("a-end")), uptime(&out.join("c-start")));
    assert!(
        c_start < a_end,
        "C's first RUN started at {c_start} s, after A ended at {a_end} s"
    );
}

#[test]
fn a_failed_stage_stops_the_steps_waiting_for_it() {
    let p = Project::new();
    import_busybox(&p.root());
    p.file(
        "Dockerfile",
        "FROM busybox AS a\nRUN sleep 1 && exit 3\n\
         FROM busybox AS c\nRUN true\nCOPY --from=a /x /x\n",
    );
    let out = p.rbuild(&["build", "-q", "--jobs", "2", "--network", "none", "."]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    // The error is A's RUN, not the cancel of C's COPY that waited for it.
    assert!(
        stderr.contains("RUN failed (Dockerfile line 2): `RUN sleep 1 && exit 3`"),
        "{stderr}"
    );
}

#[test]
fn the_printed_plan_is_what_the_build_runs() {
    // `rbuild plan` lowers without building; what it says a RUN gets (command, environment,
    // working directory, user) is what the sandbox gave it, and its edges are the stages read.
    let p = Project::new();
    import_busybox(&p.root());
    p.file(
        "Dockerfile",
        "ARG WHO=app\nFROM busybox AS tools\nRUN echo t > /t\n\
         FROM busybox\nARG V=1\nENV B=$V-x\nWORKDIR /w/sub/..\nCOPY --from=tools /t /t\n\
         RUN env > /env && pwd > /pwd && id -u > /uid\n",
    );
    let printed = p.ok(&["plan", "--build-arg", "V=2", "."]);
    let graph: serde_json::Value = serde_json::from_slice(&printed.stdout).unwrap();
    let same = p.ok(&["build", "--print-plan", "--build-arg", "V=2", "."]);
    assert_eq!(
        same.stdout, printed.stdout,
        "--print-plan prints what `plan` does"
    );
    let ops = graph["ops"].as_array().unwrap();
    let run = ops.last().unwrap();
    assert_eq!(run["op"], "exec");
    let out = p.path("out");
    p.ok(&[
        "build",
        "-q",
        "--network",
        "none",
        "--build-arg",
        "V=2",
        "-o",
        &format!("type=local,dest={}", out.display()),
        ".",
    ]);
    let mut seen: Vec<String> = fs_err::read_to_string(out.join("env"))
        .unwrap()
        .lines()
        .filter(|l| {
            !l.starts_with("HOSTNAME=")
                && !l.starts_with("HOME=")
                && !l.starts_with("SHLVL=")
                && !l.starts_with("PWD=")
                && !l.starts_with("OLDPWD=")
        })
        .map(str::to_owned)
        .collect();
    let mut planned: Vec<String> = run["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    seen.sort();
    planned.sort();
    assert_eq!(seen, planned);
    assert!(planned.contains(&"B=2-x".to_owned()));
    let pwd = fs_err::read_to_string(out.join("pwd")).unwrap();
    // WORKDIR keeps an absolute path as written (BuildKit's); RUN runs where it leads.
    assert_eq!(run["workdir"], "/w/sub/..");
    assert_eq!(pwd.trim(), "/w");
    assert_eq!(run["args"][2], "env > /env && pwd > /pwd && id -u > /uid");
    // The COPY reads the stage `tools` built: its last op is an input.
    let copy = &ops[ops.len() - 2];
    assert_eq!(copy["from"], serde_json::json!({"stage": 0}));
    let tools_result = graph["stages"][0]["result"].clone();
    assert!(copy["inputs"].as_array().unwrap().contains(&tools_result));
    // DOT draws the same edges.
    let dot = p.ok(&["plan", "--format", "dot", "."]);
    let dot = String::from_utf8(dot.stdout).unwrap();
    assert!(dot.starts_with("digraph build {"), "{dot}");
    assert!(
        dot.contains(&format!("op{tools_result} -> op{};", ops.len() - 2)),
        "{dot}"
    );
}

/// The ops of `graph` that are steps, stage by stage.
fn steps(graph: &serde_json::Value) -> Vec<serde_json::Value> {
    let ops = graph["ops"].as_array().unwrap();
    graph["stages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["steps"].as_array().unwrap().clone())
        .map(|id| ops[usize::try_from(id.as_u64().unwrap()).unwrap()].clone())
        .collect()
}

/// The keys `rbuild plan` prints are the keys the build uses: before a build no step is
/// cached; after it every step is, under the same keys; a changed context file moves the key
/// of the COPY that reads it and of every step after it, and no other.
#[test]
fn the_plan_gives_the_keys_the_build_uses() {
    let p = Project::new();
    import_busybox(&p.root());
    p.file(
        "Dockerfile",
        "FROM busybox AS tools\nRUN echo t > /t\n\
         FROM busybox\nENV A=1\nCOPY a.txt /a.txt\nCOPY --from=tools /t /t\nRUN cat /a.txt > /b\n",
    );
    p.file("a.txt", "one\n");
    // The steps' ops (sources of context files are not steps and have no key).
    let plan = |p: &Project| -> Vec<serde_json::Value> {
        let out = p.ok(&["plan", "--network", "none", "."]);
        let graph: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        steps(&graph)
    };
    let keys = |ops: &[serde_json::Value]| -> Vec<String> {
        ops.iter()
            .map(|o| o["key"].as_str().expect("every op has a key").to_owned())
            .collect()
    };
    let cached = |ops: &[serde_json::Value]| -> Vec<Option<bool>> {
        ops.iter().map(|o| o["cached"].as_bool()).collect()
    };
    let before = plan(&p);
    let from = |o: &serde_json::Value| o["instruction"].as_str().unwrap().starts_with("FROM");
    assert!(
        before.iter().all(|o| from(o) || o["cached"] == false),
        "{before:#?}"
    );
    p.ok(&["build", "-q", "--network", "none", "."]);
    let after = plan(&p);
    assert_eq!(keys(&after), keys(&before), "the build used other keys");
    assert!(
        after.iter().all(|o| from(o) || o["cached"] == true),
        "{after:#?}"
    );
    p.file("a.txt", "two\n");
    let changed = plan(&p);
    let copy_a = changed
        .iter()
        .position(|o| o["instruction"] == "COPY a.txt /a.txt")
        .unwrap();
    for (i, (now, then)) in keys(&changed).iter().zip(keys(&after)).enumerate() {
        let moved = changed[i]["stage"] == changed[copy_a]["stage"] && i >= copy_a;
        assert_eq!(now != &then, moved, "op {i}: {:#?}", changed[i]);
    }
    assert_eq!(
        cached(&changed)[copy_a..],
        vec![Some(false); changed.len() - copy_a],
        "{changed:#?}"
    );
}

/// A step whose key needs a download (`ADD <url>` without `--checksum`) has no key in the
/// plan, nor does any step after it; the plan says why, and fetches nothing.
#[test]
fn the_plan_says_where_keys_stop_and_fetches_nothing() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let p = Project::new();
    p.file(
        "Dockerfile",
        &format!("FROM scratch\nENV A=1\nADD http://127.0.0.1:{port}/f /f\nENV B=2\n"),
    );
    let out = p.ok(&["plan", "."]);
    let graph: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let keyed: Vec<bool> = steps(&graph)
        .iter()
        .map(|o| o.get("key").is_some())
        .collect();
    assert_eq!(keyed, [true, true, false, false], "{graph:#}");
    let err = text(&out.stderr);
    assert!(err.contains("ADD") && err.contains("--checksum"), "{err}");
    assert!(listener.accept().is_err(), "the plan fetched the URL");
}
