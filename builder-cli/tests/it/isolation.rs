//! Issue 10: nothing a Dockerfile, a context or an image holds reaches the host. Each test is
//! an attack that worked before its rule existed, with a tripwire on the host checked after.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::support::{Project, import_busybox, text, with_stdin};

/// One entry of a hand-made (hostile) tar.
enum E<'a> {
    File(&'a str, &'a [u8]),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
}

fn raw_tar(entries: &[E<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1);
        match e {
            E::File(path, data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o755);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, path, *data).unwrap();
            }
            E::Dir(path) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(0o755);
                h.set_size(0);
                b.append_data(&mut h, path, &b""[..]).unwrap();
            }
            E::Symlink(path, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, path, target).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

/// A host directory holding one file, and a check that both are still there, unchanged.
struct Tripwire {
    dir: tempfile::TempDir,
}

impl Tripwire {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        fs_err::write(dir.path().join("keep"), "host secret 7f3a").unwrap();
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn assert_intact(&self, what: &str) {
        let names: Vec<String> = fs_err::read_dir(self.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["keep"], "{what}: the host directory changed");
        assert_eq!(
            fs_err::read_to_string(self.path().join("keep")).unwrap(),
            "host secret 7f3a",
            "{what}"
        );
    }
}

fn project(dockerfile: &str) -> Project {
    let p = Project::new();
    import_busybox(&p.root());
    p.file("Dockerfile", dockerfile);
    p
}

fn build(p: &Project) -> std::process::Output {
    p.rbuild(&["build", "--progress", "plain", "-t", "x:1", "."])
}

/// Finding 1: a tar whose later entries go through a symlink an earlier one made. As an ADD
/// archive, as a context on standard input (the server's unpacker), and as a loaded image.
#[test]
fn issue_10_tar_entries_through_their_own_symlink_stay_inside() {
    for attack in ["evil/.wh..wh..opq", "evil/.wh.keep", "evil/keep"] {
        let wire = Tripwire::new();
        let host = wire.path().to_string_lossy().into_owned();
        let evil = raw_tar(&[E::Symlink("evil", &host), E::File(attack, b"pwned")]);

        // ADD x.tar /
        let p = project("FROM busybox\nADD evil.tar /\n");
        fs_err::write(p.ctx().join("evil.tar"), &evil).unwrap();
        let _ = build(&p);
        wire.assert_intact(&format!("ADD with `{attack}`"));

        // A context tar: `rbuild build -` (the unpacker `rbuild-server` uses).
        let mut ctx = evil.clone();
        ctx.truncate(ctx.len() - 1024);
        let mut rest = raw_tar(&[E::File("Dockerfile", b"FROM busybox\n")]);
        ctx.append(&mut rest);
        let _ = with_stdin(
            &mut p.command_in(&p.root(), &["build", "-t", "y:1", "-"]),
            &ctx,
        );
        wire.assert_intact(&format!("context tar with `{attack}`"));

        // An image: a layer with the link, then one going through it, loaded and built on.
        let base = raw_tar(&[E::Symlink("evil", &host)]);
        let through = raw_tar(&[E::File(attack, b"pwned")]);
        let image = docker_archive(&p, &[base, through]);
        let p2 = project("FROM evil:1\nRUN true\n");
        let _ = p2.rbuild(&["load", "-i", &image.to_string_lossy()]);
        let _ = build(&p2);
        wire.assert_intact(&format!("image layer with `{attack}`"));
    }
}

