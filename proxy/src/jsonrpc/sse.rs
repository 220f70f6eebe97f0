//! Server-Sent Events: framing JSON-RPC messages for clients (`event: message`, as real clients
//! expect) and an incremental, size-bounded decoder for upstream streams.

use bytes::{Bytes, BytesMut};

/// Frames one JSON message as an SSE `message` event. Multi-line JSON (pretty-printed by some
/// upstreams) is split into several `data:` lines, as the SSE format requires.
pub fn frame_message(json: &[u8]) -> Bytes {
    frame(None, json)
}

/// Frames one JSON message as an SSE `message` event with an event id (for legacy resumability).
pub fn frame_message_with_id(id: &str, json: &[u8]) -> Bytes {
    frame(Some(id), json)
}

fn frame(id: Option<&str>, json: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(json.len() + 32);
    out.extend_from_slice(b"event: message\n");
    if let Some(id) = id {
        out.extend_from_slice(b"id: ");
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(b"\n");
    }
    for line in json.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line);
        out.extend_from_slice(b"\n");
    }
    out.extend_from_slice(b"\n");
    out.freeze()
}

/// A keep-alive comment line; proxies and clients ignore it but it keeps idle streams open.
pub const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

/// One decoded event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Event {
    /// `event:` field (`message` when absent).
    pub event: Option<String>,
    /// `data:` lines joined with `\n`.
    pub data: String,
    /// `id:` field.
    pub id: Option<String>,
    /// `retry:` field (milliseconds), the reconnection delay the server asks for.
    pub retry: Option<u64>,
}

impl Event {
    /// Whether the event carries a JSON-RPC message (type `message` or untyped).
    pub fn is_message(&self) -> bool {
        matches!(self.event.as_deref(), None | Some("message"))
    }
}

/// One decoded event as [`Decoder::feed_with`] shows it: borrowed from the bytes fed or from the
/// decoder, so that the usual event (one `data:` line in one chunk) is read where it lies,
/// without a copy or an allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventView<'a> {
    /// `event:` field (`message` when absent).
    pub event: Option<&'a str>,
    /// `data:` lines joined with `\n`.
    pub data: &'a str,
    /// `id:` field.
    pub id: Option<&'a str>,
    /// `retry:` field (milliseconds).
    pub retry: Option<u64>,
}

impl EventView<'_> {
    /// Whether the event carries a JSON-RPC message (type `message` or untyped).
    pub fn is_message(&self) -> bool {
        matches!(self.event, None | Some("message"))
    }

    /// The event, owned.
    pub fn to_event(&self) -> Event {
        Event {
            event: self.event.map(str::to_owned),
            data: self.data.to_owned(),
            id: self.id.map(str::to_owned),
            retry: self.retry,
        }
    }
}

/// Why a stream could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// One event grew past the limit (a misbehaving or hostile upstream).
    #[error("SSE event larger than {0} bytes")]
    TooLarge(usize),
    /// The stream is not UTF-8.
    #[error("SSE stream is not UTF-8")]
    NotUtf8,
}

/// The fields of the event being read.
#[derive(Debug, Default)]
struct Pending {
    /// `event:`; `message`, the usual name, is kept without an allocation.
    event: Option<std::borrow::Cow<'static, str>>,
    /// The `data:` lines read so far, joined, unless they are one line still lying in the text
    /// being read (then [`Lines::data`] says where).
    data: String,
    has_data: bool,
    id: Option<String>,
    retry: Option<u64>,
}

/// The largest data allocation a decoder keeps between events: a long-lived stream that once
/// carried a large event does not hold its size for the rest of its life.
const KEPT_DATA: usize = 16 << 10;

impl Pending {
    /// Forgets the event, keeping the data's allocation for the next one unless it is large.
    fn clear(&mut self) {
        self.event = None;
        if self.data.capacity() > KEPT_DATA {
            self.data = String::new();
        } else {
            self.data.clear();
        }
        self.has_data = false;
        self.id = None;
        self.retry = None;
    }
}

