//! Lines → [`Node`]s, the way BuildKit's `frontend/dockerfile/parser` reads a file: directives,
//! comments, continuations (comment and blank lines inside them skipped), a trailing escape at
//! the end of the file, exec and shell forms, flags, and heredoc bodies.

use std::ops::Range;
use std::sync::LazyLock;

use super::ast::{Dockerfile, Flag, Form, Heredoc, Node, Warning};
use super::directive::DirectiveParser;
use super::error::{ErrorKind, ParseError};
use super::expand::{Lexer, NoEnv};
use super::keyword::Keyword;
use super::span::LineIndex;

/// Parses a Dockerfile's text. This is the syntax only, as BuildKit's parser gives it: a file with
/// no FROM parses; [`super::check`] runs the semantic pass.
pub fn parse(src: &str) -> Result<Dockerfile, ParseError> {
    Parser::new(src).run()
}

/// A logical line: the text with continuations joined, and where each piece came from.
#[derive(Debug, Default)]
struct Logical {
    text: String,
    /// `(offset in text, offset in source)` of each piece.
    pieces: Vec<(usize, usize)>,
}

impl Logical {
    fn push(&mut self, s: &str, src: usize) {
        self.pieces.push((self.text.len(), src));
        self.text.push_str(s);
    }

    fn src(&self, off: usize) -> usize {
        let i = self.pieces.partition_point(|&(j, _)| j <= off).max(1) - 1;
        let (j, s) = self.pieces[i];
        s + off - j
    }

    fn src_range(&self, r: &Range<usize>) -> Range<usize> {
        let start = self.src(r.start);
        let end = if r.end > r.start {
            self.src(r.end - 1) + 1
        } else {
            start
        };
        start..end
    }
}

/// The source as BuildKit's scanner gives it: lines with their newline.
struct Lines<'a> {
    src: &'a str,
    pos: usize,
}

impl<'a> Iterator for Lines<'a> {
    type Item = (usize, &'a str);

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.src.len() {
            return None;
        }
        let start = self.pos;
        let end = self.src[start..]
            .find('\n')
            .map_or(self.src.len(), |i| start + i + 1);
        self.pos = end;
        Some((start, &self.src[start..end]))
    }
}

fn trim_newline(s: &str) -> &str {
    let s = s.strip_suffix('\n').unwrap_or(s);
    s.strip_suffix('\r').unwrap_or(s)
}

fn is_comment(line: &str) -> bool {
    trim_newline(line).trim_start().starts_with('#')
}

fn is_space_or_tab(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// BuildKit splits a command from its arguments on these only.
fn is_split_space(c: char) -> bool {
    matches!(c, '\t' | '\u{b}' | '\u{c}' | '\r' | ' ')
}

struct Parser<'a> {
    src: &'a str,
    index: LineIndex<'a>,
    lines: std::iter::Peekable<Lines<'a>>,
    directives: DirectiveParser,
    escape: char,
    current_line: usize,
}

impl<'a> Parser<'a> {
    fn new(src: &'a str) -> Self {
        Self {
            src,
            index: LineIndex::new(src),
            lines: Lines { src, pos: 0 }.peekable(),
            directives: DirectiveParser::default(),
            escape: '\\',
            current_line: 0,
        }
    }

    fn error(&self, kind: ErrorKind, range: Range<usize>) -> ParseError {
        ParseError::new(kind, self.index.span(range))
    }

    /// BuildKit's `processLine`: trims the newline (and leading space for a first line), feeds
    /// the directive parser, and blanks comment lines. Gives the text and its source offset.
    fn process_line(
        &mut self,
        off: usize,
        raw: &'a str,
        strip_left: bool,
    ) -> Result<(&'a str, usize), ParseError> {
        let mut token = trim_newline(raw);
        let mut off = off;
        if strip_left {
            let trimmed = token.trim_start();
            off += token.len() - trimmed.len();
            token = trimmed;
        }
        let index = &self.index;
        let span = || index.span(off..off + token.len());
        self.directives.parse_line(token, span)?;
        self.escape = self.directives.directives.escape_char();
        if is_comment(token) {
            return Ok(("", off));
        }
        Ok((token, off))
    }

