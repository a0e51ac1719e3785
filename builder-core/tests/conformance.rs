//! rbuild's variable expansion against BuildKit's own tables (`../shared/conformance/buildkit-shell`):
//! every `A` and `U` row of `envVarTest` and every row of `wordsTest`.

use std::path::PathBuf;

use builder_core::dockerfile::Lexer;

fn table(name: &str) -> Option<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/conformance/buildkit-shell")
        .join(name);
    match fs_err::read_to_string(&path) {
        Ok(s) => Some(s),
        Err(e) => {
            let msg = format!(
                "BuildKit conformance table `{}` is missing: {e}",
                path.display()
            );
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{msg} (required under CI=true)"
            );
            eprintln!("\n*** SKIPPED: {msg} ***\n");
            None
        }
    }
}

#[test]
fn env_var_table() {
    let Some(text) = table("envVarTest") else {
        return;
    };
    let env: Vec<(String, String)> = [
        ("PWD", "/home"),
        ("SHELL", "bash"),
        ("KOREAN", "한국어"),
        ("NULL", ""),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    let lexer = Lexer::new('\\');
    let (mut ran, mut failures) = (0, Vec::new());
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parts: Vec<&str> = line.split('|').map(str::trim).collect();
        assert_eq!(parts.len(), 3, "line {}: {line}", n + 1);
        if !matches!(parts[0], "A" | "U") {
            continue;
        }
        ran += 1;
        let got = lexer.word(parts[1], &env);
        let ok = match (parts[2], &got) {
            ("error", r) => r.is_err(),
            (want, Ok(w)) => w == want,
            (_, Err(_)) => false,
        };
        if !ok {
            failures.push(format!(
                "line {}: {:?} → {got:?}, want {:?}",
                n + 1,
                parts[1],
                parts[2]
            ));
        }
    }
    assert!(ran > 200, "only {ran} rows ran");
    assert!(
        failures.is_empty(),
        "{} of {ran} rows differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn words_table() {
    let Some(text) = table("wordsTest") else {
        return;
    };
    let lexer = Lexer::new('\\');
    let mut env: Vec<(String, String)> = Vec::new();
    let (mut ran, mut failures) = (0, Vec::new());
    for (n, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("ENV ") {
            let (k, v) = rest.trim_start().split_once('=').expect("ENV name=value");
            env.push((k.to_owned(), v.to_owned()));
            continue;
        }
        let (input, expected) = line.split_once('|').expect("INPUT|EXPECTED");
        let input = input.trim();
        let expected = expected.trim_start();
        ran += 1;
        let got = lexer.words(input, &env);
        let ok = match (expected, &got) {
            ("error", r) => r.is_err(),
            (want, Ok(words)) => words == &want.split(',').collect::<Vec<_>>(),
            (_, Err(_)) => false,
        };
        if !ok {
            failures.push(format!(
                "line {}: {input:?} → {got:?}, want {expected:?}",
                n + 1
            ));
        }
    }
    assert!(ran >= 20, "only {ran} rows ran");
    assert!(
        failures.is_empty(),
        "{} of {ran} rows differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
