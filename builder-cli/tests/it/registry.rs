//! Registries: push, pull, auth, platform indexes and the shared step cache, against Debian's
//! `docker-registry` on 127.0.0.1 and checked with skopeo and podman.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;

use crate::interop::{podman, podman_run};
use crate::registry_server::{Auth, Fault, PASSWORD, Proxy, Registry, USER};
use crate::support::{Project, import_busybox, text, tool, with_stdin};

/// A registry and a project whose store holds `busybox:latest`.
fn registry_and_busybox(auth: &Auth) -> (Registry, Project) {
    let reg = Registry::start(auth);
    let p = Project::new();
    import_busybox(&p.root());
    (reg, p)
}

fn inspect_id(p: &Project, root: &Path, image: &str) -> String {
    let out = p.rbuild_in(root, &["inspect", image]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["Id"].as_str().unwrap().to_owned()
}

/// The value after `prefix` on the first stderr line holding it, up to a space or `)`.
fn after<'a>(stderr: &'a str, prefix: &str) -> &'a str {
    let i = stderr
        .find(prefix)
        .unwrap_or_else(|| panic!("no `{prefix}` in:\n{stderr}"));
    let rest = &stderr[i + prefix.len()..];
    rest.split([' ', ')', '\n', ',']).next().unwrap()
}

fn blobs(root: &Path) -> BTreeSet<String> {
    fs_err::read_dir(root.join("blobs/sha256"))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// `rbuild` with its own docker config directory (and more on `PATH`).
fn registry_cmd(
    p: &Project,
    root: &Path,
    docker: &Path,
    path_prefix: Option<&Path>,
    args: &[&str],
) -> std::process::Command {
    let mut cmd = p.command_in(root, args);
    cmd.env("DOCKER_CONFIG", docker);
    if let Some(dir) = path_prefix {
        let path = std::env::var("PATH").unwrap_or_default();
        cmd.env("PATH", format!("{}:{path}", dir.display()));
    }
    cmd
}

fn rb(
    p: &Project,
    root: &Path,
    docker: &Path,
    path_prefix: Option<&Path>,
    args: &[&str],
) -> Output {
    registry_cmd(p, root, docker, path_prefix, args)
        .output()
        .unwrap()
}

fn login(p: &Project, docker: &Path, helpers: Option<&Path>, host: &str, password: &str) -> Output {
    let args = ["login", host, "-u", USER, "--password-stdin"];
    let mut cmd = registry_cmd(p, &p.root(), docker, helpers, &args);
    with_stdin(&mut cmd, format!("{password}\n").as_bytes())
}

/// The login round trip both auth kinds share: a push before login is refused, a wrong
/// password is refused with `wrong_says`, then login, push, and a pull into an empty store
/// giving the same image. Gives what the caller checks further.
fn auth_round_trip(
    auth: &Auth,
    repo: &str,
    wrong_says: &str,
) -> (Registry, Project, PathBuf, String) {
    let reg = Registry::start(auth);
    let p = Project::new();
    import_busybox(&p.root());
    let docker = p.path("docker");
    let host = reg.host();
    let image = format!("{host}/{repo}");
    let push = ["push", "busybox:latest", image.as_str()];
    let out = rb(&p, &p.root(), &docker, None, &push);
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("registry `{host}` denied access to `{image}`")),
        "{stderr}"
    );
    let out = login(&p, &docker, None, &host, "wrong");
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("cannot log in to `{host}`")) && stderr.contains(wrong_says),
        "{stderr}"
    );
    assert!(
        !docker.join("config.json").exists(),
        "a failed login saves nothing"
    );
    let out = login(&p, &docker, None, &host, PASSWORD);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = rb(&p, &p.root(), &docker, None, &push);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let fresh = p.path("fresh");
    let out = rb(&p, &fresh, &docker, None, &["pull", &image]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        inspect_id(&p, &fresh, &image),
        inspect_id(&p, &p.root(), "busybox:latest")
    );
    (reg, p, docker, image)
}

