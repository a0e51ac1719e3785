//! Golden tests over `fixtures/dockerfile`: every `ok/*` file parses and checks (AST dump
//! snapshotted), every `err/*` file fails with a located error (snapshotted), and the `ok` set
//! covers every instruction, flag, mount option, heredoc form and directive.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use builder_core::dockerfile::{self, CheckOptions, Keyword};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/dockerfile")
}

fn read(path: &Path) -> String {
    fs_err::read_to_string(path).unwrap()
}

#[test]
fn ok_fixtures_parse_and_check() {
    insta::glob!("../../fixtures/dockerfile", "ok/*.Dockerfile", |path| {
        let src = read(path);
        let parsed = dockerfile::parse(&src).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let checked = dockerfile::check(&parsed, &CheckOptions::default())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        insta::assert_snapshot!(format!(
            "{}\n---- checked ----\n{}",
            parsed.dump(),
            checked.dump()
        ));
    });
}

#[test]
fn err_fixtures_fail_with_location() {
    insta::glob!("../../fixtures/dockerfile", "err/*.Dockerfile", |path| {
        let src = read(path);
        let err = dockerfile::parse_and_check(&src, &CheckOptions::default())
            .expect_err(&format!("{} should fail", path.display()));
        let s = &err.span;
        assert!(
            s.range.end <= src.len(),
            "span past the end of {}",
            path.display()
        );
        insta::assert_snapshot!(format!(
            "{err}\nat {}:{}-{} bytes {:?}: {:?}\nhint: {:?}",
            s.line,
            s.col,
            s.end_line,
            s.range,
            &src[s.range.clone()],
            err.hint()
        ));
    });
}

/// BuildKit's parser leaves these to the semantic pass: syntax alone accepts them.
#[test]
fn syntax_only_accepts_what_buildkit_parser_accepts() {
    for name in [
        "bare-healthcheck",
        "no-stage",
        "copy-from-typo",
        "unknown-flag",
        "unknown-instruction",
        "shell-not-json",
    ] {
        let src = read(&fixtures().join(format!("err/{name}.Dockerfile")));
        assert!(
            dockerfile::parse(&src).is_ok(),
            "{name} should parse as syntax"
        );
    }
    for name in [
        "empty",
        "only-comments",
        "env-without-value",
        "nested-json",
        "unterminated-heredoc",
        "bad-escape-directive",
    ] {
        let src = read(&fixtures().join(format!("err/{name}.Dockerfile")));
        assert!(
            dockerfile::parse(&src).is_err(),
            "{name} should fail as syntax"
        );
    }
}

