//! `rbuild bake`: the services of a Compose file.

use crate::support::{Project, import_busybox, text};

fn project() -> Project {
    let p = Project::new();
    p.file(
        "Dockerfile",
        "FROM busybox AS base\nRUN echo shared-step-ran && echo base > /base.txt\nFROM base AS app\nARG GREETING\nRUN echo \"$GREETING\" > /greeting\nFROM base AS worker\nRUN echo worker > /role\n",
    )
    .file("docs/index.md", "# docs\n")
    .file(".env", "TAG=v1\n# a comment\n")
    .file(
        "compose.yaml",
        r#"name: Shop
x-common: &common
  context: .
services:
  app:
    image: local/app:${TAG}
    build:
      <<: *common
      target: app
      args:
        GREETING: ${GREETING:-hello}
      tags: ["local/app:latest"]
  worker:
    image: local/worker:${TAG}
    build:
      <<: *common
      dockerfile: Dockerfile
      target: worker
  docs:
    build:
      context: ./docs
      dockerfile_inline: |
        FROM scratch
        COPY . /docs/
      labels:
        - org.example.kind=docs
  db:
    image: postgres:16
"#,
    );
    p
}

#[test]
fn print_shows_every_build_resolved() {
    let p = project();
    let out = p.ok(&["bake", "--print"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["group"]["default"]["targets"],
        serde_json::json!(["app", "docs", "worker"])
    );
    let t = &v["target"];
    let ctx = std::fs::canonicalize(p.ctx())
        .unwrap()
        .display()
        .to_string();
    assert_eq!(t["app"]["context"], ctx.as_str());
    assert_eq!(t["app"]["dockerfile"], format!("{ctx}/Dockerfile").as_str());
    assert_eq!(t["app"]["target"], "app");
    assert_eq!(t["app"]["args"], serde_json::json!({"GREETING": "hello"}));
    assert_eq!(
        t["app"]["tags"],
        serde_json::json!(["local/app:v1", "local/app:latest"])
    );
    assert_eq!(t["worker"]["tags"], serde_json::json!(["local/worker:v1"]));
    // No image: Compose's PROJECT-SERVICE, the project's name lower case.
    assert_eq!(t["docs"]["tags"], serde_json::json!(["shop-docs"]));
    assert_eq!(t["docs"]["context"], format!("{ctx}/docs").as_str());
    assert_eq!(
        t["docs"]["dockerfile-inline"],
        "FROM scratch\nCOPY . /docs/\n"
    );
    assert_eq!(
        t["docs"]["labels"],
        serde_json::json!({"org.example.kind": "docs"})
    );
    assert!(t.get("db").is_none(), "a service without build was printed");
    // The environment wins over .env; one service alone.
    let out = p
        .command_in(&p.root(), &["bake", "--print", "app"])
        .env("TAG", "v2")
        .env("GREETING", "hey")
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["group"]["default"]["targets"], serde_json::json!(["app"]));
    assert_eq!(v["target"]["app"]["tags"][0], "local/app:v2");
    assert_eq!(v["target"]["app"]["args"]["GREETING"], "hey");
}

#[test]
fn bake_builds_every_service_and_a_shared_step_runs_once() {
    let p = project();
    import_busybox(&p.root());
    let out = p.ok(&["bake", "--progress", "plain"]);
    let log = text(&out.stderr);
    assert_eq!(
        log.matches("\nshared-step-ran").count() + log.matches(" shared-step-ran\n").count(),
        1,
        "the shared step did not run exactly once:\n{log}"
    );
    for service in ["app", "docs", "worker"] {
        assert!(log.contains(&format!("=> service {service}")), "{log}");
    }
    let history = |image: &str| -> String {
        let out = p.ok(&["inspect", image]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["Config"]["history"].to_string()
    };
    assert!(
        history("local/app:v1").contains("GREETING"),
        "{}",
        history("local/app:v1")
    );
    assert!(!history("local/app:v1").contains("/role"));
    assert!(history("local/worker:v1").contains("/role"));
    assert!(history("local/app:latest").contains("GREETING"));
    let docs = p.ok(&["inspect", "shop-docs"]);
    let v: serde_json::Value = serde_json::from_slice(&docs.stdout).unwrap();
    assert_eq!(v["Config"]["config"]["Labels"]["org.example.kind"], "docs");
}

#[test]
fn bake_errors_name_the_file_and_the_field() {
    let p = project();
    let err = text(&p.rbuild(&["bake", "nope"]).stderr);
    assert!(
        err.contains("no service `nope`") && err.contains("app, docs, worker"),
        "{err}"
    );
    p.file(
        "compose.yaml",
        "services:\n  a:\n    build:\n      context: .\n      args: 3\n",
    );
    let err = text(&p.rbuild(&["bake"]).stderr);
    assert!(err.contains("services.a.build.args"), "{err}");
    p.file(
        "compose.yaml",
        "services:\n  a:\n    image: x:${NEEDED:?set NEEDED}\n    build: .\n",
    );
    let out = p
        .command_in(&p.root(), &["bake", "--print"])
        .env_remove("NEEDED")
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert!(
        err.contains("set NEEDED") && err.contains("services.a.image"),
        "{err}"
    );
    p.file("compose.yaml", "services: [\n");
    let err = text(&p.rbuild(&["bake"]).stderr);
    assert!(err.contains("is not valid YAML"), "{err}");
}

#[test]
fn bake_push_pushes_each_service_to_its_image() {
    let p = project();
    import_busybox(&p.root());
    let registry = crate::registry_server::Registry::shared();
    let host = registry.host();
    p.file(
        "compose.yaml",
        "services:\n  worker:\n    image: ${REG}/bake/worker:1\n    build:\n      context: .\n      target: worker\n",
    );
    let out = p
        .command_in(&p.root(), &["--insecure-registry", &host, "bake", "--push"])
        .env("REG", &host)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let raw = crate::support::tool("skopeo", "skopeo")
        .args(["inspect", "--tls-verify=false", "--config"])
        .arg(format!("docker://{host}/bake/worker:1"))
        .output()
        .unwrap();
    assert!(raw.status.success(), "{}", text(&raw.stderr));
    assert!(text(&raw.stdout).contains("/role"), "{}", text(&raw.stdout));
}
