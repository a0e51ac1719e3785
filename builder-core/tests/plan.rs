//! Golden tests of lowering: every `fixtures/dockerfile/ok` file becomes an op graph (JSON,
//! snapshotted), with image metadata from a table instead of a store or a registry.

use builder_core::digest::Digest;
use builder_core::dockerfile::{self, CheckOptions};
use builder_core::plan::{self, ImageMeta, Kind, OpSource};

/// Any image: a digest made of its name, and a Debian-like environment (the `Resolve` shape).
#[allow(clippy::unnecessary_wraps)]
fn resolver(name: &str) -> Result<ImageMeta, String> {
    Ok(ImageMeta {
        digest: Digest::of(name.as_bytes()),
        env: vec![
            "PATH=/usr/local/bin:/usr/bin:/bin".into(),
            "LANG=C.UTF-8".into(),
        ],
        working_dir: None,
        user: None,
        shell: None,
        on_build: if name.contains("onbuild") {
            vec!["COPY . /app/src".into(), "RUN make -C /app/src".into()]
        } else {
            Vec::new()
        },
    })
}

fn lower(src: &str, build_args: &[(&str, &str)]) -> plan::Graph {
    let opts = plan::Options {
        build_args: build_args
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        automatic_args: [("TARGETARCH", "amd64"), ("TARGETOS", "linux")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        target: None,
        named_contexts: std::collections::BTreeMap::new(),
        stage_platforms: std::collections::BTreeMap::new(),
    };
    let check = CheckOptions {
        build_args: opts.build_args.clone(),
        automatic_args: opts.automatic_args.clone(),
        named_contexts: opts.named_contexts.clone(),
    };
    let checked = dockerfile::parse_and_check(src, &check).unwrap();
    plan::lower(&checked, &opts, &resolver).unwrap()
}

#[test]
fn ok_fixtures_lower_to_op_graphs() {
    insta::glob!("../../fixtures/dockerfile", "ok/*.Dockerfile", |path| {
        let src = fs_err::read_to_string(path).unwrap();
        let graph = lower(&src, &[]);
        // Every op reads only ops before it: the graph is in build order.
        for (id, op) in graph.ops.iter().enumerate() {
            assert!(
                op.inputs.iter().all(|i| *i < id),
                "{}: op {id}",
                path.display()
            );
        }
        insta::assert_snapshot!(serde_json::to_string_pretty(&graph).unwrap());
    });
}

#[test]
fn run_sees_every_arg_and_env_in_scope_and_the_workdir() {
    let g = lower(
        "FROM base\nARG A=1\nENV B=$A-x\nWORKDIR /w\nWORKDIR sub/../d\nUSER app\nRUN true\n",
        &[("HTTP_PROXY", "http://p")],
    );
    let Kind::Exec(exec) = &g.ops.last().unwrap().kind else {
        panic!("the last op is the RUN")
    };
    assert_eq!(
        exec.env,
        [
            "PATH=/usr/local/bin:/usr/bin:/bin",
            "LANG=C.UTF-8",
            "A=1",
            "B=1-x",
            "HTTP_PROXY=http://p"
        ]
    );
    assert_eq!((exec.workdir.as_str(), exec.user.as_str()), ("/w/d", "app"));
    assert_eq!(exec.args, ["/bin/sh", "-c", "true"]);
}

#[test]
fn a_build_arg_overrides_a_default_and_from_names_a_stage_or_an_image() {
    let g = lower(
        "ARG IMG=tools\nFROM base AS b\nARG V=1\nRUN echo $V\nFROM scratch\nCOPY --from=b /x /x\nCOPY --from=${IMG} /y /y\n",
        &[("V", "2")],
    );
    let exec = g
        .ops
        .iter()
        .find_map(|o| match &o.kind {
            Kind::Exec(e) => Some(e),
            _ => None,
        })
        .unwrap();
    assert!(exec.env.contains(&"V=2".to_owned()));
    let copies: Vec<_> = g
        .ops
        .iter()
        .filter_map(|o| match &o.kind {
            Kind::File(f) => Some((f.from.clone(), o.inputs.clone())),
            _ => None,
        })
        .collect();
    // `--from=b` reads stage 0's last op; `--from=tools` an image source op.
    assert_eq!(copies[0].0, Some(plan::From::Stage(0)));
    assert_eq!(copies[0].1[1], g.stages[0].result);
    assert_eq!(copies[1].0, Some(plan::From::Image("tools".into())));
    assert!(matches!(
        &g.ops[copies[1].1[1]].kind,
        Kind::Source(OpSource::Image { name, .. }) if name == "tools"
    ));
}

#[test]
fn a_bases_onbuild_triggers_come_first_and_a_stage_built_from_a_stage_runs_its_triggers() {
    let g = lower(
        "FROM onbuild-base AS a\nONBUILD RUN echo child\nRUN echo a\nFROM a\nRUN echo b\n",
        &[],
    );
    let text: Vec<&str> = g.ops.iter().map(|o| o.instruction.as_str()).collect();
    assert_eq!(
        text,
        [
            "FROM onbuild-base",
            "COPY . /app/src",
            "ONBUILD COPY . /app/src",
            "ONBUILD RUN make -C /app/src",
            "ONBUILD RUN echo child",
            "RUN echo a",
            "FROM a",
            "ONBUILD RUN echo child",
            "RUN echo b",
        ]
    );
}

#[test]
fn an_image_the_resolver_cannot_answer_for_is_an_error_naming_it() {
    let checked = dockerfile::parse_and_check("FROM nowhere\n", &CheckOptions::default()).unwrap();
    let err =
        plan::lower(&checked, &plan::Options::default(), &plan::Table::default()).unwrap_err();
    assert_eq!(err.to_string(), "line 1: `FROM nowhere`");
    assert_eq!(
        std::error::Error::source(&err).unwrap().to_string(),
        "cannot resolve image `nowhere`: image `nowhere` not found"
    );
}

#[test]
fn a_tree_is_read_later_only_by_a_step_on_it_or_a_stage_using_it() {
    let graph = lower(
        "FROM busybox AS base\n\
         COPY a /a\n\
         ENV X=1\n\
         RUN cat /a\n\
         COPY b /b\n\
         FROM busybox AS unused-tail\n\
         COPY c /c\n\
         FROM busybox\n\
         COPY --from=base /b /b\n\
         WORKDIR /w\n\
         COPY d /d\n\
         CMD [\"sh\"]\n",
        &[],
    );
    let read = graph.tree_read_later();
    let at = |line: usize, word: &str| {
        let id = graph
            .ops
            .iter()
            .position(|op| {
                op.line == line
                    && op.instruction.starts_with(word)
                    && !matches!(op.kind, Kind::Source(_))
            })
            .unwrap_or_else(|| panic!("no {word} op at line {line}"));
        read[id]
    };
    // COPY a: read by the RUN through the ENV edit; the RUN's tree by COPY b.
    assert!(at(2, "COPY") && at(3, "ENV") && at(4, "RUN"));
    // COPY b: the base stage's result, which the last stage copies from.
    assert!(at(5, "COPY"));
    // The last stage's COPY --from is read by WORKDIR; the final COPY by nothing.
    assert!(at(9, "COPY") && at(10, "WORKDIR"));
    assert!(!at(11, "COPY") && !at(12, "CMD"));
}