#[test]
fn ok_fixtures_cover_every_feature() {
    let mut keywords = BTreeSet::new();
    let mut flags = BTreeSet::new();
    let mut mount_keys = BTreeSet::new();
    let mut heredoc_forms = BTreeSet::new();
    let mut directives = BTreeSet::new();
    let mut files = 0;
    for entry in fs_err::read_dir(fixtures().join("ok")).unwrap() {
        let path = entry.unwrap().path();
        let src = read(&path);
        let parsed = dockerfile::parse(&src).unwrap();
        files += 1;
        let d = &parsed.directives;
        for (name, v) in [
            ("syntax", &d.syntax),
            ("escape", &d.escape),
            ("check", &d.check),
        ] {
            if v.is_some() {
                directives.insert(format!(
                    "{name}={}",
                    if name == "escape" {
                        parsed.escape.to_string()
                    } else {
                        String::new()
                    }
                ));
            }
        }
        let mut nodes: Vec<_> = parsed.instructions.iter().collect();
        while let Some(n) = nodes.pop() {
            keywords.insert(n.keyword.clone());
            nodes.extend(n.trigger.as_deref());
            for f in &n.flags {
                flags.insert(format!("{} --{}", n.keyword, f.name()));
                if f.name() == "mount" {
                    for field in f.value().unwrap_or_default().split(',') {
                        mount_keys.insert(field.split('=').next().unwrap_or_default().to_owned());
                    }
                }
            }
            for h in &n.heredocs {
                heredoc_forms.insert(format!(
                    "{} chomp={} expand={}",
                    n.keyword, h.chomp, h.expand
                ));
                if h.content.starts_with("#!") {
                    heredoc_forms.insert("shebang".into());
                }
                if h.fd.is_some() {
                    heredoc_forms.insert("fd".into());
                }
            }
            if n.heredocs.len() > 1 {
                heredoc_forms.insert("several on one line".into());
            }
        }
    }
    let missing = |have: &BTreeSet<String>, want: &[&str]| -> Vec<String> {
        want.iter()
            .filter(|w| !have.contains(**w))
            .map(|w| (*w).to_owned())
            .collect()
    };
    let all_keywords: Vec<&str> = Keyword::ALL.iter().map(|k| k.as_str()).collect();
    assert_eq!(
        missing(&keywords, &all_keywords),
        Vec::<String>::new(),
        "instructions not covered"
    );
    let want_flags = [
        "FROM --platform",
        "RUN --mount",
        "RUN --network",
        "RUN --security",
        "COPY --from",
        "COPY --chown",
        "COPY --chmod",
        "COPY --link",
        "COPY --parents",
        "COPY --exclude",
        "ADD --chown",
        "ADD --chmod",
        "ADD --link",
        "ADD --exclude",
        "ADD --checksum",
        "ADD --keep-git-dir",
        "HEALTHCHECK --interval",
        "HEALTHCHECK --timeout",
        "HEALTHCHECK --start-period",
        "HEALTHCHECK --start-interval",
        "HEALTHCHECK --retries",
    ];
    assert_eq!(
        missing(&flags, &want_flags),
        Vec::<String>::new(),
        "flags not covered"
    );
    let want_mount = [
        "type",
        "target",
        "dst",
        "destination",
        "source",
        "from",
        "ro",
        "rw",
        "id",
        "sharing",
        "mode",
        "uid",
        "gid",
        "size",
        "required",
        "env",
    ];
    assert_eq!(
        missing(&mount_keys, &want_mount),
        Vec::<String>::new(),
        "mount options not covered"
    );
    let want_heredocs = [
        "RUN chomp=false expand=true",
        "RUN chomp=true expand=true",
        "RUN chomp=false expand=false",
        "COPY chomp=false expand=true",
        "shebang",
        "fd",
        "several on one line",
    ];
    assert_eq!(
        missing(&heredoc_forms, &want_heredocs),
        Vec::<String>::new(),
        "heredoc forms not covered"
    );
    assert_eq!(
        missing(&directives, &["syntax=", "check=", "escape=\\", "escape=`"]),
        Vec::<String>::new()
    );
    let realistic = fs_err::read_dir(fixtures().join("ok"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("real-")
        })
        .count();
    assert!(
        realistic >= 15,
        "only {realistic} realistic Dockerfiles (real-*) of {files}"
    );
}

#[test]
fn a_named_context_is_read_instead_of_the_stage_or_image_of_its_name() {
    use dockerfile::{Named, Source};
    let src = "FROM scratch AS docs\nFROM alpine AS app\nCOPY --from=docs / /d\nCOPY --from=Tools / /t\nRUN --mount=from=later,target=/l true\nFROM scratch AS later\n";
    let opts = CheckOptions {
        named_contexts: [
            ("docs".to_owned(), Named::Local),
            ("alpine".to_owned(), Named::Image("busybox:1.36".into())),
            ("tools".to_owned(), Named::Image("debian:12".into())),
            ("later".to_owned(), Named::Local),
        ]
        .into_iter()
        .collect(),
        ..CheckOptions::default()
    };
    // Without them, `later` is a stage defined after its use: an error.
    assert!(dockerfile::parse_and_check(src, &CheckOptions::default()).is_err());
    let checked = dockerfile::parse_and_check(src, &opts).unwrap();
    let app = &checked.stages[1];
    assert_eq!(app.base.source, Source::Image("busybox:1.36".into()));
    let deps: Vec<&Source> = app.dependencies.iter().map(|d| &d.source).collect();
    assert_eq!(
        deps,
        [
            &Source::Image("busybox:1.36".into()),
            &Source::Context("docs".into()),
            &Source::Image("debian:12".into()),
            &Source::Context("later".into()),
        ]
    );
}
