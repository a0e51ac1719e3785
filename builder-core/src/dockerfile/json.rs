//! The JSON that `rbuild parse --format json` prints: a stable contract for editors and tools.
//!
//! ```json
//! {"directives": {"escape": "\\"},
//!  "instructions": [{"keyword": "RUN", "line": 3, "end_line": 3, "column": 1,
//!                    "flags": ["--mount=type=cache,target=/x"], "form": "shell",
//!                    "args": ["make"], "heredocs": []}]}
//! ```
//! `pairs` is present for ENV, LABEL and ARG; `trigger` for ONBUILD.

use std::collections::BTreeMap;

use super::ast::{Dockerfile, Form, Node};

#[derive(serde::Serialize)]
struct File<'a> {
    directives: BTreeMap<&'static str, &'a str>,
    instructions: Vec<Instruction<'a>>,
    warnings: Vec<Warning<'a>>,
}

#[derive(serde::Serialize)]
struct Instruction<'a> {
    keyword: &'a str,
    line: usize,
    end_line: usize,
    column: usize,
    flags: Vec<&'a str>,
    form: Form,
    args: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    pairs: Option<&'a [(String, Option<String>)]>,
    heredocs: Vec<Heredoc<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    trigger: Option<Box<Instruction<'a>>>,
}

#[derive(serde::Serialize)]
struct Heredoc<'a> {
    name: &'a str,
    content: &'a str,
    expand: bool,
    chomp: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    fd: Option<u32>,
    line: usize,
}

#[derive(serde::Serialize)]
struct Warning<'a> {
    message: &'a str,
    line: usize,
}

fn instruction(n: &Node) -> Instruction<'_> {
    Instruction {
        keyword: &n.keyword,
        line: n.span.line,
        end_line: n.span.end_line,
        column: n.span.col,
        flags: n.flags.iter().map(|f| f.text.as_str()).collect(),
        form: n.form,
        args: &n.args,
        pairs: n.pairs.as_deref(),
        heredocs: n
            .heredocs
            .iter()
            .map(|h| Heredoc {
                name: &h.name,
                content: &h.content,
                expand: h.expand,
                chomp: h.chomp,
                fd: h.fd,
                line: h.span.line,
            })
            .collect(),
        trigger: n.trigger.as_deref().map(|t| Box::new(instruction(t))),
    }
}

impl Dockerfile {
    /// The file in the JSON contract of `rbuild parse --format json`.
    pub fn to_json(&self) -> serde_json::Value {
        let d = &self.directives;
        let directives = [
            ("syntax", &d.syntax),
            ("escape", &d.escape),
            ("check", &d.check),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k, v.value.as_str())))
        .collect();
        let file = File {
            directives,
            instructions: self.instructions.iter().map(instruction).collect(),
            warnings: self
                .warnings
                .iter()
                .map(|w| Warning {
                    message: &w.message,
                    line: w.span.line,
                })
                .collect(),
        };
        // The view holds only strings, numbers, booleans and lists: serializing cannot fail.
        serde_json::to_value(file).unwrap_or(serde_json::Value::Null)
    }
}
