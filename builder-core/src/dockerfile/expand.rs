//! Variable expansion and word splitting, as BuildKit's `frontend/dockerfile/shell` lexer does it.
//!
//! Supported: `$a ${a} ${a:-b} ${a-b} ${a:+b} ${a+b} ${a:?msg} ${a?msg}`, the pattern forms
//! `${a#p} ${a##p} ${a%p} ${a%%p} ${a/p/r} ${a//p/r}`, single and double quotes, the escape
//! character (`\` or `` ` ``) and word splitting of unquoted expansions. The behaviour is checked
//! row by row against BuildKit's own tables (`tests/conformance.rs`).

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Where expansion looks variables up.
pub trait Env {
    /// The value of `name`, or `None` when it is not set (set-but-empty is `Some("")`).
    fn lookup(&self, name: &str) -> Option<&str>;
}

impl<S: std::hash::BuildHasher> Env for HashMap<String, String, S> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

impl Env for BTreeMap<String, String> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
}

/// An ordered list of `(name, value)`; a later entry wins, as with repeated `ENV`.
impl Env for [(String, String)] {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.iter()
            .rev()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

impl Env for Vec<(String, String)> {
    fn lookup(&self, name: &str) -> Option<&str> {
        self.as_slice().lookup(name)
    }
}

/// No variables at all.
pub struct NoEnv;

impl Env for NoEnv {
    fn lookup(&self, _name: &str) -> Option<&str> {
        None
    }
}

/// What went wrong while expanding a word.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExpandError {
    /// `${a` without its closing brace.
    #[error("syntax error: missing `}}`")]
    MissingBrace,
    /// `${}`, `${:}`, `${{a}`.
    #[error("syntax error: bad substitution")]
    BadSubstitution,
    /// `${a/p` without the `/` that ends the pattern.
    #[error("syntax error: missing `/` in `${{}}`")]
    MissingSlash,
    /// `${a:=b}`, `${a:#b}` and other modifiers BuildKit does not take.
    #[error("unsupported modifier `{modifier}` in substitution")]
    UnsupportedModifier {
        /// The modifier as written (`:=`).
        modifier: String,
    },
    /// A quote or `${…}` that is never closed.
    #[error("unexpected end of statement while looking for matching {what}")]
    Unterminated {
        /// `single-quote`, `double-quote` or the character looked for.
        what: String,
    },
    /// `${a?msg}` / `${a:?msg}` on an unset (or empty) variable.
    #[error("`{name}`: {message}")]
    Required {
        /// The variable.
        name: String,
        /// The message from the Dockerfile, or the default one.
        message: String,
    },
    /// A `#`, `%` or `/` pattern that cannot be used.
    #[error("invalid pattern `{pattern}` in substitution: {reason}")]
    InvalidPattern {
        /// The pattern as written.
        pattern: String,
        /// What is wrong with it.
        reason: String,
    },
}

/// The result of expanding one word.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Expanded {
    /// The word with quotes removed and variables substituted (BuildKit's `ProcessWord`).
    pub word: String,
    /// The same input split into words (BuildKit's `ProcessWords`).
    pub words: Vec<String>,
    /// Variables that were looked up and found.
    pub matched: BTreeSet<String>,
    /// Variables that were looked up and not set.
    pub unmatched: BTreeSet<String>,
}

/// A configured expander. [`Lexer::new`] gives BuildKit's defaults for a Dockerfile.
#[derive(Debug, Clone, Copy)]
pub struct Lexer {
    escape: char,
    /// Keep quote characters in the output.
    pub raw_quotes: bool,
    /// Keep escape characters in the output.
    pub raw_escapes: bool,
    /// Leave references to unset variables as written (`$x`, `${x:-y}`).
    pub skip_unset_env: bool,
    /// Treat quotes as ordinary characters (heredoc bodies: only `$` is special).
    pub skip_process_quotes: bool,
}

impl Lexer {
    /// A lexer with the given escape character (`\` or `` ` ``).
    pub fn new(escape: char) -> Self {
        Self {
            escape,
            raw_quotes: false,
            raw_escapes: false,
            skip_unset_env: false,
            skip_process_quotes: false,
        }
    }

