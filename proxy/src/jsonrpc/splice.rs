//! Editing JSON-RPC messages as bytes: the few changes the fast path makes to a message it
//! passes between the eras — a legacy client's request given a modern upstream's `_meta`
//! envelope and the gateway's id, the modern reply given back the client's id without the
//! fields a legacy client never sees — without building a JSON tree.
//!
//! Inputs are texts serde_json has already accepted, walked by [`super::scan`]; anything the
//! edits do not expect (a key written with escapes, say) makes them answer `None`, and the
//! caller takes the tree-building path instead.

use std::io::Write;
use std::ops::Range;

use serde_json::value::RawValue;

use super::scan::{skip_ws, Members};

/// Result fields of 2026-07-28 that a legacy client never sees.
const MODERN_RESULT_FIELDS: [&[u8]; 3] = [b"resultType", b"ttlMs", b"cacheScope"];

/// The response to a legacy client's request `id` carrying a modern upstream's `result`:
/// `{"jsonrpc":"2.0","id":<id>,"result":<result>}` with `resultType`, `ttlMs` and `cacheScope`
/// left out. `None` when the result needs the tree path: an `input_required` (or any result type
/// but `complete`), a `_meta` naming 2026-07-28 keys (which go one by one), a key written with
/// escapes, or text the scanner does not expect.
pub fn legacy_response(id: &RawValue, result: &str) -> Option<Vec<u8>> {
    let text = result.as_bytes();
    let mut out = Vec::with_capacity(text.len() + 40);
    out.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
    out.extend_from_slice(id.get().as_bytes());
    out.extend_from_slice(br#","result":"#);
    let Ok(members) = Members::of(text) else {
        // Not an object (`null`, say): nothing in it to leave out.
        out.extend_from_slice(text);
        out.push(b'}');
        return Some(out);
    };
    out.push(b'{');
    let mut first = true;
    for member in members {
        let member = member.ok()?;
        let key = &text[member.key.clone()];
        let value = &text[member.value.clone()];
        if key.contains(&b'\\') {
            return None;
        }
        if key == b"resultType" && value != br#""complete""# {
            return None;
        }
        if key == b"_meta" && names_modern_keys(value) {
            return None;
        }
        if MODERN_RESULT_FIELDS.contains(&key) {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        out.extend_from_slice(&text[member.text()]);
    }
    out.extend_from_slice(b"}}");
    Some(out)
}

/// Whether a `_meta` object's text may name keys of the 2026-07-28 namespace, which the tree
/// path handles key by key (a mention inside a value counts too: the answer errs towards the
/// tree path).
pub fn names_modern_keys(meta: &[u8]) -> bool {
    memchr::memmem::find(meta, crate::proto::protocol::meta::NAMESPACE.as_bytes()).is_some()
}

/// Where a request's `_meta` envelope goes into its `params`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MetaSlot {
    /// `params` has no `_meta`: a new member, right after `params`' opening brace at this
    /// offset (of `params`).
    NewAfter(usize),
    /// `params` has a `_meta` object, whose text is at these offsets: the envelope goes in
    /// right after its opening brace.
    Inside(Range<usize>),
}

/// Where the envelope goes in `params` (an object's text); `None` when `_meta` is not an object,
/// a key is written with escapes (it could be `_meta`), or the text is not what the scanner
/// expects.
pub fn meta_slot(params: &[u8]) -> Option<MetaSlot> {
    let mut slot = MetaSlot::NewAfter(skip_ws(params, 0));
    for member in Members::of(params).ok()? {
        let member = member.ok()?;
        let key = params.get(member.key.clone())?;
        if key.contains(&b'\\') {
            return None;
        }
        if key == b"_meta" {
            if params.get(member.value.start) != Some(&b'{') {
                return None;
            }
            slot = MetaSlot::Inside(member.value);
        }
    }
    Some(slot)
}