/// Incremental decoder: feed it chunks as they arrive, take complete events out.
#[derive(Debug)]
pub struct Decoder {
    buf: BytesMut,
    /// How much of `buf` is known to hold no line break (so a long line is scanned once, not
    /// once per chunk: a hostile upstream dripping a 16 MiB line must not cost quadratic time).
    scanned: usize,
    current: Pending,
    max_event: usize,
}

impl Decoder {
    /// A decoder refusing events larger than `max_event` bytes.
    pub fn new(max_event: usize) -> Self {
        Self { buf: BytesMut::new(), scanned: 0, current: Pending::default(), max_event }
    }

    /// Adds bytes and returns the events they complete.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<Event>, DecodeError> {
        let mut events = Vec::new();
        self.feed_with(chunk, |event| events.push(event.to_event()))?;
        Ok(events)
    }

    /// Adds bytes and shows each event they complete to `on_event`, in order. On an error the
    /// events of the lines before the faulty one may have been shown, and the stream is over:
    /// the decoder is not fed again.
    pub fn feed_with(&mut self, chunk: &[u8], mut on_event: impl FnMut(EventView<'_>)) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            // The usual case: the lines are read where they lie in the chunk, and only an
            // unfinished one is kept (copying every chunk into the buffer first cost a copy
            // and, for each stream, the buffer's allocation).
            let (taken, scanned) = self.take_lines(chunk, 0, &mut on_event)?;
            self.buf.extend_from_slice(&chunk[taken..]);
            self.scanned = scanned;
        } else {
            self.buf.extend_from_slice(chunk);
            // Taken out while its lines are read (`take_lines` updates the event in `self`).
            let mut buf = std::mem::take(&mut self.buf);
            let taken = self.take_lines(&buf, self.scanned, &mut on_event);
            if let Ok((used, _)) = taken {
                bytes::Buf::advance(&mut buf, used);
            }
            // An emptied buffer is let go: what it grew to for a split event (up to the event
            // bound) is not held by a long-lived stream (its `capacity` would not say: advanced
            // bytes no longer count there, and a later `reserve` takes them back).
            self.buf = if buf.is_empty() { BytesMut::new() } else { buf };
            self.scanned = taken?.1;
        }
        if self.buf.len() + self.current.data.len() > self.max_event {
            return Err(DecodeError::TooLarge(self.max_event));
        }
        Ok(())
    }

    /// Reads the complete lines at the start of `data` (whose first `from` bytes hold no line
    /// break), showing the events they finish to `on_event`. Returns how many bytes the lines
    /// took, and how many of the rest are known to hold no line break: a long line is scanned
    /// once, not once per chunk (a hostile upstream dripping a 16 MiB line must not cost
    /// quadratic time). The complete lines are checked as UTF-8 together, once.
    fn take_lines(
        &mut self,
        data: &[u8],
        from: usize,
        on_event: &mut impl FnMut(EventView<'_>),
    ) -> Result<(usize, usize), DecodeError> {
        let Some(last) = memchr::memrchr2(b'\n', b'\r', &data[from..]) else {
            return Ok((0, data.len()));
        };
        let text = std::str::from_utf8(&data[..=from + last]).map_err(|_| DecodeError::NotUtf8)?;
        let mut lines = Lines { text, data: None };
        let (mut start, mut from) = (0, from);
        let taken = loop {
            let Some(found) = memchr::memchr2(b'\n', b'\r', &data[from..]) else {
                break (start, data.len() - start);
            };
            let pos = from + found;
            // A lone '\r' at the end may be the first half of "\r\n": wait for more.
            let skip = if data[pos] == b'\r' {
                match data.get(pos + 1) {
                    Some(b'\n') => 2,
                    Some(_) => 1,
                    None => break (start, pos - start),
                }
            } else {
                1
            };
            lines.line(&mut self.current, start..pos, on_event);
            // Checked per line: data lines of one chunk could otherwise build an event past the
            // bound and complete it before the check in `feed_with`.
            if lines.data_len(&self.current) > self.max_event {
                return Err(DecodeError::TooLarge(self.max_event));
            }
            start = pos + skip;
            from = start;
        };
        // A data line still read where it lies is copied before the text goes.
        lines.keep(&mut self.current);
        Ok(taken)
    }
}

