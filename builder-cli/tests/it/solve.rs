//! How the stages of a build are scheduled.

use crate::support::{Project, import_busybox};

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