    /// Strips a line-continuation escape (with trailing blanks); `true` when the line ends here.
    /// As current BuildKit reads it (`([^\\])\\[ \t]*$|^\\[ \t]*$`): the last escape continues
    /// the line only when no escape comes right before it, so `a\\b\\` (an escaped escape) ends
    /// its line, and so does `x\\\`, which BuildKit's expression cannot tell from it.
    fn trim_continuation(&self, line: &'a str) -> (&'a str, bool) {
        let body = line.trim_end_matches(is_space_or_tab);
        match body.strip_suffix(self.escape) {
            Some(rest) if !rest.ends_with(self.escape) => (rest, false),
            _ => (line, true),
        }
    }

    fn run(mut self) -> Result<Dockerfile, ParseError> {
        let mut instructions = Vec::new();
        let mut warnings = Vec::new();
        let mut comments: Vec<String> = Vec::new();
        while let Some((mut off, mut raw)) = self.lines.next() {
            if self.current_line == 0 {
                if let Some(rest) = raw.strip_prefix('\u{feff}') {
                    off += 3;
                    raw = rest;
                }
            }
            if is_comment(raw) {
                let comment = trim_newline(raw).trim_start()[1..].trim();
                if comment.is_empty() {
                    comments.clear();
                } else {
                    comments.push(comment.to_owned());
                }
            }
            let (first, first_off) = self.process_line(off, raw, true)?;
            self.current_line += 1;
            let start_line = self.current_line;
            let (piece, mut end) = self.trim_continuation(first);
            if end && piece.is_empty() {
                continue;
            }
            let mut logical = Logical::default();
            logical.push(piece, first_off);
            let mut empty_continuation = false;
            while !end {
                let Some((off, raw)) = self.lines.next() else {
                    break;
                };
                let (line, line_off) = self.process_line(off, raw, false)?;
                self.current_line += 1;
                if is_comment(raw) {
                    continue;
                }
                if line.trim_start().is_empty() {
                    empty_continuation = true;
                    continue;
                }
                let (piece, e) = self.trim_continuation(line);
                end = e;
                logical.push(piece, line_off);
            }
            if empty_continuation {
                warnings.push(Warning {
                    message: "empty continuation line; empty continuation lines will become errors in a future release".into(),
                    span: self.index.lines(start_line, self.current_line),
                });
            }
            let text = logical.text.clone();
            let mut node =
                self.node_from_line(&logical, 0..text.len(), std::mem::take(&mut comments))?;
            // ONBUILD is unwrapped first: `ONBUILD RUN <<EOF` opens a heredoc, as in BuildKit.
            let holder = match node.trigger.as_deref_mut() {
                Some(trigger) if node.keyword == "ONBUILD" => trigger,
                _ => &mut node,
            };
            if holder.form == Form::Shell
                && matches!(holder.keyword.as_str(), "ADD" | "COPY" | "RUN")
                && text.contains("<<")
            {
                holder.heredocs = self.read_heredocs(&text, &logical, start_line)?;
            }
            let keyword_start = node.keyword_span.range.start;
            let mut span = self.index.lines(start_line, self.current_line);
            span.range.start = keyword_start;
            span.col = node.keyword_span.col;
            node.span = span;
            instructions.push(node);
        }
        if instructions.is_empty() {
            return Err(self.error(ErrorKind::Empty, 0..0));
        }
        Ok(Dockerfile {
            escape: self.escape,
            directives: self.directives.directives,
            instructions,
            warnings,
        })
    }

    fn read_heredocs(
        &mut self,
        line: &str,
        logical: &Logical,
        start_line: usize,
    ) -> Result<Vec<Heredoc>, ParseError> {
        let mut out = Vec::new();
        for found in heredocs_in_line(line) {
            let (name, chomp, expand, fd) = found.map_err(|(word, source)| {
                let r = logical.src_range(&(0..line.len()));
                self.error(ErrorKind::InvalidHeredoc { word, source }, r)
            })?;
            let body_start = self.lines.peek().map_or(self.src.len(), |&(o, _)| o);
            let first_body_line = self.current_line + 1;
            let mut content = String::new();
            let mut terminated = false;
            for (_, raw) in self.lines.by_ref() {
                self.current_line += 1;
                let mut candidate = trim_newline(raw);
                if chomp {
                    candidate = candidate.trim_start_matches('\t');
                }
                if candidate == name {
                    terminated = true;
                    break;
                }
                content.push_str(raw);
            }
            if !terminated {
                return Err(ParseError::new(
                    ErrorKind::UnterminatedHeredoc { name },
                    self.index
                        .lines(start_line, self.current_line.max(start_line)),
                ));
            }
            if chomp {
                content = strip_leading_tabs(&content);
            }
            let mut span = self
                .index
                .lines(first_body_line.min(self.current_line), self.current_line);
            span.range.start = span.range.start.min(body_start);
            out.push(Heredoc {
                name,
                content,
                expand,
                chomp,
                fd,
                span,
            });
        }
        Ok(out)
    }