/// Complete lines being read from one text.
struct Lines<'t> {
    /// The text, checked as UTF-8 (its lines end where it ends).
    text: &'t str,
    /// Where in `text` the pending event's only data line so far lies, while it does.
    data: Option<std::ops::Range<usize>>,
}

impl Lines<'_> {
    /// Reads the line at `at` (without its line break) into `event`, showing the event a blank
    /// line ends to `on_event`.
    fn line(&mut self, event: &mut Pending, at: std::ops::Range<usize>, on_event: &mut impl FnMut(EventView<'_>)) {
        let line = self.text.get(at.clone()).unwrap_or_default();
        if line.is_empty() {
            if event.has_data || event.id.is_some() || event.retry.is_some() {
                let data = match self.data.take() {
                    Some(lies) => self.text.get(lies).unwrap_or_default(),
                    None => &event.data,
                };
                on_event(EventView {
                    event: event.event.as_deref(),
                    data,
                    id: event.id.as_deref(),
                    retry: event.retry,
                });
            }
            event.clear();
            return;
        }
        if line.starts_with(':') {
            return;
        }
        // Found as a byte: a `str` search for one character cost more than the short name.
        let (field, value, value_at) = match line.bytes().position(|b| b == b':') {
            Some(colon) => {
                let skip = colon + 1 + usize::from(line.as_bytes().get(colon + 1) == Some(&b' '));
                (&line[..colon], &line[skip..], at.start + skip)
            }
            None => (line, "", at.end),
        };
        match field {
            "event" if value == "message" => event.event = Some("message".into()),
            "event" => event.event = Some(value.to_owned().into()),
            "data" if !event.has_data => {
                // The first data line is read where it lies, until a second one or the end
                // of the text.
                self.data = Some(value_at..at.end);
                event.has_data = true;
            }
            "data" => {
                self.keep(event);
                event.data.push('\n');
                event.data.push_str(value);
            }
            "id" => event.id = Some(value.to_owned()),
            "retry" => event.retry = value.trim().parse().ok(),
            _ => {}
        }
    }

    /// The length of the pending event's data.
    fn data_len(&self, event: &Pending) -> usize {
        self.data.as_ref().map_or(event.data.len(), |lies| lies.len())
    }

    /// Copies a data line still read where it lies into the event.
    fn keep(&mut self, event: &mut Pending) {
        if let Some(lies) = self.data.take() {
            event.data.push_str(self.text.get(lies).unwrap_or_default());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_messages_with_event_type() {
        assert_eq!(&frame_message(br#"{"a":1}"#)[..], b"event: message\ndata: {\"a\":1}\n\n");
        assert_eq!(&frame_message(b"{\n \"a\": 1\n}")[..], b"event: message\ndata: {\ndata:  \"a\": 1\ndata: }\n\n");
        assert_eq!(&frame_message_with_id("7", b"{}")[..], b"event: message\nid: 7\ndata: {}\n\n");
    }

    #[test]
    fn decodes_across_chunk_boundaries_and_line_endings() {
        let mut d = Decoder::new(1024);
        let mut all = Vec::new();
        for chunk in
            [&b"event: mess"[..], b"age\r", b"\ndata: {\"a\"", b":1}\r\n\r\n: ping\n\nid: 3\ndata: x\ndata: y\n\n"]
        {
            all.extend(d.feed(chunk).expect("decode"));
        }
        assert_eq!(
            all,
            vec![
                Event { event: Some("message".into()), data: "{\"a\":1}".into(), id: None, retry: None },
                Event { event: None, data: "x\ny".into(), id: Some("3".into()), retry: None },
            ]
        );
        assert!(all.iter().all(Event::is_message));
    }

    #[test]
    fn a_one_line_event_is_read_where_it_lies() {
        let chunk = b"event: message\ndata: {\"a\":1}\n\nevent: other\ndata: x\ndata: y\n\ndata: z";
        let (mut d, mut seen) = (Decoder::new(1024), Vec::new());
        d.feed_with(chunk, |ev| {
            let inside = chunk.as_ptr_range().contains(&ev.data.as_ptr());
            seen.push((ev.event.map(str::to_owned), ev.data.to_owned(), inside));
        })
        .expect("decode");
        let event = |name: &str, data: &str, inside| (Some(name.to_owned()), data.to_owned(), inside);
        assert_eq!(seen, [event("message", "{\"a\":1}", true), event("other", "x\ny", false)]);
        // The unfinished event's data line was kept: the rest of it completes it.
        assert_eq!(d.feed(b"z\n\n").expect("rest"), [Event { data: "zz".into(), ..Event::default() }]);
    }

    #[test]
    fn priming_events_carry_id_and_retry() {
        let mut d = Decoder::new(1024);
        let ev = d.feed(b"id: s1-0\nretry: 1500\ndata: \n\n").expect("decode");
        assert_eq!(ev, vec![Event { event: None, data: String::new(), id: Some("s1-0".into()), retry: Some(1500) }]);
    }

    #[test]
    fn a_long_line_dripped_in_small_chunks_is_scanned_once() {
        let mut d = Decoder::new(8 << 20);
        let chunk = [b'x'; 1024];
        d.feed(b"data: ").expect("start");
        for _ in 0..4096 {
            assert!(d.feed(&chunk).expect("no event yet").is_empty());
            assert_eq!(d.scanned, d.buf.len(), "what was scanned is not scanned again");
        }
        let ev = d.feed(b"\n\n").expect("end");
        assert_eq!(ev[0].data.len(), 4096 * 1024);
        let mut d = Decoder::new(64);
        assert!(d.feed(b"data: a\r").expect("half a line break").is_empty());
        assert_eq!(d.feed(b"\n\n").expect("rest")[0].data, "a");
    }

    #[test]
    fn a_large_event_leaves_no_large_allocation_behind() {
        let mut d = Decoder::new(1 << 20);
        let big = format!("data: {}\ndata: {}\n\n", "x".repeat(100_000), "y".repeat(100_000));
        assert_eq!(d.feed(big.as_bytes()).expect("decode")[0].data.len(), 200_001);
        assert!(d.current.data.capacity() <= KEPT_DATA, "{}", d.current.data.capacity());
        d.feed(b"data: a\ndata: b\n\n").expect("decode");
        assert!(d.current.data.capacity() > 0, "a small event's allocation is kept for the next");
        // The same event in pieces, through the decoder's buffer.
        for piece in big.as_bytes().chunks(30_000) {
            d.feed(piece).expect("decode");
        }
        assert!(d.buf.is_empty() && d.buf.capacity() == 0, "{}", d.buf.capacity());
        assert!(d.current.data.capacity() <= KEPT_DATA);
    }

    #[test]
    fn bounds_event_size() {
        let mut d = Decoder::new(64);
        let big = format!("data: {}", "x".repeat(100));
        assert_eq!(d.feed(big.as_bytes()), Err(DecodeError::TooLarge(64)));
    }

    #[test]
    fn round_trips_framed_messages() {
        let mut d = Decoder::new(1 << 20);
        let json = "{\n  \"jsonrpc\": \"2.0\"\n}";
        let ev = d.feed(&frame_message(json.as_bytes())).expect("decode");
        assert_eq!(ev[0].data, json);
    }
}
