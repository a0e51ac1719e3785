//! `rbuild parse`: the JSON contract on every fixture, rendered errors, syntax-only mode.

use serde_json::Value;

use crate::support::{fixtures, rbuild, run, text};

const KEYWORDS: [&str; 18] = [
    "ADD",
    "ARG",
    "CMD",
    "COPY",
    "ENTRYPOINT",
    "ENV",
    "EXPOSE",
    "FROM",
    "HEALTHCHECK",
    "LABEL",
    "MAINTAINER",
    "ONBUILD",
    "RUN",
    "SHELL",
    "STOPSIGNAL",
    "USER",
    "VOLUME",
    "WORKDIR",
];

fn strings(v: &Value, what: &str) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("{what} is not an array: {v}"))
        .iter()
        .map(|s| {
            s.as_str()
                .unwrap_or_else(|| panic!("{what} holds a non-string: {s}"))
                .to_owned()
        })
        .collect()
}

/// Checks one instruction object against the contract and the source line it names.
fn check_instruction(inst: &Value, lines: &[&str], file: &str) {
    let obj = inst
        .as_object()
        .unwrap_or_else(|| panic!("{file}: instruction is not an object"));
    let keyword = obj["keyword"].as_str().expect("keyword is a string");
    assert!(
        KEYWORDS.contains(&keyword),
        "{file}: unknown keyword {keyword}"
    );
    let line = usize::try_from(obj["line"].as_u64().expect("line is a number")).unwrap();
    let written = lines[line - 1].trim_start_matches('\u{feff}').trim_start();
    assert!(
        written.to_ascii_uppercase().starts_with(keyword)
            || keyword == obj.get("parent").and_then(Value::as_str).unwrap_or(""),
        "{file}:{line}: `{written}` does not start with {keyword}"
    );
    for flag in strings(&obj["flags"], "flags") {
        assert!(flag.starts_with("--"), "{file}:{line}: flag {flag}");
    }
    let form = obj["form"].as_str().expect("form");
    assert!(
        form == "shell" || form == "exec",
        "{file}:{line}: form {form}"
    );
    let args = strings(&obj["args"], "args");
    if form == "shell" && matches!(keyword, "RUN" | "CMD" | "ENTRYPOINT") {
        assert!(
            args.len() <= 1,
            "{file}:{line}: shell form {keyword} has {} args",
            args.len()
        );
    }
    match obj.get("pairs") {
        Some(pairs) => {
            assert!(
                matches!(keyword, "ENV" | "LABEL" | "ARG"),
                "{file}:{line}: pairs on {keyword}"
            );
            for pair in pairs.as_array().expect("pairs is an array") {
                let pair = pair.as_array().expect("a pair is an array");
                assert_eq!(pair.len(), 2, "{file}:{line}: pair {pair:?}");
                assert!(pair[0].is_string(), "{file}:{line}: pair key");
                assert!(
                    pair[1].is_string() || (pair[1].is_null() && keyword == "ARG"),
                    "{file}:{line}: pair value"
                );
            }
        }
        None => assert!(
            !matches!(keyword, "ENV" | "LABEL" | "ARG"),
            "{file}:{line}: {keyword} without pairs"
        ),
    }
    for h in obj["heredocs"].as_array().expect("heredocs is an array") {
        assert!(
            h["name"].is_string() && h["content"].is_string(),
            "{file}:{line}: heredoc {h}"
        );
        assert!(
            h["expand"].is_boolean() && h["chomp"].is_boolean(),
            "{file}:{line}: heredoc {h}"
        );
    }
    match obj.get("trigger") {
        Some(t) => {
            assert_eq!(keyword, "ONBUILD", "{file}:{line}: trigger on {keyword}");
            let t_kw = t["keyword"].as_str().expect("trigger keyword");
            assert!(KEYWORDS.contains(&t_kw), "{file}:{line}: trigger {t_kw}");
            assert_eq!(t["line"], obj["line"], "{file}:{line}: trigger line");
            assert_eq!(
                strings(&t["flags"], "trigger flags").is_empty(),
                t["flags"].as_array().unwrap().is_empty()
            );
        }
        None => assert_ne!(keyword, "ONBUILD", "{file}:{line}: ONBUILD without trigger"),
    }
}