    /// Expands `input`, giving both the single word and the split words.
    pub fn expand(&self, input: &str, env: &(impl Env + ?Sized)) -> Result<Expanded, ExpandError> {
        let mut sw = ShellWord {
            chars: input.chars().collect(),
            pos: 0,
            env: &|name| env.lookup(name).map(str::to_owned),
            escape: self.escape,
            raw_quotes: self.raw_quotes,
            raw_escapes: self.raw_escapes,
            skip_unset_env: self.skip_unset_env,
            skip_process_quotes: self.skip_process_quotes,
            matched: BTreeSet::new(),
            unmatched: BTreeSet::new(),
        };
        let raw = sw.raw_escapes;
        let (word, words) = sw.process_stop_on(None, raw)?;
        Ok(Expanded {
            word,
            words,
            matched: sw.matched,
            unmatched: sw.unmatched,
        })
    }

    /// BuildKit's `ProcessWord`: one word, quotes removed, variables substituted.
    pub fn word(&self, input: &str, env: &(impl Env + ?Sized)) -> Result<String, ExpandError> {
        self.expand(input, env).map(|e| e.word)
    }

    /// BuildKit's `ProcessWords`: the input split into words as the shell would.
    pub fn words(
        &self,
        input: &str,
        env: &(impl Env + ?Sized),
    ) -> Result<Vec<String>, ExpandError> {
        self.expand(input, env).map(|e| e.words)
    }
}

#[derive(Default)]
struct Words {
    current: String,
    done: Vec<String>,
    in_word: bool,
}

impl Words {
    fn add_char(&mut self, ch: char) {
        if ch.is_whitespace() {
            if self.in_word && !self.current.is_empty() {
                self.done.push(std::mem::take(&mut self.current));
                self.in_word = false;
            }
        } else {
            self.add_raw_char(ch);
        }
    }

    fn add_raw_char(&mut self, ch: char) {
        self.current.push(ch);
        self.in_word = true;
    }

    fn add_string(&mut self, s: &str) {
        for ch in s.chars() {
            self.add_char(ch);
        }
    }

    fn add_raw_string(&mut self, s: &str) {
        self.current.push_str(s);
        self.in_word = true;
    }

    fn finish(mut self) -> Vec<String> {
        if !self.current.is_empty() {
            self.done.push(self.current);
        }
        self.done
    }
}

type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

struct ShellWord<'a> {
    chars: Vec<char>,
    pos: usize,
    env: Lookup<'a>,
    escape: char,
    raw_quotes: bool,
    raw_escapes: bool,
    skip_unset_env: bool,
    skip_process_quotes: bool,
    matched: BTreeSet<String>,
    unmatched: BTreeSet<String>,
}

