//! Configuration errors: one [`Problem`] per thing wrong, each with the path of the field it is about.
//!
//! Loading never stops at the first problem: the decoder and the validator collect every problem they
//! find and the caller gets them all at once in [`LoadError::Invalid`], in document order.

use std::fmt;
use std::path::PathBuf;

/// One thing wrong with a configuration, anchored at a field path such as
/// `providers.search.members[1].provider`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted path of the field (`""` for the document root).
    pub path: String,
    /// What is wrong, written for the person editing the file.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read at all.
    #[error("{}: cannot read file: {source}", path.display())]
    Read {
        /// The file that was asked for.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The text is not YAML.
    #[error("{source_name}:{line}:{column}: invalid YAML: {message}")]
    Syntax {
        /// File name (or `<embedded default>`).
        source_name: String,
        /// 1-based line of the error, 0 when unknown.
        line: usize,
        /// 1-based column of the error, 0 when unknown.
        column: usize,
        /// The parser's description.
        message: String,
    },
    /// The YAML is well formed but the configuration is not valid.
    #[error("{source_name}: {} problem{}:{}", problems.len(), if problems.len() == 1 { "" } else { "s" }, ProblemList(problems))]
    Invalid {
        /// File name (or `<embedded default>`).
        source_name: String,
        /// Every problem found, in document order.
        problems: Vec<Problem>,
    },
}

struct ProblemList<'a>(&'a [Problem]);

impl fmt::Display for ProblemList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for p in self.0 {
            write!(f, "\n  {p}")?;
        }
        Ok(())
    }
}
