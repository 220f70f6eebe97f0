//! The express path's reading of a request head over the connection's read buffer: the request
//! line and fields kept as offsets into it (no `HeaderMap`, nothing copied), the field table
//! reused from one request to the next.
//!
//! A whole head of the usual kind (tokens, printable ASCII, CRLF line ends: what every client
//! sends) is read in one pass (`proto::field_lines`) that also indexes the fields; `httparse`
//! reads anything else (a head not yet whole, other bytes, bare LF line ends, leading empty
//! lines), so the express path takes exactly the heads `httparse` reads, and reads them as it
//! does: the plain pass accepts a subset of its grammar. For the load test's head of seven
//! fields the plain pass, indexing included, costs about 1,850 instructions, where `httparse`'s
//! reading and a second walk over its fields to index them cost 2,600.
//!
//! Anything unusual to `httparse` too — a head too large or not yet whole at [`MAX_HEAD`], too
//! many fields, a grammar error — is *declined*: Pingora's reader then reads the same bytes and
//! answers as it always has (with its own limits and error statuses).

use std::ops::Range;

use crate::proto::field_lines::{folded_eq, is_token, is_token_byte, read_fields};
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

/// The longest of [`INDEXED`]'s names.
const LONGEST: usize = 20;

/// [`INDEXED`]'s positions by name length (no more than three names share one), `NONE` after
/// the last: a field's name is compared with the names of its length only.
const BY_LENGTH: [[u8; 3]; LONGEST + 1] = {
    let mut table = [[NONE; 3]; LONGEST + 1];
    let mut slot = 0;
    while slot < INDEXED.len() {
        let same = &mut table[INDEXED[slot].len()];
        let mut i = 0;
        while same[i] != NONE {
            i += 1;
        }
        same[i] = slot as u8;
        slot += 1;
    }
    table
};
const NONE: u8 = u8::MAX;

/// The position in [`INDEXED`] of a field name as sent, in any case. The name's bytes are
/// printable ASCII (both readers make sure of it first).
fn indexed_field(name: &[u8]) -> Option<usize> {
    for &slot in BY_LENGTH.get(name.len())? {
        // `NONE` ends the names of this length, and is no position.
        let lowercase = INDEXED.get(usize::from(slot))?;
        if folded_eq(name, lowercase.as_bytes()) {
            return Some(usize::from(slot));
        }
    }
    None
}

impl RequestHead {
    /// Parses the head at the start of `buf` into `self` (its field table reused).
    pub fn scan(&mut self, buf: &[u8]) -> Scan {
        match self.read_plain(buf) {
            Some(len) => Scan::Complete(len),
            None => self.read_any(buf),
        }
    }

    /// Reads a whole head of the usual kind in one pass, its fields indexed as they are read:
    /// its length, or `None` for a head the pass leaves to [`Self::read_any`] (which may
    /// still read it). Every head this accepts, `httparse` accepts and reads the same way
    /// (the unit tests and the `headers` fuzz target compare the two).
    fn read_plain(&mut self, buf: &[u8]) -> Option<usize> {
        let head = &buf[..buf.len().min(MAX_HEAD)];
        // The request line: a token, a space, printable ASCII, a space, the version, CRLF.
        let method_len = head.iter().position(|&b| !is_token_byte(b))?;
        if method_len == 0 || head[method_len] != b' ' {
            return None;
        }
        let target_start = method_len + 1;
        let target_len = head[target_start..].iter().position(|&b| !(b'!'..=b'~').contains(&b))?;
        let target_end = target_start + target_len;
        if target_len == 0 || head[target_end] != b' ' {
            return None;
        }
        let http11 = match head.get(target_end + 1..target_end + 11)? {
            b"HTTP/1.1\r\n" => true,
            b"HTTP/1.0\r\n" => false,
            _ => return None,
        };
        self.method = 0..method_len;
        self.target = target_start..target_end;
        self.http11 = http11;
        self.fields.clear();
        self.first_at = [0; INDEXED.len()];
        self.repeats = false;
        let fields = &mut self.fields;
        let (first_at, repeats) = (&mut self.first_at, &mut self.repeats);
        read_fields(head, target_end + 11, |name, name_at, value_at| {
            // An indexed name is made of tokens; any other is checked byte by byte.
            let slot = indexed_field(name);
            if fields.len() == MAX_FIELDS || slot.is_none() && !is_token(name) {
                return false;
            }
            if let Some(slot) = slot {
                if first_at[slot] == 0 {
                    // At most MAX_FIELDS (64) fields: the index fits.
                    first_at[slot] = u8::try_from(fields.len() + 1).unwrap_or(u8::MAX);
                } else {
                    *repeats = true;
                }
            }
            fields.push((name_at, value_at));
            true
        })
    }