/// A legacy client's request as a modern upstream takes it:
/// `{"jsonrpc":"2.0","id":<id>,"method":"<method>","params":<params>}`, where `params` has the
/// bytes in `cut` (its offsets) left out and `envelope` (members' text, without braces) added
/// at `slot`. `None` when the offsets do not fit `params`.
pub fn modern_request(
    id: u64,
    method: &str,
    params: &[u8],
    cut: Range<usize>,
    slot: &MetaSlot,
    envelope: &[u8],
) -> Option<Vec<u8>> {
    let (brace, new_member) = match slot {
        MetaSlot::NewAfter(at) => (*at, true),
        MetaSlot::Inside(meta) => (meta.start, false),
    };
    let at = brace + 1;
    // The two edits never overlap: the cut is inside a string, the insertion right after a brace.
    let (before, between, after) = if cut.end <= at {
        (params.get(..cut.start)?, params.get(cut.end..at)?, params.get(at..)?)
    } else {
        (params.get(..at)?, params.get(at..cut.start)?, params.get(cut.end..)?)
    };
    // A comma after the envelope when members follow it.
    let followed = params.get(skip_ws(params, at)) != Some(&b'}');
    let mut out = Vec::with_capacity(params.len() + envelope.len() + 80);
    out.extend_from_slice(br#"{"jsonrpc":"2.0","id":"#);
    let _ = write!(out, "{id}");
    out.extend_from_slice(br#","method":""#);
    out.extend_from_slice(method.as_bytes());
    out.extend_from_slice(br#"","params":"#);
    let insert = |out: &mut Vec<u8>| {
        if new_member {
            out.extend_from_slice(br#""_meta":{"#);
            out.extend_from_slice(envelope);
            out.push(b'}');
        } else {
            out.extend_from_slice(envelope);
        }
        if followed {
            out.push(b',');
        }
    };
    out.extend_from_slice(before);
    if cut.end <= at {
        out.extend_from_slice(between);
        insert(&mut out);
    } else {
        insert(&mut out);
        out.extend_from_slice(between);
    }
    out.extend_from_slice(after);
    out.push(b'}');
    Some(out)
}

/// Nesting the quick check lets pass; serde_json's trees stop at 128.
const SAFE_DEPTH: usize = 64;
/// Number tokens this long (or with an exponent) may not fit an `f64`: the quick check stops.
const SAFE_NUMBER_LEN: usize = 16;

/// Whether the JSON `text` (which serde_json accepted as raw) may hold something serde_json
/// cannot make a tree of: nesting deeper than [`SAFE_DEPTH`], a surrogate escape (a lone one is
/// refused), a number with an exponent or of [`SAFE_NUMBER_LEN`] characters (out of an `f64`'s
/// range is refused). `false` means a tree can be made; `true` means it has to be tried (the
/// slow path refuses what it cannot read, so the fast path must not pass it on).
pub fn may_not_make_a_tree(text: &[u8]) -> bool {
    let mut depth = 0usize;
    let mut i = 0;
    loop {
        let Some(stop) = text.get(i..).and_then(|rest| {
            rest.iter().position(|b| matches!(b, b'"' | b'{' | b'[' | b'}' | b']' | b'-' | b'0'..=b'9'))
        }) else {
            return false;
        };
        i += stop;
        match text[i] {
            b'"' => match string_with_plain_escapes(text, i) {
                Some(end) => i = end,
                None => return true,
            },
            b'{' | b'[' => {
                depth += 1;
                if depth > SAFE_DEPTH {
                    return true;
                }
                i += 1;
            }
            b'}' | b']' => {
                depth = depth.saturating_sub(1);
                i += 1;
            }
            _ => {
                let len = text[i..]
                    .iter()
                    .take_while(|b| matches!(b, b'0'..=b'9' | b'-' | b'+' | b'.' | b'e' | b'E'))
                    .count();
                let number = &text[i..i + len];
                if len >= SAFE_NUMBER_LEN || number.iter().any(|b| matches!(b, b'e' | b'E')) {
                    return true;
                }
                i += len;
            }
        }
    }
}

/// [`super::scan`]'s string end for a string without surrogate escapes; `None` for one with any (or for a
/// string the scanner does not expect).
fn string_with_plain_escapes(text: &[u8], at: usize) -> Option<usize> {
    let mut i = at + 1;
    loop {
        let stop = memchr::memchr2(b'"', b'\\', text.get(i..)?)?;
        i += stop;
        if text[i] == b'"' {
            return Some(i + 1);
        }
        let surrogate = text.get(i + 1) == Some(&b'u')
            && matches!(text.get(i + 2), Some(b'd' | b'D'))
            && matches!(text.get(i + 3), Some(b'8'..=b'9' | b'a'..=b'f' | b'A'..=b'F'));
        if surrogate {
            return None;
        }
        i += 2;
    }
}

#[cfg(test)]
mod tests;
