//! `.dockerignore`, with Docker's semantics (moby/patternmatcher), not gitignore's: a pattern
//! matches a path from the context root (`node_modules` does not match `sub/node_modules`, `*.md`
//! does not match `docs/a.md`), or one of that path's parent directories; `**` spans directories;
//! `!` re-includes; the last matching rule wins; leading `/` and `./` are cleaned away.
//!
//! Patterns are translated to regular expressions the way patternmatcher translates them, so the
//! edge cases (`**` at the start or the end, escapes, character classes) agree with Docker's.

use std::path::Path;

/// One `.dockerignore` line, compiled.
#[derive(Debug, Clone)]
struct Pattern {
    text: String,
    exclusion: bool,
    regex: regex::Regex,
}

/// The rules of a `.dockerignore` file.
#[derive(Debug, Clone, Default)]
pub struct Ignore {
    patterns: Vec<Pattern>,
}

/// A pattern that cannot be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid .dockerignore pattern `{pattern}` on line {line}: {reason}")]
pub struct PatternError {
    /// The pattern as written.
    pub pattern: String,
    /// Its line in the file.
    pub line: usize,
    /// What is wrong.
    pub reason: String,
}

/// Lexical `filepath.Clean` for `/`-separated paths (`./a//b/../c/` → `a/c`).
pub fn clean(path: &str) -> String {
    let rooted = path.starts_with('/');
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|p| *p != "..") {
                    parts.pop();
                } else if !rooted {
                    parts.push("..");
                }
            }
            p => parts.push(p),
        }
    }
    let joined = parts.join("/");
    match (rooted, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

fn compile(pattern: &str) -> Result<regex::Regex, String> {
    let mut re = String::from("^");
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let ch = chars[i];
        i += 1;
        match ch {
            '*' if chars.get(i) == Some(&'*') => {
                i += 1;
                if chars.get(i) == Some(&'/') {
                    i += 1;
                }
                if i >= chars.len() {
                    // `**` at the end matches everything below.
                    re.push_str(".*");
                } else {
                    re.push_str("(.*/)?");
                }
            }
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            '\\' => match chars.get(i) {
                Some(&next) => {
                    re.push_str(&regex::escape(&next.to_string()));
                    i += 1;
                }
                None => re.push_str(r"\\"),
            },
            // A class, `[^…]` negated (Go's `filepath.Match`); it never matches `/`.
            '[' => match chars[i..].iter().position(|&c| c == ']') {
                Some(len) if len > 0 => {
                    let mut body = &chars[i..i + len];
                    re.push('[');
                    if body.first() == Some(&'^') {
                        re.push_str("^/");
                        body = &body[1..];
                    }
                    for &c in body {
                        match c {
                            '-' => re.push('-'),
                            c => re.push_str(&regex::escape(&c.to_string())),
                        }
                    }
                    re.push(']');
                    i += len + 1;
                }
                _ => re.push_str(r"\["),
            },
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    regex::Regex::new(&re).map_err(|e| e.to_string())
}

impl Ignore {
    /// Reads the rules of a `.dockerignore` file's text.
    pub fn parse(text: &str) -> Result<Self, PatternError> {
        let mut patterns = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = if n == 0 {
                line.trim_start_matches('\u{feff}')
            } else {
                line
            };
            if line.starts_with('#') {
                continue;
            }
            let mut pattern = line.trim();
            if pattern.is_empty() {
                continue;
            }
            let exclusion = pattern.starts_with('!');
            if exclusion {
                pattern = pattern[1..].trim();
            }
            let mut cleaned = if pattern.is_empty() {
                String::new()
            } else {
                clean(pattern)
            };
            if cleaned.len() > 1 && cleaned.starts_with('/') {
                cleaned.remove(0);
            }
            let regex = compile(&cleaned).map_err(|reason| PatternError {
                pattern: line.to_owned(),
                line: n + 1,
                reason,
            })?;
            patterns.push(Pattern {
                text: cleaned,
                exclusion,
                regex,
            });
        }
        Ok(Self { patterns })
    }

    /// Whether there are no rules.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether any rule re-includes (`!pattern`): then an excluded directory must still be
    /// walked, since something under it may come back.
    pub fn has_exclusions(&self) -> bool {
        self.patterns.iter().any(|p| p.exclusion)
    }

    /// Whether `path` (relative to the context root, `/`-separated) is ignored: the last rule
    /// that matches it or one of its parent directories decides.
    pub fn is_ignored(&self, path: &str) -> bool {
        if self.patterns.is_empty() {
            return false;
        }
        let path = clean(path);
        let parents: Vec<&str> = match path.rsplit_once('/') {
            Some((parent, _)) => parent.split('/').collect(),
            None => Vec::new(),
        };
        let mut matched = false;
        for p in &self.patterns {
            // An inclusion cannot change an unmatched path, nor an exclusion a matched one.
            if p.exclusion != matched {
                continue;
            }
            let mut hit = p.regex.is_match(&path);
            if !hit {
                for i in 1..=parents.len() {
                    if p.regex.is_match(&parents[..i].join("/")) {
                        hit = true;
                        break;
                    }
                }
            }
            if hit {
                matched = !p.exclusion;
            }
        }
        matched
    }

    /// The patterns as cleaned, for messages and cache keys.
    pub fn patterns(&self) -> impl Iterator<Item = String> + '_ {
        self.patterns.iter().map(|p| {
            if p.exclusion {
                format!("!{}", p.text)
            } else {
                p.text.clone()
            }
        })
    }
}