/// A `docker save` archive (`manifest.json` layout) of `layers`, tagged `evil:1`.
fn docker_archive(p: &Project, layers: &[Vec<u8>]) -> PathBuf {
    use sha2::Digest as _;
    let hex = |b: &[u8]| hex::encode(sha2::Sha256::digest(b));
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut diff_ids = Vec::new();
    for layer in layers {
        let d = hex(layer);
        files.push((format!("{d}/layer.tar"), layer.clone()));
        diff_ids.push(format!("sha256:{d}"));
    }
    let names: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "config": {"Cmd": ["/bin/sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    })
    .to_string();
    let config_name = format!("{}.json", hex(config.as_bytes()));
    let manifest = serde_json::json!([
        {"Config": config_name, "RepoTags": ["evil:1"], "Layers": names}
    ])
    .to_string();
    files.push((config_name, config.into_bytes()));
    files.push(("manifest.json".into(), manifest.into_bytes()));
    let entries: Vec<E<'_>> = files.iter().map(|(n, b)| E::File(n, b)).collect();
    let path = p.path("evil-image.tar");
    fs_err::write(&path, raw_tar(&entries)).unwrap();
    path
}

/// A chain of 257 links in `dir` whose last link points at `target`: `l0` names it.
fn link_chain(dir: &Path, target: &Path) {
    let n = 256;
    for i in 0..n {
        std::os::unix::fs::symlink(format!("l{}", i + 1), dir.join(format!("l{i}"))).unwrap();
    }
    std::os::unix::fs::symlink(target, dir.join(format!("l{n}"))).unwrap();
}

/// Finding 2: past the link cap, resolution must fail, not keep the link for the kernel to
/// follow out of the context. As `COPY`, as `RUN --mount=type=bind`, and as `COPY --from`.
#[test]
fn issue_10_a_link_chain_past_the_cap_does_not_leave_the_context() {
    let wire = Tripwire::new();
    let p = project("FROM busybox\nCOPY l0/keep /stolen\n");
    link_chain(&p.ctx(), wire.path());
    let out = build(&p);
    let err = text(&out.stderr);
    assert!(
        !out.status.success(),
        "COPY through 257 links built:\n{err}"
    );
    assert!(err.contains("too many levels of symbolic links"), "{err}");

    p.file(
        "Dockerfile",
        "FROM busybox\nRUN --mount=type=bind,source=l0,target=/m cat /m/keep\n",
    );
    let out = build(&p);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        !err.contains("host secret"),
        "the bind mount read the host:\n{err}"
    );

    // The same chain made by a RUN in a stage, read with COPY --from.
    let host = wire.path().to_string_lossy().into_owned();
    p.file(
        "Dockerfile",
        &format!(
            "FROM busybox AS links\nRUN cd / && i=0 && while [ $i -lt 256 ]; do ln -s l$((i+1)) l$i; i=$((i+1)); done && ln -s {host} l256\nFROM busybox\nCOPY --from=links /l0/keep /stolen\n"
        ),
    );
    let out = build(&p);
    assert!(!out.status.success(), "{}", text(&out.stderr));
    wire.assert_intact("link chains");
}

/// Finding 3: an image whose `/etc/hosts` (and a `--mount` target's parent) is a link to a
/// host path: the sandbox mounts inside the root, and nothing is made on the host.
#[test]
fn issue_10_the_sandbox_mounts_inside_the_root_through_image_links() {
    let wire = Tripwire::new();
    let hosts = wire.path().join("hosts");
    let evil = raw_tar(&[
        E::Dir("etc"),
        E::Symlink("etc/hosts", &hosts.to_string_lossy()),
        E::Symlink(
            "etc/resolv.conf",
            &wire.path().join("resolv").to_string_lossy(),
        ),
        E::Symlink("link", &wire.path().to_string_lossy()),
    ]);
    let p = project(
        "FROM busybox\nADD evil.tar /\nRUN --mount=type=tmpfs,target=/link/dir cat /etc/hosts > /dev/null && echo ran\n",
    );
    fs_err::write(p.ctx().join("evil.tar"), &evil).unwrap();
    let out = build(&p);
    wire.assert_intact("mount targets through image links");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("ran"), "{}", text(&out.stderr));
}

/// Finding 4: the server reads the posted context's Dockerfile inside it: a link to a host
/// file is not quoted back, and a link to `/dev/zero` is refused at once.
#[test]
fn issue_10_a_posted_dockerfile_link_reads_nothing_of_the_host() {
    let wire = Tripwire::new();
    let root = tempfile::tempdir().unwrap();
    let target = wire.path().join("keep");
    for (link, what) in [
        (target.to_string_lossy().into_owned(), "host file"),
        ("/dev/zero".to_owned(), "device"),
    ] {
        let ctx = raw_tar(&[E::Symlink("Dockerfile", &link)]);
        let started = std::time::Instant::now();
        let out = with_stdin(
            Command::new(env!("CARGO_BIN_EXE_rbuild"))
                .arg("--root")
                .arg(root.path())
                .args(["build", "-t", "z:1", "-"]),
            &ctx,
        );
        let err = text(&out.stderr);
        assert!(!out.status.success(), "{what}: {err}");
        assert!(
            !err.contains("host secret"),
            "{what}: the host file was read:\n{err}"
        );
        assert!(
            started.elapsed() < std::time::Duration::from_secs(20),
            "{what}: read without end"
        );
    }
    wire.assert_intact("Dockerfile links");
}

/// A small static program that tries what the sandbox must refuse and prints `what=ERRNO`.
const PROBE: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void report(const char *what, long r) {
    printf("%s=%s\n", what, r < 0 ? strerrorname_np(errno) : "ok");
}