#[test]
fn json_follows_the_contract_on_every_ok_fixture() {
    let mut count = 0;
    for entry in fs_err::read_dir(fixtures().join("ok")).unwrap() {
        let path = entry.unwrap().path();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let src = fs_err::read_to_string(&path).unwrap();
        let lines: Vec<&str> = src.lines().collect();
        let rel = format!("ok/{file}");
        for check in [false, true] {
            let mut args = vec!["parse", "--format", "json", "-f", rel.as_str()];
            if check {
                args.push("--check");
            }
            let out = run(&args);
            assert!(out.status.success(), "{file}: {}", text(&out.stderr));
            let json: Value =
                serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{file}: {e}"));
            assert!(json["directives"].is_object(), "{file}: directives");
            let instructions = json["instructions"].as_array().expect("instructions");
            assert!(!instructions.is_empty());
            let mut last_line = 0;
            for inst in instructions {
                check_instruction(inst, &lines, &file);
                let line = inst["line"].as_u64().unwrap();
                assert!(line > last_line, "{file}: instructions out of file order");
                last_line = line;
            }
            assert_eq!(
                json.get("stages").is_some(),
                check,
                "{file}: stages only with --check"
            );
        }
        count += 1;
    }
    assert!(count >= 15, "only {count} fixtures");
}

#[test]
fn json_of_a_known_file() {
    let out = run(&["parse", "--format", "json", "-f", "ok/onbuild.Dockerfile"]);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    let run_trigger = &json["instructions"][2];
    assert_eq!(run_trigger["keyword"], "ONBUILD");
    assert_eq!(run_trigger["trigger"]["keyword"], "RUN");
    assert_eq!(
        run_trigger["trigger"]["flags"][0],
        "--mount=type=cache,target=/root/.cache"
    );
    assert_eq!(run_trigger["trigger"]["args"][0], "make -C /app/src");
    let out = run(&[
        "parse",
        "--format",
        "json",
        "-f",
        "ok/env-label-forms.Dockerfile",
    ]);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        json["instructions"][2]["pairs"][1],
        serde_json::json!(["k2", "\"v 2\""])
    );
    assert_eq!(
        json["instructions"][1]["pairs"][0],
        serde_json::json!(["OLD_FORM", "a value with spaces"])
    );
}

#[test]
fn errors_render_with_a_code_frame() {
    insta::glob!("../../../fixtures/dockerfile", "err/*.Dockerfile", |path| {
        let rel = format!("err/{}", path.file_name().unwrap().to_string_lossy());
        let out = run(&["parse", "--check", "-f", &rel]);
        assert!(!out.status.success(), "{rel} should fail");
        assert!(out.stdout.is_empty(), "{rel}: output on failure");
        let stderr = text(&out.stderr);
        assert!(
            !stderr.contains('\x1b'),
            "{rel}: colour codes with NO_COLOR"
        );
        if !rel.contains("empty") && !rel.contains("only-comments") {
            assert!(
                stderr.contains(&format!("--> {rel}:")),
                "{rel}: no code frame:\n{stderr}"
            );
        }
        insta::assert_snapshot!(stderr);
    });
}

#[test]
fn syntax_only_parse_accepts_a_file_without_from() {
    let out = run(&["parse", "-f", "err/no-stage.Dockerfile"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains("RUN"));
    let out = run(&["parse", "--check", "-f", "err/no-stage.Dockerfile"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn reads_standard_input() {
    let out = crate::support::with_stdin(
        &mut rbuild(&["parse", "-f", "-", "--format", "json"]),
        b"from busybox\nrun echo hi\n",
    );
    assert!(out.status.success());
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["instructions"][1]["keyword"], "RUN");
}

#[test]
fn missing_file_names_the_path() {
    let out = run(&["parse", "-f", "nope/Dockerfile"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains("nope/Dockerfile"), "{stderr}");
}

#[test]
fn no_arguments_and_wrong_flags_say_what_to_do() {
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("Usage: rbuild"), "{stderr}");
    assert!(stderr.contains("parse"), "{stderr}");
    let out = run(&["parse", "--formt", "json"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("--format"), "{stderr}");
}
