//! A validating walk over JSON text: where a value ends, and the members of the top-level object
//! and of the objects its caller asks to be led into ([`Visit`]), for text no other pass has
//! checked yet (a request's or a reply's body). It takes only what
//! it is sure serde_json accepts and reads alike: plain JSON with strings free of control
//! characters, simple escapes and `\u` escapes that are not surrogates, numbers of JSON's
//! grammar, nesting under [`MAX_DEPTH`]. Anything else is `None`, for the caller to hand to
//! serde_json, whose answer (or error message) then stands, so that a walk accepting what
//! serde_json refuses is a bug the fuzz target looks for.
//!
//! Why: serde_json's derive reads a message's envelope at about 18 instructions a byte; the
//! walk skips strings sixteen bytes at a time and builds nothing.

use std::ops::Range;

use super::scan::skip_ws;
use super::stops;

/// Nesting the walk follows; deeper text is serde_json's (its limit is 128).
const MAX_DEPTH: usize = 100;

/// One member of an object the walk gives: its key's text between the quotes and its value's
/// text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The key's bytes between its quotes, escapes not decoded.
    pub key: Range<usize>,
    /// Whether the key has escapes (its bytes are not its name).
    pub key_escaped: bool,
    /// The value's text, without the whitespace around it.
    pub value: Range<usize>,
    /// Whether the value is a string without escapes: its bytes between the quotes are the
    /// string (read as the walk went, so that a reader need not look for a backslash again).
    pub plain_string: bool,
}

/// What the walk gives its caller: the members of the top-level object, and of the objects the
/// caller asks to be led into, as the walk checks them, so that what a caller reads from a
/// message takes no second pass over it (a request's `params` and their `_meta`, a reply's
/// `result`).
pub trait Visit {
    /// Whether the members of the object value of member `key` are wanted too. Asked only of a
    /// key without escapes whose value is an object; `depth` is that of the object the member
    /// is in (0: the top level). The inner object's members come, at `depth + 1`, before the
    /// member itself.
    fn enters(&mut self, depth: usize, key: &[u8]) -> bool;

    /// One member of the top-level object or of an object entered; `None` stops the walk.
    fn member(&mut self, depth: usize, member: Member) -> Option<()>;
}

/// Walks the JSON object that is the whole of `text` (whitespace around it allowed), giving
/// `visit` its members and those of the objects it enters; `None` when `text` is not such an
/// object, when the walk is not sure serde_json reads it alike, or when `visit` says `None`.
pub fn walk(text: &[u8], visit: &mut impl Visit) -> Option<()> {
    let start = skip_ws(text, 0);
    let end = object_at(text, start, 0, Some(visit))?;
    (skip_ws(text, end) == text.len()).then_some(())
}

/// [`walk`] calling `each` on the top-level members only.
pub fn object(text: &[u8], each: impl FnMut(Member) -> Option<()>) -> Option<()> {
    walk(text, &mut TopLevel(each))
}

/// A visitor of the top-level members alone.
pub struct TopLevel<F>(pub F);

impl<F: FnMut(Member) -> Option<()>> Visit for TopLevel<F> {
    fn enters(&mut self, _: usize, _: &[u8]) -> bool {
        false
    }

    fn member(&mut self, _: usize, member: Member) -> Option<()> {
        (self.0)(member)
    }
}

/// The visitor of objects no caller reads: the walk only checks them.
pub enum Unread {}

impl Visit for Unread {
    fn enters(&mut self, _: usize, _: &[u8]) -> bool {
        match *self {}
    }

    fn member(&mut self, _: usize, _: Member) -> Option<()> {
        match *self {}
    }
}

/// The offset past the valid value starting at `at`, and whether it is a string without
/// escapes. Inlined into the object and array loops, as [`string`] is: most values are short.
#[inline(always)]
fn value(text: &[u8], at: usize, depth: usize) -> Option<(usize, bool)> {
    let end = match *text.get(at)? {
        b'"' => return string(text, at).map(|(end, escaped)| (end, !escaped)),
        b'{' => object_at(text, at, depth + 1, None::<&mut Unread>),
        b'[' => array(text, at, depth + 1),
        b't' => literal(text, at, b"true"),
        b'f' => literal(text, at, b"false"),
        b'n' => literal(text, at, b"null"),
        b'-' | b'0'..=b'9' => number(text, at),
        _ => None,
    };
    end.map(|end| (end, false))
}

