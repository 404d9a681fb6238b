//! What [`parse`](super::parse) reports: every problem found in one pass, each with its place.

use std::fmt;

/// Longest `found` text kept in a diagnostic, in characters; longer text is cut with `…`.
const MAX_FOUND_CHARS: usize = 40;

/// One problem in a chart file.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Diagnostic {
    /// 1-based line number.
    pub line: usize,
    /// 1-based column, counted in characters (not bytes).
    pub column: usize,
    /// The offending text as written (cut to 40 characters); empty when something is missing.
    pub found: String,
    /// How many characters the offending text spans from `column` (uncut); 0 when something is
    /// missing there.
    pub length: usize,
    /// What the parser expected there, e.g. ``a number`` or ```;` ``.
    pub expected: String,
    /// A hint such as ``did you mean `diffuse`?`` or ``use `;` to separate values``.
    pub suggestion: Option<String>,
}

impl Diagnostic {
    pub(crate) fn new(
        line: usize,
        column: usize,
        expected: impl Into<String>,
        found: &str,
        suggestion: Option<String>,
    ) -> Self {
        let length = found.chars().count();
        let found = if length > MAX_FOUND_CHARS {
            let mut cut: String = found.chars().take(MAX_FOUND_CHARS).collect();
            cut.push('…');
            cut
        } else {
            found.to_owned()
        };
        Self {
            line,
            column,
            found,
            length,
            expected: expected.into(),
            suggestion,
        }
    }
}

impl Diagnostic {
    /// What is wrong, without its place or suggestion: `expected a number, found "1O"`.
    pub fn message(&self) -> String {
        if self.found.is_empty() {
            format!("expected {}", self.expected)
        } else {
            format!("expected {}, found {:?}", self.expected, self.found)
        }
    }
}

impl fmt::Display for Diagnostic {
    /// `line 7, column 12: expected a number, found "1O"; did you mean 10?`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "line {}, column {}: {}",
            self.line,
            self.column,
            self.message()
        )?;
        if let Some(suggestion) = &self.suggestion {
            write!(f, "; {suggestion}")?;
        }
        Ok(())
    }
}

/// Every problem [`parse`](super::parse) found, sorted by line and column; never empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Errors(pub(crate) Vec<Diagnostic>);

impl Errors {
    /// The problems, sorted by line and column.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        &self.0
    }

    /// The problems, sorted by line and column.
    pub fn into_diagnostics(self) -> Vec<Diagnostic> {
        self.0
    }
}

impl fmt::Display for Errors {
    /// One line per diagnostic.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, diagnostic) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{diagnostic}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Errors {}
