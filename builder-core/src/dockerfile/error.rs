//! Errors of the Dockerfile front end: what is wrong ([`ErrorKind`]) and where ([`Span`]).

use super::expand::ExpandError;
use super::span::Span;

/// A Dockerfile that cannot be read, with the place it went wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// What is wrong (boxed: errors are rare, results are many).
    pub kind: Box<ErrorKind>,
    /// Where: the offending instruction, flag or word.
    pub span: Span,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.span.line, self.kind)
    }
}

/// The cause of a located error is the cause of its kind (an expansion error, say): the location
/// adds no level of its own to the chain.
impl std::error::Error for ParseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&*self.kind)
    }
}

impl ParseError {
    pub(crate) fn new(kind: ErrorKind, span: Span) -> Self {
        Self {
            kind: Box::new(kind),
            span,
        }
    }

    /// A line of advice for the reader, where one helps.
    pub fn hint(&self) -> Option<String> {
        self.kind.hint()
    }
}

/// Everything the front end can find wrong with a Dockerfile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    /// Nothing but blank lines, comments and directives.
    #[error("file with no instructions")]
    Empty,
    /// `# escape=x` with something other than `\` or `` ` ``.
    #[error("invalid escape token `{token}`: must be `\\` or `` ` ``")]
    InvalidEscape {
        /// The token given.
        token: String,
    },
    /// The same parser directive twice.
    #[error("only one `{name}` parser directive can be used")]
    DuplicateDirective {
        /// The directive.
        name: String,
    },
    /// A `# check=` directive that cannot be read.
    #[error("invalid check directive `{value}`: {reason}")]
    InvalidCheckDirective {
        /// The directive's value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A heredoc whose terminator never comes.
    #[error("unterminated heredoc `{name}`")]
    UnterminatedHeredoc {
        /// The delimiter looked for.
        name: String,
    },
    /// A heredoc delimiter the shell lexer cannot read.
    #[error("invalid heredoc delimiter `{word}`")]
    InvalidHeredoc {
        /// The word after `<<`.
        word: String,
        /// Why the lexer refused it.
        #[source]
        source: ExpandError,
    },
    /// A JSON array with something other than strings in it.
    #[error("when using JSON array syntax, arrays must be comprised of strings only")]
    JsonNotStringArray,
    /// A keyword that is no Dockerfile instruction.
    #[error("unknown instruction `{keyword}`{}", suggestion(suggested.as_deref()))]
    UnknownInstruction {
        /// The keyword as written.
        keyword: String,
        /// The closest instruction, if one is close.
        suggested: Option<String>,
    },
    /// A flag the instruction does not take.
    #[error("unknown flag `--{flag}` for {keyword}{}", suggestion(suggested.as_deref().map(|s| format!("--{s}")).as_deref()))]
    UnknownFlag {
        /// The instruction.
        keyword: String,
        /// The flag's name, without `--`.
        flag: String,
        /// The closest flag the instruction takes.
        suggested: Option<String>,
    },
    /// A flag that is not `--name[=value]`.
    #[error("flag `{flag}` should start with `--`")]
    MalformedFlag {
        /// The flag as written.
        flag: String,
    },
    /// A flag that takes a value, without one.
    #[error("missing a value on flag `--{flag}`")]
    MissingFlagValue {
        /// The flag's name.
        flag: String,
    },
    /// A flag given twice that may be given once.
    #[error("duplicate flag specified: `--{flag}`")]
    DuplicateFlag {
        /// The flag's name.
        flag: String,
    },
    /// A flag whose value is not of its kind (boolean, duration, number, choice).
    #[error("invalid value `{value}` for flag `--{flag}`: {reason}")]
    InvalidFlagValue {
        /// The flag's name.
        flag: String,
        /// The value given.
        value: String,
        /// What was expected.
        reason: String,
    },
    /// A `--mount` specification that cannot be read.
    #[error("invalid mount `{spec}`: {reason}")]
    InvalidMount {
        /// The value of `--mount`.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Too few or too many arguments.
    #[error("{keyword} {expected}")]
    Arguments {
        /// The instruction.
        keyword: String,
        /// What it takes (`requires exactly one argument`).
        expected: String,
    },
    /// ENV or LABEL written `KEY` alone, or `KEY=VALUE` mixed with a bare word.
    #[error("{keyword} `{word}` has no value: write `{keyword} {word}=value`")]
    MissingValue {
        /// The instruction.
        keyword: String,
        /// The word without `=`.
        word: String,
    },
    /// A stage name that BuildKit would refuse.
    #[error(
        "invalid name for build stage `{name}`: it must start with a letter and contain only letters, digits, `-`, `_` and `.`"
    )]
    InvalidStageName {
        /// The name given.
        name: String,
    },
    /// `COPY --from` with a variable only a stage defines.
    #[error(
        "variable expansion is not supported for --from (`{reference}`), define a new stage with FROM using ARG from global scope as a workaround"
    )]
    FromExpansion {
        /// The `--from` value as written.
        reference: String,
    },
    /// Two stages with one name.
    #[error("duplicate stage name `{name}` (first defined on line {first_line})")]
    DuplicateStageName {
        /// The name.
        name: String,
        /// Where it was first used.
        first_line: usize,
    },
    /// An instruction other than ARG before the first FROM.
    #[error("{keyword} before the first FROM: no build stage in current context")]
    NoStage {
        /// The instruction.
        keyword: String,
    },
    /// `--from` naming a stage that is defined later in the file.
    #[error(
        "`--from={reference}` refers to stage `{name}`, which is defined later, on line {line}"
    )]
    StageDefinedLater {
        /// The reference as written.
        reference: String,
        /// The stage.
        name: String,
        /// Where it is defined.
        line: usize,
    },
    /// `--from` naming a stage index that does not come before.
    #[error("`--from={index}` refers to no earlier stage: there {count} before this one", count = stages_before(*before))]
    StageIndexOutOfRange {
        /// The index given.
        index: usize,
        /// How many stages come before this instruction.
        before: usize,
    },
    /// `--from` naming no stage, when a stage of a similar name exists.
    #[error("unknown stage `{name}` (did you mean `{suggested}`?)")]
    UnknownStage {
        /// The name given.
        name: String,
        /// The stage it resembles.
        suggested: String,
    },
    /// A stage that copies from itself.
    #[error("stage `{name}` cannot copy from itself")]
    SelfReference {
        /// The stage.
        name: String,
    },
    /// An ONBUILD trigger that cannot be one.
    #[error("{trigger} isn't allowed as an ONBUILD trigger")]
    InvalidTrigger {
        /// The trigger's keyword.
        trigger: String,
    },
    /// A FROM whose image expands to nothing.
    #[error("base name `{base}` should not be blank")]
    BlankBaseName {
        /// The image as written.
        base: String,
    },
    /// Variable expansion failed.
    #[error("cannot expand `{word}`")]
    Expand {
        /// The word as written.
        word: String,
        /// What the expander said.
        #[source]
        source: ExpandError,
    },
    /// SHELL in shell form.
    #[error("SHELL requires the arguments to be in JSON form")]
    ShellNotJson,
    /// HEALTHCHECK with an unknown type.
    #[error("unknown type `{kind}` in HEALTHCHECK (try CMD)")]
    HealthcheckType {
        /// The type given.
        kind: String,
    },
}

