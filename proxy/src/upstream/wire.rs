//! HTTP/1.1 on the wire, for the upstream client: the request head rendered into one buffer, the
//! response head parsed once with `httparse` into offsets over its own bytes (no `HeaderMap`),
//! and the body's framing (RFC 9112 §6: Content-Length, chunked, or until the connection closes)
//! decoded over the read buffer without copying the data out of it.
//!
//! Pure functions over bytes, so every framing rule is unit-tested here; the socket side is in
//! `upstream::http`.

use std::ops::Range;

use bytes::{Buf, Bytes, BytesMut};

use crate::proto::field_lines::{is_token, read_fields, value_end};

/// The largest response head accepted (status line and fields).
pub const MAX_HEAD: usize = 64 << 10;
/// The most header fields a response head may have.
const MAX_FIELDS: usize = 128;
/// The longest chunk-size line (size and extensions).
const MAX_CHUNK_LINE: usize = 4 << 10;
/// The most trailer bytes after the last chunk.
const MAX_TRAILERS: usize = 16 << 10;

/// Why a response could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The head is not HTTP/1.x or breaks its grammar.
    #[error("invalid response head: {0}")]
    Head(String),
    /// The head is larger than [`MAX_HEAD`] or has more than its field limit.
    #[error("response head larger than {MAX_HEAD} bytes or {MAX_FIELDS} fields")]
    HeadTooLarge,
    /// The body's framing is broken (a bad chunk size, conflicting lengths).
    #[error("invalid response body framing: {0}")]
    Framing(&'static str),
    /// The connection closed before the body ended.
    #[error("the connection closed before the response body ended")]
    Truncated,
}

/// A request header field: its name and value.
pub type Field<'a> = (http::HeaderName, std::borrow::Cow<'a, str>);

/// Request header fields checked by [`check_fields`]: the only fields a head takes, so none is
/// written unchecked, and none twice checked.
#[derive(Clone, Copy)]
pub struct Checked<'f, 'a>(&'f [Field<'a>]);

/// `fields`, when they can be written: a value with a control character (other than a tab) is
/// refused, as it would end the field early and inject another.
pub fn check_fields<'f, 'a>(fields: &'f [Field<'a>]) -> Result<Checked<'f, 'a>, String> {
    for (name, value) in fields {
        if let Some(bad) = field_breaker(value.as_bytes()) {
            return Err(format!("invalid {name} header: control character 0x{bad:02x} in its value"));
        }
    }
    Ok(Checked(fields))
}

