//! Parser directives (`# syntax=`, `# escape=`, `# check=`), read from the top of the file until
//! the first line that is not one, as BuildKit reads them.

use std::sync::LazyLock;

use super::error::{ErrorKind, ParseError};
use super::span::Span;

/// The directives of a file. Each may be given once.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Directives {
    /// `# syntax=IMAGE`: the frontend image BuildKit would use (recorded, not acted on).
    pub syntax: Option<Directive>,
    /// `# escape=\` or `` # escape=` ``.
    pub escape: Option<Directive>,
    /// `# check=skip=A,B;error=true`: which build checks to run and whether they fail the build.
    pub check: Option<Directive>,
}

/// One directive as written.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Directive {
    /// The value after `=`, trimmed.
    pub value: String,
    /// The directive's line.
    pub span: Span,
}

/// The `# check=` directive, read.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CheckConfig {
    /// Rules not to run (`all` for every rule).
    pub skip: Vec<String>,
    /// Whether a failed check fails the build.
    pub error: bool,
    /// Experimental rules to run.
    pub experimental: Vec<String>,
}

impl CheckConfig {
    /// Reads `skip=A,B;error=true;experimental=C`.
    pub fn parse(value: &str) -> Result<Self, ErrorKind> {
        let invalid = |reason: String| ErrorKind::InvalidCheckDirective {
            value: value.to_owned(),
            reason,
        };
        let mut config = Self::default();
        for part in value.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let (key, val) = part
                .split_once('=')
                .ok_or_else(|| invalid(format!("`{part}` is not `key=value`")))?;
            let list = || {
                val.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            };
            match key.trim().to_ascii_lowercase().as_str() {
                "skip" => config.skip = list(),
                "experimental" => config.experimental = list(),
                "error" => {
                    config.error = match val.trim().to_ascii_lowercase().as_str() {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        other => {
                            return Err(invalid(format!(
                                "`error` takes true or false, not `{other}`"
                            )));
                        }
                    }
                }
                other => return Err(invalid(format!("unknown key `{other}`"))),
            }
        }
        Ok(config)
    }
}

impl Directives {
    /// The escape character: `\` unless the escape directive says otherwise.
    pub fn escape_char(&self) -> char {
        self.escape
            .as_ref()
            .and_then(|d| d.value.chars().next())
            .unwrap_or('\\')
    }

    /// The check directive, read.
    pub fn check_config(&self) -> Result<CheckConfig, ParseError> {
        match &self.check {
            None => Ok(CheckConfig::default()),
            Some(d) => CheckConfig::parse(&d.value).map_err(|k| ParseError::new(k, d.span.clone())),
        }
    }
}

static DIRECTIVE: LazyLock<regex::Regex> = LazyLock::new(|| {
    // invariant: a constant, valid pattern
    regex::Regex::new(r"^#(?-u:\s)*([a-zA-Z][a-zA-Z0-9]*)(?-u:\s)*=(?-u:\s)*(.+?)(?-u:\s)*$")
        .expect("valid regex")
});

/// Reads directives line by line until the first line that is not one.
#[derive(Debug, Default)]
pub(crate) struct DirectiveParser {
    pub(crate) directives: Directives,
    done: bool,
}

impl DirectiveParser {
    /// Looks at one line (leading whitespace already removed for the first line of an
    /// instruction). Ends directive parsing at the first line that is not a known directive.
    pub(crate) fn parse_line(
        &mut self,
        line: &str,
        span: impl FnOnce() -> Span,
    ) -> Result<(), ParseError> {
        if self.done {
            return Ok(());
        }
        let Some(caps) = DIRECTIVE.captures(line) else {
            self.done = true;
            return Ok(());
        };
        let name = caps[1].to_ascii_lowercase();
        let value = caps[2].to_owned();
        let slot = match name.as_str() {
            "syntax" => &mut self.directives.syntax,
            "escape" => &mut self.directives.escape,
            "check" => &mut self.directives.check,
            _ => {
                self.done = true;
                return Ok(());
            }
        };
        let span = span();
        if slot.is_some() {
            return Err(ParseError::new(
                ErrorKind::DuplicateDirective { name },
                span,
            ));
        }
        if name == "escape" && value != "\\" && value != "`" {
            return Err(ParseError::new(
                ErrorKind::InvalidEscape { token: value },
                span,
            ));
        }
        *slot = Some(Directive { value, span });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_directive_reads_skip_and_error() {
        let c = CheckConfig::parse("skip=JSONArgsRecommended,StageNameCasing;error=true").unwrap();
        assert_eq!(c.skip, ["JSONArgsRecommended", "StageNameCasing"]);
        assert!(c.error);
        assert!(CheckConfig::parse("nope=1").is_err());
        assert!(CheckConfig::parse("error=maybe").is_err());
    }

    #[test]
    fn directives_stop_at_first_other_line() {
        let mut p = DirectiveParser::default();
        p.parse_line("# escape=`", Span::default).unwrap();
        p.parse_line("# not a directive", Span::default).unwrap();
        p.parse_line("# syntax=docker/dockerfile:1", Span::default)
            .unwrap();
        assert_eq!(p.directives.escape_char(), '`');
        assert!(p.directives.syntax.is_none());
    }

    #[test]
    fn duplicate_and_invalid_escape_fail() {
        let mut p = DirectiveParser::default();
        p.parse_line("#escape=\\", Span::default).unwrap();
        assert!(p.parse_line("# ESCAPE = `", Span::default).is_err());
        let mut p = DirectiveParser::default();
        assert!(p.parse_line("# escape=x", Span::default).is_err());
    }
}
