//! Located diagnostics: where in the text a problem is, what was expected, and a hint.
//!
//! Rules this module keeps:
//! - Line and column are 1-based and counted in characters, not bytes, so a column points at
//!   the same place an editor does even after non-ASCII text.
//! - Locating never panics: a span past the end of the text, or inside a multi-byte
//!   character, is clamped to the nearest valid position before it.
//! - A message is one line, lower-case, without a trailing period; `expected` and `hint` are
//!   optional lines under it. Diagnostics are sorted by position so output is stable.

use std::fmt;
use std::ops::Range;

/// One problem in a manifest, located at the value (or key) at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The name the text was given under (e.g. `limpet.toml`).
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong, one line.
    pub message: String,
    /// What would have been accepted.
    pub expected: Option<String>,
    /// A likely fix, when one can be guessed.
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: error: {}",
            self.file, self.line, self.column, self.message
        )?;
        if let Some(expected) = &self.expected {
            write!(f, "\n  expected: {expected}")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// Every problem found in a manifest (never empty when returned by [`crate::parse`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Diagnostics {}

/// A problem with a value, not yet located: what the unit and name parsers return.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Problem {
    /// What is wrong, one line.
    pub message: String,
    /// What would have been accepted.
    pub expected: Option<String>,
    /// A likely fix.
    pub hint: Option<String>,
}

impl Problem {
    /// A problem with a message only.
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Problem {
            message: message.into(),
            expected: None,
            hint: None,
        }
    }

    /// Sets what would have been accepted.
    pub(crate) fn expected(mut self, expected: impl Into<String>) -> Self {
        self.expected = Some(expected.into());
        self
    }

    /// Sets a hint.
    pub(crate) fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Sets a hint only if there is one.
    pub(crate) fn maybe_hint(mut self, hint: Option<String>) -> Self {
        if hint.is_some() {
            self.hint = hint;
        }
        self
    }
}

/// Turns byte spans into lines and columns for one text.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Locator<'a> {
    file: &'a str,
    text: &'a str,
}

impl<'a> Locator<'a> {
    pub(crate) fn new(file: &'a str, text: &'a str) -> Self {
        Locator { file, text }
    }

    /// 1-based (line, column) of a byte offset, clamped into the text.
    pub(crate) fn line_column(&self, offset: usize) -> (usize, usize) {
        let mut offset = offset.min(self.text.len());
        // Back up to a char boundary so slicing cannot panic.
        while offset > 0 && !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = self.text.get(..offset).unwrap_or("");
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
        (line, column)
    }

    /// A diagnostic at the start of `span`.
    pub(crate) fn at(&self, span: &Range<usize>, problem: Problem) -> Diagnostic {
        let (line, column) = self.line_column(span.start);
        Diagnostic {
            file: self.file.to_owned(),
            line,
            column,
            message: one_line(&problem.message),
            expected: problem.expected.map(|e| one_line(&e)),
            hint: problem.hint.map(|h| one_line(&h)),
        }
    }

    /// A diagnostic from a TOML syntax or serde shape error.
    pub(crate) fn toml_error(&self, err: &toml::de::Error) -> Diagnostic {
        let span = err.span().unwrap_or(0..0);
        self.at(&span, toml_problem(err.message()))
    }
}

/// Keeps a rendered diagnostic on its lines: input text may contain newlines.
fn one_line(s: &str) -> String {
    let s = s.trim();
    if s.contains('\n') || s.contains('\r') {
        s.split(['\n', '\r'])
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ")
    } else {
        s.to_owned()
    }
}