/// The ignore file for a Dockerfile: `<Dockerfile>.dockerignore` beside it wins over the
/// context's `.dockerignore`.
pub fn ignore_file_for(context: &Path, dockerfile: Option<&Path>) -> Option<std::path::PathBuf> {
    if let Some(df) = dockerfile {
        let mut name = df.as_os_str().to_owned();
        name.push(".dockerignore");
        let specific = std::path::PathBuf::from(name);
        if specific.is_file() {
            return Some(specific);
        }
    }
    let general = context.join(".dockerignore");
    general.is_file().then_some(general)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ignored(rules: &str, path: &str) -> bool {
        Ignore::parse(rules).unwrap().is_ignored(path)
    }

    #[test]
    fn patterns_are_rooted_not_gitignore() {
        assert!(ignored("node_modules", "node_modules"));
        assert!(ignored("node_modules", "node_modules/a/b.js"));
        assert!(!ignored("node_modules", "sub/node_modules"));
        assert!(ignored("*.md", "README.md"));
        assert!(!ignored("*.md", "docs/a.md"));
        assert!(ignored("**/*.md", "docs/a.md"));
        assert!(ignored("**/*.md", "a.md"));
        assert!(ignored("docs/**", "docs/x/y"));
        assert!(ignored("**/node_modules", "a/b/node_modules/c"));
    }

    #[test]
    fn classes_and_negated_classes() {
        let rules = "[^0-9]x.dat\n[a-c].cfg\n";
        assert!(ignored(rules, "nx.dat"));
        assert!(!ignored(rules, "1x.dat"));
        assert!(ignored(rules, "b.cfg"));
        assert!(!ignored(rules, "d.cfg"));
        assert!(
            !ignored(rules, "-.cfg"),
            "a range, not the characters a, -, c"
        );
    }

    #[test]
    fn later_rules_win_and_exclusions_reinclude() {
        let rules = "*.md\n!README.md\n";
        assert!(ignored(rules, "CHANGELOG.md"));
        assert!(!ignored(rules, "README.md"));
        let rules = "!README.md\n*.md\n";
        assert!(ignored(rules, "README.md"));
        let rules = "build\n!build/keep\n";
        assert!(ignored(rules, "build/x"));
        assert!(!ignored(rules, "build/keep"));
        assert!(
            !ignored(rules, "build/keep/inner"),
            "a re-included directory brings its contents"
        );
    }

    #[test]
    fn leading_slash_dot_and_comments_are_cleaned() {
        let rules = "# comment\n/secret\n./tmp/\n  spaced  \n\n";
        assert!(ignored(rules, "secret"));
        assert!(ignored(rules, "tmp/x"));
        assert!(ignored(rules, "spaced"));
        assert!(!ignored(rules, "# comment"));
    }

    #[test]
    fn wildcards_stay_within_a_directory() {
        assert!(ignored("a/*/c", "a/b/c"));
        assert!(!ignored("a/*/c", "a/b/x/c"));
        assert!(ignored("a/**/c", "a/b/x/c"));
        assert!(ignored("a/**/c", "a/c"));
        assert!(ignored("file?.txt", "file1.txt"));
        assert!(!ignored("file?.txt", "file10.txt"));
        assert!(ignored("[ab].txt", "a.txt"));
        assert!(ignored(r"\*.txt", "*.txt"));
        assert!(!ignored(r"\*.txt", "x.txt"));
        assert!(ignored("a.b", "a.b"));
        assert!(!ignored("a.b", "axb"), "a dot is literal");
    }

    #[test]
    fn clean_is_lexical() {
        assert_eq!(clean("./a//b/../c/"), "a/c");
        assert_eq!(clean("/../a"), "/a");
        assert_eq!(clean("../a"), "../a");
        assert_eq!(clean(""), ".");
    }
}