    /// Reads any head `httparse` reads (the field table reused).
    fn read_any(&mut self, buf: &[u8]) -> Scan {
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

/// Whether the plain pass reads `buf`; when it does, asserts that `httparse` reads it too, and
/// alike (the unit tests and the `headers` fuzz target hold the two readers to each other).
pub(crate) fn read_alike(buf: &[u8]) -> bool {
    /// What a reading found: the result, and for a whole head its parts (values compared as
    /// bytes: an empty value's offset is immaterial).
    fn reading(head: &RequestHead, scan: Scan, buf: &[u8]) -> String {
        let Scan::Complete(len) = scan else { return format!("{scan:?}") };
        let view = head.view(buf);
        let fields: Vec<_> = head.fields.iter().map(|(n, v)| (n.clone(), view.part(v))).collect();
        format!(
            "{len} {:?} {:?} {} {fields:?} {:?} {}",
            head.method, head.target, head.http11, head.first_at, head.repeats
        )
    }
    let (mut plain, mut any) = (RequestHead::default(), RequestHead::default());
    let Some(len) = plain.read_plain(buf) else { return false };
    let scan = any.read_any(buf);
    assert_eq!(
        reading(&plain, Scan::Complete(len), buf),
        reading(&any, scan, buf),
        "{:?}",
        String::from_utf8_lossy(buf)
    );
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::field_lines::variants;

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
    fn the_plain_pass_reads_what_httparse_reads_and_as_it_does() {
        let heads: [&[u8]; 4] = [
            REQUEST,
            b"POST /mcp?x=%20&y HTTP/1.1\r\nHost: h:1\r\nAccept: a,\t b  \t\r\nX-Empty:\r\nX-Blank: \t \r\n\r\n",
            b"GET / HTTP/1.0\r\nx_y.z~!: v\r\nUser-Agent:ua/1 (x; y)\r\nConnection: close\r\nCONNECTION: x\r\n\r\n",
            b"M-S.E!* * HTTP/1.1\r\n\r\n",
        ];
        for head in heads {
            assert!(read_alike(head), "the usual head is the plain pass's: {:?}", String::from_utf8_lossy(head));
            // Whatever the plain pass takes, httparse takes and reads alike.
            let taken = variants(head).filter(|(replaced, head)| read_alike(head) && *replaced).count();
            assert!(taken > head.len() * 16, "many changes keep a head plain: {taken}");
            let mut plain = RequestHead::default();
            let whole = plain.read_plain(head).unwrap_or_default();
            for cut in 0..whole {
                assert_eq!(plain.read_plain(&head[..cut]), None, "a head not yet whole is httparse's to judge");
            }
        }
        let mut repeated = Vec::from(&b"POST /mcp HTTP/1.1\r\n"[..]);
        for i in 0..MAX_FIELDS {
            repeated.extend_from_slice(format!("x-{i}: 1\r\n").as_bytes());
        }
        let mut many = repeated.clone();
        repeated.extend_from_slice(b"\r\n");
        assert!(read_alike(&repeated), "as many fields as the table holds");
        many.extend_from_slice(b"one-more: 1\r\n\r\n");
        assert!(!read_alike(&many), "one more is left to httparse (which declines it)");
    }

    #[test]
    fn an_indexed_name_is_found_in_any_case_and_nothing_else_is() {
        let folded = |name: &[u8]| INDEXED.iter().position(|n| n.as_bytes().eq_ignore_ascii_case(name));
        for name in INDEXED {
            for at in 0..name.len() {
                for byte in b'!'..=b'~' {
                    let mut changed = name.as_bytes().to_vec();
                    changed[at] = byte;
                    assert_eq!(indexed_field(&changed), folded(&changed), "{:?}", String::from_utf8_lossy(&changed));
                }
            }
            assert_eq!(indexed_field(name.to_uppercase().as_bytes()), folded(name.as_bytes()));
            assert_eq!(indexed_field(&name.as_bytes()[1..]), None);
        }
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