/// The offset past the valid object starting at `at` (nested `depth` deep), giving its members
/// to `visit` when there is one.
fn object_at<V: Visit>(text: &[u8], at: usize, depth: usize, mut visit: Option<&mut V>) -> Option<usize> {
    if depth >= MAX_DEPTH || text.get(at) != Some(&b'{') {
        return None;
    }
    let mut i = skip_ws(text, at + 1);
    if text.get(i) == Some(&b'}') {
        return Some(i + 1);
    }
    loop {
        if text.get(i) != Some(&b'"') {
            return None;
        }
        let (key_end, key_escaped) = string(text, i)?;
        let key = i + 1..key_end - 1;
        let colon = skip_ws(text, key_end);
        if text.get(colon) != Some(&b':') {
            return None;
        }
        let value_start = skip_ws(text, colon + 1);
        let entered = match visit.as_deref_mut() {
            Some(v) if !key_escaped && text.get(value_start) == Some(&b'{') => v.enters(depth, text.get(key.clone())?),
            _ => false,
        };
        let (value_end, plain_string) = match entered {
            true => (object_at(text, value_start, depth + 1, visit.as_deref_mut())?, false),
            false => value(text, value_start, depth)?,
        };
        if let Some(v) = visit.as_deref_mut() {
            v.member(depth, Member { key, key_escaped, value: value_start..value_end, plain_string })?;
        }
        i = skip_ws(text, value_end);
        match *text.get(i)? {
            b',' => i = skip_ws(text, i + 1),
            b'}' => return Some(i + 1),
            _ => return None,
        }
    }
}

fn array(text: &[u8], at: usize, depth: usize) -> Option<usize> {
    if depth >= MAX_DEPTH {
        return None;
    }
    let mut i = skip_ws(text, at + 1);
    if text.get(i) == Some(&b']') {
        return Some(i + 1);
    }
    loop {
        i = skip_ws(text, value(text, i, depth)?.0);
        match *text.get(i)? {
            b',' => i = skip_ws(text, i + 1),
            b']' => return Some(i + 1),
            _ => return None,
        }
    }
}

/// The offset past the string whose opening quote is at `at`, and whether it has escapes.
/// Inlined where a walk reads keys and values: most of a message's strings are short and
/// plain, and a call (with the registers the escape reading needs saved and restored) cost
/// about as much as reading one.
#[inline(always)]
fn string(text: &[u8], at: usize) -> Option<(usize, bool)> {
    let mut i = at + 1;
    let mut escaped = false;
    loop {
        i += plain_run(text.get(i..)?);
        match *text.get(i)? {
            b'"' => return Some((i + 1, escaped)),
            b'\\' => {
                escaped = true;
                i += escape_len(text, i)?;
            }
            _ => return None, // a control character
        }
    }
}

/// The length of the escape whose backslash is at `at`; `None` for one the walk leaves to
/// serde_json.
#[inline(never)]
fn escape_len(text: &[u8], at: usize) -> Option<usize> {
    match *text.get(at + 1)? {
        b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => Some(2),
        b'u' => {
            let hex = std::str::from_utf8(text.get(at + 2..at + 6)?).ok()?;
            let unit = u16::from_str_radix(hex, 16).ok()?;
            // Surrogates (pairs, lone halves) are serde_json's to judge.
            (!hex.starts_with(['+', '-']) && !(0xD800..0xE000).contains(&unit)).then_some(6)
        }
        _ => None,
    }
}

/// How many bytes at the start of `s` need no look in a string: not a quote, not a backslash,
/// not a control character. The first block's look is inlined with [`string`]: most strings
/// end in it.
#[inline(always)]
fn plain_run(s: &[u8]) -> usize {
    match s.first_chunk() {
        Some(block) => stops::first(block).unwrap_or_else(|| longer_run(s)),
        None => stops::first_in_short(s),
    }
}

/// [`plain_run`] of a run whose first block has no stop: four blocks a step, then one at a time.
/// (One pass for the three kinds of stop: `memchr` for the quote and backslash and a second pass
/// for control characters cost about twice as much a byte.)
#[inline(never)]
fn longer_run(s: &[u8]) -> usize {
    let mut n = stops::BLOCK;
    while let Some(run) = s.get(n..).and_then(|rest| rest.first_chunk()) {
        if let Some(at) = stops::first_of_run(run) {
            return n + at;
        }
        n += stops::RUN;
    }
    loop {
        let rest = s.get(n..).unwrap_or_default();
        let Some(block) = rest.first_chunk() else { return n + stops::first_in_short(rest) };
        if let Some(at) = stops::first(block) {
            return n + at;
        }
        n += stops::BLOCK;
    }
}

/// The offset past the number at `at`: `-`? (`0` | digits) (`.` digits)? (`e` sign? digits)?.
fn number(text: &[u8], at: usize) -> Option<usize> {
    let mut i = at + usize::from(text.get(at) == Some(&b'-'));
    match *text.get(i)? {
        b'0' => i += 1,
        b'1'..=b'9' => i = digits(text, i),
        _ => return None,
    }
    if text.get(i) == Some(&b'.') {
        let end = digits(text, i + 1);
        if end == i + 1 {
            return None;
        }
        i = end;
    }
    if matches!(text.get(i), Some(b'e' | b'E')) {
        i += 1 + usize::from(matches!(text.get(i + 1), Some(b'+' | b'-')));
        let end = digits(text, i);
        if end == i {
            return None;
        }
        i = end;
    }
    Some(i)
}

