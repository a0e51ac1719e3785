//! Plain-text dumps of a parsed and of a checked file, for `rbuild parse --format text` and the
//! golden tests.

use std::fmt::Write;

use super::ast::{Dockerfile, Node};
use super::stage::Checked;

fn node_line(out: &mut String, n: &Node, indent: &str) {
    let flags: Vec<&str> = n.flags.iter().map(|f| f.text.as_str()).collect();
    let _ = write!(out, "{indent}{}:{} {}", n.span.line, n.span.col, n.keyword);
    if !flags.is_empty() {
        let _ = write!(out, " flags={flags:?}");
    }
    let _ = write!(out, " {:?} {:?}", n.form, n.args);
    if let Some(pairs) = &n.pairs {
        let _ = write!(out, " pairs={pairs:?}");
    }
    out.push('\n');
    for h in &n.heredocs {
        let _ = writeln!(
            out,
            "{indent}  heredoc {:?} expand={} chomp={} lines {}-{}: {:?}",
            h.name, h.expand, h.chomp, h.span.line, h.span.end_line, h.content
        );
    }
    if let Some(t) = &n.trigger {
        node_line(out, t, &format!("{indent}  trigger "));
    }
}

impl Dockerfile {
    /// One line per instruction: position, keyword, flags, form, arguments; heredocs below.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        let d = &self.directives;
        for (name, v) in [
            ("syntax", &d.syntax),
            ("escape", &d.escape),
            ("check", &d.check),
        ] {
            if let Some(v) = v {
                let _ = writeln!(out, "# {name}={} (line {})", v.value, v.span.line);
            }
        }
        for n in &self.instructions {
            node_line(&mut out, n, "");
        }
        for w in &self.warnings {
            let _ = writeln!(out, "warning: line {}: {}", w.span.line, w.message);
        }
        out
    }
}

impl Checked {
    /// Global ARGs, then each stage with its base, dependencies and typed instructions.
    pub fn dump(&self) -> String {
        let mut out = String::new();
        for g in &self.global_args {
            let _ = writeln!(
                out,
                "global ARG {} default={:?} value={:?} (line {})",
                g.decl.name, g.decl.default, g.value, g.span.line
            );
        }
        for s in &self.stages {
            let _ = writeln!(
                out,
                "stage {} {:?}: FROM {:?} -> {:?} platform={:?} (lines {}-{})",
                s.index,
                s.name,
                s.base.written,
                s.base.source,
                s.platform,
                s.span.line,
                s.span.end_line
            );
            for d in &s.dependencies {
                let _ = writeln!(out, "  needs {:?} (line {})", d.source, d.span.line);
            }
            for (name, value) in &s.inherited_args {
                let _ = writeln!(out, "  inherits ARG {name}={value:?}");
            }
            for i in &s.instructions {
                let _ = writeln!(out, "  {}-{} {:?}", i.span.line, i.span.end_line, i.command);
            }
        }
        out
    }
}