int main(int argc, char **argv) {
    int highest = -1;
    for (int fd = 0; fd < 1024; fd++) if (fcntl(fd, F_GETFD) != -1) highest = fd;
    printf("highest_fd=%d\n", highest);
    report("personality", personality(0x0040000) == -1 ? -1 : 0);
    report("personality_linux32", personality(0x0008) == -1 ? -1 : 0);
    personality(0);
    long pid = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
    if (pid == 0) _exit(0);
    if (pid > 0) waitpid(pid, 0, 0);
    report("clone_newuser", pid);
    report("unshare_newuser", unshare(CLONE_NEWUSER));
    report("vsock", socket(40, SOCK_STREAM, 0));
    char params[120] = {0};
    report("io_uring_setup", syscall(425, 1, params));
    report("x32_getpid", syscall(0x40000000 | 39));
    report("unknown_syscall", syscall(1000));
    report("clone3", syscall(435, 0, 0));
    if (argc > 2) {
        unsigned maj = atoi(argv[1]), min = atoi(argv[2]);
        report("mknod_block", mknod("/blk", S_IFBLK | 0600, makedev(maj, min)));
        report("open_block", open("/blk", O_RDONLY));
    }
    report("open_tty", open("/dev/tty", O_RDWR));
    report("open_ptmx", open("/dev/ptmx", O_RDWR));
    printf("sid=%ld\n", (long)getsid(0));
    return 0;
}
"#;

/// The probe, built statically with the host's gcc.
fn probe(dir: &Path) -> PathBuf {
    compile(dir, "probe", PROBE)
}