fn suggestion(s: Option<&str>) -> String {
    s.map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default()
}

fn stages_before(n: usize) -> String {
    match n {
        0 => "are none".into(),
        1 => "is 1".into(),
        n => format!("are {n}"),
    }
}

impl ErrorKind {
    /// Advice for the reader, where it helps.
    pub fn hint(&self) -> Option<String> {
        Some(match self {
            Self::Empty => {
                "a Dockerfile needs at least a `FROM` line, such as `FROM scratch`".into()
            }
            Self::JsonNotStringArray => {
                "exec form is a flat JSON array of strings: `[\"executable\", \"arg\"]`".into()
            }
            Self::NoStage { .. } => {
                "only ARG may come before the first FROM; start the stage with `FROM image`".into()
            }
            Self::MissingValue { keyword, word } if keyword == "ENV" => {
                format!(
                    "to pass a value at build time, use `ARG {word}` and `--build-arg {word}=…`"
                )
            }
            Self::StageDefinedLater { name, .. } => {
                format!("move stage `{name}` above the instruction that uses it")
            }
            Self::UnterminatedHeredoc { name } => {
                format!("end the heredoc with a line that holds only `{name}`")
            }
            Self::ShellNotJson => "write it as `SHELL [\"/bin/sh\", \"-c\"]`".into(),
            _ => return None,
        })
    }
}
