//! The syntax tree of a Dockerfile as BuildKit's parser reads it: one [`Node`] per instruction,
//! flags and arguments as written, before any expansion.

use super::directive::Directives;
use super::span::Span;

/// A parsed Dockerfile: its directives and its instructions in file order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Dockerfile {
    /// The parser directives at the top of the file.
    pub directives: Directives,
    /// The escape character in force (`\` unless `# escape=` says otherwise).
    pub escape: char,
    /// The instructions, in file order.
    pub instructions: Vec<Node>,
    /// Things BuildKit accepts but warns about (empty continuation lines).
    pub warnings: Vec<Warning>,
}

/// How the arguments of an instruction were written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Form {
    /// Plain words or a command line for the shell.
    Shell,
    /// A JSON array of strings.
    Exec,
}

/// One instruction as written.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Node {
    /// The keyword, upper case (`RUN`), whatever case it was written in.
    pub keyword: String,
    /// Where the keyword stands.
    pub keyword_span: Span,
    /// The `--flags` before the arguments, quotes removed as BuildKit removes them.
    pub flags: Vec<Flag>,
    /// Shell form or exec (JSON) form.
    pub form: Form,
    /// The arguments as written, before expansion (see the crate's JSON contract).
    pub args: Vec<String>,
    /// Where the arguments stand.
    pub args_span: Span,
    /// For ENV, LABEL and ARG: the key/value pairs as written (`None` for an ARG without default).
    pub pairs: Option<Vec<(String, Option<String>)>>,
    /// Heredocs opened on this line, in order.
    pub heredocs: Vec<Heredoc>,
    /// For ONBUILD: the instruction it registers.
    pub trigger: Option<Box<Node>>,
    /// The logical line, continuations joined as BuildKit joins them.
    pub original: String,
    /// The comment lines directly above the instruction.
    pub comments: Vec<String>,
    /// The whole instruction, heredoc bodies included.
    pub span: Span,
}

/// One `--name[=value]` flag.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Flag {
    /// The flag with its leading `--` (`--mount=type=cache,target=/x`).
    pub text: String,
    /// Where it stands.
    pub span: Span,
}

impl Flag {
    /// The name, without `--` and value.
    pub fn name(&self) -> &str {
        let s = self.text.strip_prefix("--").unwrap_or(&self.text);
        s.split_once('=').map_or(s, |(n, _)| n)
    }

    /// The value after `=`, if any.
    pub fn value(&self) -> Option<&str> {
        self.text.split_once('=').map(|(_, v)| v)
    }
}

/// A here-document (`<<EOF` … `EOF`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Heredoc {
    /// The delimiter, quotes removed.
    pub name: String,
    /// The body, each line with its newline; leading tabs already removed for `<<-`.
    pub content: String,
    /// Whether variables in the body are expanded (the delimiter was not quoted).
    pub expand: bool,
    /// `<<-`: leading tabs are stripped from the body and the delimiter line.
    pub chomp: bool,
    /// A file descriptor written before `<<` (`3<<EOF`).
    pub fd: Option<u32>,
    /// The body and its terminator line.
    pub span: Span,
}

/// A construct BuildKit accepts but warns about.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Warning {
    /// What is wrong.
    pub message: String,
    /// Where.
    pub span: Span,
}
