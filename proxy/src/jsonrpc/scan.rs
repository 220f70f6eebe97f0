//! Walking JSON text that serde_json has already accepted, without building anything: the
//! members of an object as offsets, the end of a value. Strings are skipped sixteen bytes at a
//! time, then with `memchr` (they are most of a large body's bytes), which is why this is
//! several times quicker than another serde pass over the same text; what the scan does not
//! expect is an [`Unexpected`], never a panic or a read out of bounds, whatever the bytes.

use std::ops::Range;

/// One member of a JSON object, as offsets into the object's text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The key's bytes between its quotes (escapes not decoded).
    pub key: Range<usize>,
    /// The value's text.
    pub value: Range<usize>,
}

impl Member {
    /// The member's whole text: the key's opening quote to the value's end.
    pub fn text(&self) -> Range<usize> {
        self.key.start - 1..self.value.end
    }
}

/// The top-level members of the object `text`, in order. Yields `Err` (and stops) at anything
/// that is not an object's member list.
pub struct Members<'a> {
    text: &'a [u8],
    at: usize,
    done: bool,
    /// Past the closing brace, once every member has been read.
    end: Option<usize>,
}

/// `text` is not the object the scanner expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unexpected;

impl<'a> Members<'a> {
    /// The members of `text`, which must be a JSON object (leading whitespace allowed).
    pub fn of(text: &'a [u8]) -> Result<Self, Unexpected> {
        let at = skip_ws(text, 0);
        if text.get(at) != Some(&b'{') {
            return Err(Unexpected);
        }
        let first = skip_ws(text, at + 1);
        let empty = text.get(first) == Some(&b'}');
        Ok(Self { text, at: first, done: empty, end: empty.then_some(first + 1) })
    }

    /// The offset just past the object's closing brace, once every member has been read without
    /// a fault (`None` before, or after an [`Unexpected`]).
    pub fn end(&self) -> Option<usize> {
        self.end
    }
}

impl Iterator for Members<'_> {
    type Item = Result<Member, Unexpected>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let member = member_at(self.text, self.at);
        match &member {
            Ok((_, next)) => match self.text.get(*next) {
                Some(b',') => self.at = skip_ws(self.text, next + 1),
                Some(b'}') => {
                    self.done = true;
                    self.end = Some(next + 1);
                }
                _ => return self.fail(),
            },
            Err(_) => return self.fail(),
        }
        Some(member.map(|(m, _)| m))
    }
}

impl Members<'_> {
    fn fail(&mut self) -> Option<Result<Member, Unexpected>> {
        self.done = true;
        Some(Err(Unexpected))
    }
}

/// The member starting at `at` (its key's quote) and the offset of what follows it (past
/// whitespace).
fn member_at(text: &[u8], at: usize) -> Result<(Member, usize), Unexpected> {
    if text.get(at) != Some(&b'"') {
        return Err(Unexpected);
    }
    let key_end = string_end(text, at)?;
    let colon = skip_ws(text, key_end);
    if text.get(colon) != Some(&b':') {
        return Err(Unexpected);
    }
    let value_start = skip_ws(text, colon + 1);
    let value_end = value_end(text, value_start)?;
    let member = Member { key: at + 1..key_end - 1, value: value_start..value_end };
    Ok((member, skip_ws(text, value_end)))
}

/// The offset of the first byte at or after `at` that is not JSON whitespace.
pub fn skip_ws(text: &[u8], mut at: usize) -> usize {
    while matches!(text.get(at), Some(b' ' | b'\t' | b'\r' | b'\n')) {
        at += 1;
    }
    at
}

/// The offset past the string whose opening quote is at `at`.
pub fn string_end(text: &[u8], at: usize) -> Result<usize, Unexpected> {
    string_at(text, at).map(|(end, _)| end)
}

