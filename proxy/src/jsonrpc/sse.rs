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

/// Incremental decoder: feed it chunks as they arrive, take complete events out.
#[derive(Debug)]
pub struct Decoder {
    buf: BytesMut,
    /// How much of `buf` is known to hold no line break (so a long line is scanned once, not
    /// once per chunk: a hostile upstream dripping a 16 MiB line must not cost quadratic time).
    scanned: usize,
    current: Event,
    has_data: bool,
    max_event: usize,
}

impl Decoder {
    /// A decoder refusing events larger than `max_event` bytes.
    pub fn new(max_event: usize) -> Self {
        Self { buf: BytesMut::new(), scanned: 0, current: Event::default(), has_data: false, max_event }
    }

    /// Adds bytes and returns the events they complete.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<Event>, DecodeError> {
        let mut events = Vec::new();
        if self.buf.is_empty() {
            // The usual case: the lines are read where they lie in the chunk, and only an
            // unfinished one is kept (copying every chunk into the buffer first cost a copy
            // and, for each stream, the buffer's allocation).
            let (taken, scanned) = self.take_lines(chunk, 0, &mut events)?;
            self.buf.extend_from_slice(&chunk[taken..]);
            self.scanned = scanned;
        } else {
            self.buf.extend_from_slice(chunk);
            // Taken out while its lines are read (`take_lines` updates the event in `self`).
            let mut buf = std::mem::take(&mut self.buf);
            let taken = self.take_lines(&buf, self.scanned, &mut events);
            if let Ok((used, _)) = taken {
                bytes::Buf::advance(&mut buf, used);
            }
            self.buf = buf;
            self.scanned = taken?.1;
        }
        if self.buf.len() + self.current.data.len() > self.max_event {
            return Err(DecodeError::TooLarge(self.max_event));
        }
        Ok(events)
    }

    /// Reads the complete lines at the start of `data` (whose first `from` bytes hold no line
    /// break), pushing the events they finish onto `events`. Returns how many bytes the lines
    /// took, and how many of the rest are known to hold no line break: a long line is scanned
    /// once, not once per chunk (a hostile upstream dripping a 16 MiB line must not cost
    /// quadratic time).
    fn take_lines(
        &mut self,
        data: &[u8],
        mut from: usize,
        events: &mut Vec<Event>,
    ) -> Result<(usize, usize), DecodeError> {
        let mut start = 0;
        loop {
            let Some(found) = memchr::memchr2(b'\n', b'\r', &data[from..]) else {
                return Ok((start, data.len() - start));
            };
            let pos = from + found;
            // A lone '\r' at the end may be the first half of "\r\n": wait for more.
            let skip = if data[pos] == b'\r' {
                match data.get(pos + 1) {
                    Some(b'\n') => 2,
                    Some(_) => 1,
                    None => return Ok((start, pos - start)),
                }
            } else {
                1
            };
            let line = std::str::from_utf8(&data[start..pos]).map_err(|_| DecodeError::NotUtf8)?;
            if let Some(ev) = self.line(line) {
                events.push(ev);
            }
            // Checked per line: data lines of one chunk could otherwise build an event past the
            // bound and complete it before the check in `feed`.
            if self.current.data.len() > self.max_event {
                return Err(DecodeError::TooLarge(self.max_event));
            }
            start = pos + skip;
            from = start;
        }
    }

    fn line(&mut self, line: &str) -> Option<Event> {
        if line.is_empty() {
            if !self.has_data && self.current.id.is_none() && self.current.retry.is_none() {
                self.current = Event::default();
                return None;
            }
            self.has_data = false;
            return Some(std::mem::take(&mut self.current));
        }
        if line.starts_with(':') {
            return None;
        }
        // Found as a byte: a `str` search for one character cost more than the short name.
        let (field, value) = match line.bytes().position(|b| b == b':') {
            Some(colon) => {
                let value = &line[colon + 1..];
                (&line[..colon], value.strip_prefix(' ').unwrap_or(value))
            }
            None => (line, ""),
        };
        match field {
            "event" => self.current.event = Some(value.to_owned()),
            "data" => {
                if self.has_data {
                    self.current.data.push('\n');
                }
                self.current.data.push_str(value);
                self.has_data = true;
            }
            "id" => self.current.id = Some(value.to_owned()),
            "retry" => self.current.retry = value.trim().parse().ok(),
            _ => {}
        }
        None
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
