//! How the stages of a build are scheduled.

use crate::support::{Project, import_busybox};

/// The first number of a `/proc/uptime` line a step wrote.
fn uptime(path: &std::path::Path) -> f64 {
    let text = fs_err::read_to_string(path).unwrap();
    text.split_whitespace().next().unwrap().parse().unwrap()
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
    let (a_end, c_start) = (uptime(&out.join("a-end")), uptime(&out.join("c-start")));
    assert!(
        c_start < a_end,
        "C started at {c_start} s, after A ended at {a_end} s"
    );
}