/// Rewrites serde/toml messages into message + expected + hint.
fn toml_problem(message: &str) -> Problem {
    if let Some(rest) = message.strip_prefix("unknown field `") {
        if let Some((name, tail)) = rest.split_once('`') {
            let allowed = backticked(tail);
            let problem = Problem::new(format!("unknown key `{name}`"));
            return if allowed.is_empty() {
                problem.expected("no keys here")
            } else {
                let list = allowed
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ");
                problem.expected(format!("one of {list}")).maybe_hint(
                    did_you_mean(name, allowed.iter().map(String::as_str))
                        .map(|k| format!("did you mean `{k}`?")),
                )
            };
        }
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        let name = rest.split('`').next().unwrap_or(rest);
        return Problem::new(format!("missing key `{name}`"))
            .hint(format!("add `{name} = ...` here"));
    }
    if message == "duplicate key" {
        return Problem::new("duplicate key").hint("each key may appear once per table");
    }
    // "invalid type: integer `3`, expected a string" and the like.
    if let Some((what, expected)) = message.split_once(", expected ") {
        if what.starts_with("invalid type")
            || what.starts_with("invalid value")
            || what.starts_with("invalid length")
        {
            let problem = Problem::new(what.to_owned()).expected(expected.to_owned());
            return if expected == "a string" {
                problem.hint("this key takes a quoted string, e.g. \"8MiB\" for a size")
            } else {
                problem
            };
        }
        if what == "invalid basic string" || what == "invalid literal string" {
            return Problem::new(what.to_owned())
                .expected(expected.to_owned())
                .hint("a string is missing its closing quote");
        }
        // toml syntax errors: "<what>, expected <tokens>"
        if !what.contains('\n') {
            return Problem::new(what.to_owned()).expected(expected.to_owned());
        }
    }
    Problem::new(message.to_owned())
}

/// The backticked words of a serde "expected one of `a`, `b`" tail.
fn backticked(s: &str) -> Vec<String> {
    s.split('`').skip(1).step_by(2).map(str::to_owned).collect()
}

/// The closest candidate to `word`, if it is close enough to be a likely typo.
pub(crate) fn did_you_mean<'c>(
    word: &str,
    candidates: impl IntoIterator<Item = &'c str>,
) -> Option<&'c str> {
    let lower = word.to_lowercase();
    let mut best: Option<(usize, &str)> = None;
    for c in candidates {
        let d = edit_distance(&lower, &c.to_lowercase());
        if best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    // A third of the word's length, at least one edit and at most three: close enough to be a
    // typo, far enough not to suggest an unrelated key.
    let limit = (word.chars().count() / 3).clamp(1, 3);
    best.filter(|(d, _)| *d <= limit).map(|(_, c)| c)
}

/// Levenshtein distance over chars, with adjacent transpositions counted as one edit.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // Three rows are enough for the transposition rule.
    let mut prev2: Vec<usize> = vec![0; b.len() + 1];
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur: Vec<usize> = vec![0; b.len() + 1];
    for (i, ca) in a.iter().enumerate() {
        if let Some(first) = cur.first_mut() {
            *first = i + 1;
        }
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != cb);
            let del = prev.get(j + 1).copied().unwrap_or(usize::MAX - 1) + 1;
            let ins = cur.get(j).copied().unwrap_or(usize::MAX - 1) + 1;
            let sub = prev.get(j).copied().unwrap_or(usize::MAX - 1) + cost;
            let mut v = del.min(ins).min(sub);
            if i > 0 && j > 0 && a.get(i - 1) == Some(cb) && b.get(j - 1) == Some(ca) {
                v = v.min(prev2.get(j - 1).copied().unwrap_or(usize::MAX - 1) + 1);
            }
            if let Some(slot) = cur.get_mut(j + 1) {
                *slot = v;
            }
        }
        std::mem::swap(&mut prev2, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev.last().copied().unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_count_chars_and_clamp() {
        let l = Locator::new("f", "ab\né = 1");
        assert_eq!(l.line_column(0), (1, 1));
        assert_eq!(l.line_column(3), (2, 1));
        assert_eq!(l.line_column(5), (2, 2)); // after the two-byte é
        assert_eq!(l.line_column(4), (2, 1)); // inside é: clamped back
        assert_eq!(l.line_column(999), (2, 6));
    }

    #[test]
    fn typos_are_found() {
        assert_eq!(did_you_mean("allways", ["always", "never"]), Some("always"));
        assert_eq!(did_you_mean("memry", ["name", "memory"]), Some("memory"));
        assert_eq!(did_you_mean("zzzzzz", ["memory"]), None);
        assert_eq!(edit_distance("ab", "ba"), 1);
    }
}