fn digits(text: &[u8], at: usize) -> usize {
    at + text.get(at..).unwrap_or_default().iter().take_while(|b| b.is_ascii_digit()).count()
}

fn literal(text: &[u8], at: usize, word: &[u8]) -> Option<usize> {
    text.get(at..)?.starts_with(word).then_some(at + word.len())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::value::RawValue;

    use super::*;

    /// The walk accepts `text` only when serde_json does (reading the members' values raw, as
    /// the envelope does), and then finds each member's value where serde_json does.
    fn agrees(text: &str) -> bool {
        let mut members = Vec::new();
        let walked = object(text.as_bytes(), |m| {
            let value = &text[m.value];
            // A plain string is its text between the quotes, as serde_json reads it.
            let read = serde_json::from_str::<String>(value).ok();
            assert_eq!(
                m.plain_string,
                value.len() >= 2 && read.as_deref() == Some(&value[1..value.len() - 1]),
                "{text}: {value}"
            );
            members.push((text[m.key.clone()].to_owned(), value.to_owned()));
            Some(())
        });
        let parsed = serde_json::from_str::<BTreeMap<String, Box<RawValue>>>(text);
        if walked.is_some() {
            let parsed = parsed.unwrap_or_else(|e| panic!("the walk accepted what serde_json refuses: {text}: {e}"));
            for (key, value) in &members {
                // A repeated key keeps its last value there; an escaped one is decoded.
                let last = members.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v);
                if !key.contains('\\') {
                    assert_eq!(parsed.get(key).map(|v| v.get()), last.map(String::as_str), "{text}: {key}");
                }
                assert!(last.is_some() && !value.is_empty());
            }
        }
        walked.is_some()
    }

    /// Records what a walk gives: `(depth, key, value)` in the order given, entering the objects
    /// under the keys in `path` at their depths.
    struct Recorder<'t> {
        text: &'t str,
        path: &'t [&'t str],
        given: Vec<(usize, String, String)>,
    }

    impl Visit for Recorder<'_> {
        fn enters(&mut self, depth: usize, key: &[u8]) -> bool {
            self.path.get(depth).is_some_and(|name| name.as_bytes() == key)
        }

        fn member(&mut self, depth: usize, m: Member) -> Option<()> {
            self.given.push((depth, self.text[m.key].to_owned(), self.text[m.value].to_owned()));
            Some(())
        }
    }

    fn given(text: &str, path: &[&str]) -> Option<Vec<(usize, String, String)>> {
        let mut recorder = Recorder { text, path, given: Vec::new() };
        walk(text.as_bytes(), &mut recorder).map(|()| recorder.given)
    }

    #[test]
    fn the_objects_entered_are_walked_once_and_checked() {
        let own = |given: &[(usize, &str, &str)]| -> Vec<(usize, String, String)> {
            given.iter().map(|&(d, k, v)| (d, k.to_owned(), v.to_owned())).collect()
        };
        let text = r#"{"id":1,"result":{"a":[1,{"b":2}],"isError":true},"x":{"c":3}}"#;
        assert_eq!(
            given(text, &["result"]).expect("valid"),
            own(&[
                (0, "id", "1"),
                (1, "a", r#"[1,{"b":2}]"#),
                (1, "isError", "true"),
                (0, "result", r#"{"a":[1,{"b":2}],"isError":true}"#),
                (0, "x", r#"{"c":3}"#),
            ]),
            "an entered object's members come before the member itself"
        );
        let text = r#"{"params":{"_meta":{"info":{"name":"n"},"v":"1"},"name":"t"},"_meta":{"v":"2"}}"#;
        assert_eq!(
            given(text, &["params", "_meta", "info"]).expect("valid"),
            own(&[
                (3, "name", r#""n""#),
                (2, "info", r#"{"name":"n"}"#),
                (2, "v", r#""1""#),
                (1, "_meta", r#"{"info":{"name":"n"},"v":"1"}"#),
                (1, "name", r#""t""#),
                (0, "params", r#"{"_meta":{"info":{"name":"n"},"v":"1"},"name":"t"}"#),
                (0, "_meta", r#"{"v":"2"}"#),
            ]),
            "a key is entered at its own depth only"
        );
        let given_inner = given(r#"{"result":[{"a":1}],"res\u0075lt":{"b":1}}"#, &["result"]).expect("valid");
        assert!(given_inner.iter().all(|(d, ..)| *d == 0), "only an object value under the plain key is entered");
        assert!(given(r#"{"result":{"a":tru}}"#, &["result"]).is_none(), "an entered object is still checked");
        assert!(given(r#"{"result":{"a":1}"#, &["result"]).is_none());
        assert!(given(&format!("{}1{}", r#"{"a":"#.repeat(150), "}".repeat(150)), &["a"; 150]).is_none(), "too deep");
    }

    #[test]
    fn plain_json_is_walked() {
        for text in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a","arguments":{"t":"x"}}}"#,
            r#" { "a" : [ 1 , -2.5e+3 , 0 , -0 , 0.25E-2 , true , false , null , { } , [ ] ] , "b" : "c\"\\\/\b\f\n\r\t\u00e9" } "#,
            r#"{"k\u0065y":{"deep":[[[[{"x":"y"}]]]]}}"#,
            "{}",
            r#"{"é":"ünïcödé ✓"}"#,
        ] {
            assert!(agrees(text), "{text}");
        }
        assert!(agrees(&format!(r#"{{"text":"{}","n":1}}"#, "x".repeat(16_000))));
        assert!(agrees(&format!("{}1{}", r#"{"a":["#.repeat(49), "]}".repeat(49))));
    }

    #[test]
    fn anything_else_is_left_to_serde_json() {
        for text in [
            "",
            "[]",
            r#""s""#,
            "{",
            r#"{"a":1,}"#,
            r#"{"a":01}"#,
            r#"{"a":1.}"#,
            r#"{"a":.5}"#,
            r#"{"a":1e}"#,
            r#"{"a":-}"#,
            r#"{"a":+1}"#,
            r#"{"a":tru}"#,
            r#"{"a":nul}"#,
            "{\"a\":\"tab\there\"}",
            "{\"a\":\"\u{1}\"}",
            r#"{"a":"\x"}"#,
            r#"{"a":"\u12"}"#,
            r#"{"a":"\u+123"}"#,
            r#"{"a":"\ud800"}"#,
            r#"{"a":"\ud83d\ude00"}"#,
            r#"{"a":1} x"#,
            r#"{"a" 1}"#,
            r#"{a:1}"#,
            r#"{"a":[1 2]}"#,
            r#"{"a":"unterminated}"#,
        ] {
            assert!(!agrees(text), "{text}");
        }
        assert!(!agrees(&format!("{}1{}", "[".repeat(100), "]".repeat(100)).replacen('[', r#"{"a":["#, 1)));
        assert!(!agrees(&format!("{}1{}", r#"{"a":"#.repeat(150), "}".repeat(150))));
    }

    #[test]
    fn the_quick_skip_stops_where_a_byte_loop_would() {
        // Finds in the first block, in the runs of four after it, in the blocks after those,
        // at and around their edges; a high byte is no find.
        let mut bytes = vec![b'x'; 300];
        for at in 0..300 {
            for stop in [b'"', b'\\', 0x00, 0x1f] {
                bytes[at] = stop;
                assert_eq!(plain_run(&bytes), at);
                bytes[at] = b'x';
            }
            bytes[at] = 0xff;
            assert_eq!(plain_run(&bytes), 300);
            bytes[at] = b'x';
        }
        assert_eq!(plain_run(b"ab\x01\"cdefghijk"), 2);
        assert_eq!(plain_run(b""), 0);
        assert_eq!(plain_run(b"abc\""), 3);
        let control_first = [&[b'x'; 300][..], b"\x1f", &[b'x'; 10], b"\""].concat();
        assert_eq!(plain_run(&control_first), 300);
        assert_eq!(plain_run(&[b'x'; 300]), 300);
    }

    fn next(seed: &mut u64, n: usize) -> usize {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        (*seed % n as u64) as usize
    }

    /// Random near-JSON: valid pieces, broken pieces, odd escapes and numbers, so that both
    /// answers of the walk meet serde_json's.
    #[test]
    fn random_texts_agree_with_serde_json() {
        const PIECES: [&str; 24] = [
            r#""k""#,
            r#""v\"w""#,
            r#""\u00e9""#,
            r#""\ud800""#,
            r#""\q""#,
            "\"\t\"",
            "1",
            "-0",
            "01",
            "1.5e3",
            "1.",
            "-",
            "true",
            "nul",
            "null",
            "{",
            "}",
            "[",
            "]",
            ",",
            ":",
            " ",
            r#""\u0000""#,
            r#""é""#,
        ];
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut walked = 0;
        for _ in 0..50_000 {
            let mut text = String::from(r#"{"a":"#);
            for _ in 0..next(&mut seed, 12) {
                text.push_str(PIECES[next(&mut seed, PIECES.len())]);
            }
            if next(&mut seed, 2) == 0 {
                text.push('}');
            }
            walked += usize::from(agrees(&text));
        }
        assert!(walked > 100, "the random texts should include valid ones ({walked})");
    }
}