impl ShellWord<'_> {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn next(&mut self) -> Option<char> {
        let ch = self.peek();
        if ch.is_some() {
            self.pos += 1;
        }
        ch
    }

    fn get_env(&mut self, name: &str) -> Option<String> {
        let value = (self.env)(name);
        if value.is_some() {
            self.matched.insert(name.to_owned());
        } else {
            self.unmatched.insert(name.to_owned());
        }
        value
    }

    /// Reads up to `stop` (consumed) or the end of input; `None` means the end of input.
    fn process_stop_on(
        &mut self,
        stop: Option<char>,
        raw_escapes: bool,
    ) -> Result<(String, Vec<String>), ExpandError> {
        let saved = self.raw_escapes;
        self.raw_escapes = raw_escapes;
        let result = self.process_stop_on_inner(stop);
        self.raw_escapes = saved;
        result
    }

    fn process_stop_on_inner(
        &mut self,
        stop: Option<char>,
    ) -> Result<(String, Vec<String>), ExpandError> {
        let mut result = String::new();
        let mut words = Words::default();
        while let Some(ch) = self.peek() {
            if Some(ch) == stop {
                self.next();
                return Ok((result, words.finish()));
            }
            match ch {
                '$' => {
                    let value = self.process_dollar()?;
                    result.push_str(&value);
                    words.add_string(&value);
                }
                '<' => {
                    let value = self.process_possible_heredoc();
                    result.push_str(&value);
                    words.add_raw_string(&value);
                }
                '\'' if !self.skip_process_quotes => {
                    let value = self.process_single_quote()?;
                    result.push_str(&value);
                    words.add_raw_string(&value);
                }
                '"' if !self.skip_process_quotes => {
                    let value = self.process_double_quote()?;
                    result.push_str(&value);
                    words.add_raw_string(&value);
                }
                _ => {
                    self.next();
                    if ch == self.escape {
                        if self.raw_escapes {
                            words.add_raw_char(ch);
                            result.push(ch);
                        }
                        // The escape character escapes whatever follows, except the end.
                        let Some(escaped) = self.next() else { break };
                        words.add_raw_char(escaped);
                        result.push(escaped);
                    } else {
                        words.add_char(ch);
                        result.push(ch);
                    }
                }
            }
        }
        if let Some(stop) = stop {
            return Err(ExpandError::Unterminated {
                what: format!("`{stop}`"),
            });
        }
        Ok((result, words.finish()))
    }

    /// `<<` keeps the blanks after it in its word, so `<< EOF` stays one word (as heredoc
    /// detection needs); a lone `<` is an ordinary character.
    fn process_possible_heredoc(&mut self) -> String {
        self.next();
        if self.peek() != Some('<') {
            return "<".into();
        }
        self.next();
        let mut out = String::from("<<");
        while let Some(c) = self
            .peek()
            .filter(|c| matches!(c, ' ' | '\t' | '\r' | '\n'))
        {
            out.push(c);
            self.next();
        }
        out
    }

    fn process_single_quote(&mut self) -> Result<String, ExpandError> {
        // Everything up to the next ' is literal; a ' cannot be escaped inside.
        let mut result = String::new();
        let open = self.next();
        if self.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.next() {
                None => {
                    return Err(ExpandError::Unterminated {
                        what: "single-quote".into(),
                    });
                }
                Some('\'') => {
                    if self.raw_quotes {
                        result.push('\'');
                    }
                    return Ok(result);
                }
                Some(ch) => result.push(ch),
            }
        }
    }

    fn process_double_quote(&mut self) -> Result<String, ExpandError> {
        // Literal except `$` and the escape character, which escapes only `"`, `$` and itself.
        let mut result = String::new();
        let open = self.next();
        if self.raw_quotes {
            result.extend(open);
        }
        loop {
            match self.peek() {
                None => {
                    return Err(ExpandError::Unterminated {
                        what: "double-quote".into(),
                    });
                }
                Some('"') => {
                    self.next();
                    if self.raw_quotes {
                        result.push('"');
                    }
                    return Ok(result);
                }
                Some('$') => {
                    let value = self.process_dollar()?;
                    result.push_str(&value);
                }
                Some(_) => {
                    // invariant: peek() just returned Some
                    let mut ch = self.next().unwrap_or_default();
                    if ch == self.escape {
                        if self.raw_escapes {
                            result.push(ch);
                        }
                        match self.peek() {
                            // An escape at the very end is dropped; the missing quote errors next.
                            None => continue,
                            Some(c) if c == '"' || c == '$' || c == self.escape => {
                                ch = c;
                                self.next();
                            }
                            Some(_) => {}
                        }
                    }
                    result.push(ch);
                }
            }
        }
    }

    fn process_dollar(&mut self) -> Result<String, ExpandError> {
        self.next(); // the `$`
        if self.peek() != Some('{') {
            let name = self.process_name();
            if name.is_empty() {
                return Ok("$".into());
            }
            return Ok(match self.get_env(&name) {
                Some(v) => v,
                None if self.skip_unset_env => format!("${name}"),
                None => String::new(),
            });
        }
        self.next(); // the `{`
        match self.peek() {
            None => return Err(ExpandError::MissingBrace),
            Some('{' | '}' | ':') => return Err(ExpandError::BadSubstitution),
            Some(_) => {}
        }
        let name = self.process_name();
        let Some(ch) = self.next() else {
            return Err(ExpandError::MissingBrace);
        };
        match ch {
            '}' => Ok(match self.get_env(&name) {
                Some(v) => v,
                None if self.skip_unset_env => format!("${{{name}}}"),
                None => String::new(),
            }),
            ':' | '+' | '-' | '?' | '#' | '%' => self.process_modifier(&name, ch),
            '/' => self.process_replace(&name),
            _ => Err(ExpandError::UnsupportedModifier {
                modifier: ch.to_string(),
            }),
        }
    }

    fn process_modifier(&mut self, name: &str, first: char) -> Result<String, ExpandError> {
        let mut modifier = first.to_string();
        let mut op = first;
        let null_is_unset = first == ':';
        if null_is_unset {
            let Some(next) = self.next() else {
                return Err(ExpandError::MissingBrace);
            };
            modifier.push(next);
            op = next;
        }
        let pattern_op = op == '#' || op == '%';
        if null_is_unset && pattern_op {
            return Err(ExpandError::UnsupportedModifier { modifier });
        }
        let word = match self.process_stop_on(Some('}'), pattern_op) {
            Ok((word, _)) => word,
            Err(_) if self.peek().is_none() => return Err(ExpandError::MissingBrace),
            Err(e) => return Err(e),
        };
        let value = self.get_env(name);
        if self.skip_unset_env && value.is_none() {
            return Ok(format!("${{{name}{modifier}{word}}}"));
        }
        let unset_or_null = match &value {
            None => true,
            Some(v) => null_is_unset && v.is_empty(),
        };
        match op {
            '-' => Ok(if unset_or_null {
                word
            } else {
                value.unwrap_or_default()
            }),
            '+' => Ok(if unset_or_null { String::new() } else { word }),
            '?' => match value {
                None => Err(ExpandError::Required {
                    name: name.to_owned(),
                    message: if word.is_empty() {
                        "is not allowed to be unset".into()
                    } else {
                        word
                    },
                }),
                Some(v) if null_is_unset && v.is_empty() => Err(ExpandError::Required {
                    name: name.to_owned(),
                    message: if word.is_empty() {
                        "is not allowed to be empty".into()
                    } else {
                        word
                    },
                }),
                Some(v) => Ok(v),
            },
            '#' | '%' => {
                let (greedy, pattern) = match word.strip_prefix(op) {
                    Some(rest) => (true, rest),
                    None => (false, word.as_str()),
                };
                let value = value.unwrap_or_default();
                if op == '%' {
                    trim_suffix(pattern, &value, greedy)
                } else {
                    trim_prefix(pattern, &value, greedy)
                }
            }
            _ => Err(ExpandError::UnsupportedModifier { modifier }),
        }
    }

    fn process_replace(&mut self, name: &str) -> Result<String, ExpandError> {
        let all = self.peek() == Some('/');
        if all {
            self.next();
        }
        let pattern = match self.process_stop_on(Some('/'), true) {
            Ok((p, _)) => p,
            Err(_) if self.peek().is_none() => return Err(ExpandError::MissingSlash),
            Err(e) => return Err(e),
        };
        let replacement = match self.process_stop_on(Some('}'), true) {
            Ok((r, _)) => r,
            Err(_) if self.peek().is_none() => return Err(ExpandError::MissingBrace),
            Err(e) => return Err(e),
        };
        let value = self.get_env(name);
        if self.skip_unset_env && value.is_none() {
            let slashes = if all { "//" } else { "/" };
            return Ok(format!("${{{name}{slashes}{pattern}/{replacement}}}"));
        }
        let value = value.unwrap_or_default();
        let re = shell_pattern_to_regex(&pattern, true, false)?;
        let replacement = regex::NoExpand(replacement.as_str());
        Ok(if all {
            re.replace_all(&value, replacement).into_owned()
        } else {
            re.replace(&value, replacement).into_owned()
        })
    }

    /// A name: letters, digits and `_`; or a run of digits; or one special parameter.
    fn process_name(&mut self) -> String {
        let mut name = String::new();
        while let Some(ch) = self.peek() {
            if name.is_empty() && ch.is_ascii_digit() {
                while let Some(d) = self.peek().filter(char::is_ascii_digit) {
                    name.push(d);
                    self.next();
                }
                return name;
            }
            if name.is_empty() && matches!(ch, '@' | '*' | '#' | '?' | '-' | '$' | '!' | '0') {
                self.next();
                return ch.to_string();
            }
            if !ch.is_alphanumeric() && ch != '_' {
                break;
            }
            name.push(ch);
            self.next();
        }
        name
    }
}