/// The start of a request head: the request line, `Host` and `fields`. A start that many
/// requests share is rendered once (an upstream's pass-through calls) and copied; [`end_head`]
/// completes it.
pub fn head_start(method: &str, target: &str, authority: &str, fields: &[Field<'_>]) -> Result<BytesMut, String> {
    let fields = check_fields(fields)?;
    let fields_len: usize = fields.0.iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum();
    let mut head = BytesMut::with_capacity(method.len() + target.len() + authority.len() + fields_len + 32);
    put_request_line(&mut head, method, target, authority);
    put_fields(&mut head, fields);
    Ok(head)
}

/// Appends the request line and `Host`: a head's start when none was rendered ahead.
pub fn put_request_line(head: &mut BytesMut, method: &str, target: &str, authority: &str) {
    head.extend_from_slice(method.as_bytes());
    head.extend_from_slice(b" ");
    head.extend_from_slice(target.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    head.extend_from_slice(authority.as_bytes());
    head.extend_from_slice(b"\r\n");
}

/// Ends a head begun by [`head_start`] or [`put_request_line`]: `fields`, `Content-Length`
/// (left out of a GET without a body) and the empty line.
pub fn end_head(head: &mut BytesMut, fields: Checked<'_, '_>, method: &str, body_len: usize) {
    put_fields(head, fields);
    if method != "GET" || body_len > 0 {
        head.extend_from_slice(b"content-length: ");
        put_number(head, body_len, 10);
        head.extend_from_slice(b"\r\n");
    }
    head.extend_from_slice(b"\r\n");
}

fn put_fields(head: &mut BytesMut, fields: Checked<'_, '_>) {
    for (name, value) in fields.0 {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
}

/// Appends `n` in base `radix` (10 or 16, lower case) to `out`: the numbers of HTTP/1 heads and
/// chunk lines, without `fmt`'s machinery.
pub fn put_number(out: &mut BytesMut, mut n: usize, radix: usize) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b"0123456789abcdef"[n % radix];
        n /= radix;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// The first byte of `value` that would end a header field early (a control character other than
/// a tab, or DEL): a branch-free pass, which the compiler vectorises, and a search only when
/// there is one (every call's head checks each of its values).
fn field_breaker(value: &[u8]) -> Option<u8> {
    let breaks = |b: u8| ((b < 0x20) & (b != b'\t')) | (b == 0x7f);
    if !value.iter().fold(false, |any, &b| any | breaks(b)) {
        return None;
    }
    value.iter().copied().find(|&b| breaks(b))
}

/// How the body of a response ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body (204, 304, a reply to HEAD).
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked transfer coding.
    Chunked,
    /// Everything until the server closes the connection.
    UntilClose,
}

/// A parsed response head: status, fields as offsets into the head's bytes, framing, and
/// whether the connection may carry another request afterwards.
#[derive(Debug, Clone)]
pub struct ResponseHead {
    bytes: Bytes,
    fields: Vec<(Range<usize>, Range<usize>)>,
    /// The first `Content-Type` value, located as the head is parsed: every reply is sorted by it.
    content_type: Option<Range<usize>>,
    /// The status code.
    pub status: u16,
    /// How the body ends.
    pub framing: Framing,
    /// Whether the server keeps the connection open after this response.
    pub keep_alive: bool,
}

impl ResponseHead {
    /// The first value of field `name` (case-insensitive), if it is valid UTF-8.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(n, _)| self.bytes[n.clone()].eq_ignore_ascii_case(name.as_bytes()))
            .and_then(|(_, v)| std::str::from_utf8(&self.bytes[v.clone()]).ok())
    }

    /// The first `Content-Type` value, as sent.
    pub fn content_type(&self) -> Option<&[u8]> {
        self.content_type.clone().and_then(|r| self.bytes.get(r))
    }

    /// Every value of field `name`, for fields that are lists.
    fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.fields
            .iter()
            .filter(move |(n, _)| self.bytes[n.clone()].eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| &self.bytes[v.clone()])
    }
}

/// Parses a response head at the start of `buf`. `Ok(None)` while it is incomplete; once whole,
/// the head is split off `buf`. `head_request` says the request was HEAD (no body follows).
pub fn parse_head(buf: &mut BytesMut, head_request: bool) -> Result<Option<ResponseHead>, WireError> {
    if buf.is_empty() {
        return Ok(None);
    }
    let (len, status, http11, fields) = match read_plain(buf) {
        Some(plain) => plain,
        None => match read_any(buf)? {
            Some(read) => read,
            None => return Ok(None),
        },
    };
    let bytes = buf.split_to(len).freeze();
    // Kept as a range: every response is asked for it (whether it is a stream, what to relay).
    let content_type = fields.iter().find(|(n, _)| bytes[n.clone()].eq_ignore_ascii_case(b"content-type"));
    let content_type = content_type.map(|(_, v)| v.clone());
    let mut head =
        ResponseHead { bytes, fields, content_type, status, framing: Framing::UntilClose, keep_alive: false };
    head.framing = framing(&head, head_request)?;
    let connection = |token: &str| head.values("connection").any(|v| has_token(v, token));
    head.keep_alive =
        head.framing != Framing::UntilClose && if http11 { !connection("close") } else { connection("keep-alive") };
    Ok(Some(head))
}

