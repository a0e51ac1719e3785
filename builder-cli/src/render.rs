//! Everything the CLI prints: the error chain in the manner of cargo and uv (`error:`,
//! `Caused by:`, `hint:`), Dockerfile errors with a code frame, and plain output.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::fmt::Write as _;
use std::io::{IsTerminal, Write};

use builder_core::dockerfile::{ParseError, Span};

/// An error that points into a Dockerfile: drawn with a code frame of the place.
#[derive(Debug)]
pub(crate) struct DockerfileError {
    /// The error (its chain is printed as `Caused by:`).
    pub(crate) error: Box<dyn std::error::Error + Send + Sync>,
    /// The Dockerfile's path, as shown.
    pub(crate) path: String,
    /// Its text.
    pub(crate) src: String,
    /// Where the frame points.
    pub(crate) span: Span,
    /// What the frame says under the carets.
    pub(crate) label: String,
    /// Advice, if any.
    pub(crate) hint: Option<String>,
}

impl DockerfileError {
    /// A parse or check error of the front end.
    pub(crate) fn parse(path: &std::path::Path, src: String, source: ParseError) -> Self {
        let span = source.span.clone();
        let label = source.kind.to_string();
        let hint = source.hint();
        Self {
            error: Box::new(builder_core::Error::Dockerfile {
                path: path.to_owned(),
                source,
            }),
            path: path.display().to_string(),
            src,
            span,
            label,
            hint,
        }
    }
}

impl std::fmt::Display for DockerfileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.error.fmt(f)
    }
}

impl std::error::Error for DockerfileError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.error.source()
    }
}

#[derive(Clone, Copy)]
pub(crate) struct Style {
    color: bool,
}

impl Style {
    pub(crate) fn stderr() -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Self {
            color: !no_color && std::io::stderr().is_terminal(),
        }
    }

    pub(crate) fn paint(self, code: &str, s: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }
}

/// Prints to standard output.
pub(crate) fn stdout(s: &str) {
    let mut out = std::io::stdout().lock();
    // A closed pipe (`rbuild parse | head`) is not an error worth reporting.
    let _ = out.write_all(s.as_bytes());
    let _ = out.flush();
}

/// Prints progress or a note to standard error.
pub(crate) fn stderr(s: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(s.as_bytes());
    let _ = err.flush();
}

/// Prints a warning to standard error.
pub(crate) fn warning(msg: &str) {
    let style = Style::stderr();
    eprintln!("{}: {msg}", style.paint("1;33", "warning"));
}

/// Prints an error chain to standard error.
pub(crate) fn error(err: &anyhow::Error) {
    eprint!("{}", format_error(err, Style::stderr()));
}

fn format_error(err: &anyhow::Error, style: Style) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}: {err}", style.paint("1;31", "error"));
    for cause in err.chain().skip(1) {
        let _ = writeln!(out, "  {} {cause}", style.paint("1", "Caused by:"));
    }
    let mut hint = None;
    if let Some(df) = err.downcast_ref::<DockerfileError>() {
        out.push_str(&code_frame(&df.path, &df.src, &df.span, &df.label, style));
        hint.clone_from(&df.hint);
    }
    if let Some(h) = hint {
        let _ = writeln!(out, "{}: {h}", style.paint("1;36", "hint"));
    }
    out
}

/// The offending lines with a gutter and a caret line under the span.
fn code_frame(path: &str, src: &str, span: &Span, label: &str, style: Style) -> String {
    let Span {
        line,
        col,
        end_line,
        range,
    } = span;
    let mut out = String::new();
    let lines: Vec<&str> = src.lines().collect();
    if *line == 0 || lines.is_empty() {
        return out;
    }
    let first = (*line).min(lines.len());
    let last = (*end_line).clamp(first, lines.len()).min(first + 5);
    let width = last.to_string().len();
    let gutter = |s: &str| style.paint("1;34", s);
    let _ = writeln!(
        out,
        "{}{} {path}:{line}:{col}",
        " ".repeat(width),
        gutter("-->")
    );
    let _ = writeln!(out, "{} {}", " ".repeat(width), gutter("|"));
    for n in first..=last {
        let text = lines[n - 1];
        let _ = writeln!(out, "{} {}", gutter(&format!("{n:>width$} |")), text);
        if n == first {
            let start_chars = col.saturating_sub(1);
            let len_on_line = src
                .get(range.clone())
                .map_or(1, |s| s.lines().next().unwrap_or("").chars().count())
                .max(1)
                .min(text.chars().count().saturating_sub(start_chars).max(1));
            let carets = style.paint("1;31", &"^".repeat(len_on_line));
            let _ = writeln!(
                out,
                "{} {} {}{carets} {}",
                " ".repeat(width),
                gutter("|"),
                " ".repeat(start_chars),
                style.paint("1;31", label)
            );
        }
    }
    if *end_line > last {
        let _ = writeln!(out, "{} {} ...", " ".repeat(width), gutter("|"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_points_at_the_span() {
        let src = "FROM scratch\nRUNN echo hi\n";
        let err = builder_core::dockerfile::parse_and_check(
            src,
            &builder_core::dockerfile::CheckOptions::default(),
        )
        .unwrap_err();
        let frame = code_frame(
            "Dockerfile",
            src,
            &err.span,
            &err.kind.to_string(),
            Style { color: false },
        );
        assert_eq!(
            frame,
            " --> Dockerfile:2:1\n  |\n2 | RUNN echo hi\n  | ^^^^ unknown instruction `RUNN` (did you mean `RUN`?)\n"
        );
    }

    #[test]
    fn no_color_codes_when_not_asked() {
        let err = anyhow::anyhow!("boom");
        assert!(!format_error(&err, Style { color: false }).contains('\x1b'));
        assert!(format_error(&err, Style { color: true }).contains('\x1b'));
    }
}