fn skopeo_inspect(image: &str, extra: &[&str]) -> serde_json::Value {
    let out = tool("skopeo", "skopeo")
        .args(["inspect", "--tls-verify=false"])
        .args(extra)
        .arg(format!("docker://{image}"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo inspect {image}: {}",
        text(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

pub(crate) fn curl(args: &[&str]) -> Vec<u8> {
    let out = tool("curl", "curl")
        .args(["-sSf"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "curl {args:?}: {}", text(&out.stderr));
    out.stdout
}

/// Uploads the file at `path` as blob `digest` of `repo` on `host` (the distribution API by
/// hand: POST, then PUT with the digest).
pub(crate) fn upload_blob(host: &str, repo: &str, path: &Path, digest: &str) {
    let started = text(&curl(&[
        "-X",
        "POST",
        "-i",
        &format!("http://{host}/v2/{repo}/blobs/uploads/"),
    ]));
    let location = started
        .lines()
        .find_map(|l| l.strip_prefix("Location: "))
        .expect("an upload location")
        .trim()
        .to_owned();
    let sep = if location.contains('?') { '&' } else { '?' };
    curl(&[
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/octet-stream",
        "--data-binary",
        &format!("@{}", path.display()),
        &format!("{location}{sep}digest={digest}"),
    ]);
}

pub(crate) fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

#[test]
fn pushed_images_are_read_by_skopeo_and_podman_and_pull_back_with_the_same_id() {
    tool("runc", "runc");
    // The suite's registry (started by .ci/run), under repository names of this run's own.
    let reg = Registry::shared();
    let p = Project::new();
    import_busybox(&p.root());
    let repo = format!("bb-{}", std::process::id());
    let v1 = format!("{}/{repo}:v1", reg.host());
    let v2 = format!("{}/{repo}:v2", reg.host());
    // Chunked upload (the layer is over 1 MB), two tags.
    let out = p.ok(&["push", "--chunk-size", "100000", "busybox:latest", &v1, &v2]);
    let stderr = text(&out.stderr);
    let digest = after(&stderr, &format!("pushed {v1}: digest "));
    assert!(
        stderr.contains("0 blobs uploaded, 0 mounted, 2 already there"),
        "{stderr}"
    );
    let seen = skopeo_inspect(&v1, &[]);
    assert_eq!(seen["Digest"], digest, "{seen}");
    let tags = seen["RepoTags"].as_array().unwrap();
    assert!(
        tags.contains(&"v1".into()) && tags.contains(&"v2".into()),
        "{seen}"
    );
    let raw = skopeo_inspect(&v1, &["--raw"]);
    assert_eq!(
        raw["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );

    // Docker media types on request.
    let docker_tag = format!("{}/{repo}:docker", reg.host());
    p.ok(&["push", "--format", "docker", "busybox:latest", &docker_tag]);
    let raw = skopeo_inspect(&docker_tag, &["--raw"]);
    assert_eq!(
        raw["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    assert_eq!(
        raw["layers"][0]["mediaType"],
        "application/vnd.docker.image.rootfs.diff.tar.gzip"
    );

    let pulled = podman(&p)
        .args(["pull", "--tls-verify=false", &v1])
        .output()
        .unwrap();
    assert!(
        pulled.status.success(),
        "podman pull: {}",
        text(&pulled.stderr)
    );
    let ran = podman_run(&p)
        .arg(&v1)
        .args(["/bin/busybox", "echo", "run-by-podman"])
        .output()
        .unwrap();
    assert!(ran.status.success(), "podman run: {}", text(&ran.stderr));
    assert_eq!(text(&ran.stdout).trim(), "run-by-podman");

    let empty = p.path("empty");
    for image in [&v1, &docker_tag] {
        let out = p.rbuild_in(&empty, &["pull", image]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        assert_eq!(
            inspect_id(&p, &empty, image),
            inspect_id(&p, &p.root(), "busybox:latest"),
            "the image keeps its ID through the registry"
        );
    }
    // Pinned by digest.
    let pinned = format!("{}/{repo}@{digest}", reg.host());
    let other = p.path("other");
    let out = p.rbuild_in(&other, &["pull", &pinned]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // Pulled again: nothing to download.
    let out = p.rbuild_in(&empty, &["pull", &v1]);
    assert!(
        text(&out.stderr).contains("0 layers downloaded"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn an_image_copied_in_by_skopeo_is_pulled_and_built_from_and_pushes_mount_its_layers() {
    let (reg, p) = registry_and_busybox(&Auth::None);
    let archive = p.path("bb.tar");
    p.ok(&[
        "save",
        "--format",
        "docker",
        "-o",
        archive.to_str().unwrap(),
        "busybox:latest",
    ]);
    let copied = format!("{}/copied:v1", reg.host());
    let out = tool("skopeo", "skopeo")
        .args(["copy", "--dest-tls-verify=false"])
        .arg(format!("docker-archive:{}", archive.display()))
        .arg(format!("docker://{copied}"))
        .output()
        .unwrap();
    assert!(out.status.success(), "skopeo copy: {}", text(&out.stderr));

    p.file(
        "Dockerfile",
        &format!("FROM {copied}\nRUN echo from-skopeo > /made\n"),
    );
    let fresh = p.path("fresh");
    let app = format!("{}/app:v1", reg.host());
    let out = p.rbuild_in(&fresh, &["build", "-t", &app, "--push", "."]);
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("pulled {copied}")), "{stderr}");
    // The base layer came from `copied` on the same registry: mounted, not uploaded.
    assert!(stderr.contains("2 blobs uploaded, 1 mounted"), "{stderr}");
    let out = p.rbuild_in(&fresh, &["run", &app, "cat", "/made"]);
    assert_eq!(
        text(&out.stdout).trim(),
        "from-skopeo",
        "{}",
        text(&out.stderr)
    );
    let seen = skopeo_inspect(&app, &[]);
    assert_eq!(seen["Layers"].as_array().unwrap().len(), 2, "{seen}");
}

#[test]
fn an_index_gives_each_platform_its_own_image() {
    let (reg, p) = registry_and_busybox(&Auth::None);
    let host = reg.host();
    p.ok(&["push", "busybox:latest", &format!("{host}/multi:native")]);
    let base = format!("http://{host}/v2/multi");
    let oci_manifest = "application/vnd.oci.image.manifest.v1+json";
    let m1 = curl(&[
        "-H",
        &format!("Accept: {oci_manifest}"),
        &format!("{base}/manifests/native"),
    ]);
    let manifest: serde_json::Value = serde_json::from_slice(&m1).unwrap();
    let c1 = manifest["config"]["digest"].as_str().unwrap().to_owned();
    let mut config: serde_json::Value =
        serde_json::from_slice(&curl(&[&format!("{base}/blobs/{c1}")])).unwrap();
    let native = if std::env::consts::ARCH == "aarch64" {
        "arm64"
    } else {
        "amd64"
    };
    let foreign = if native == "arm64" { "amd64" } else { "arm64" };
    config["architecture"] = foreign.into();
    let c2 = serde_json::to_vec(&config).unwrap();
    let c2_digest = sha256(&c2);
    let c2_path = p.path("c2.json");
    fs_err::write(&c2_path, &c2).unwrap();
    upload_blob(&host, "multi", &c2_path, &c2_digest);
    let mut m2 = manifest.clone();
    m2["config"]["digest"] = c2_digest.clone().into();
    m2["config"]["size"] = c2.len().into();
    let m2 = serde_json::to_vec(&m2).unwrap();
    let m2_path = p.path("m2.json");
    fs_err::write(&m2_path, &m2).unwrap();
    let put = |path: &Path, media_type: &str, tag: &str| {
        curl(&[
            "-X",
            "PUT",
            "-H",
            &format!("Content-Type: {media_type}"),
            "--data-binary",
            &format!("@{}", path.display()),
            &format!("{base}/manifests/{tag}"),
        ]);
    };
    put(&m2_path, oci_manifest, "foreign");
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {"mediaType": oci_manifest, "digest": sha256(&m1), "size": m1.len(),
             "platform": {"os": "linux", "architecture": native}},
            {"mediaType": oci_manifest, "digest": sha256(&m2), "size": m2.len(),
             "platform": {"os": "linux", "architecture": foreign}},
        ],
    });
    let index_path = p.path("index.json");
    fs_err::write(&index_path, index.to_string()).unwrap();
    put(
        &index_path,
        "application/vnd.oci.image.index.v1+json",
        "latest",
    );

    let multi = format!("{host}/multi:latest");
    let a = p.path("a");
    let out = p.rbuild_in(&a, &["pull", &multi]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        inspect_id(&p, &a, &multi),
        c1,
        "the host's platform by default"
    );
    let b = p.path("b");
    let out = p.rbuild_in(
        &b,
        &["pull", "--platform", &format!("linux/{foreign}"), &multi],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(inspect_id(&p, &b, &multi), c2_digest);
    let out = p.rbuild_in(&b, &["pull", "--platform", "linux/s390x", &multi]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("no image for platform `linux/s390x`")
            && stderr.contains(&format!("linux/{native}, linux/{foreign}")),
        "{stderr}"
    );
    // A build takes the platform's base too.
    p.file("Dockerfile", &format!("FROM {multi}\n"));
    let out = p.rbuild_in(
        &p.path("c"),
        &[
            "build",
            "--platform",
            &format!("linux/{foreign}"),
            "-q",
            ".",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
}

fn cache_dockerfile(p: &Project, base: &str) {
    p.file(
        "Dockerfile",
        &format!(
            "FROM {base} AS tool\nRUN echo tool > /tool && echo build-only > /tool.log\n\
             FROM {base}\nCOPY app.txt /app.txt\nRUN cat /app.txt > /copy\nCOPY --from=tool /tool /tool\n"
        ),
    )
    .file("app.txt", "application\n");
}

#[test]
fn cache_exported_by_one_store_makes_the_build_in_an_empty_store_all_cached() {
    let (reg, p) = registry_and_busybox(&Auth::None);
    let base = format!("{}/base:v1", reg.host());
    p.ok(&["push", "busybox:latest", &base]);
    cache_dockerfile(&p, &base);
    let cache_ref = format!("{}/cache:app", reg.host());
    let local = p.path("local-cache");
    let out = p.ok(&[
        "build",
        "-t",
        "app:v1",
        "--cache-to",
        &format!("type=registry,ref={cache_ref},mode=max"),
        "--cache-to",
        &format!("type=local,dest={},mode=max", local.display()),
        ".",
    ]);
    let stderr = text(&out.stderr);
    let id = after(&stderr, "built image ").to_owned();
    assert!(
        stderr.contains(&format!("exported cache to {cache_ref}: 4 steps")),
        "{stderr}"
    );
    // The tool stage's RUN layer, which the result does not contain (it has /tool.log besides
    // /tool: with reproducible times, a layer of /tool alone would be the COPY's own).
    p.ok(&["build", "--target", "tool", "-t", "tool:v1", "."]);
    let tool_info: serde_json::Value =
        serde_json::from_slice(&p.ok(&["inspect", "tool:v1"]).stdout).unwrap();
    let tool_layer = tool_info["Config"]["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .as_str()
        .unwrap()
        .trim_start_matches("sha256:")
        .to_owned();

    for (name, from) in [
        ("registry", format!("type=registry,ref={cache_ref}")),
        ("local", format!("type=local,src={}", local.display())),
    ] {
        let empty = p.path(&format!("empty-{name}"));
        let out = p.rbuild_in(
            &empty,
            &["build", "-t", "app:v1", "--cache-from", &from, "."],
        );
        let stderr = text(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        assert!(!stderr.contains("cache miss"), "{name}: {stderr}");
        assert!(stderr.contains("(6 steps, 6 cached"), "{name}: {stderr}");
        assert_eq!(after(&stderr, "built image "), id, "{name}: the same image");
        assert!(
            !blobs(&empty).contains(&tool_layer),
            "{name}: a layer the result does not need was downloaded"
        );
        let out = p.rbuild_in(&empty, &["run", "app:v1", "cat", "/copy", "/tool"]);
        assert_eq!(
            text(&out.stdout),
            "application\ntool\n",
            "{}",
            text(&out.stderr)
        );
    }

    // mode=min (the default) shares only the final stage's steps.
    let min_ref = format!("{}/cache:min", reg.host());
    let out = p.ok(&[
        "build",
        "--cache-to",
        &format!("type=registry,ref={min_ref}"),
        ".",
    ]);
    assert!(
        text(&out.stderr).contains(&format!("exported cache to {min_ref}: 3 steps")),
        "{}",
        text(&out.stderr)
    );
    // A cache that is not there yet is not an error (a pipeline's first build).
    let out = p.rbuild_in(
        &p.path("first"),
        &[
            "build",
            "--cache-from",
            &format!("type=registry,ref={}/cache:none", reg.host()),
            ".",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
}

#[test]
fn basic_auth_logins_are_shared_through_docker_config_and_wrong_passwords_refused() {
    let (reg, p, docker, image) = auth_round_trip(&Auth::Htpasswd, "private:v1", "UNAUTHORIZED");
    let host = reg.host();
    let config: serde_json::Value =
        serde_json::from_slice(&fs_err::read(docker.join("config.json")).unwrap()).unwrap();
    assert!(config["auths"][&host]["auth"].is_string(), "{config}");
    // skopeo reads the same file: docker's format.
    let authfile = docker.join("config.json");
    skopeo_inspect(&image, &["--authfile", authfile.to_str().unwrap()]);
    // Without a login, the registry's challenge is answered with advice.
    let out = rb(
        &p,
        &p.path("anon"),
        &p.path("no-docker"),
        None,
        &["pull", &image],
    );
    assert!(
        text(&out.stderr).contains(&format!("rbuild login {host}")),
        "{}",
        text(&out.stderr)
    );
    let out = rb(&p, &p.root(), &docker, None, &["logout", &host]);
    assert!(out.status.success());
    let out = rb(
        &p,
        &p.path("after-logout"),
        &docker,
        None,
        &["pull", &image],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("denied access"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn token_auth_pushes_and_pulls_with_credentials_and_says_why_it_refuses() {
    // The wrong password is refused in the token server's words.
    let (_reg, p, _docker, image) =
        auth_round_trip(&Auth::Token, "team/app:v1", "invalid user name or password");
    // Anonymous pulls get a token that grants nothing.
    let out = rb(
        &p,
        &p.path("anon"),
        &p.path("no-docker"),
        None,
        &["pull", &image],
    );
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("denied access"),
        "{}",
        text(&out.stderr)
    );
}

fn helper_script(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    fs_err::create_dir_all(dir).unwrap();
    let script = dir.join("docker-credential-rbtest");
    fs_err::write(
        &script,
        format!(
            "#!/bin/sh\nd=$(dirname \"$0\")\ncase \"$1\" in\n\
             get) read server; echo \"$server\" > \"$d/asked\"; printf '{{\"ServerURL\":\"%s\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}' \"$server\";;\n\
             store) cat > \"$d/stored.json\";;\n\
             erase) read server; echo \"$server\" > \"$d/erased\";;\n\
             esac\n"
        ),
    )
    .unwrap();
    fs_err::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    dir.to_owned()
}

#[test]
fn credential_helpers_answer_for_their_registries() {
    let (reg, p) = registry_and_busybox(&Auth::Htpasswd);
    let host = reg.host();
    let helpers = helper_script(&p.path("helpers"));
    let docker = p.path("docker");
    fs_err::create_dir_all(&docker).unwrap();
    fs_err::write(
        docker.join("config.json"),
        serde_json::json!({"credHelpers": {host.clone(): "rbtest"}}).to_string(),
    )
    .unwrap();
    let image = format!("{host}/helped:v1");
    let out = rb(
        &p,
        &p.root(),
        &docker,
        Some(&helpers),
        &["push", "busybox:latest", &image],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        fs_err::read_to_string(helpers.join("asked"))
            .unwrap()
            .trim(),
        host
    );

    // credsStore: logins go to the helper, not into the file.
    fs_err::write(docker.join("config.json"), r#"{"credsStore":"rbtest"}"#).unwrap();
    let out = login(&p, &docker, Some(&helpers), &host, PASSWORD);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let stored: serde_json::Value =
        serde_json::from_slice(&fs_err::read(helpers.join("stored.json")).unwrap()).unwrap();
    assert_eq!(stored["ServerURL"], host.as_str());
    assert_eq!(stored["Username"], USER);
    assert_eq!(
        fs_err::read_to_string(docker.join("config.json")).unwrap(),
        r#"{"credsStore":"rbtest"}"#
    );
}

#[test]
fn a_registry_stopping_mid_blob_leaves_the_store_intact_and_a_retry_completes() {
    let reg = Registry::start(&Auth::None);
    let proxy = Proxy::start(reg.port);
    let p = Project::new();
    import_busybox(&p.root());
    let image = format!("{}/bb:v1", proxy.host());
    p.ok(&["push", "busybox:latest", &image]);
    let root = p.path("pulling");
    fs_err::create_dir_all(&root).unwrap();
    p.rbuild_in(&root, &["images"]);
    let before = blobs(&root);

    proxy.set(Fault::Cut);
    let out = p.rbuild_in(&root, &["pull", &image]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!("cannot pull `{image}`")) && stderr.contains("broke off"),
        "{stderr}"
    );
    assert_eq!(blobs(&root), before, "nothing half-downloaded is stored");
    assert_eq!(
        fs_err::read_dir(root.join("tmp")).unwrap().count(),
        0,
        "no temp files left"
    );
    assert!(!text(&p.rbuild_in(&root, &["images"]).stdout).contains("bb"));

    proxy.set(Fault::None);
    let out = p.rbuild_in(&root, &["pull", &image]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        inspect_id(&p, &root, &image),
        inspect_id(&p, &p.root(), "busybox:latest")
    );
}

#[test]
fn a_busy_registry_is_retried() {
    let reg = Registry::start(&Auth::None);
    let proxy = Proxy::start(reg.port);
    let p = Project::new();
    import_busybox(&p.root());
    let image = format!("{}/bb:v1", proxy.host());
    p.ok(&["push", "busybox:latest", &image]);
    proxy.set(Fault::BusyOnce);
    let out = p.rbuild_in(&p.path("pulling"), &["pull", &image]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        *proxy.fault.lock().unwrap(),
        Fault::None,
        "the 503 was served"
    );
}

#[test]
fn a_blob_with_wrong_bytes_is_refused_and_never_stored() {
    let reg = Registry::start(&Auth::None);
    let proxy = Proxy::start(reg.port);
    let p = Project::new();
    import_busybox(&p.root());
    let image = format!("{}/bb:v1", proxy.host());
    p.ok(&["push", "busybox:latest", &image]);
    let root = p.path("pulling");
    p.rbuild_in(&root, &["images"]);
    let before = blobs(&root);
    proxy.set(Fault::Corrupt);
    let out = p.rbuild_in(&root, &["pull", &image]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("digest mismatch"), "{stderr}");
    assert_eq!(blobs(&root), before);
}

#[test]
fn unknown_repositories_and_tags_are_named_with_what_the_registry_said() {
    let (reg, p) = registry_and_busybox(&Auth::None);
    let host = reg.host();
    let nope = format!("{host}/nope:v1");
    let out = p.rbuild(&["pull", &nope]);
    let stderr = text(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(&format!(
            "`{nope}`: manifest not found in registry `{host}`"
        )) && stderr.contains("UNKNOWN"),
        "{stderr}"
    );
    p.ok(&["push", "busybox:latest", &format!("{host}/bb:v1")]);
    let missing_tag = format!("{host}/bb:nosuchtag");
    let out = p.rbuild(&["pull", &missing_tag]);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("`{missing_tag}`")) && stderr.contains("MANIFEST_UNKNOWN"),
        "{stderr}"
    );
    // In a build, the error points at the FROM line.
    p.file("Dockerfile", &format!("FROM busybox\nFROM {nope}\n"));
    let out = p.rbuild(&["build", "."]);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("FROM failed (Dockerfile line 2)")
            && stderr.contains(&format!(
                "cannot pull image `{nope}` (it is not in the local store either)"
            ))
            && stderr.contains("MANIFEST_UNKNOWN")
            && stderr.contains("--> ./Dockerfile:2"),
        "{stderr}"
    );
    let out = p.rbuild(&["pull", "Not/Valid"]);
    assert!(
        text(&out.stderr).contains("invalid image reference `Not/Valid`"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn build_pull_asks_the_registry_even_with_the_base_in_the_store_and_push_format_docker() {
    let (reg, p) = registry_and_busybox(&Auth::None);
    let base = format!("{}/base:v1", reg.host());
    p.ok(&["push", "busybox:latest", &base]);
    p.file("Dockerfile", &format!("FROM {base}\nCOPY a.txt /\n"))
        .file("a.txt", "a");
    let app = format!("{}/app:v1", reg.host());
    let out = p.ok(&[
        "build",
        "-t",
        &app,
        "--push",
        "--push-format",
        "docker",
        ".",
    ]);
    assert!(
        text(&out.stderr).contains(&format!("pulled {base}")),
        "not in the store yet"
    );
    let raw = skopeo_inspect(&app, &["--raw"]);
    assert_eq!(
        raw["mediaType"],
        "application/vnd.docker.distribution.manifest.v2+json"
    );
    // The base is in the store now: no pull, unless --pull.
    let out = p.ok(&["build", "-t", &app, "."]);
    assert!(
        !text(&out.stderr).contains("pulled"),
        "{}",
        text(&out.stderr)
    );
    let out = p.ok(&["build", "--pull", "-t", &app, "."]);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains(&format!("pulled {base}")) && stderr.contains("0 layers downloaded"),
        "{stderr}"
    );
    assert!(
        stderr.contains("(2 steps, 2 cached"),
        "an unchanged base keeps the cache: {stderr}"
    );
}

#[test]
fn a_tls_registry_is_trusted_through_certs_d_with_a_client_certificate() {
    let p = Project::new();
    import_busybox(&p.root());
    let tls_dir = p.path("tls");
    fs_err::create_dir_all(&tls_dir).unwrap();
    let tls = crate::registry_server::Tls::make(&tls_dir);
    let reg = Registry::start_tls(&tls);
    let host = reg.host();
    // docker's layout: certs.d/HOST:PORT/{ca.crt, client.cert, client.key}.
    let certs = p.path("certs.d");
    let host_dir = certs.join(&host);
    fs_err::create_dir_all(&host_dir).unwrap();
    for f in ["ca.crt", "client.cert", "client.key"] {
        fs_err::copy(tls.dir.join(f), host_dir.join(f)).unwrap();
    }
    let image = format!("{host}/tls:v1");
    let with_certs = |root: &Path, dir: &Path, args: &[&str]| {
        p.command_in(root, args)
            .env("RBUILD_CERTS_DIR", dir)
            .output()
            .unwrap()
    };
    let out = with_certs(&p.root(), &certs, &["push", "busybox:latest", &image]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // skopeo, verifying TLS with the same files, sees it.
    let seen = skopeo_inspect(
        &image,
        &[
            "--tls-verify=true",
            "--cert-dir",
            host_dir.to_str().unwrap(),
        ],
    );
    assert_eq!(seen["Name"], format!("{host}/tls"));
    let fresh = p.path("fresh");
    let out = with_certs(&fresh, &certs, &["pull", &image]);
    assert!(out.status.success(), "{}", text(&out.stderr));

    // The CA alone: the registry refuses the handshake without a client certificate.
    let ca_only = p.path("ca-only");
    fs_err::create_dir_all(ca_only.join(&host)).unwrap();
    fs_err::copy(tls.dir.join("ca.crt"), ca_only.join(&host).join("ca.crt")).unwrap();
    let out = with_certs(&p.path("x"), &ca_only, &["pull", &image]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains(&format!("cannot reach registry `{host}`")),
        "{}",
        text(&out.stderr)
    );
    // No CA: the server certificate is not trusted.
    let other_ca = p.path("other-ca");
    fs_err::create_dir_all(&other_ca).unwrap();
    let other = crate::registry_server::Tls::make(&other_ca);
    let wrong = p.path("wrong");
    fs_err::create_dir_all(wrong.join(&host)).unwrap();
    fs_err::copy(other.dir.join("ca.crt"), wrong.join(&host).join("ca.crt")).unwrap();
    let out = with_certs(&p.path("y"), &wrong, &["pull", &image]);
    assert!(!out.status.success());
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("cannot reach registry") && stderr.to_lowercase().contains("certificate"),
        "{stderr}"
    );
    // A broken certificate file is named.
    let broken = p.path("broken");
    fs_err::create_dir_all(broken.join(&host)).unwrap();
    fs_err::write(broken.join(&host).join("ca.crt"), "not a certificate").unwrap();
    let out = with_certs(&p.path("z"), &broken, &["pull", &image]);
    assert!(
        text(&out.stderr).contains("ca.crt"),
        "{}",
        text(&out.stderr)
    );
}