/// A response head as read: its length, status, whether HTTP/1.1, and its fields.
type HeadRead = (usize, u16, bool, Vec<(Range<usize>, Range<usize>)>);

/// Reads a whole head of the usual kind (`proto::field_lines`): a status line of a version, a
/// three-digit status and a printable reason, and plain fields; `None` for anything else,
/// which [`read_any`] reads. Every head this accepts, `httparse` accepts and reads alike (the
/// tests compare the two).
fn read_plain(buf: &[u8]) -> Option<HeadRead> {
    let head = &buf[..buf.len().min(MAX_HEAD)];
    let http11 = match head.get(..9)? {
        b"HTTP/1.1 " => true,
        b"HTTP/1.0 " => false,
        _ => return None,
    };
    let [hundreds, tens, ones, b' '] = *head.get(9..13)?.first_chunk::<4>()? else { return None };
    if ![hundreds, tens, ones].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let status = [hundreds, tens, ones].iter().fold(0, |n, d| n * 10 + u16::from(d - b'0'));
    let reason_len = value_end(&head[13..])?;
    let mut fields = Vec::with_capacity(8);
    let len = read_fields(head, 13 + reason_len + 2, |name, name_at, value_at| {
        if fields.len() == MAX_FIELDS || !is_token(name) {
            return false;
        }
        fields.push((name_at, value_at));
        true
    })?;
    Some((len, status, http11, fields))
}

/// Reads any head `httparse` reads; `None` while it is not yet whole.
fn read_any(buf: &[u8]) -> Result<Option<HeadRead>, WireError> {
    // Left uninitialised: the parser writes the fields it finds (zeroing the whole table for
    // every response cost more than reading a small head).
    let mut storage = [const { std::mem::MaybeUninit::uninit() }; MAX_FIELDS];
    let mut parsed = httparse::Response::new(&mut []);
    let len = match httparse::ParserConfig::default().parse_response_with_uninit_headers(&mut parsed, buf, &mut storage)
    {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => return Err(WireError::HeadTooLarge),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(WireError::HeadTooLarge),
        Err(e) => return Err(WireError::Head(e.to_string())),
    };
    if len > MAX_HEAD {
        return Err(WireError::HeadTooLarge);
    }
    let status = parsed.code.unwrap_or_default();
    let http11 = parsed.version == Some(1);
    let base = buf.as_ptr() as usize;
    let offset = |s: &[u8]| {
        let start = s.as_ptr() as usize - base;
        start..start + s.len()
    };
    let fields = parsed.headers.iter().map(|h| (offset(h.name.as_bytes()), offset(h.value))).collect();
    Ok(Some((len, status, http11, fields)))
}

/// The body's framing, as RFC 9112 §6.3 orders the rules.
fn framing(head: &ResponseHead, head_request: bool) -> Result<Framing, WireError> {
    if head_request || (100..200).contains(&head.status) || head.status == 204 || head.status == 304 {
        return Ok(Framing::Empty);
    }
    let codings: Vec<&[u8]> = head.values("transfer-encoding").collect();
    if !codings.is_empty() {
        // Chunked only as the final coding; anything else runs until the connection closes.
        let last = codings.iter().flat_map(|v| v.split(|&b| b == b',')).map(trim).rfind(|t| !t.is_empty());
        return Ok(match last {
            Some(t) if t.eq_ignore_ascii_case(b"chunked") => Framing::Chunked,
            _ => Framing::UntilClose,
        });
    }
    let mut length = None;
    for value in head.values("content-length") {
        for part in value.split(|&b| b == b',').map(trim) {
            let n = parse_decimal(part).ok_or(WireError::Framing("invalid Content-Length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(WireError::Framing("conflicting Content-Length values"));
            }
            length = Some(n);
        }
    }
    Ok(length.map_or(Framing::UntilClose, Framing::Length))
}

fn trim(s: &[u8]) -> &[u8] {
    let start = s.iter().position(|b| !b.is_ascii_whitespace()).unwrap_or(s.len());
    let end = s.iter().rposition(|b| !b.is_ascii_whitespace()).map_or(start, |e| e + 1);
    &s[start..end.max(start)]
}

fn has_token(value: &[u8], token: &str) -> bool {
    value.split(|&b| b == b',').any(|t| trim(t).eq_ignore_ascii_case(token.as_bytes()))
}

/// A length field's value: decimal digits only (no sign, no blanks), at most 19 of them.
pub fn parse_decimal(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.iter().try_fold(0u64, |n, &d| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))
}

