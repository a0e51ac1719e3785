//! The Dockerfile front end: text → [`Dockerfile`] (syntax, as BuildKit's parser reads it) →
//! [`Checked`] (typed instructions grouped into stages, references resolved).
//!
//! - [`parse`] reads directives, comments, continuations, exec and shell forms, flags and heredocs
//!   into [`Node`]s with [`Span`]s. A file without FROM still parses, as in BuildKit.
//! - [`check`] types each instruction ([`Instruction`], flags checked), builds the stages, applies
//!   global ARGs to FROM lines and checks `--from` references.
//! - [`Lexer`] expands variables exactly as BuildKit's shell lexer (proven against its tables in
//!   `tests/conformance.rs`).
//!
//! Errors are [`ParseError`]s: an [`ErrorKind`] and the [`Span`] it points at.
//!
//! Imports: nothing else in the crate (see `tests/architecture.rs`).

mod ast;
mod directive;
mod dump;
mod error;
mod expand;
mod instruction;
mod json;
mod keyword;
mod parser;
mod span;
mod stage;

pub use ast::{Dockerfile, Flag, Form, Heredoc, Node, Warning};
pub use directive::{CheckConfig, Directive, Directives};
pub use error::{ErrorKind, ParseError};
pub use expand::{Env, ExpandError, Expanded, Lexer, NoEnv};
pub use instruction::{
    Add, ArgDecl, Command, CommandLine, Copy, From, Healthcheck, Instruction, KeyValue, Mount,
    MountType, Run, Sharing, Source as CopySource, parse_instruction,
};
pub use keyword::Keyword;
pub use parser::parse;
pub use span::Span;
pub use stage::{Base, CheckOptions, Checked, Dependency, GlobalArg, Named, Source, Stage, check};

/// The front end's result type.
pub type Result<T, E = ParseError> = std::result::Result<T, E>;

/// Parses and checks in one step, as every build does.
pub fn parse_and_check(src: &str, opts: &CheckOptions) -> Result<Checked> {
    check(&parse(src)?, opts)
}