/// Turns a shell pattern (`*`, `?`, `[...]`, `\` escapes) into a regular expression.
fn shell_pattern_to_regex(
    pattern: &str,
    greedy: bool,
    anchored: bool,
) -> Result<regex::Regex, ExpandError> {
    let invalid = |reason: String| ExpandError::InvalidPattern {
        pattern: pattern.to_owned(),
        reason,
    };
    let mut out = String::with_capacity(pattern.len() + 4);
    if anchored {
        out.push('^');
    }
    let star = if greedy { ".*" } else { ".*?" };
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let tok = chars[i];
        i += 1;
        match tok {
            '*' => out.push_str(star),
            '?' => out.push('.'),
            '\\' => {
                // `}` and `/` are escaped only to get them past `${…}`.
                if matches!(chars.get(i), Some('}' | '/')) {
                    continue;
                }
                match chars.get(i) {
                    Some(&c @ ('*' | '?' | '\\' | '[' | ']')) => {
                        out.push_str(&regex::escape(&c.to_string()));
                        i += 1;
                    }
                    Some(c) => return Err(invalid(format!("invalid escape `\\{c}`"))),
                    None => return Err(invalid("trailing escape".into())),
                }
            }
            '[' => {
                // A bracket expression, if it is closed; otherwise a literal `[`.
                let start = i;
                let mut j = i;
                if matches!(chars.get(j), Some('!' | '^')) {
                    j += 1;
                }
                if chars.get(j) == Some(&']') {
                    j += 1;
                }
                while j < chars.len() && chars[j] != ']' {
                    j += 1;
                }
                if j >= chars.len() {
                    out.push_str(r"\[");
                    continue;
                }
                let mut class = String::from("[");
                let mut k = start;
                if matches!(chars.get(k), Some('!' | '^')) {
                    class.push('^');
                    k += 1;
                }
                for &c in &chars[k..j] {
                    if matches!(c, '\\' | '[' | ']' | '^' | '&' | '~') {
                        class.push('\\');
                    }
                    class.push(c);
                }
                class.push(']');
                out.push_str(&class);
                i = j + 1;
            }
            c => out.push_str(&regex::escape(&c.to_string())),
        }
    }
    regex::Regex::new(&out).map_err(|e| invalid(e.to_string()))
}