/// `source`, built statically with the host's gcc into `dir/name`.
pub(crate) fn compile(dir: &Path, name: &str, source: &str) -> PathBuf {
    let src = dir.join(format!("{name}.c"));
    fs_err::write(&src, source).unwrap();
    let bin = dir.join(name);
    let out = crate::support::tool("gcc", "gcc libc6-dev")
        .args(["-static", "-O1", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .unwrap();
    assert!(out.status.success(), "gcc: {}", text(&out.stderr));
    bin
}

/// A block device of the host (`major minor`), from `/sys/class/block`.
fn host_block_device() -> Option<(String, String)> {
    let mut names: Vec<_> = fs_err::read_dir("/sys/class/block")
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .collect();
    names.sort();
    names.iter().find_map(|d| {
        let dev = fs_err::read_to_string(d.join("dev")).ok()?;
        let (maj, min) = dev.trim().split_once(':')?;
        Some((maj.to_owned(), min.to_owned()))
    })
}

/// Finding 5: inside RUN, what runc and Docker's profile refuse is refused.
#[test]
fn issue_10_run_is_as_strict_as_runc() {
    let p = Project::new();
    import_busybox(&p.root());
    probe(&p.ctx());
    let (maj, min) = host_block_device().unwrap_or(("7".into(), "0".into()));
    p.file(
        "Dockerfile",
        &format!(
            "FROM busybox\nCOPY probe /probe\n\
             RUN /probe {maj} {min}\n\
             RUN cat /proc/sys/kernel/printk_ratelimit > /proc/sys/kernel/printk_ratelimit 2>&1 || echo proc-sys-read-only\n\
             RUN for f in keys timer_list kcore sched_debug; do test -e /proc/$f || continue; echo $f=$(head -c 64 /proc/$f | wc -c); done; ls /proc/acpi 2>/dev/null | wc -l | sed s/^/acpi=/\n\
             RUN grep -E '^Cap(Inh|Amb|Eff|Bnd)' /proc/self/status\n\
             RUN grep ' /sys ' /proc/mounts | cut -d' ' -f4 | cut -d, -f1 | sed s/^/sys=/; touch /sys/kernel/x 2>&1 || echo sys-read-only\n"
        ),
    );
    // Each rule holds with RUN's root in a user namespace (the default) and as the host's.
    for userns in ["auto", "host"] {
        let out = p.rbuild(&[
            "build",
            "--progress",
            "plain",
            "--no-cache",
            "--userns",
            userns,
            "-t",
            "x:1",
            ".",
        ]);
        let log = crate::support::untimed(&text(&out.stderr));
        assert!(out.status.success(), "{userns}: {log}");
        for expect in [
            "#3 personality=EPERM",
            "#3 personality_linux32=ok",
            "#3 clone_newuser=EPERM",
            "#3 unshare_newuser=EPERM",
            "#3 vsock=EPERM",
            "#3 io_uring_setup=EPERM",
            "#3 x32_getpid=ENOSYS",
            "#3 unknown_syscall=ENOSYS",
            "#3 clone3=ENOSYS",
            "#3 open_tty=ENXIO",
            "#3 open_ptmx=ok",
            "#3 sid=1",
            "#3 highest_fd=2",
            "#4 proc-sys-read-only",
            "#6 CapInh:\t0000000000000000",
            "#6 CapAmb:\t0000000000000000",
            "#6 CapEff:\t00000000a80425fb",
            "#6 CapBnd:\t00000000a80425fb",
            "#7 sys=ro",
            "#7 sys-read-only",
        ] {
            assert!(log.contains(expect), "{userns}: no `{expect}`:\n{log}");
        }
        // Devices: in the user namespace the node cannot be made; as the host's root it can,
        // and the kernel answers EACCES for a `nodev` mount (a device cgroup says EPERM).
        if userns == "auto" {
            assert!(log.contains("#3 mknod_block=EPERM"), "{userns}: {log}");
        } else {
            assert!(
                log.contains("#3 open_block=EACCES") || log.contains("#3 open_block=EPERM"),
                "a block device opened:\n{log}"
            );
        }
        for masked in ["keys", "timer_list", "kcore", "sched_debug"] {
            assert!(
                !log.lines()
                    .any(|l| l.starts_with(&format!("#5 {masked}=")) && !l.ends_with("=0")),
                "/proc/{masked} is readable:\n{log}"
            );
        }
        assert!(log.contains("#5 acpi=0"), "{userns}: {log}");
    }
}

/// Read-only binds are read-only all the way down: a mount below the bind source (here a tmpfs
/// mounted inside the context) is not writable from the RUN either.
#[test]
fn issue_10_read_only_binds_are_read_only_recursively() {
    let p = project(
        "FROM busybox\nRUN --mount=type=bind,source=sub,target=/ro touch /ro/inner/x 2>&1 && echo wrote || echo refused\n",
    );
    let inner = p.ctx().join("sub/inner");
    fs_err::create_dir_all(&inner).unwrap();
    let st = Command::new("mount")
        .args(["-t", "tmpfs", "tmpfs"])
        .arg(&inner)
        .status()
        .unwrap();
    assert!(st.success());
    let out = build(&p);
    let x_exists = inner.join("x").exists();
    let _ = Command::new("umount").arg(&inner).status();
    let log = text(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(!x_exists, "a read-only bind's submount was written:\n{log}");
    assert!(log.contains("refused"), "{log}");
}

/// Finding 6: with the default network a RUN cannot reach a service on the host's loopback
/// (the build service's own port, say); with `--network host` the same RUN does, which shows
/// the check can see a connection. (`nc`, not busybox's `wget`, which crashes in the static
/// build Debian ships.)
#[test]
fn issue_10_the_default_network_does_not_reach_the_hosts_loopback() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = served.clone();
    listener.set_nonblocking(true).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopping = stop.clone();
    let server = std::thread::spawn(move || {
        use std::io::Write;
        while !stopping.load(std::sync::atomic::Ordering::SeqCst) {
            match listener.accept() {
                Ok((mut s, _)) => {
                    count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    let _ =
                        s.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 12\r\n\r\nhost-service");
                }
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
            }
        }
    });
    let p = project(&format!(
        "FROM busybox\nRUN printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 3 127.0.0.1 {port} 2>&1 || echo unreachable\nRUN echo lo-flags=$(cat /sys/class/net/lo/flags)\nRUN --network=none echo lo-flags=$(cat /sys/class/net/lo/flags)\n"
    ));
    let out = p.rbuild(&[
        "build",
        "--progress",
        "plain",
        "--no-cache",
        "-t",
        "n:1",
        ".",
    ]);
    let private = text(&out.stderr);
    let reached_private = served.load(std::sync::atomic::Ordering::SeqCst);
    let out_host = p.rbuild(&[
        "build",
        "--progress",
        "plain",
        "--no-cache",
        "--network",
        "host",
        "-t",
        "n:1",
        ".",
    ]);
    let host = text(&out_host.stderr);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    server.join().unwrap();
    assert!(out.status.success(), "{private}");
    assert_eq!(
        reached_private, 0,
        "the RUN reached the host's loopback:\n{private}"
    );
    assert!(private.contains("unreachable"), "{private}");
    assert!(!private.contains("host-service"), "{private}");
    // The namespace's own loopback is up (IFF_UP | IFF_LOOPBACK), private and none alike.
    assert_eq!(private.matches("lo-flags=0x9").count(), 2, "{private}");
    assert!(
        host.contains("host-service"),
        "with --network host it should connect:\n{host}"
    );
}

/// A RUN that allocates past `--memory` is killed by the kernel and the build says so, with
/// the limit and the line.
#[test]
fn issue_10_a_run_past_its_memory_limit_fails_naming_the_limit() {
    let p = project(
        "FROM busybox\nRUN echo allocating && dd if=/dev/zero of=/dev/null bs=200M count=1\n",
    );
    let out = p.rbuild(&[
        "build",
        "--progress",
        "plain",
        "--memory",
        "64m",
        "-t",
        "m:1",
        ".",
    ]);
    let err = text(&out.stderr);
    assert!(!out.status.success(), "200 MB under a 64 MB limit:\n{err}");
    assert!(err.contains("ran out of memory (--memory 64 MiB)"), "{err}");
    assert!(err.contains("line 2"), "{err}");
    // Without the limit the same step builds.
    let out = p.rbuild(&["build", "--progress", "plain", "-t", "m:1", "."]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// A fork bomb: children that stay, made as fast as `fork` allows; when it fails, it says how
/// many it made and keeps trying (or, given an argument, ends there).
const BOMB: &str = r#"
#include <stdio.h>
#include <unistd.h>
int main(int argc, char **argv) {
    (void)argv;
    long made = 0;
    int said = 0;
    for (;;) {
        pid_t p = fork();
        if (p == 0) { pause(); _exit(0); }
        if (p > 0) { made++; continue; }
        if (!said) { printf("fork refused after %ld\n", made); fflush(stdout); said = 1; if (argc > 1) return 0; }
        usleep(1000);
    }
}
"#;

/// A fork bomb stops at the default pids limit, the build fails cleanly (here at
/// `--run-timeout`), and nothing it started is left on the host.
#[test]
fn issue_10_a_fork_bomb_is_held_by_the_default_pids_limit() {
    let p = Project::new();
    import_busybox(&p.root());
    compile(&p.ctx(), "bomb", BOMB);
    p.file("Dockerfile", "FROM busybox\nCOPY bomb /bomb\nRUN /bomb\n");
    let out = p.rbuild(&[
        "build",
        "--progress",
        "plain",
        "--run-timeout",
        "5",
        "-t",
        "b:1",
        ".",
    ]);
    let err = crate::support::untimed(&text(&out.stderr));
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("ran longer than 5s and was killed"), "{err}");
    let made: u64 = err
        .lines()
        .find_map(|l| l.strip_prefix("#3 fork refused after "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("fork was never refused:\n{err}"));
    assert!(
        made < builder_core::exec::DEFAULT_PIDS,
        "{made} processes: the pids limit did not hold"
    );
    // The pid namespace went with its init: no bomb is left (reaping thousands takes a moment).
    let left = || {
        let out = Command::new("pgrep")
            .args(["-c", "-x", "bomb"])
            .output()
            .unwrap();
        text(&out.stdout).trim().to_owned()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while left() != "0" {
        assert!(
            std::time::Instant::now() < deadline,
            "bomb processes were left running: {}",
            left()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// `--pids-limit` and `--cpus` reach the step's cgroup, which is the root of its cgroup
/// namespace.
#[test]
fn issue_10_run_has_a_cgroup_of_its_own_with_the_limits_given() {
    let p = Project::new();
    import_busybox(&p.root());
    compile(&p.ctx(), "bomb", BOMB);
    p.file(
        "Dockerfile",
        "FROM busybox\nCOPY bomb /bomb\n\
         RUN cut -d: -f3 /proc/self/cgroup | sort -u | sed s/^/cg=/\n\
         RUN /bomb once\n\
         RUN end=$(($(date +%s)+2)); n=0; while [ $(date +%s) -lt $end ]; do n=$((n+1)); done; echo loops=$n\n",
    );
    let run = |extra: &[&str]| {
        let mut args = vec!["build", "--progress", "plain", "--no-cache", "-t", "c:1"];
        args.extend_from_slice(extra);
        args.push(".");
        let out = p.rbuild(&args);
        let log = crate::support::untimed(&text(&out.stderr));
        assert!(out.status.success(), "{log}");
        log
    };
    let find = |log: &str, key: &str| -> Vec<String> {
        log.lines()
            .filter_map(|l| l.split_once(' ').map(|(_, rest)| rest))
            .filter_map(|l| l.strip_prefix(key))
            .map(str::to_owned)
            .collect()
    };
    let free = run(&[]);
    let held = run(&["--pids-limit", "20", "--cpus", "0.2"]);
    assert_eq!(
        find(&held, "cg="),
        ["/"],
        "the step sees the host's cgroup paths:\n{held}"
    );
    // Under 20 processes: sh, the bomb, and its children until the 21st fork is refused.
    let made: u64 = find(&held, "fork refused after ")[0].parse().unwrap();
    assert!(
        (10..20).contains(&made),
        "{made} children under --pids-limit 20:\n{held}"
    );
    let made_free: u64 = find(&free, "fork refused after ")[0].parse().unwrap();
    assert!(
        made_free > 1000,
        "the default limit is 4096, not {made_free}:\n{free}"
    );
    let loops = |log: &str| -> f64 { find(log, "loops=")[0].parse().unwrap() };
    assert!(
        loops(&held) < loops(&free) * 0.6,
        "--cpus 0.2 did not slow a busy loop: {} vs {}",
        loops(&held),
        loops(&free)
    );
}

/// A loaded archive whose layer (or manifest) is a symlink to a host file: the load reads
/// inside the archive only, so a host file never becomes a layer of an image.
#[test]
fn issue_10_a_loaded_archive_reads_no_host_file_through_its_links() {
    use sha2::Digest as _;
    let outside = tempfile::tempdir().unwrap();
    // A host file that is a valid layer, so following the link would load it.
    let host_layer = raw_tar(&[E::File("stolen", b"host secret 7f3a")]);
    let host_path = outside.path().join("layer.tar");
    fs_err::write(&host_path, &host_layer).unwrap();
    let diff_id = format!("sha256:{}", hex::encode(sha2::Sha256::digest(&host_layer)));
    let config = serde_json::json!({
        "architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    })
    .to_string();
    let manifest =
        serde_json::json!([{"Config": "c.json", "RepoTags": ["stolen:1"], "Layers": ["l/layer.tar"]}])
            .to_string();
    let host_manifest = outside.path().join("manifest.json");
    fs_err::write(&host_manifest, &manifest).unwrap();
    let host = host_path.to_string_lossy().into_owned();
    let host_m = host_manifest.to_string_lossy().into_owned();
    for archive in [
        raw_tar(&[
            E::File("c.json", config.as_bytes()),
            E::File("manifest.json", manifest.as_bytes()),
            E::Symlink("l", &outside.path().to_string_lossy()),
        ]),
        raw_tar(&[
            E::File("c.json", config.as_bytes()),
            E::Symlink("manifest.json", &host_m),
            E::Dir("l"),
            E::Symlink("l/layer.tar", &host),
        ]),
    ] {
        let p = Project::new();
        let path = p.path("a.tar");
        fs_err::write(&path, &archive).unwrap();
        let out = p.rbuild(&["load", "-i", &path.to_string_lossy()]);
        assert!(
            !out.status.success(),
            "a host file was loaded:\n{}",
            text(&out.stderr)
        );
        let images = p.rbuild(&["images"]);
        assert!(
            !text(&images.stdout).contains("stolen"),
            "{}",
            text(&images.stdout)
        );
    }
}

/// Rootless builds get the private network too (pasta makes its tap in the namespace the
/// user's namespace owns), on both mappings: the host's loopback is out of reach, and the
/// namespace's own loopback works. `/dev/net/tun` is made 0666 first, as Debian's udev
/// leaves it (some images of this machine have it 0600).
#[test]
fn issue_10_rootless_builds_get_the_private_network() {
    use std::os::unix::fs::PermissionsExt;
    fs_err::set_permissions("/dev/net/tun", std::fs::Permissions::from_mode(0o666)).unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let p = project(&format!(
        "FROM busybox\nRUN (printf 'GET / HTTP/1.0\\r\\n\\r\\n' | timeout 5 nc -w 3 127.0.0.1 {port}) 2>&1 || echo unreachable; echo lo-flags=$(cat /sys/class/net/lo/flags)\n"
    ));
    for ids in ["single", "auto"] {
        let out = p.rbuild_as_nobody_with(
            &[("RBUILD_ROOTLESS_IDS", ids)],
            &[
                "build",
                "--progress",
                "plain",
                "--no-cache",
                "-t",
                "r:1",
                ".",
            ],
        );
        let log = text(&out.stderr);
        assert!(out.status.success(), "{ids}: {log}");
        assert!(
            listener.accept().is_err(),
            "{ids}: the RUN reached the host's loopback:\n{log}"
        );
        assert!(log.contains("unreachable"), "{ids}: {log}");
        assert!(log.contains("lo-flags=0x9"), "{ids}: {log}");
        assert!(!log.contains("/dev/net/tun"), "{ids}: {log}");
    }
}

/// What RUN's root may do to the host's network: open a packet socket, which on the host's
/// network would read every frame the host sends and receives (its loopback included).
const RAW: &str = r#"
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
int main(void) {
    int s = socket(17 /* AF_PACKET */, SOCK_RAW, 0);
    printf("packet_socket=%s\n", s < 0 ? strerrorname_np(errno) : "ok");
    return 0;
}
"#;

/// Requirement 8: as root, RUN's root is an unprivileged range of the host's ids (the kernel's
/// `uid_map` says so), so on the host's network it cannot open a packet socket, as the host's
/// root can (`--userns host` is the rule switched off). Files keep the ids they have inside:
/// a build that chowns, removes and replaces gives the same image either way.
#[test]
fn issue_10_run_as_root_is_an_unprivileged_range_of_the_host() {
    let p = project(
        "FROM busybox\nCOPY raw /raw\n\
         RUN --network=host /raw; cat /proc/self/uid_map | tr -s ' ' | sed 's/^/map=/'\n\
         RUN mkdir -p /d/e && echo hi > /d/e/f && chown 1000:1000 /d/e/f && chown 7:8 /d && rm -f /etc/hostname && rm -rf /home && mkdir /home && touch /home/new\n\
         RUN --mount=type=cache,target=/cache --mount=type=tmpfs,target=/t \
             touch /cache/x /t/y && stat -c 'cache=%u:%g' /cache/x && stat -c 'tmpfs=%u:%g' /t/y /t && ls -ln /cache/x /etc/hosts\n",
    );
    compile(&p.ctx(), "raw", RAW);
    let mut ids = Vec::new();
    let iid = p.path("iid");
    for userns in ["auto", "host"] {
        let out = p.rbuild(&[
            "build",
            "--progress",
            "plain",
            "--no-cache",
            "--source-date-epoch",
            "0",
            "--userns",
            userns,
            "--iidfile",
            iid.to_str().unwrap(),
            "-t",
            "u:1",
            ".",
        ]);
        let log = crate::support::untimed(&text(&out.stderr));
        assert!(out.status.success(), "{userns}: {log}");
        if userns == "auto" {
            assert!(log.contains("#3 packet_socket=EPERM"), "{log}");
            assert!(log.contains("#3 map= 0 2147483648 2147483647"), "{log}");
        } else {
            assert!(log.contains("#3 packet_socket=ok"), "{log}");
            assert!(log.contains("#3 map= 0 0 4294967295"), "{log}");
        }
        for owned in ["cache=0:0", "tmpfs=0:0"] {
            assert!(log.contains(&format!("#5 {owned}")), "{userns}: {log}");
        }
        assert!(
            !log.contains("65534"),
            "{userns}: a file shows as nobody:\n{log}"
        );
        ids.push(fs_err::read_to_string(&iid).unwrap());
    }
    assert_eq!(ids[0], ids[1], "the user namespace changed the image");
}

/// Where the store's filesystem cannot be id-mapped (here: a store on overlayfs), RUN says
/// so and runs as the host's root, as before; the build still succeeds.
#[test]
fn issue_10_where_the_store_cannot_be_id_mapped_run_says_so() {
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        }
    }
    let p = Project::new();
    let dir = p.path("ovl");
    for d in ["l", "u", "w", "m"] {
        fs_err::create_dir_all(dir.join(d)).unwrap();
    }
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        dir.join("l").display(),
        dir.join("u").display(),
        dir.join("w").display()
    );
    let st = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &opts])
        .arg(dir.join("m"))
        .status()
        .unwrap();
    assert!(st.success());
    let _guard = Unmount(dir.join("m"));
    let root = dir.join("m/store");
    import_busybox(&root);
    p.file(
        "Dockerfile",
        "FROM busybox\nRUN tr -s ' ' < /proc/self/uid_map\n",
    );
    let out = p.rbuild_in(&root, &["build", "--progress", "plain", "."]);
    let log = text(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(
        log.contains("warning: RUN runs as the host's root, without a user namespace"),
        "{log}"
    );
    assert!(log.contains(" 0 0 4294967295"), "{log}");
}

/// Asks the agent of `$SSH_AUTH_SOCK` for its identities (the agent protocol's
/// `SSH2_AGENTC_REQUEST_IDENTITIES`) and prints their count and comments.
pub(crate) const AGENT_PROBE: &str = r#"
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
static int readn(int fd, void *b, size_t n) {
  size_t got = 0;
  while (got < n) { ssize_t r = read(fd, (char *)b + got, n - got); if (r <= 0) return -1; got += r; }
  return 0;
}
int main(void) {
  const char *p = getenv("SSH_AUTH_SOCK");
  if (!p) { puts("no SSH_AUTH_SOCK"); return 0; }
  int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un a; memset(&a, 0, sizeof a); a.sun_family = AF_UNIX;
  strncpy(a.sun_path, p, sizeof a.sun_path - 1);
  if (connect(fd, (struct sockaddr *)&a, sizeof a)) { perror("connect"); return 1; }
  unsigned char req[5] = {0, 0, 0, 1, 11};
  if (write(fd, req, 5) != 5) return 1;
  uint32_t len; if (readn(fd, &len, 4)) return 1; len = ntohl(len);
  unsigned char *buf = malloc(len); if (readn(fd, buf, len)) return 1;
  if (buf[0] != 12) { printf("answer %d\n", buf[0]); return 1; }
  uint32_t n; memcpy(&n, buf + 1, 4); n = ntohl(n); printf("keys %u\n", n);
  size_t off = 5;
  for (uint32_t k = 0; k < n; k++) {
    uint32_t l; memcpy(&l, buf + off, 4); off += 4 + ntohl(l);
    memcpy(&l, buf + off, 4); l = ntohl(l); printf("comment %.*s\n", (int)l, buf + off + 4); off += 4 + l;
  }
  return 0;
}
"#;

/// A real `ssh-agent` on a socket of the test's, holding one key, killed when dropped.
pub(crate) struct Agent(std::process::Child, pub(crate) PathBuf);

impl Agent {
    pub(crate) fn start(dir: &Path, name: &str) -> Self {
        let socket = dir.join(format!("{name}.sock"));
        let child = crate::support::tool("ssh-agent", "openssh-client")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !socket.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "ssh-agent did not start"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let key = dir.join(format!("{name}-key"));
        let out = std::process::Command::new("ssh-keygen")
            .args([
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "rbuild-test-key",
                "-f",
            ])
            .arg(&key)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        let out = std::process::Command::new("ssh-add")
            .arg(&key)
            .env("SSH_AUTH_SOCK", &socket)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out.stderr));
        Self(child, socket)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn an_ssh_mount_reaches_the_agent_and_nothing_of_it_stays() {
    let p = Project::new();
    import_busybox(&p.root());
    let probe = compile(&p.ctx(), "agentprobe", AGENT_PROBE);
    assert!(probe.is_file());
    let agent = Agent::start(p.dir.path(), "agent");
    p.file(
        "Dockerfile",
        "FROM busybox\nCOPY agentprobe /agentprobe\nRUN --mount=type=ssh /agentprobe > /seen && ls -la /run > /run-listing && echo \"$SSH_AUTH_SOCK\" > /sock\n",
    );
    let ssh = format!("default={}", agent.1.display());
    let args = [
        "build",
        "--progress",
        "plain",
        "--ssh",
        &ssh,
        "-o",
        "type=local,dest=../out",
        ".",
    ];
    p.ok(&args);
    let seen = fs_err::read_to_string(p.path("out/seen")).unwrap();
    assert_eq!(seen, "keys 1\ncomment rbuild-test-key\n");
    assert_eq!(
        fs_err::read_to_string(p.path("out/sock")).unwrap(),
        "/run/buildkit/ssh_agent.0\n"
    );
    // The socket is a mount point: not in the layer.
    assert!(!p.path("out/run/buildkit/ssh_agent.0").exists());
    // Another agent at another path: the same key, the step is CACHED (the path is in no key).
    let other = Agent::start(p.dir.path(), "other");
    let ssh = format!("default={}", other.1.display());
    let args = [
        "build",
        "--progress",
        "plain",
        "--ssh",
        &ssh,
        "-o",
        "type=local,dest=../out",
        ".",
    ];
    let log = text(&p.ok(&args).stderr);
    assert!(
        log.contains("CACHED") && !log.contains("cache miss: RUN"),
        "{log}"
    );
    // Without --ssh the mount is skipped; `required` makes it an error naming the id.
    p.file(
        "Dockerfile",
        "FROM busybox\nCOPY agentprobe /agentprobe\nRUN --mount=type=ssh /agentprobe > /seen\nRUN --mount=type=ssh,id=deploy,required=true true\n",
    );
    let out = p.rbuild(&["build", "-o", "type=local,dest=../out2", "."]);
    let err = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("ssh mount `deploy`") && err.contains("line 4"),
        "{err}"
    );
    let bad = format!("default={}", p.ctx().join("Dockerfile").display());
    let err = text(&p.rbuild(&["build", "--ssh", &bad, "."]).stderr);
    assert!(err.contains("is not an agent's socket"), "{err}");
}
