//! Coverage-guided fuzzing of the Dockerfile front end: parse, check and expand any input without
//! panicking or hanging, with every span inside the text.
//!
//! Run: `RUSTC_BOOTSTRAP=1 cargo fuzz run parse fuzz/corpus/parse fixtures/dockerfile/ok fixtures/dockerfile/err -- -max_total_time=600`
#![no_main]

use builder_core::dockerfile::{self, CheckOptions, Lexer, Span};
use libfuzzer_sys::fuzz_target;

fn check_span(src: &str, s: &Span) {
    assert!(s.range.start <= s.range.end && s.range.end <= src.len(), "{s:?}");
    assert!(src.is_char_boundary(s.range.start) && src.is_char_boundary(s.range.end), "{s:?}");
    assert!(s.line >= 1 && s.line <= s.end_line, "{s:?}");
}

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else { return };
    match dockerfile::parse(src) {
        Ok(df) => {
            for n in &df.instructions {
                check_span(src, &n.span);
                check_span(src, &n.args_span);
                n.flags.iter().for_each(|f| check_span(src, &f.span));
            }
            let _ = df.to_json();
            if let Err(e) = dockerfile::check(&df, &CheckOptions::default()) {
                check_span(src, &e.span);
            }
        }
        Err(e) => check_span(src, &e.span),
    }
    let env = vec![("A".to_owned(), "a*b/c".to_owned()), ("E".to_owned(), String::new())];
    for escape in ['\\', '`'] {
        let _ = Lexer::new(escape).expand(src, &env);
    }
});