    /// BuildKit's `newNodeFromLine` on `logical.text[range]`.
    fn node_from_line(
        &self,
        logical: &Logical,
        range: Range<usize>,
        comments: Vec<String>,
    ) -> Result<Node, ParseError> {
        use Keyword as K;
        let text = &logical.text;
        let line = &text[range.clone()];
        // splitCommand: trim, then split the keyword from the rest on the first blanks.
        let lead = line.len() - line.trim_start().len();
        let trimmed = line.trim();
        let cmd_start = range.start + lead;
        let cmd_len = trimmed.find(is_split_space).unwrap_or(trimmed.len());
        let cmd = &trimmed[..cmd_len];
        let after_cmd = &trimmed[cmd_len..];
        let rest_start = cmd_start
            + cmd_len
            + (after_cmd.len() - after_cmd.trim_start_matches(is_split_space).len());
        let rest_end = cmd_start + trimmed.len();
        let span_of = |r: Range<usize>| self.index.span(logical.src_range(&r));

        let (flags, args_off) = extract_flags(&text[rest_start..rest_end]);
        let flags = flags
            .into_iter()
            .map(|(flag, r)| Flag {
                text: flag,
                span: span_of(rest_start + r.start..rest_start + r.end),
            })
            .collect();
        let args_raw = &text[rest_start + args_off..rest_end];
        let args_lead = args_raw.len() - args_raw.trim_start().len();
        let args = args_raw.trim();
        let args_start = rest_start + args_off + args_lead;
        let args_range = args_start..args_start + args.len();

        let keyword = Keyword::from_word(cmd);
        let mut node = Node {
            keyword: keyword
                .as_ref()
                .map_or_else(|| cmd.to_ascii_uppercase(), |k| k.as_str().to_owned()),
            keyword_span: span_of(cmd_start..cmd_start + cmd.len()),
            flags,
            form: Form::Shell,
            args: Vec::new(),
            args_span: span_of(args_range.clone()),
            pairs: None,
            heredocs: Vec::new(),
            trigger: None,
            original: line.trim().to_owned(),
            comments,
            span: span_of(cmd_start..rest_end),
        };
        let err = |kind| ParseError::new(kind, span_of(args_range.clone()));
        match keyword {
            Some(K::Add | K::Copy | K::Volume) => match parse_json(args).map_err(err)? {
                Some(list) => {
                    node.form = Form::Exec;
                    node.args = list;
                }
                None => node.args = split_whitespace(args),
            },
            Some(K::Cmd | K::Entrypoint | K::Run | K::Shell) => {
                if let Some((form, list)) = parse_maybe_json(args).map_err(err)? {
                    node.form = form;
                    node.args = list;
                }
            }
            Some(K::Arg) => {
                let words = parse_words(args, self.escape);
                node.pairs = Some(
                    words
                        .iter()
                        .map(|w| match w.split_once('=') {
                            Some((k, v)) => (k.to_owned(), Some(v.to_owned())),
                            None => (w.clone(), None),
                        })
                        .collect(),
                );
                node.args = words;
            }
            Some(K::Env | K::Label) => {
                let (words, pairs) =
                    parse_name_val(args, node.keyword.as_str(), self.escape).map_err(err)?;
                node.args = words;
                node.pairs = Some(pairs.into_iter().map(|(k, v)| (k, Some(v))).collect());
            }
            Some(K::Expose | K::From) | None => node.args = split_whitespace(args),
            Some(K::Healthcheck) => {
                let typ_len = args.find(char::is_whitespace).unwrap_or(args.len());
                if typ_len > 0 {
                    node.args.push(args[..typ_len].to_owned());
                    if let Some((form, list)) =
                        parse_maybe_json(args[typ_len..].trim_start()).map_err(err)?
                    {
                        node.form = form;
                        node.args.extend(list);
                    }
                }
            }
            Some(K::Maintainer | K::Stopsignal | K::User | K::Workdir) => {
                if !args.is_empty() {
                    node.args.push(args.to_owned());
                }
            }
            Some(K::Onbuild) => {
                if !args.is_empty() {
                    node.args.push(args.to_owned());
                    let trigger = self.node_from_line(logical, args_range.clone(), Vec::new())?;
                    node.trigger = Some(Box::new(trigger));
                }
            }
        }
        Ok(node)
    }
}

