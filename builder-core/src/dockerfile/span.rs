//! Source positions: every node of the AST carries a [`Span`].

use std::ops::Range;

/// Where a node stands in the Dockerfile: 1-based line and column of its start, its last line,
/// and its byte range in the source.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Span {
    /// 1-based line of the first character.
    pub line: usize,
    /// 1-based column (in characters) of the first character.
    pub col: usize,
    /// 1-based line of the last character.
    pub end_line: usize,
    /// Byte range in the source.
    pub range: Range<usize>,
}

/// Maps byte offsets of a source text to lines and columns.
#[derive(Debug, Clone)]
pub(crate) struct LineIndex<'a> {
    src: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub(crate) fn new(src: &'a str) -> Self {
        let starts = std::iter::once(0)
            .chain(src.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self { src, starts }
    }

    /// 1-based line and column of a byte offset.
    pub(crate) fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.src.len());
        let line = self.starts.partition_point(|&s| s <= offset).max(1);
        let start = self.starts[line - 1];
        let col = self.src.get(start..offset).map_or(offset - start, |s| {
            // A byte-order mark is no column.
            s.strip_prefix('\u{feff}').unwrap_or(s).chars().count()
        }) + 1;
        (line, col)
    }

    /// The span of a byte range.
    pub(crate) fn span(&self, range: Range<usize>) -> Span {
        let (line, col) = self.line_col(range.start);
        let last = if range.end > range.start {
            range.end - 1
        } else {
            range.start
        };
        let (end_line, _) = self.line_col(last);
        Span {
            line,
            col,
            end_line,
            range,
        }
    }

    /// The span of a whole line range (1-based, inclusive), without the final newline.
    pub(crate) fn lines(&self, first: usize, last: usize) -> Span {
        let start = self.starts[first - 1];
        let end = self
            .starts
            .get(last)
            .map_or(self.src.len(), |&next| next - 1);
        let end = if end > start && self.src.as_bytes().get(end - 1) == Some(&b'\r') {
            end - 1
        } else {
            end
        };
        Span {
            line: first,
            col: 1,
            end_line: last,
            range: start..end.max(start),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_count_characters() {
        let idx = LineIndex::new("ab\n한국x\n\nz");
        assert_eq!(idx.line_col(0), (1, 1));
        assert_eq!(idx.line_col(3), (2, 1));
        assert_eq!(idx.line_col(9), (2, 3));
        assert_eq!(idx.line_col(11), (3, 1));
        assert_eq!(idx.line_col(12), (4, 1));
        let s = idx.span(1..5);
        assert_eq!((s.line, s.col, s.end_line), (1, 2, 2));
        assert_eq!(idx.lines(2, 3).range, 3..11);
    }
}
