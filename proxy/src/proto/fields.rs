//! Request header fields as the checks read them. The front door has two readers of a request
//! head — Pingora's (a `HeaderMap`) and the fast path's own views over the request bytes — and
//! every check (Origin, Host, Accept, duplicates, credentials, the 2026-07-28 headers) is written
//! once against this trait, so both readers are held to the same rules.

/// Header fields looked up by name, case-insensitively, values as raw bytes.
pub trait Fields {
    /// The first value of `name`.
    fn first(&self, name: &str) -> Option<&[u8]>;

    /// Every value of `name`, in order.
    fn each<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s [u8]> + 's;

    /// The first value of `name` as text: visible ASCII, spaces and tabs, as
    /// `HeaderValue::to_str` takes it (so a value one reader takes as text, the other does too).
    #[inline]
    fn text(&self, name: &str) -> Option<&str> {
        self.first(name).and_then(as_text)
    }

    /// The first value of `name` when it is text (as [`Fields::text`] takes it), as bytes: for
    /// checks that read bytes, without converting the value to `str`.
    #[inline]
    fn text_bytes(&self, name: &str) -> Option<&[u8]> {
        self.first(name).filter(|v| is_text(v))
    }

    /// Whether a name the checks read may occur more than once (`true` unless the reader
    /// knows): lets the check for conflicting copies skip its lookups when none repeats.
    fn may_repeat(&self) -> bool {
        true
    }
}

impl Fields for http::HeaderMap {
    fn first(&self, name: &str) -> Option<&[u8]> {
        self.get(name).map(http::HeaderValue::as_bytes)
    }

    fn each<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s [u8]> + 's {
        self.get_all(name).iter().map(http::HeaderValue::as_bytes)
    }
}

impl Fields for pingora_http::RequestHeader {
    fn first(&self, name: &str) -> Option<&[u8]> {
        self.headers.first(name)
    }

    fn each<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s [u8]> + 's {
        self.headers.each(name)
    }
}

/// A field value as text, when it is visible ASCII, spaces and tabs (RFC 9110 field content).
pub fn as_text(value: &[u8]) -> Option<&str> {
    if is_text(value) {
        std::str::from_utf8(value).ok()
    } else {
        None
    }
}

/// Whether `value` is visible ASCII, spaces and tabs: a branch-free pass, which the compiler
/// vectorises (every request's checks read several values).
pub fn is_text(value: &[u8]) -> bool {
    value.iter().fold(true, |ok, &b| ok & ((b == b'\t') | ((0x20..0x7f).contains(&b))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_visible_ascii_spaces_and_tabs() {
        assert_eq!(as_text(b"application/json, text/event-stream"), Some("application/json, text/event-stream"));
        assert_eq!(as_text(b"a\tb c~"), Some("a\tb c~"));
        assert_eq!(as_text(b""), Some(""));
        for bad in [&b"caf\xc3\xa9"[..], b"a\x7fb", b"a\x00", b"\x1f", b"long value, long value, long\rvalue"] {
            assert_eq!(as_text(bad), None, "{bad:?}");
        }
        let mut map = http::HeaderMap::new();
        map.insert("accept", http::HeaderValue::from_bytes(b"caf\xc3\xa9").expect("obs-text is a valid value"));
        map.insert("host", http::HeaderValue::from_static("h"));
        assert_eq!((map.text("accept"), map.text_bytes("accept")), (None, None), "the two agree");
        assert_eq!((map.text("host"), map.text_bytes("host")), (Some("h"), Some(&b"h"[..])));
    }
}