fn split_whitespace(s: &str) -> Vec<String> {
    s.split(is_split_space)
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

fn strip_leading_tabs(content: &str) -> String {
    content
        .split_inclusive('\n')
        .map(|l| l.trim_start_matches('\t'))
        .collect()
}

/// BuildKit's `parseJSON`: `Ok(None)` when the text is not a JSON array (it is then read as shell
/// form), an error when it is an array of something other than strings.
fn parse_json(s: &str) -> Result<Option<Vec<String>>, ErrorKind> {
    let s = s.trim_start();
    if !s.starts_with('[') {
        return Ok(None);
    }
    let Ok(values) = serde_json::from_str::<Vec<serde_json::Value>>(s) else {
        return Ok(None);
    };
    values
        .into_iter()
        .map(|v| match v {
            serde_json::Value::String(s) => Ok(s),
            _ => Err(ErrorKind::JsonNotStringArray),
        })
        .collect::<Result<_, _>>()
        .map(Some)
}

/// BuildKit's `parseMaybeJSON`: exec form, or the whole text as one shell-form argument.
fn parse_maybe_json(s: &str) -> Result<Option<(Form, Vec<String>)>, ErrorKind> {
    if s.is_empty() {
        return Ok(None);
    }
    Ok(Some(match parse_json(s)? {
        Some(list) => (Form::Exec, list),
        None => (Form::Shell, vec![s.to_owned()]),
    }))
}

/// BuildKit's `extractBuilderFlags`: the leading `--flags` (quotes removed) with their ranges,
/// and the offset where the arguments start.
fn extract_flags(line: &str) -> (Vec<(String, Range<usize>)>, usize) {
    #[derive(PartialEq)]
    enum Phase {
        Spaces,
        Word,
        Quote(char),
    }
    let chars: Vec<(usize, char)> = line.char_indices().collect();
    let mut flags = Vec::new();
    let mut phase = Phase::Spaces;
    let mut word = String::new();
    let mut word_start = 0;
    let mut blank_ok = false;
    let mut i = 0;
    loop {
        let Some(&(pos, ch)) = chars.get(i) else {
            if phase != Phase::Spaces && word != "--" && (blank_ok || !word.is_empty()) {
                flags.push((word, word_start..line.len()));
            }
            return (flags, line.len());
        };
        match phase {
            Phase::Spaces => {
                if ch.is_whitespace() {
                    i += 1;
                    continue;
                }
                if ch != '-' || chars.get(i + 1).map(|c| c.1) != Some('-') {
                    return (flags, pos);
                }
                phase = Phase::Word;
                word_start = pos;
            }
            Phase::Word => {
                if ch.is_whitespace() {
                    phase = Phase::Spaces;
                    if word == "--" {
                        return (flags, pos);
                    }
                    if blank_ok || !word.is_empty() {
                        flags.push((std::mem::take(&mut word), word_start..pos));
                    }
                    word.clear();
                    blank_ok = false;
                    i += 1;
                    continue;
                }
                if ch == '\'' || ch == '"' {
                    phase = Phase::Quote(ch);
                    blank_ok = true;
                    i += 1;
                    continue;
                }
                if ch == '\\' {
                    i += 1;
                    match chars.get(i) {
                        Some(&(_, c)) => word.push(c),
                        None => continue,
                    }
                    i += 1;
                    continue;
                }
                word.push(ch);
                i += 1;
            }
            Phase::Quote(q) => {
                if ch == q {
                    phase = Phase::Word;
                    i += 1;
                    continue;
                }
                if ch == '\\' {
                    i += 1;
                    match chars.get(i) {
                        Some(&(_, c)) => word.push(c),
                        None => phase = Phase::Word,
                    }
                    i += 1;
                    continue;
                }
                word.push(ch);
                i += 1;
            }
        }
    }
}

/// BuildKit's `parseWords`: words split on blanks, quotes and escapes kept for later expansion.
fn parse_words(rest: &str, escape: char) -> Vec<String> {
    let chars: Vec<char> = rest.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut quote: Option<char> = None;
    let mut blank_ok = false;
    let mut i = 0;
    while i < chars.len() {
        let ch = chars[i];
        i += 1;
        if !in_word && quote.is_none() {
            if ch.is_whitespace() {
                continue;
            }
            in_word = true;
        }
        let single_quoted = quote == Some('\'');
        match quote {
            Some(q) if ch == q => quote = None,
            None if ch.is_whitespace() => {
                in_word = false;
                if blank_ok || !word.is_empty() {
                    words.push(std::mem::take(&mut word));
                }
                blank_ok = false;
                continue;
            }
            None if ch == '\'' || ch == '"' => {
                quote = Some(ch);
                blank_ok = true;
            }
            _ => {}
        }
        // The escape character keeps the next character in the word, even a quote or a blank;
        // it works inside double quotes, never inside single ones, and is dropped at the end.
        if ch == escape && !single_quoted {
            if i == chars.len() {
                quote = None;
                continue;
            }
            word.push(ch);
            word.push(chars[i]);
            i += 1;
            continue;
        }
        word.push(ch);
    }
    if (in_word || quote.is_some()) && (blank_ok || !word.is_empty()) {
        words.push(word);
    }
    words
}

type NameVals = (Vec<String>, Vec<(String, String)>);

/// BuildKit's `parseNameVal` for ENV and LABEL: `KEY value…` (old form) or `K=V K2="V 2"`.
fn parse_name_val(rest: &str, keyword: &str, escape: char) -> Result<NameVals, ErrorKind> {
    let words = parse_words(rest, escape);
    let Some(first) = words.first() else {
        return Ok((Vec::new(), Vec::new()));
    };
    if !first.contains('=') {
        let mut parts = rest.splitn(2, is_split_space);
        let key = parts.next().unwrap_or_default();
        let value = parts
            .next()
            .map(|v| v.trim_start_matches(is_split_space))
            .filter(|v| !v.is_empty());
        let Some(value) = value else {
            return Err(ErrorKind::MissingValue {
                keyword: keyword.to_owned(),
                word: key.to_owned(),
            });
        };
        let pair = (key.to_owned(), value.to_owned());
        return Ok((vec![pair.0.clone(), pair.1.clone()], vec![pair]));
    }
    let mut pairs = Vec::with_capacity(words.len());
    for w in &words {
        let Some((k, v)) = w.split_once('=') else {
            return Err(ErrorKind::MissingValue {
                keyword: keyword.to_owned(),
                word: w.clone(),
            });
        };
        pairs.push((k.to_owned(), v.to_owned()));
    }
    Ok((words, pairs))
}

static HEREDOC: LazyLock<regex::Regex> = LazyLock::new(|| {
    // invariant: a constant, valid pattern
    regex::Regex::new(r"^(\d*)<<(-?)\s*([^<]*)$").expect("valid regex")
});

type FoundHeredoc = Result<(String, bool, bool, Option<u32>), (String, super::expand::ExpandError)>;

/// BuildKit's `heredocsFromLine`: the `<<WORD` words of a line, as (name, chomp, expand, fd).
fn heredocs_in_line(line: &str) -> Vec<FoundHeredoc> {
    let mut raw = Lexer::new('\\');
    raw.raw_quotes = true;
    raw.raw_escapes = true;
    raw.skip_unset_env = true;
    let Ok(words) = raw.words(line, &NoEnv) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for word in words {
        let Some(caps) = HEREDOC.captures(&word) else {
            continue;
        };
        let rest = &caps[3];
        if rest.is_empty() {
            continue;
        }
        let fd = caps[1].parse().ok();
        let chomp = &caps[2] == "-";
        let mut lex = Lexer::new('\\');
        lex.skip_unset_env = true;
        let cooked = match lex.words(rest, &NoEnv) {
            Ok(w) => w,
            Err(e) => {
                out.push(Err((rest.to_owned(), e)));
                continue;
            }
        };
        if cooked.len() != 1 {
            continue;
        }
        lex.raw_quotes = true;
        let Ok(raw_words) = lex.words(rest, &NoEnv) else {
            continue;
        };
        if raw_words.len() != 1 {
            continue;
        }
        let quotes = |s: &str| s.matches(['\'', '"']).count();
        let expand = quotes(&cooked[0]) == quotes(&raw_words[0]);
        out.push(Ok((cooked[0].clone(), chomp, expand, fd)));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(src: &str) -> Node {
        let mut df = parse(src).unwrap();
        assert_eq!(df.instructions.len(), 1, "{src:?}");
        df.instructions.remove(0)
    }

    #[test]
    fn an_escaped_escape_at_the_end_is_not_a_continuation() {
        let src = "FROM busybox\nENV C a\\\\b\\\\\nRUN echo \"C=$C\"\nENV D x\\\\\\\nLABEL y=1\nRUN a \\\n b\n";
        let df = parse(src).unwrap();
        let lines: Vec<&str> = df
            .instructions
            .iter()
            .map(|i| i.original.as_str())
            .collect();
        assert_eq!(
            lines,
            [
                "FROM busybox",
                "ENV C a\\\\b\\\\",
                "RUN echo \"C=$C\"",
                "ENV D x\\\\\\",
                "LABEL y=1",
                "RUN a  b"
            ]
        );
    }

    #[test]
    fn continuation_joins_as_buildkit() {
        let n = one("RUN echo a \\\n    b \\\n# comment\n\n  c\n");
        assert_eq!(n.args, ["echo a     b   c"]);
        assert_eq!((n.span.line, n.span.end_line), (1, 5));
    }

    #[test]
    fn trailing_escape_at_end_of_file() {
        let n = one("RUN echo hi \\");
        assert_eq!(n.args, ["echo hi"]);
        let n = one("RUN echo hi \\\n");
        assert_eq!(n.args, ["echo hi"]);
    }

    #[test]
    fn flags_and_args_have_spans() {
        let src = "COPY --from=build  --chown=1:1 a b";
        let n = one(src);
        assert_eq!(n.flags.len(), 2);
        assert_eq!(&src[n.flags[1].span.range.clone()], "--chown=1:1");
        assert_eq!(n.flags[1].span.col, 20);
        assert_eq!(&src[n.args_span.range.clone()], "a b");
    }

    #[test]
    fn quoted_flag_values_lose_quotes() {
        let n = one(r#"RUN --mount="type=bind,target=/a b" true"#);
        assert_eq!(n.flags[0].text, "--mount=type=bind,target=/a b");
        assert_eq!(n.args, ["true"]);
    }

    #[test]
    fn invalid_json_is_shell_form() {
        let n = one(r#"CMD ["a", "b""#);
        assert_eq!(n.form, Form::Shell);
        let err = parse(r#"CMD ["a", ["b"]]"#).unwrap_err();
        assert_eq!(*err.kind, ErrorKind::JsonNotStringArray);
    }

    #[test]
    fn onbuild_trigger_opens_a_heredoc() {
        let n = one("ONBUILD RUN <<EOF\necho hi\nEOF\n");
        let trigger = n.trigger.unwrap();
        assert_eq!(trigger.heredocs.len(), 1);
        assert_eq!(trigger.heredocs[0].content, "echo hi\n");
        assert_eq!((n.span.line, n.span.end_line), (1, 3));
    }

    #[test]
    fn words_keep_quotes_and_escapes() {
        assert_eq!(
            parse_words(r#"a="b c" d\ e 'f g'"#, '\\'),
            [r#"a="b c""#, r"d\ e", "'f g'"]
        );
        assert_eq!(parse_words(r#"x="" "#, '\\'), [r#"x="""#]);
    }

    #[test]
    fn heredoc_words() {
        let found: Vec<_> = heredocs_in_line(r#"RUN <<EOF 3<<-"END" cat <<<no <<'X'"#)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        let spaced: Vec<_> = heredocs_in_line("RUN cat << EOF <<- 'X' <<$NAME")
            .into_iter()
            .map(Result::unwrap)
            .collect();
        // Blanks may follow `<<` but not `<<-` (BuildKit 0.22+ and its open PR 6822).
        assert_eq!(
            spaced,
            [
                ("EOF".to_owned(), false, true, None),
                ("$NAME".to_owned(), false, true, None)
            ]
        );
        assert_eq!(
            found,
            [
                ("EOF".to_owned(), false, true, None),
                ("END".to_owned(), true, false, Some(3)),
                ("X".to_owned(), false, false, None),
            ]
        );
    }
}