fn trim_prefix(pattern: &str, value: &str, greedy: bool) -> Result<String, ExpandError> {
    let re = shell_pattern_to_regex(pattern, greedy, true)?;
    Ok(match re.find(value) {
        Some(m) => value[m.end()..].to_owned(),
        None => value.to_owned(),
    })
}

/// Reverses a pattern, keeping each escape before the character it escapes (`a\*c` → `c\*a`).
fn reverse_pattern(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut tokens: Vec<&[char]> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '\\' && i + 1 < chars.len() {
            tokens.push(&chars[i..i + 2]);
            i += 2;
        } else {
            tokens.push(&chars[i..=i]);
            i += 1;
        }
    }
    tokens.iter().rev().flat_map(|t| t.iter()).collect()
}

fn trim_suffix(pattern: &str, value: &str, greedy: bool) -> Result<String, ExpandError> {
    // Regexes find leftmost matches, so the shortest/longest suffix is found by reversing both.
    let reversed: String = value.chars().rev().collect();
    let trimmed = trim_prefix(&reverse_pattern(pattern), &reversed, greedy)?;
    Ok(trimmed.chars().rev().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env() -> Vec<(String, String)> {
        [
            ("path", "/usr/local/bin:/usr/bin:/bin"),
            ("file", "archive.tar.gz"),
            ("empty", ""),
            ("star", "a*b*c"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
    }

    fn word(input: &str) -> Result<String, ExpandError> {
        Lexer::new('\\').word(input, &env())
    }

    #[test]
    fn prefix_and_suffix_patterns() {
        assert_eq!(word("${file#*.}").unwrap(), "tar.gz");
        assert_eq!(word("${file##*.}").unwrap(), "gz");
        assert_eq!(word("${file%.*}").unwrap(), "archive.tar");
        assert_eq!(word("${file%%.*}").unwrap(), "archive");
        assert_eq!(word("${path#*:}").unwrap(), "/usr/bin:/bin");
        assert_eq!(word("${path%:*}").unwrap(), "/usr/local/bin:/usr/bin");
        assert_eq!(word("${file#nomatch}").unwrap(), "archive.tar.gz");
        assert_eq!(word("${unset#*}").unwrap(), "");
        assert_eq!(word("${file%.t?r.gz}").unwrap(), "archive");
        assert_eq!(word("${file#[a-c]}").unwrap(), "rchive.tar.gz");
        assert_eq!(word("${file#[!a]}").unwrap(), "archive.tar.gz");
    }

    #[test]
    fn escaped_wildcards_are_literal() {
        assert_eq!(word(r"${star#a\*}").unwrap(), "b*c");
        assert_eq!(word(r"${star%\*c}").unwrap(), "a*b");
        assert_eq!(word(r"${star%%\**}").unwrap(), "a");
    }

    #[test]
    fn replacement_patterns() {
        assert_eq!(
            word("${path/bin/sbin}").unwrap(),
            "/usr/local/sbin:/usr/bin:/bin"
        );
        assert_eq!(
            word("${path//bin/sbin}").unwrap(),
            "/usr/local/sbin:/usr/sbin:/sbin"
        );
        assert_eq!(
            word("${path//:/ }").unwrap(),
            "/usr/local/bin /usr/bin /bin"
        );
        assert_eq!(
            word(r"${path//\//_}").unwrap(),
            "_usr_local_bin:_usr_bin:_bin"
        );
        assert_eq!(word("${file/*./x.}").unwrap(), "x.gz");
        assert_eq!(word("${file/$/x}").unwrap(), "archive.tar.gz");
        assert_eq!(word("${file/tar/$star}").unwrap(), "archive.a*b*c.gz");
        assert_eq!(word("${path/bin}"), Err(ExpandError::MissingSlash));
    }

    #[test]
    fn colon_pattern_forms_are_rejected() {
        assert!(matches!(
            word("${file:#x}"),
            Err(ExpandError::UnsupportedModifier { .. })
        ));
        assert!(matches!(
            word("${file:%x}"),
            Err(ExpandError::UnsupportedModifier { .. })
        ));
    }

    #[test]
    fn required_messages() {
        assert_eq!(
            word("${unset?need it}"),
            Err(ExpandError::Required {
                name: "unset".into(),
                message: "need it".into()
            })
        );
        assert_eq!(
            word("${empty:?}"),
            Err(ExpandError::Required {
                name: "empty".into(),
                message: "is not allowed to be empty".into()
            })
        );
        assert_eq!(word("${empty?}").unwrap(), "");
    }

    #[test]
    fn records_matched_and_unmatched() {
        let e = Lexer::new('\\')
            .expand("$file ${nope:-x} ${empty}", &env())
            .unwrap();
        assert_eq!(e.matched.into_iter().collect::<Vec<_>>(), ["empty", "file"]);
        assert_eq!(e.unmatched.into_iter().collect::<Vec<_>>(), ["nope"]);
    }

    #[test]
    fn heredoc_marker_keeps_its_blanks() {
        let lex = Lexer::new('\\');
        assert_eq!(
            lex.words("cat <<  EOF x", &env()).unwrap(),
            ["cat", "<<  EOF", "x"]
        );
        assert_eq!(lex.words("a < b", &env()).unwrap(), ["a", "<", "b"]);
        assert_eq!(lex.word("a << b", &env()).unwrap(), "a << b");
    }

    #[test]
    fn heredoc_bodies_keep_their_quotes() {
        let mut lex = Lexer::new('\\');
        lex.skip_process_quotes = true;
        assert_eq!(
            lex.word("echo '$file' \"$file\"", &env()).unwrap(),
            "echo 'archive.tar.gz' \"archive.tar.gz\""
        );
    }

    #[test]
    fn backtick_escape() {
        let lex = Lexer::new('`');
        assert_eq!(lex.word(r"C:\path`$x", &env()).unwrap(), r"C:\path$x");
        assert_eq!(lex.word(r#""a`"b""#, &env()).unwrap(), r#"a"b"#);
    }

    #[test]
    fn skip_unset_env_keeps_references() {
        let mut lex = Lexer::new('\\');
        lex.skip_unset_env = true;
        assert_eq!(
            lex.word("$nope ${nope} ${nope:-d} $file", &env()).unwrap(),
            "$nope ${nope} ${nope:-d} archive.tar.gz"
        );
    }
}
