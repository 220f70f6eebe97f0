//! The express path's reading of a request head: `httparse` over the connection's read buffer,
//! the request line and fields kept as offsets into it (no `HeaderMap`, nothing copied), the
//! field table reused from one request to the next.
//!
//! Anything unusual — a head too large or not yet whole at [`MAX_HEAD`], too many fields, a
//! grammar error — is *declined*: Pingora's reader then reads the same bytes and answers as it
//! always has (with its own limits and error statuses).

use std::ops::Range;

use crate::proto::fields::Fields;

/// The largest head the express path reads; a larger one is left to Pingora's reader.
pub const MAX_HEAD: usize = 16 << 10;
/// The most fields the express path reads.
const MAX_FIELDS: usize = 64;

/// What a look at the read buffer found.
#[derive(Debug, PartialEq, Eq)]
pub enum Scan {
    /// A whole head, `len` bytes long; its parts are in the [`RequestHead`].
    Complete(usize),
    /// More bytes are needed.
    Partial,
    /// Not for the express path.
    Declined,
}

/// A parsed request head, as offsets into the bytes it was parsed from.
#[derive(Debug, Default)]
pub struct RequestHead {
    method: Range<usize>,
    target: Range<usize>,
    http11: bool,
    fields: Vec<(Range<usize>, Range<usize>)>,
    /// Some field name occurs more than once.
    repeats: bool,
}

impl RequestHead {
    /// Parses the head at the start of `buf` into `self` (its field table reused).
    pub fn scan(&mut self, buf: &[u8]) -> Scan {
        let mut storage = [httparse::EMPTY_HEADER; MAX_FIELDS];
        let mut req = httparse::Request::new(&mut storage);
        let len = match req.parse(buf) {
            Ok(httparse::Status::Complete(len)) if len <= MAX_HEAD => len,
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => return Scan::Partial,
            _ => return Scan::Declined,
        };
        let base = buf.as_ptr() as usize;
        let offset = |s: &[u8]| {
            let start = s.as_ptr() as usize - base;
            start..start + s.len()
        };
        let (Some(method), Some(target)) = (req.method, req.path) else { return Scan::Declined };
        self.method = offset(method.as_bytes());
        self.target = offset(target.as_bytes());
        self.http11 = req.version == Some(1);
        self.fields.clear();
        self.fields.extend(req.headers.iter().map(|h| (offset(h.name.as_bytes()), offset(h.value))));
        let names = || req.headers.iter().map(|h| h.name.as_bytes());
        self.repeats = names().enumerate().any(|(i, a)| names().take(i).any(|b| a.eq_ignore_ascii_case(b)));
        Scan::Complete(len)
    }

    /// The head's parts over `bytes`, the buffer it was parsed from.
    pub fn view<'a>(&'a self, bytes: &'a [u8]) -> HeadView<'a> {
        HeadView { bytes, head: self }
    }
}

/// A parsed head together with its bytes.
#[derive(Clone, Copy)]
pub struct HeadView<'a> {
    bytes: &'a [u8],
    head: &'a RequestHead,
}

impl<'a> HeadView<'a> {
    fn part(&self, range: &Range<usize>) -> &'a [u8] {
        self.bytes.get(range.clone()).unwrap_or_default()
    }

    /// The request method.
    pub fn method(&self) -> &'a [u8] {
        self.part(&self.head.method)
    }

    /// The request target as sent (origin form for the express path).
    pub fn target(&self) -> &'a [u8] {
        self.part(&self.head.target)
    }

    /// Whether the request is HTTP/1.1 (else 1.0).
    pub fn http11(&self) -> bool {
        self.head.http11
    }

    /// Every field, name and value.
    pub fn all(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + '_ {
        self.head.fields.iter().map(|(n, v)| (self.part(n), self.part(v)))
    }
}

impl Fields for HeadView<'_> {
    fn first(&self, name: &str) -> Option<&[u8]> {
        self.all().find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes())).map(|(_, v)| v)
    }

    fn each<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s [u8]> + 's {
        self.all().filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes())).map(|(_, v)| v)
    }

    fn may_repeat(&self) -> bool {
        self.head.repeats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUEST: &[u8] = b"POST /mcp HTTP/1.1\r\nHost: localhost\r\nMcp-Name: a\r\nmcp-name: b\r\n\
        Content-Length: 2\r\n\r\n{}";

    #[test]
    fn a_whole_head_is_read_into_views() {
        let mut head = RequestHead::default();
        let Scan::Complete(len) = head.scan(REQUEST) else { panic!("complete") };
        assert_eq!(&REQUEST[len..], b"{}");
        let view = head.view(REQUEST);
        assert_eq!((view.method(), view.target(), view.http11()), (&b"POST"[..], &b"/mcp"[..], true));
        assert_eq!(view.text("host"), Some("localhost"));
        assert_eq!(view.each("MCP-NAME").collect::<Vec<_>>(), [&b"a"[..], &b"b"[..]]);
        assert_eq!(view.first("origin"), None);
        assert!(view.may_repeat(), "Mcp-Name twice");
        assert_eq!(view.first("mcp-nam"), None, "a prefix is another name");
        assert_eq!(view.first("CONTENT-LENGTH"), Some(&b"2"[..]));
        assert_eq!(view.all().count(), 4);
        let once = b"POST /mcp HTTP/1.1\r\nHost: a\r\nMcp-Name: b\r\n\r\n";
        let Scan::Complete(_) = head.scan(once) else { panic!("complete") };
        assert!(!head.view(once).may_repeat(), "the head read last decides");
    }

    #[test]
    fn partial_large_and_broken_heads() {
        let mut head = RequestHead::default();
        assert_eq!(head.scan(&REQUEST[..30]), Scan::Partial);
        assert_eq!(head.scan(b"POST /mcp HTTP/1.1\r\nbad header\r\n\r\n"), Scan::Declined);
        let mut huge = b"POST /mcp HTTP/1.1\r\nx: ".to_vec();
        huge.resize(MAX_HEAD + 1, b'a');
        assert_eq!(head.scan(&huge), Scan::Declined, "a head not whole at the limit goes to Pingora");
        let mut many = b"POST /mcp HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_FIELDS {
            many.extend_from_slice(format!("x-{i}: 1\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(head.scan(&many), Scan::Declined, "too many fields");
    }

    #[test]
    fn the_field_table_is_refilled_not_appended() {
        let mut head = RequestHead::default();
        assert!(matches!(head.scan(REQUEST), Scan::Complete(_)));
        let second = b"GET / HTTP/1.0\r\nA: 1\r\n\r\n";
        assert!(matches!(head.scan(second), Scan::Complete(_)));
        let view = head.view(second);
        assert_eq!(view.all().count(), 1);
        assert!(!view.http11());
        assert_eq!(view.text("a"), Some("1"));
    }
}
