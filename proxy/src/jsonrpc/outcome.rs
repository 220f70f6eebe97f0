//! What a proxied reply said, learnt from its bytes without parsing them into anything: whether
//! the response object has a top-level `error`, or a `result` with `"isError": true`. Used on a
//! whole JSON reply and on each event of an SSE reply (where the response is the event that says
//! something).
//!
//! The reply is walked member by member ([`of_json`]), strings skipped with `memchr`. Where the
//! walk could read the bytes differently from a plain reading of them (a key with escapes, text
//! after the object, a value that is not JSON), a small state machine decides instead: string
//! and escape tracking, nesting depth, and the keys at the two levels that matter; no
//! allocation, one pass.

use super::parse::{Envelope, Invalid, Kind};
use super::scan::{skip_ws, Members};

/// How a reply ended, as far as the scan can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A result.
    Result,
    /// A result with `isError: true` (a tool reporting failure).
    ToolError,
    /// A JSON-RPC error.
    Error,
}

/// Keys longer than this are never ones we look for.
const KEY_MAX: usize = 8;

/// Scanner of one JSON value.
#[derive(Debug, Default, Clone)]
struct JsonScan {
    depth: u32,
    in_string: bool,
    escaped: bool,
    /// The string being read is an object key.
    reading_key: bool,
    /// Next string at the current level is a key (inside an object, before `:`).
    expect_key: bool,
    key: [u8; KEY_MAX],
    key_len: usize,
    /// The key was longer than [`KEY_MAX`].
    key_overflow: bool,
    /// The depth-1 key whose value is being read.
    top_key: Top,
    /// Bytes of `true` matched after `"isError":` inside `result`.
    true_matched: u8,
    awaiting_is_error_value: bool,
    saw_error: bool,
    saw_tool_error: bool,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Top {
    #[default]
    Other,
    Result,
}

impl JsonScan {
    fn feed(&mut self, bytes: &[u8]) {
        let mut at = 0;
        while at < bytes.len() {
            if self.in_value_string() {
                // Nothing inside a value string matters but where it ends: jump there.
                match memchr::memchr2(b'"', b'\\', &bytes[at..]) {
                    Some(skip) => at += skip,
                    None => return,
                }
            }
            self.byte(bytes[at]);
            at += 1;
        }
    }

    /// Inside a string that is not a key, past any escape: its bytes change nothing until the
    /// next quote or backslash (most of a reply's bytes are such strings: its text content).
    fn in_value_string(&self) -> bool {
        self.in_string && !self.escaped && !self.reading_key
    }

    fn byte(&mut self, b: u8) {
        if self.in_string {
            if self.escaped {
                self.escaped = false;
            } else if b == b'\\' {
                self.escaped = true;
            } else if b == b'"' {
                self.in_string = false;
                if self.reading_key {
                    self.reading_key = false;
                    self.end_key();
                }
            } else if self.reading_key {
                if self.key_len < KEY_MAX {
                    self.key[self.key_len] = b;
                    self.key_len += 1;
                } else {
                    self.key_overflow = true;
                }
            }
            return;
        }
        if self.awaiting_is_error_value {
            const TRUE: &[u8] = b"true";
            match b {
                b' ' | b'\t' | b'\r' | b'\n' | b':' if self.true_matched == 0 => return,
                _ if usize::from(self.true_matched) < TRUE.len() && b == TRUE[usize::from(self.true_matched)] => {
                    self.true_matched += 1;
                    if usize::from(self.true_matched) == TRUE.len() {
                        self.saw_tool_error = true;
                        self.awaiting_is_error_value = false;
                    }
                    return;
                }
                _ => {
                    self.awaiting_is_error_value = false;
                    self.true_matched = 0;
                }
            }
        }
        match b {
            b'"' => {
                self.in_string = true;
                self.reading_key = self.expect_key;
                self.key_len = 0;
                self.key_overflow = false;
            }
            b'{' => {
                self.depth += 1;
                self.expect_key = true;
            }
            b'[' => {
                self.depth += 1;
                self.expect_key = false;
            }
            b'}' | b']' => {
                self.depth = self.depth.saturating_sub(1);
                if self.depth <= 1 {
                    // Back in the top object (or out of it): a comma comes next, then a key.
                    self.expect_key = false;
                }
            }
            b':' => self.expect_key = false,
            // A comma inside an object is followed by a key; inside an array it is not, but
            // arrays never hold keys, so the flag is only read where it is right.
            b',' => self.expect_key = true,
            _ => {}
        }
    }

    fn end_key(&mut self) {
        let key = &self.key[..self.key_len];
        match self.depth {
            // Every top-level key ends the previous one's value, a long one too: `result` is
            // only the key just read if it is spelt exactly so.
            1 => {
                let known = !self.key_overflow;
                self.top_key = if known && key == b"result" { Top::Result } else { Top::Other };
                if known && key == b"error" {
                    self.saw_error = true;
                }
            }
            2 if !self.key_overflow && self.top_key == Top::Result && key == b"isError" => {
                self.awaiting_is_error_value = true;
                self.true_matched = 0;
            }
            _ => {}
        }
    }