/// Decodes a response body from the read buffer as it fills.
#[derive(Debug)]
pub struct BodyDecoder {
    state: State,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Length(u64),
    UntilClose,
    /// Waiting for a chunk-size line.
    ChunkSize,
    /// Inside a chunk: this many data bytes left.
    ChunkData(u64),
    /// After a chunk's data: its CRLF.
    ChunkEnd,
    /// After the last chunk: trailer fields until an empty line.
    Trailers(usize),
    Done,
}

impl BodyDecoder {
    /// A decoder for a body framed as `framing`.
    pub fn new(framing: Framing) -> Self {
        let state = match framing {
            Framing::Empty | Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::ChunkSize,
            Framing::UntilClose => State::UntilClose,
        };
        Self { state }
    }

    /// Whether the whole body has been decoded.
    pub fn done(&self) -> bool {
        self.state == State::Done
    }

    /// The body bytes still expected, when the framing says (for sizing the buffer).
    pub fn remaining(&self) -> Option<u64> {
        match self.state {
            State::Length(n) => Some(n),
            State::Done => Some(0),
            _ => None,
        }
    }

    /// The next piece of body data in `buf` (split off it, not copied), or `None` when more
    /// bytes must be read first or the body is done.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, WireError> {
        loop {
            match self.state {
                State::Done => return Ok(None),
                State::Length(left) | State::ChunkData(left) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let take = usize::try_from(left).map_or(buf.len(), |l| l.min(buf.len()));
                    let rest = left - take as u64;
                    self.state = match self.state {
                        State::Length(_) if rest == 0 => State::Done,
                        State::Length(_) => State::Length(rest),
                        _ if rest == 0 => State::ChunkEnd,
                        _ => State::ChunkData(rest),
                    };
                    return Ok(Some(buf.split_to(take).freeze()));
                }
                State::UntilClose => {
                    return Ok((!buf.is_empty()).then(|| buf.split().freeze()));
                }
                State::ChunkSize => {
                    let Some(end) = memchr::memchr(b'\n', buf) else {
                        return if buf.len() > MAX_CHUNK_LINE {
                            Err(WireError::Framing("chunk-size line too long"))
                        } else {
                            Ok(None)
                        };
                    };
                    let line = trim(buf[..end].strip_suffix(b"\r").unwrap_or(&buf[..end]));
                    let digits = line.split(|&b| b == b';').next().map(trim).unwrap_or_default();
                    let size = parse_hex(digits).ok_or(WireError::Framing("invalid chunk size"))?;
                    buf.advance(end + 1);
                    self.state = if size == 0 { State::Trailers(0) } else { State::ChunkData(size) };
                }
                State::ChunkEnd => {
                    if buf.len() < 2 && !buf.starts_with(b"\n") {
                        return Ok(None);
                    }
                    if buf.starts_with(b"\r\n") {
                        buf.advance(2);
                    } else if buf.starts_with(b"\n") {
                        buf.advance(1);
                    } else {
                        return Err(WireError::Framing("chunk data longer than its size"));
                    }
                    self.state = State::ChunkSize;
                }
                State::Trailers(seen) => {
                    let Some(end) = memchr::memchr(b'\n', buf) else {
                        return if seen + buf.len() > MAX_TRAILERS {
                            Err(WireError::Framing("trailers too large"))
                        } else {
                            Ok(None)
                        };
                    };
                    let empty = buf[..end].strip_suffix(b"\r").unwrap_or(&buf[..end]).is_empty();
                    buf.advance(end + 1);
                    self.state = if empty { State::Done } else { State::Trailers(seen + end + 1) };
                    if seen + end + 1 > MAX_TRAILERS {
                        return Err(WireError::Framing("trailers too large"));
                    }
                }
            }
        }
    }

    /// The connection closed: fine for a body that runs until then, an error for one that
    /// had not ended.
    pub fn closed(&mut self) -> Result<(), WireError> {
        match self.state {
            State::UntilClose | State::Done => {
                self.state = State::Done;
                Ok(())
            }
            _ => Err(WireError::Truncated),
        }
    }
}

