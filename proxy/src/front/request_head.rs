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
    /// One of [`INDEXED`]'s names occurs more than once (every name whose copies are checked
    /// is among them).
    repeats: bool,
    /// Where each of [`INDEXED`]'s names first occurs: its index in `fields` plus one, 0 when
    /// absent.
    first_at: [u8; INDEXED.len()],
}

/// Field names every request looks up (several of them more than once): found in the pass that
/// reads the head, so that their lookups are an index, not a walk over every field comparing
/// names. Spelt lowercase, as the lookups spell them.
pub(crate) const INDEXED: [&str; 15] = [
    "host",
    "accept",
    "expect",
    "origin",
    "upgrade",
    "connection",
    "mcp-method",
    "mcp-name",
    "content-type",
    "authorization",
    "last-event-id",
    "content-length",
    "mcp-session-id",
    "transfer-encoding",
    "mcp-protocol-version",
];

/// The position in [`INDEXED`] of `lowercase`. Inlined, so that a lookup by a literal name
/// (every lookup there is) comes down to its position.
#[inline(always)]
fn indexed(lowercase: &[u8]) -> Option<usize> {
    INDEXED.iter().position(|name| name.as_bytes() == lowercase)
}

/// The position in [`INDEXED`] of a field name as sent, in any case.
fn indexed_field(name: &[u8]) -> Option<usize> {
    const LONGEST: usize = 20;
    let mut lower = [0u8; LONGEST];
    let lower = lower.get_mut(..name.len())?;
    for (l, b) in lower.iter_mut().zip(name) {
        *l = b.to_ascii_lowercase();
    }
    indexed(lower)
}

impl RequestHead {
    /// Parses the head at the start of `buf` into `self` (its field table reused).
    pub fn scan(&mut self, buf: &[u8]) -> Scan {
        // Left uninitialised: the parser writes the fields it finds (zeroing the whole table
        // for every request cost more than reading a small head).
        let mut storage = [const { std::mem::MaybeUninit::uninit() }; MAX_FIELDS];
        let mut req = httparse::Request::new(&mut []);
        let len = match req.parse_with_uninit_headers(buf, &mut storage) {
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
        self.first_at = [0; INDEXED.len()];
        self.repeats = false;
        for (i, h) in req.headers.iter().enumerate() {
            if let Some(slot) = indexed_field(h.name.as_bytes()) {
                if self.first_at[slot] == 0 {
                    // At most MAX_FIELDS (64) fields: the index fits.
                    self.first_at[slot] = u8::try_from(i + 1).unwrap_or(u8::MAX);
                } else {
                    self.repeats = true;
                }
            }
        }
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

impl<'a> HeadView<'a> {
    /// The first value of a name that is not in [`INDEXED`]: a walk over the fields.
    #[inline(never)]
    fn search(&self, name: &str) -> Option<&'a [u8]> {
        self.all().find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes())).map(|(_, v)| v)
    }
}

impl Fields for HeadView<'_> {
    // Inlined, so that a lookup by a literal name finds its index when compiled.
    #[inline]
    fn first(&self, name: &str) -> Option<&[u8]> {
        match indexed(name.as_bytes()) {
            Some(slot) => {
                let at = usize::from(self.head.first_at[slot]).checked_sub(1)?;
                self.head.fields.get(at).map(|(_, v)| self.part(v))
            }
            None => self.search(name),
        }
    }

    #[inline]
    fn each<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s [u8]> + 's {
        // An indexed name in a head where no indexed name repeats has its first value only.
        let single = !self.head.repeats && indexed(name.as_bytes()).is_some();
        let walked = self.all().take(if single { 0 } else { usize::MAX });
        let first = if single { self.first(name) } else { None };
        first.into_iter().chain(walked.filter(move |(n, _)| n.eq_ignore_ascii_case(name.as_bytes())).map(|(_, v)| v))
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
    fn indexed_fields_are_found_as_a_walk_finds_them() {
        let mut head = RequestHead::default();
        let request = b"POST /mcp HTTP/1.1\r\nMCP-Method: tools/call\r\nx-mcp-name: no\r\nMcp-Name: a\r\n\
            mcp-name: b\r\nHOST: h\r\nAccept-Language: en\r\nMcp-Protocol-Version-X: 1\r\nEXPECT: 100-continue\r\n\
            upgrade: h2c\r\n\r\n";
        let Scan::Complete(_) = head.scan(request) else { panic!("complete") };
        let view = head.view(request);
        let walked = |name: &str| view.all().find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes())).map(|(_, v)| v);
        for (slot, name) in INDEXED.iter().enumerate() {
            assert_eq!(indexed(name.as_bytes()), Some(slot), "{name}");
        }
        for name in INDEXED.into_iter().chain(["accept-language", "x-mcp-name", "MCP-NAME", "mcp-protocol-version-x"]) {
            assert_eq!(view.first(name), walked(name), "{name}");
        }
        let walked_all = |view: &HeadView<'_>, name: &str| -> Vec<Vec<u8>> {
            let all = view.all().filter(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()));
            all.map(|(_, v)| v.to_vec()).collect()
        };
        let each = |view: &HeadView<'_>, name: &str| -> Vec<Vec<u8>> { view.each(name).map(<[u8]>::to_vec).collect() };
        assert!(view.may_repeat());
        for name in INDEXED.into_iter().chain(["MCP-NAME", "x-mcp-name"]) {
            assert_eq!(each(&view, name), walked_all(&view, name), "{name}, names repeat");
        }
        let single = b"POST /mcp HTTP/1.1\r\nConnection: keep-alive\r\ncontent-length: 2\r\nX-Other: 1\r\n\r\n";
        let mut other = RequestHead::default();
        let Scan::Complete(_) = other.scan(single) else { panic!("complete") };
        let single_view = other.view(single);
        assert!(!single_view.may_repeat());
        for name in INDEXED.into_iter().chain(["x-other", "CONNECTION"]) {
            assert_eq!(each(&single_view, name), walked_all(&single_view, name), "{name}, no name repeats");
        }
        assert_eq!(each(&single_view, "content-length"), [b"2".to_vec()]);
        assert_eq!(view.first("mcp-name"), Some(&b"a"[..]), "the first of two");
        assert_eq!(view.first("host"), Some(&b"h"[..]));
        assert_eq!((view.first("expect"), view.first("Upgrade")), (Some(&b"100-continue"[..]), Some(&b"h2c"[..])));
        assert_eq!(view.first("accept"), None, "a longer name is another name");
        let next = b"GET / HTTP/1.1\r\nOrigin: o\r\n\r\n";
        let Scan::Complete(_) = head.scan(next) else { panic!("complete") };
        assert_eq!(
            (head.view(next).first("host"), head.view(next).first("origin")),
            (None, Some(&b"o"[..])),
            "refilled"
        );
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