    fn outcome(&self) -> Option<Outcome> {
        if self.saw_error {
            Some(Outcome::Error)
        } else if self.saw_tool_error {
            Some(Outcome::ToolError)
        } else {
            None
        }
    }
}

/// A reply's envelope ([`Envelope::parse`]) and what it says ([`of_json`]), read in one pass
/// where the validating walk reads the reply: it walks `result`'s members as it checks them, and
/// an `isError` among them that is `true` is what [`of_json`] looks for (the walk accepts only
/// valid JSON, so `true` is the whole value). Elsewhere each is read as it is on its own.
pub fn reply(body: &[u8]) -> (Result<(Envelope<'_>, Kind), Invalid>, Outcome) {
    let mut tool_error = false;
    let (envelope, walked) = Envelope::parse_and_inner(body, b"result", |member| {
        tool_error |= !member.key_escaped
            && body.get(member.key) == Some(b"isError".as_slice())
            && body.get(member.value) == Some(b"true".as_slice());
        Some(())
    });
    let outcome = match &envelope {
        Ok((env, _)) if walked && env.error.is_some() => Outcome::Error,
        Ok(_) if walked && tool_error => Outcome::ToolError,
        Ok(_) if walked => Outcome::Result,
        _ => of_json(body),
    };
    (envelope, outcome)
}

/// What a whole JSON reply (or one SSE event's data) says.
pub fn of_json(body: &[u8]) -> Outcome {
    walked(body).unwrap_or_else(|| scanned(body))
}

/// What the state machine alone reads in `body` (the fuzz target holds the walk to it).
pub(crate) fn scanned(body: &[u8]) -> Outcome {
    let mut scan = JsonScan::default();
    scan.feed(body);
    scan.outcome().unwrap_or(Outcome::Result)
}

/// The outcome read from the reply's members (an `error`, or a `result` with `isError: true`);
/// `None` where the walk could read the bytes differently from the state machine: a member that
/// is not [`plain`], text after the object, anything the walk does not expect.
fn walked(body: &[u8]) -> Option<Outcome> {
    let mut outcome = Outcome::Result;
    let mut top = Members::of(body).ok()?;
    for member in top.by_ref() {
        let member = member.ok()?;
        let (key, value) = (body.get(member.key)?, body.get(member.value)?);
        if !plain(key, value) {
            return None;
        }
        match key {
            b"error" => outcome = Outcome::Error,
            b"result" if value.first() == Some(&b'{') => {
                let mut fields = Members::of(value).ok()?;
                for field in fields.by_ref() {
                    let field = field.ok()?;
                    let (key, field_value) = (value.get(field.key)?, value.get(field.value)?);
                    if !plain(key, field_value) {
                        return None;
                    }
                    // The state machine takes any value spelt from `true` on as true.
                    if key == b"isError" && field_value.starts_with(b"true") && outcome == Outcome::Result {
                        outcome = Outcome::ToolError;
                    }
                }
                fields.end()?;
            }
            _ => {}
        }
    }
    (skip_ws(body, top.end()?) == body.len()).then_some(outcome)
}

/// Whether a member reads the same to the walk and to the state machine: a key without escapes
/// (the state machine drops them), and a value that is a string, an object or an array (whose
/// ends both find alike) or one bare token (a literal, a number) with nothing in it the state
/// machine would take for a string or structure.
fn plain(key: &[u8], value: &[u8]) -> bool {
    let bare = |b: &u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.');
    !key.contains(&b'\\')
        && match value.first() {
            Some(b'"' | b'{' | b'[') => true,
            Some(_) => value.iter().all(bare),
            None => false,
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The outcome of `body`, which the walk, the state machine and the state machine fed a
    /// byte at a time all agree on.
    fn scan(body: &str) -> Outcome {
        let bytes = body.as_bytes();
        let whole = scanned(bytes);
        let mut bytewise = JsonScan::default();
        for b in bytes {
            bytewise.feed(std::slice::from_ref(b));
        }
        assert_eq!(bytewise.outcome().unwrap_or(Outcome::Result), whole, "a byte at a time: {body}");
        assert_eq!(of_json(bytes), whole, "walked: {body}");
        assert_eq!(reply(bytes).1, whole, "with the envelope: {body}");
        whole
    }

    #[test]
    fn the_envelopes_walk_says_what_the_reply_says() {
        let cases = [
            (
                r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"x"}],"isError":true}}"#,
                Outcome::ToolError,
            ),
            (r#"{"jsonrpc":"2.0","id":1,"result":{"isError":false,"content":[{"isError":true}]}}"#, Outcome::Result),
            (r#"{"jsonrpc":"2.0","id":1,"result":{"isError":"true"}}"#, Outcome::Result),
            (r#"{"jsonrpc":"2.0","id":1,"result":{"structuredContent":{"isError":true}}}"#, Outcome::Result),
            (r#"{"jsonrpc":"2.0","id":1,"result":[{"isError":true}]}"#, Outcome::Result),
            (r#"{"jsonrpc":"2.0","id":1,"result":{"isError":true,"isError":false}}"#, Outcome::ToolError),
            (r#"{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"isError"}}"#, Outcome::Error),
            (r#"{"jsonrpc":"2.0","id":1,"error":null}"#, Outcome::Error),
            (r#"{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"m"},"result":{"isError":true}}"#, Outcome::Error),
            // Read by serde_json and the state machine instead: what each says stands.
            (r#"{"jsonrpc":"2.0","id":1,"result":{"isErr\u006fr":true}}"#, Outcome::Result),
            (r#"{"jsonrpc":"2.0","id":1,"result":{"isError":true},"result":{}}"#, Outcome::ToolError),
            (r#"{"jsonrpc":"1.0","id":1,"result":{"isError":true}}"#, Outcome::ToolError),
        ];
        for (body, said) in cases {
            let (envelope, read) = reply(body.as_bytes());
            assert_eq!((read, of_json(body.as_bytes())), (said, said), "{body}");
            let parsed = Envelope::parse(body.as_bytes());
            assert_eq!(format!("{envelope:?}"), format!("{parsed:?}"), "{body}");
        }
    }

    #[test]
    fn tells_results_tool_errors_and_errors_apart() {
        assert_eq!(scan(r#"{"jsonrpc":"2.0","id":1,"result":{"content":[]}}"#), Outcome::Result);
        assert_eq!(scan(r#"{"jsonrpc":"2.0","id":1,"result":{"content":[],"isError":true}}"#), Outcome::ToolError);
        assert_eq!(scan(r#"{"jsonrpc":"2.0","id":1,"result":{"isError" : false}}"#), Outcome::Result);
        assert_eq!(scan(r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"x"}}"#), Outcome::Error);
        assert_eq!(scan(r#"{"error":null,"id":2}"#), Outcome::Error, "a key named error at the top");
    }

    #[test]
    fn is_not_fooled_by_content() {
        let tricky = r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"\"error\": \"isError\":true"}],"structuredContent":{"error":1,"isError":true}}}"#;
        assert_eq!(scan(tricky), Outcome::Result);
        let nested = r#"{"result":{"content":[{"isError":true}],"meta":{"error":true}},"id":1}"#;
        assert_eq!(scan(nested), Outcome::Result);
    }

    #[test]
    fn long_strings_are_skipped_to_their_end_and_no_further() {
        let text = "lorem \\\" ipsum \\\\".repeat(40);
        let body = format!(r#"{{"jsonrpc":"2.0","id":1,"result":{{"content":[{{"text":"{text}"}}],"isError":true}}}}"#);
        assert_eq!(scan(&body), Outcome::ToolError);
        let body = format!(r#"{{"jsonrpc":"2.0","id":1,"result":{{"note":"{text} \"isError\":true"}}}}"#);
        assert_eq!(scan(&body), Outcome::Result, "a key inside a long string is not a key");
    }

    #[test]
    fn the_walk_reads_replies_as_the_state_machine_does() {
        let walked_too = [
            r#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"ok"}],"isError":false}}"#,
            r#" {"result":{"isError":true},"id":"a"} "#,
            r#"{"result":{"isError":true,"isError":false}}"#,
            r#"{"result":{"isError":trueish}}"#,
            r#"{"result":{"isError":tru}}"#,
            r#"{"result":{},"error":{"code":1},"result":{"isError":true}}"#,
            r#"{"result":[{"isError":true}]}"#,
            r#"{"result":"isError","error":null}"#,
            // A top-level key longer than any the scan looks for ends `result`'s value too.
            r#"{"result":1,"resultult":{"isError":true}}"#,
            r#"{"result":{},"errorerrorerror":1}"#,
        ];
        for body in walked_too {
            assert!(walked(body.as_bytes()).is_some(), "walked: {body}");
            scan(body);
        }
        let left_to_the_state_machine = [
            "{\"id\":\x17\",\"error\":{}}",
            r#"{"id":1{,"error":1}"#,
            r#"{"error\"":1}"#,
            r#"{"result":{"isErr\u006fr":true}}"#,
            r#"{"result":{}} {"error":1}"#,
            r#"{"result":{"isError":true}"#,
            r#"[{"error":1}]"#,
        ];
        for body in left_to_the_state_machine {
            assert!(walked(body.as_bytes()).is_none(), "not walked: {body}");
            scan(body);
        }
    }

    /// The walk and the skipping scan against a byte-at-a-time one, on random texts made of the
    /// bytes and words the scan reacts to.
    #[test]
    fn skipping_and_walking_change_no_outcome() {
        const PIECES: [&str; 16] =
            ["\"", "\\", "{", "}", "[", "]", ":", ",", "\n", "\r", " ", "1", "result", "error", "isError", "true"];
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..3000 {
            let mut text = String::new();
            for _ in 0..40 {
                seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                text.push_str(PIECES[(seed >> 60) as usize]);
            }
            scan(&text);
        }
    }
}
