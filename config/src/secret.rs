//! A string that may hold a credential: usable by the code that needs it, never printed.

use std::fmt;
use std::sync::Arc;

/// Holds values such as API keys, bearer tokens and environment variables given to providers.
/// `Debug` and `Display` print `<redacted>`, so a secret cannot leak through logs or error
/// messages by accident; [`Secret::expose`] is the one explicit way to read it. Clones share
/// the value (a client's token travels with each of its calls).
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(Arc<str>);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl AsRef<str>) -> Self {
        Self(Arc::from(value.as_ref()))
    }

    /// The value itself, for the code that must send it (an HTTP header, a child's environment).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::Secret;

    #[test]
    fn never_prints_its_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s} {s:?}"), "<redacted> \"<redacted>\"");
        assert_eq!(s.expose(), "hunter2");
    }
}