/// The offset past the string whose opening quote is at `at`, and whether it has escapes.
pub fn string_at(text: &[u8], at: usize) -> Result<(usize, bool), Unexpected> {
    let mut i = at + 1;
    let mut escaped = false;
    loop {
        let rest = text.get(i..).ok_or(Unexpected)?;
        // Most strings end within a block, which one look covers; `memchr` for the others (and
        // past a control character, which text serde_json accepted has none of).
        let stop = match rest.first_chunk().and_then(super::stops::first) {
            Some(stop) if matches!(rest[stop], b'"' | b'\\') => stop,
            _ => memchr::memchr2(b'"', b'\\', rest).ok_or(Unexpected)?,
        };
        i += stop;
        if text[i] == b'"' {
            return Ok((i + 1, escaped));
        }
        escaped = true;
        i += 2; // a backslash and the byte it escapes
    }
}

/// The offset past the value starting at `at`.
pub fn value_end(text: &[u8], at: usize) -> Result<usize, Unexpected> {
    match text.get(at).ok_or(Unexpected)? {
        b'"' => string_end(text, at),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = at;
            loop {
                let rest = text.get(i..).ok_or(Unexpected)?;
                // The next byte that matters: a string, or a bracket of either kind.
                let stop = rest.iter().position(|b| matches!(b, b'"' | b'{' | b'[' | b'}' | b']')).ok_or(Unexpected)?;
                i += stop;
                match text[i] {
                    b'"' => i = string_end(text, i)?,
                    b'{' | b'[' => {
                        depth += 1;
                        i += 1;
                    }
                    _ => {
                        depth -= 1;
                        i += 1;
                        if depth == 0 {
                            return Ok(i);
                        }
                    }
                }
            }
        }
        _ => {
            let rest = &text[at..];
            let len = rest.iter().position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n'));
            Ok(at + len.unwrap_or(rest.len()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(text: &str) -> Vec<(String, String)> {
        Members::of(text.as_bytes())
            .expect("object")
            .map(|m| {
                let m = m.expect("member");
                (text[m.key].to_owned(), text[m.value].to_owned())
            })
            .collect()
    }

    #[test]
    fn walks_the_top_level_members_only() {
        let text = r#" { "a" : 1 , "b":{"a":[1,{"x":"}"}]},"c\"d":"e\\",
            "f":[ ], "g":null,"h":-1.5e3,"i":true}"#;
        let got = members(text);
        let want = [
            ("a", "1"),
            ("b", r#"{"a":[1,{"x":"}"}]}"#),
            (r#"c\"d"#, r#""e\\""#),
            ("f", "[ ]"),
            ("g", "null"),
            ("h", "-1.5e3"),
            ("i", "true"),
        ];
        assert_eq!(got, want.map(|(k, v)| (k.to_owned(), v.to_owned())));
        assert!(members("{}").is_empty());
        assert!(members(" {  } ").is_empty());
        let mut walk = Members::of(br#"{"a":[1]} "#).expect("object");
        assert_eq!(walk.end(), None, "not read yet");
        walk.by_ref().for_each(drop);
        assert_eq!(walk.end(), Some(9));
        assert_eq!(Members::of(b" {} x").expect("object").end(), Some(3));
        let mut bad = Members::of(br#"{"a":1 "b"}"#).expect("object");
        bad.by_ref().for_each(drop);
        assert_eq!(bad.end(), None);
    }

    #[test]
    fn unexpected_text_is_an_error_not_a_panic() {
        assert!(Members::of(b"[1]").is_err());
        assert!(Members::of(b"").is_err());
        for text in
            [&b"{\"a\""[..], b"{\"a\":", b"{\"a\":\"", b"{\"a\":{", b"{\"a\":1 \"b\":2}", b"{a:1}", b"{\"a\":\"\\"]
        {
            let all: Vec<_> = Members::of(text).expect("starts as an object").collect();
            assert_eq!(all.last(), Some(&Err(Unexpected)), "{}", String::from_utf8_lossy(text));
        }
    }
}
