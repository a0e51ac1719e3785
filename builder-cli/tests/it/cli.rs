//! The everyday command line: docker-build-compatible flags, progress output (plain, rawjson, and
//! the live view under tmux), and what a new user sees for mistakes.

use std::time::{Duration, Instant};

use crate::support::{Project, import_busybox, text, tool, untimed};

fn busybox_project(dockerfile: &str) -> Project {
    let p = Project::new();
    import_busybox(&p.root());
    p.file("Dockerfile", dockerfile);
    p
}

fn inspect(p: &Project, image: &str) -> serde_json::Value {
    serde_json::from_slice(&p.ok(&["inspect", image]).stdout).unwrap()
}

#[test]
fn a_path_first_means_build_as_docker_build_takes_it() {
    let p = Project::new();
    p.file("Dockerfile", "FROM scratch\nCOPY a.txt /\n")
        .file("a.txt", "a");
    let out = p.rbuild(&["-t", "implicit:v1", "--progress", "plain", "."]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        inspect(&p, "implicit:v1")["Config"]["rootfs"]["diff_ids"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // And with the context first.
    let out = p.rbuild(&[".", "-t", "implicit:v2", "-q"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).trim().starts_with("sha256:"));
}

#[test]
fn the_dockerfile_can_come_from_standard_input() {
    let p = Project::new();
    p.file("a.txt", "from stdin build");
    let out = crate::support::with_stdin(
        &mut p.command_in(&p.root(), &["build", "-f", "-", "-t", "stdin:v1", "."]),
        b"FROM scratch\nCOPY a.txt /copied\n",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let history = text(&p.ok(&["history", "stdin:v1"]).stdout);
    assert!(history.contains("COPY a.txt /copied"), "{history}");
}

#[test]
fn iidfile_and_metadata_file_name_the_result() {
    let p = Project::new();
    p.file("Dockerfile", "FROM scratch\nCOPY a.txt /\n")
        .file("a.txt", "a");
    let iid = p.path("iid");
    let meta = p.path("meta.json");
    p.ok(&[
        "build",
        "-t",
        "meta:v1",
        "--iidfile",
        iid.to_str().unwrap(),
        "--metadata-file",
        meta.to_str().unwrap(),
        ".",
    ]);
    let info = inspect(&p, "meta:v1");
    assert_eq!(
        fs_err::read_to_string(&iid).unwrap(),
        info["Id"].as_str().unwrap()
    );
    let m: serde_json::Value = serde_json::from_slice(&fs_err::read(&meta).unwrap()).unwrap();
    assert_eq!(m["containerimage.config.digest"], info["Id"]);
    assert_eq!(m["containerimage.digest"], info["Digest"]);
    assert_eq!(m["image.name"], "meta:v1");
}

#[test]
fn squash_makes_the_build_one_layer_on_the_base() {
    let p = busybox_project(
        "FROM busybox\nRUN echo one > /one\nRUN echo two > /two && rm /one\nCOPY a.txt /a.txt\nRUN rm /etc/group\n",
    );
    p.file("a.txt", "a");
    let base_layers = inspect(&p, "busybox")["Config"]["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .len();
    let tar = p.path("rootfs.tar");
    p.ok(&[
        "build",
        "--squash",
        "-t",
        "sq:v1",
        "-o",
        &format!("type=tar,dest={}", tar.display()),
        ".",
    ]);
    let config = inspect(&p, "sq:v1")["Config"].clone();
    let layers = config["rootfs"]["diff_ids"].as_array().unwrap().len();
    assert_eq!(layers, base_layers + 1, "{config}");
    let history = config["history"].as_array().unwrap();
    let non_empty = history.iter().filter(|h| h["empty_layer"] != true).count();
    assert_eq!(non_empty, layers, "history must match the layers: {config}");
    let listing = text(
        &std::process::Command::new("tar")
            .arg("-tf")
            .arg(&tar)
            .output()
            .unwrap()
            .stdout,
    );
    assert!(
        listing.contains("two") && listing.contains("a.txt"),
        "{listing}"
    );
    assert!(
        !listing.lines().any(|l| l == "one" || l == "./one"),
        "{listing}"
    );
    assert!(
        !listing.contains("etc/group"),
        "the removal of a base file survives squashing:\n{listing}"
    );
    // The squashed image runs.
    let out = p.rbuild(&["run", "sq:v1", "cat", "/two"]);
    assert_eq!(text(&out.stdout), "two\n", "{}", text(&out.stderr));
}

#[test]
fn network_none_is_run_s_default_and_part_of_the_key() {
    let p = busybox_project(
        "FROM busybox\nRUN cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' ' | sort\n",
    );
    let log = untimed(&text(
        &p.ok(&["build", "--progress", "plain", "--network", "none", "."])
            .stderr,
    ));
    let ifaces: Vec<&str> = log
        .lines()
        .filter_map(|l| l.strip_prefix("#2 "))
        .filter(|l| !l.starts_with("DONE") && !l.starts_with("cache") && !l.starts_with('['))
        .collect();
    assert_eq!(ifaces, ["lo"], "{log}");
    let log = text(
        &p.ok(&["build", "--progress", "plain", "--network", "host", "."])
            .stderr,
    );
    assert!(
        log.contains("#2 cache miss"),
        "the network mode keys the step:\n{log}"
    );
    // The default (a private namespace) is a key of its own too, against host's.
    let log = text(&p.ok(&["build", "--progress", "plain", "."]).stderr);
    assert!(log.contains("#2 cache miss"), "default after host:\n{log}");
    let log = text(&p.ok(&["build", "--progress", "plain", "."]).stderr);
    assert!(log.contains("#2 CACHED"), "default again:\n{log}");
    // RUN as the host's root sees and may do more than in its user namespace: a key of its own.
    let host = ["build", "--progress", "plain", "--userns", "host", "."];
    let log = text(&p.ok(&host).stderr);
    assert!(log.contains("#2 cache miss"), "--userns host:\n{log}");
    let log = text(&p.ok(&host).stderr);
    assert!(log.contains("#2 CACHED"), "--userns host again:\n{log}");
    let log = text(
        &p.ok(&["build", "--progress", "plain", "--userns", "auto", "."])
            .stderr,
    );
    assert!(
        log.contains("#2 CACHED"),
        "auto is the default's key:\n{log}"
    );
}

/// Digests, times and temporary paths out of a log, for snapshots.
fn filtered(log: &str) -> String {
    let mut out = String::new();
    for line in untimed(log).lines() {
        let mut l = line.to_owned();
        while let Some(i) = l.find("sha256:") {
            let end = (i + 7 + 64).min(l.len());
            l.replace_range(i..end, "[DIGEST]");
        }
        let words: Vec<String> = l
            .split(' ')
            .map(|w| {
                let t = w.trim_end_matches(['s', ',', ')']);
                let size = ["GB", "MB", "kB"]
                    .iter()
                    .find_map(|u| w.strip_suffix(u))
                    .is_some_and(|n| n.parse::<f64>().is_ok());
                if size {
                    "[SIZE]".to_owned()
                } else if t.contains('.') && t.parse::<f64>().is_ok() {
                    w.replace(t, "[TIME]")
                } else {
                    w.to_owned()
                }
            })
            .collect();
        out.push_str(&words.join(" "));
        out.push('\n');
    }
    out
}

#[test]
fn plain_progress_shows_steps_logs_cache_and_the_summary() {
    let p = busybox_project(
        "FROM busybox AS base\nRUN echo hello from run\nFROM base\nARG V=1\nRUN echo v=$V\n",
    );
    let first = p.ok(&["build", "--progress", "plain", "-t", "plain:v1", "."]);
    insta::assert_snapshot!("plain_first", filtered(&text(&first.stderr)));
    let second = p.ok(&[
        "build",
        "--progress",
        "plain",
        "-t",
        "plain:v1",
        "--build-arg",
        "V=2",
        ".",
    ]);
    insta::assert_snapshot!("plain_second", filtered(&text(&second.stderr)));
}

#[test]
fn rawjson_progress_is_one_event_a_line() {
    let p = busybox_project("FROM busybox\nRUN echo hi\n");
    let out = p.ok(&["build", "--progress", "rawjson", "-t", "raw:v1", "."]);
    let stderr = text(&out.stderr);
    let events: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    assert!(events.iter().all(|e| e["time"].is_number()), "{stderr}");
    let kinds: Vec<String> = events
        .iter()
        .map(|e| {
            let mut k = e["type"].as_str().unwrap().to_owned();
            if let Some(line) = e["line"].as_str() {
                k = format!("{k} {line}");
            }
            k
        })
        .collect();
    insta::assert_snapshot!(kinds.join("\n"));
    let result = events.last().unwrap();
    assert_eq!(result["type"], "result");
    assert_eq!(result["image_id"], inspect(&p, "raw:v1")["Id"]);
}

/// The screen of a tmux session.
/// The screen of tmux session `session` on the server at socket `server`.
fn capture(server: &str, session: &str) -> String {
    text(
        &tool("tmux", "tmux")
            .args(["-L", server, "capture-pane", "-p", "-t", session])
            .output()
            .unwrap()
            .stdout,
    )
}

#[test]
fn the_tty_view_shows_parallel_stages_their_output_and_cached_steps() {
    let p = busybox_project(
        "FROM busybox AS left\nRUN for i in 1 2 3 4 5 6 7 8; do echo left-$i; sleep 0.5; done\n\
         FROM busybox AS right\nRUN for i in 1 2 3 4 5 6 7 8; do echo right-$i; sleep 0.5; done\n\
         FROM busybox\nCOPY --from=left /etc/passwd /l\nCOPY --from=right /etc/passwd /r\n",
    );
    // A tmux server of this test's own, and a new session for each build: a session killed
    // and made again under the same name raced with the server going away.
    let server = format!("rbuild-tty-{}", std::process::id());
    let runs = std::cell::Cell::new(0);
    let session = || format!("build-{}", runs.get());
    let run = |extra: &str| {
        runs.set(runs.get() + 1);
        let cmd = format!(
            "cd {} && {} --root {} build {extra} --jobs 2 --progress tty -t tty:v1 .; echo EXIT=$?; sleep 60",
            p.ctx().display(),
            env!("CARGO_BIN_EXE_rbuild"),
            p.root().display()
        );
        let st = tool("tmux", "tmux")
            .args(["-L", &server, "new-session", "-d", "-s", &session()])
            .args(["-x", "120", "-y", "40"])
            .arg(cmd)
            .status()
            .unwrap();
        assert!(st.success());
    };
    let wait_for = |what: &dyn Fn(&str) -> bool, desc: &str| -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let screen = capture(&server, &session());
            if what(&screen) {
                return screen;
            }
            assert!(Instant::now() < deadline, "never saw {desc}:\n{screen}");
            std::thread::sleep(Duration::from_millis(100));
        }
    };
    run("");
    // Both stages' RUN running at once, each with its latest output under it.
    let both = wait_for(
        &|s| {
            let running = |stage: &str| {
                s.lines().any(|l| {
                    l.contains(&format!("[{stage} "))
                        && l.contains("RUN for")
                        && !l.starts_with('✔')
                })
            };
            running("left") && running("right") && s.contains("│ left-2") && s.contains("│ right-2")
        },
        "both stages running side by side",
    );
    assert!(
        both.lines()
            .any(|l| l.starts_with('✔') && l.contains("FROM busybox") && l.ends_with("CACHED")),
        "{both}"
    );
    let done = wait_for(&|s| s.contains("EXIT="), "the build end");
    assert!(done.contains("EXIT=0"), "{done}");
    assert!(done.contains("built image sha256:"), "{done}");
    assert!(
        !done.contains("│ left-"),
        "finished steps collapse their output:\n{done}"
    );
    assert!(
        done.lines()
            .any(|l| l.starts_with('✔') && l.contains("RUN for i") && l.contains("DONE")),
        "{done}"
    );
    // A rebuild is all cached.
    run("");
    let again = wait_for(&|s| s.contains("EXIT="), "the rebuild end");
    let steps: Vec<&str> = again.lines().filter(|l| l.starts_with('✔')).collect();
    assert_eq!(steps.len(), 7, "{again}");
    assert!(steps.iter().all(|l| l.ends_with("CACHED")), "{again}");
    // A changed build arg: the step that uses it says why it ran.
    p.file("Dockerfile", "FROM busybox\nARG V=1\nRUN echo v=$V\n");
    run("");
    wait_for(&|s| s.contains("EXIT=0"), "the first build of the ARG file");
    run("--build-arg V=2");
    let changed = wait_for(&|s| s.contains("EXIT="), "the changed build");
    assert!(
        changed
            .lines()
            .any(|l| l.contains("RUN echo v=$V") && l.contains("(miss: V 1 → 2)")),
        "{changed}"
    );
    let _ = tool("tmux", "tmux")
        .args(["-L", &server, "kill-server"])
        .output();
}

#[test]
fn mistakes_get_something_a_person_can_act_on() {
    let p = Project::new();
    // No arguments: the commands and examples.
    let out = crate::support::run(&[]);
    assert_eq!(out.status.code(), Some(2));
    let all = text(&out.stderr) + &text(&out.stdout);
    assert!(
        all.contains("Commands:") && all.contains("rbuild -t app:v1 ."),
        "{all}"
    );
    // A misspelt flag: docker's name for it.
    let out = p.rbuild(&["--buildarg", "X=1", "."]);
    assert!(
        text(&out.stderr).contains("a similar argument exists: '--build-arg'"),
        "{}",
        text(&out.stderr)
    );
    // A docker flag rbuild does not take.
    let out = p.rbuild(&["build", "--add-host", "h:1.2.3.4", "."]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr.contains("`--add-host` is a `docker build` flag rbuild does not take"),
        "{stderr}"
    );
    // Every Dockerfile error of the fixtures, built as a new user would: a code frame.
    let err_dir = crate::support::fixtures().join("err");
    for entry in fs_err::read_dir(&err_dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.contains("empty") || name.contains("only-comments") {
            continue;
        }
        let out = p.rbuild(&["-f", path.to_str().unwrap(), "."]);
        let stderr = text(&out.stderr);
        assert!(!out.status.success(), "{name} built");
        assert!(stderr.starts_with("error: "), "{name}:\n{stderr}");
        assert!(
            stderr.contains(" --> ") && stderr.contains(" | "),
            "{name}: no code frame:\n{stderr}"
        );
        assert!(!stderr.contains('\x1b'), "{name}: colour with NO_COLOR");
    }
}

#[test]
fn completion_scripts_and_df() {
    let p = Project::new();
    for shell in ["bash", "zsh", "fish"] {
        let out = p.ok(&["completion", shell]);
        let script = text(&out.stdout);
        assert!(
            script.contains("rbuild") && script.contains("build-arg"),
            "{shell}: {script}"
        );
    }
    p.file("Dockerfile", "FROM scratch\nCOPY a.txt /\n")
        .file("a.txt", "a");
    p.ok(&["build", "-t", "df:v1", "."]);
    let df = text(&p.ok(&["df"]).stdout);
    let images = df.lines().find(|l| l.starts_with("Images")).unwrap();
    assert!(images.split_whitespace().nth(1) == Some("1"), "{df}");
    assert!(
        df.contains("Build cache") && df.contains("Snapshots") && df.contains("Unused"),
        "{df}"
    );
}

#[test]
fn labels_build_args_from_the_environment_several_tags_and_source_date_epoch() {
    let p = Project::new();
    p.file(
        "Dockerfile",
        "FROM scratch\nARG V\nARG W=default\nLABEL v=$V w=$W\nCOPY a.txt /\n",
    )
    .file("a.txt", "a");
    let out = p
        .command_in(
            &p.root(),
            &[
                "build",
                "--label",
                "team=infra",
                "--build-arg",
                "V",
                "--build-arg",
                "W=given",
                "-t",
                "many:v1",
                "-t",
                "many:latest",
                "--load",
                ".",
            ],
        )
        .env("V", "from-env")
        .env("SOURCE_DATE_EPOCH", "86400")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let info = inspect(&p, "many:v1");
    let labels = &info["Config"]["config"]["Labels"];
    assert_eq!(labels["team"], "infra");
    assert_eq!(
        labels["v"], "from-env",
        "a bare --build-arg takes the environment's value"
    );
    assert_eq!(labels["w"], "given");
    assert_eq!(info["Config"]["created"], "1970-01-02T00:00:00Z");
    assert_eq!(inspect(&p, "many:latest")["Id"], info["Id"]);
}

#[test]
fn platform_sets_the_target_args_and_the_config() {
    let p = Project::new();
    p.file(
        "Dockerfile",
        "FROM scratch\nARG TARGETPLATFORM\nARG TARGETARCH\nARG TARGETVARIANT\nARG BUILDPLATFORM\nLABEL target=$TARGETPLATFORM arch=$TARGETARCH variant=$TARGETVARIANT build=$BUILDPLATFORM\nCOPY a.txt /\n",
    )
    .file("a.txt", "a");
    p.ok(&["build", "--platform", "linux/arm/v7", "-t", "arm:v1", "."]);
    let config = inspect(&p, "arm:v1")["Config"].clone();
    assert_eq!(config["architecture"], "arm");
    assert_eq!(config["variant"], "v7");
    let labels = &config["config"]["Labels"];
    assert_eq!(labels["target"], "linux/arm/v7");
    assert_eq!(labels["arch"], "arm");
    assert_eq!(labels["variant"], "v7");
    let host = if std::env::consts::ARCH == "aarch64" {
        "arm64"
    } else {
        "amd64"
    };
    assert_eq!(labels["build"], format!("linux/{host}"));
}

#[test]
fn every_subcommand_s_help_has_examples() {
    let help = crate::support::run(&["--help"]);
    let text_help = text(&help.stdout);
    let commands: Vec<&str> = text_help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert!(commands.len() > 15, "{text_help}");
    for c in commands {
        let out = crate::support::run(&[c, "--help"]);
        let h = text(&out.stdout);
        assert!(
            h.contains("Example"),
            "`rbuild {c} --help` has no example:\n{h}"
        );
    }
}