fn parse_hex(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 15 {
        return None;
    }
    s.iter().try_fold(0u64, |n, &d| Some(n * 16 + u64::from(char::from(d).to_digit(16)?)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::field_lines::variants;

    /// Whether the plain reader reads `buf`; when it does, that `httparse` reads it alike.
    fn read_alike(buf: &[u8]) -> bool {
        let shown = |(len, status, http11, fields): HeadRead| {
            let part = |r: Range<usize>| String::from_utf8_lossy(&buf[r]).into_owned();
            let fields: Vec<_> = fields.into_iter().map(|(n, v)| (n, part(v))).collect();
            format!("{len} {status} {http11} {fields:?}")
        };
        let Some(plain) = read_plain(buf) else { return false };
        let any = read_any(buf);
        assert_eq!(
            Ok(shown(plain)),
            any.map(|a| a.map(shown).unwrap_or_default()),
            "{:?}",
            String::from_utf8_lossy(buf)
        );
        true
    }

    #[test]
    fn the_plain_reader_reads_what_httparse_reads_and_as_it_does() {
        let heads: [&[u8]; 3] = [
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\ndate: x\r\n\r\n{}",
            b"HTTP/1.0 404 Not\tFound \r\nContent-Type:\ttext/event-stream  \r\nX_Y.z: \r\nCONTENT-TYPE: b\r\n\r\n",
            b"HTTP/1.1 204 \r\n\r\n",
        ];
        for head in heads {
            assert!(read_alike(head), "the usual head is the plain reader's: {:?}", String::from_utf8_lossy(head));
            let taken = variants(head).filter(|(replaced, head)| read_alike(head) && *replaced).count();
            assert!(taken > head.len(), "changes that keep a head plain: {taken}");
            let whole = read_plain(head).map_or(0, |read| read.0);
            assert!(
                (0..whole).all(|cut| read_plain(&head[..cut]).is_none()),
                "a head not yet whole is httparse's to judge"
            );
        }
    }

    #[test]
    fn numbers_in_both_bases() {
        let mut out = BytesMut::new();
        for (n, radix) in [(0, 10), (200, 10), (18_446_744_073_709_551_615, 10), (0, 16), (4095, 16)] {
            put_number(&mut out, n, radix);
            out.extend_from_slice(b" ");
        }
        assert_eq!(&out[..], b"0 200 18446744073709551615 0 fff ");
    }

    fn head(text: &str) -> ResponseHead {
        let mut buf = BytesMut::from(text);
        parse_head(&mut buf, false).expect("valid").expect("complete")
    }

    /// Decodes all of `wire` fed `step` bytes at a time; the body and whether it ended.
    fn decode(framing: Framing, wire: &[u8], step: usize) -> Result<(Vec<u8>, bool), WireError> {
        let mut decoder = BodyDecoder::new(framing);
        let (mut buf, mut out) = (BytesMut::new(), Vec::new());
        for piece in wire.chunks(step.max(1)) {
            buf.extend_from_slice(piece);
            while let Some(data) = decoder.decode(&mut buf)? {
                out.extend_from_slice(&data);
            }
        }
        Ok((out, decoder.done()))
    }

    #[test]
    fn heads_are_parsed_once_with_their_fields_and_framing() {
        let mut buf =
            BytesMut::from("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\ncontent-length: 2\r\n\r\n{}");
        assert!(parse_head(&mut BytesMut::from("HTTP/1.1 200 OK\r\nconte"), false).expect("partial").is_none());
        let h = parse_head(&mut buf, false).expect("valid").expect("complete");
        assert_eq!((h.status, h.framing, h.keep_alive), (200, Framing::Length(2), true));
        assert_eq!(h.field("CONTENT-TYPE"), Some("application/json"));
        assert_eq!(h.content_type(), Some(&b"application/json"[..]));
        assert_eq!(h.field("x-missing"), None);
        let two = head("HTTP/1.1 200 OK\r\ncontent-TYPE: text/event-stream\r\ncontent-type: x/y\r\n\r\n");
        assert_eq!(two.content_type(), Some(&b"text/event-stream"[..]), "the first of two");
        assert_eq!(head("HTTP/1.1 204 No Content\r\n\r\n").content_type(), None);
        assert_eq!(&buf[..], b"{}", "the body stays in the buffer");
    }

    #[test]
    fn framing_follows_rfc_9112() {
        assert_eq!(head("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").framing, Framing::Chunked);
        assert_eq!(
            head("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\ncontent-length: 5\r\n\r\n").framing,
            Framing::Chunked,
            "Transfer-Encoding wins over Content-Length"
        );
        let h = head("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n");
        assert_eq!((h.framing, h.keep_alive), (Framing::UntilClose, false), "not chunked last: until close");
        let h = head("HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!((h.framing, h.keep_alive), (Framing::UntilClose, false));
        assert_eq!(head("HTTP/1.1 204 No Content\r\n\r\n").framing, Framing::Empty);
        assert_eq!(head("HTTP/1.1 100 Continue\r\n\r\n").framing, Framing::Empty);
        assert_eq!(head("HTTP/1.1 200 OK\r\ncontent-length: 3, 3\r\n\r\n").framing, Framing::Length(3));
        for bad in ["content-length: 3\r\ncontent-length: 4", "content-length: -1", "content-length: 1e3"] {
            let mut buf = BytesMut::from(format!("HTTP/1.1 200 OK\r\n{bad}\r\n\r\n").as_str());
            assert!(matches!(parse_head(&mut buf, false), Err(WireError::Framing(_))), "{bad}");
        }
        let mut buf = BytesMut::from("HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n");
        assert_eq!(parse_head(&mut buf, true).expect("valid").expect("whole").framing, Framing::Empty, "HEAD");
    }

    #[test]
    fn keep_alive_follows_the_version_and_connection() {
        assert!(!head("HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n").keep_alive);
        assert!(!head("HTTP/1.1 200 OK\r\nConnection: Upgrade, Close\r\ncontent-length: 0\r\n\r\n").keep_alive);
        assert!(!head("HTTP/1.0 200 OK\r\ncontent-length: 0\r\n\r\n").keep_alive);
        assert!(head("HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 0\r\n\r\n").keep_alive);
    }

    #[test]
    fn bad_and_huge_heads_are_refused() {
        assert!(matches!(parse_head(&mut BytesMut::from("SSH-2.0-OpenSSH\r\n\r\n"), false), Err(WireError::Head(_))));
        let huge = format!("HTTP/1.1 200 OK\r\nx: {}", "a".repeat(MAX_HEAD + 1));
        assert_eq!(parse_head(&mut BytesMut::from(huge.as_str()), false).err(), Some(WireError::HeadTooLarge));
        let many: String = (0..=MAX_FIELDS).map(|i| format!("x{i}: 1\r\n")).collect();
        let many = format!("HTTP/1.1 200 OK\r\n{many}\r\n");
        assert_eq!(parse_head(&mut BytesMut::from(many.as_str()), false).err(), Some(WireError::HeadTooLarge));
    }

    #[test]
    fn bodies_decode_at_any_split() {
        let chunked = b"4\r\nWiki\r\n5;ext=1\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nx-trailer: 1\r\n\r\n";
        for step in [1, 2, 3, 7, 64] {
            assert_eq!(
                decode(Framing::Chunked, chunked, step).expect("decodes"),
                (b"Wikipedia in\r\n\r\nchunks.".to_vec(), true),
                "step {step}"
            );
            assert_eq!(decode(Framing::Length(5), b"hello", step).expect("decodes"), (b"hello".to_vec(), true));
        }
        let (body, done) = decode(Framing::UntilClose, b"all of it", 4).expect("decodes");
        assert_eq!((body.as_slice(), done), (&b"all of it"[..], false), "ends only when the connection closes");
    }

    #[test]
    fn a_body_leaves_what_follows_it_in_the_buffer() {
        let mut decoder = BodyDecoder::new(Framing::Length(2));
        let mut buf = BytesMut::from("okHTTP/1.1");
        assert_eq!(decoder.decode(&mut buf).expect("ok").as_deref(), Some(&b"ok"[..]));
        assert!(decoder.done());
        assert_eq!(decoder.decode(&mut buf).expect("ok"), None);
        assert_eq!(&buf[..], b"HTTP/1.1");
    }

    #[test]
    fn broken_chunking_and_early_close_are_errors() {
        for bad in [&b"zz\r\n"[..], b"4\r\nWikiX\r\n", b"ffffffffffffffff\r\n"] {
            assert!(matches!(decode(Framing::Chunked, bad, 64), Err(WireError::Framing(_))), "{bad:?}");
        }
        let long_line = vec![b'1'; MAX_CHUNK_LINE + 1];
        assert!(decode(Framing::Chunked, &long_line, 64).is_err());
        let mut d = BodyDecoder::new(Framing::Length(10));
        d.decode(&mut BytesMut::from("half")).expect("ok");
        assert_eq!(d.closed(), Err(WireError::Truncated));
        let mut d = BodyDecoder::new(Framing::UntilClose);
        assert_eq!(d.closed(), Ok(()));
        assert!(d.done());
    }

    /// A whole head, started and ended with the given fields.
    fn request_head(method: &str, start: &[Field<'_>], end: &[Field<'_>], body_len: usize) -> Result<BytesMut, String> {
        let mut head = head_start(method, "/mcp", "127.0.0.1:9", start)?;
        end_head(&mut head, check_fields(end)?, method, body_len);
        Ok(head)
    }

    #[test]
    fn request_heads_refuse_injected_fields() {
        let json = [(http::header::CONTENT_TYPE, "application/json".into())];
        let name = [(http::HeaderName::from_static("mcp-name"), "echo".into())];
        let head = request_head("POST", &json, &name, 2).expect("valid");
        assert_eq!(
            &head[..],
            &b"POST /mcp HTTP/1.1\r\nhost: 127.0.0.1:9\r\ncontent-type: application/json\r\nmcp-name: echo\r\n\
               content-length: 2\r\n\r\n"[..]
        );
        let get = request_head("GET", &[], &[], 0).expect("valid");
        assert!(!get.windows(14).any(|w| w == b"content-length"), "no length on a GET without a body");
        let bad = [(http::HeaderName::from_static("traceparent"), "00-1\r\nx-injected: 1".into())];
        for (start, end) in [(&bad[..], &[][..]), (&[][..], &bad[..])] {
            let err = request_head("POST", start, end, 0).expect_err("refused");
            assert!(err.contains("traceparent"), "{err}");
        }
        let long = format!("{}\u{7f}{}", "a\t".repeat(100), "é".repeat(50));
        assert_eq!(field_breaker(long.as_bytes()), Some(0x7f), "DEL deep in a long value");
        assert_eq!(field_breaker("tab\there, and é".as_bytes()), None, "a tab and UTF-8 pass");
        assert_eq!(field_breaker(b"a\x1fb\x00"), Some(0x1f), "the first breaker");
    }
}
