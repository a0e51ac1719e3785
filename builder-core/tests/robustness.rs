//! Property tests over the parser and the expander: no panic and no hang on any input, and the
//! spans they return always point inside the text. `PROPTEST_CASES` raises the case count (CI runs
//! the default; the long run is in the fuzz target, `fuzz/`).

use builder_core::dockerfile::{self, CheckOptions, Lexer};
use proptest::prelude::*;

/// Pieces Dockerfiles are made of, so that random files reach deep into the parser.
fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("FROM ".to_owned()),
        Just("RUN ".to_owned()),
        Just("COPY ".to_owned()),
        Just("ADD ".to_owned()),
        Just("ENV ".to_owned()),
        Just("ARG ".to_owned()),
        Just("LABEL ".to_owned()),
        Just("ONBUILD ".to_owned()),
        Just("HEALTHCHECK ".to_owned()),
        Just("SHELL ".to_owned()),
        Just("CMD ".to_owned()),
        Just(" AS ".to_owned()),
        Just("--mount=type=cache,target=/x ".to_owned()),
        Just("--from=".to_owned()),
        Just("--chmod=".to_owned()),
        Just("--interval=".to_owned()),
        Just("\n".to_owned()),
        Just("\r\n".to_owned()),
        Just("\\\n".to_owned()),
        Just("`\n".to_owned()),
        Just("# escape=`\n".to_owned()),
        Just("# syntax=x\n".to_owned()),
        Just("#".to_owned()),
        Just("<<EOF".to_owned()),
        Just("<<-'E'".to_owned()),
        Just("\nEOF\n".to_owned()),
        Just("\tE\n".to_owned()),
        Just("[\"a\", \"b\"]".to_owned()),
        Just("[[".to_owned()),
        Just("${".to_owned()),
        Just("}".to_owned()),
        Just("$".to_owned()),
        Just(":-".to_owned()),
        Just("##".to_owned()),
        Just("%".to_owned()),
        Just("//".to_owned()),
        Just("\"".to_owned()),
        Just("'".to_owned()),
        Just("\\".to_owned()),
        Just("=".to_owned()),
        Just(" ".to_owned()),
        Just("\t".to_owned()),
        Just("\u{feff}".to_owned()),
        Just("한".to_owned()),
        "[a-z0-9./:_-]{1,8}",
        any::<char>().prop_map(String::from),
    ]
}

fn dockerfile_text() -> impl Strategy<Value = String> {
    prop::collection::vec(token(), 0..60).prop_map(|t| t.concat())
}

fn check_spans(src: &str, span: &dockerfile::Span) {
    assert!(span.range.start <= span.range.end, "{span:?}");
    assert!(span.range.end <= src.len(), "{span:?} past {}", src.len());
    assert!(
        src.is_char_boundary(span.range.start) && src.is_char_boundary(span.range.end),
        "{span:?}"
    );
    assert!(span.line >= 1 && span.line <= span.end_line, "{span:?}");
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(500),
        ..ProptestConfig::default()
    })]

    #[test]
    fn parser_never_panics(src in dockerfile_text()) {
        match dockerfile::parse(&src) {
            Ok(df) => {
                for n in &df.instructions {
                    check_spans(&src, &n.span);
                    check_spans(&src, &n.keyword_span);
                    check_spans(&src, &n.args_span);
                    for f in &n.flags {
                        check_spans(&src, &f.span);
                    }
                }
                if let Err(e) = dockerfile::check(&df, &CheckOptions::default()) {
                    check_spans(&src, &e.span);
                }
            }
            Err(e) => check_spans(&src, &e.span),
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(src in "\\PC*") {
        if let Ok(df) = dockerfile::parse(&src) {
            let _ = dockerfile::check(&df, &CheckOptions::default());
        }
    }

    #[test]
    fn expander_never_panics(word in dockerfile_text(), value in "[a-z/*?.\\\\]{0,8}") {
        let env = vec![("a".to_owned(), value), ("PWD".to_owned(), "/home".to_owned())];
        for escape in ['\\', '`'] {
            let mut lexer = Lexer::new(escape);
            let _ = lexer.expand(&word, &env);
            lexer.raw_quotes = true;
            lexer.raw_escapes = true;
            lexer.skip_unset_env = true;
            let _ = lexer.expand(&word, &env);
        }
    }

    /// A word without quotes, escapes, `$` or blanks expands to itself.
    #[test]
    fn plain_words_expand_to_themselves(word in "[a-zA-Z0-9./:_-]{1,20}") {
        let got = Lexer::new('\\').expand(&word, &Vec::new()).unwrap();
        prop_assert_eq!(&got.word, &word);
        prop_assert_eq!(got.words, vec![word]);
    }

    /// Line endings do not change what a file means.
    #[test]
    fn crlf_parses_like_lf(src in dockerfile_text()) {
        let lf = src.replace("\r\n", "\n");
        let crlf = lf.replace('\n', "\r\n");
        let (a, b) = (dockerfile::parse(&lf), dockerfile::parse(&crlf));
        prop_assert_eq!(a.is_ok(), b.is_ok());
        if let (Ok(a), Ok(b)) = (a, b) {
            let args = |d: &dockerfile::Dockerfile| d.instructions.iter().map(|n| (n.keyword.clone(), n.args.clone())).collect::<Vec<_>>();
            prop_assume!(!lf.contains('\r'));
            prop_assert_eq!(args(&a), args(&b));
        }
    }
}
