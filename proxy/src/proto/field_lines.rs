//! HTTP/1.1 field lines of the usual kind, read a block at a time: what both heads the gateway
//! reads on its hot path (a client's request, an upstream's response) are made of.
//!
//! Why: a general parser (`httparse`) reads every byte through a table and leaves its fields
//! to be walked again for the names the gateway looks up. Nearly every head is plain — tokens,
//! printable ASCII, CRLF line ends — and a plain head can be read sixteen bytes at a time, its
//! names recognised as they are read. Each reader here accepts a subset of `httparse`'s grammar
//! and reads it as `httparse` does; its callers leave anything else to `httparse`, so what is
//! accepted and how it reads stays `httparse`'s (their tests compare the two readings).

use std::ops::Range;

/// Whether printable ASCII `name` is `lowercase` (of small letters and hyphens, as long) in any
/// case, compared eight or four bytes at a time. Setting a byte's 0x20 bit folds a capital
/// letter onto its small one, and of the printable bytes only a letter folds onto a letter and
/// only a hyphen onto a hyphen, so the folded comparison is exact.
pub(crate) fn folded_eq(name: &[u8], lowercase: &[u8]) -> bool {
    let len = name.len();
    if len != lowercase.len() {
        return false;
    }
    if len >= 8 {
        let word = |s: &[u8], i: usize| s.get(i..).and_then(|s| s.first_chunk::<8>()).map(|w| u64::from_ne_bytes(*w));
        let differs = |i: usize| word(name, i).map(|w| w | u64::from_ne_bytes([0x20; 8])) != word(lowercase, i);
        // Whole words from the start, then the last word, which may overlap the one before.
        let mut i = 0;
        while i + 8 < len {
            if differs(i) {
                return false;
            }
            i += 8;
        }
        !differs(len - 8)
    } else if len >= 4 {
        let word = |s: &[u8], i: usize| s.get(i..).and_then(|s| s.first_chunk::<4>()).map(|w| u32::from_ne_bytes(*w));
        let differs = |i: usize| word(name, i).map(|w| w | u32::from_ne_bytes([0x20; 4])) != word(lowercase, i);
        !differs(0) && !differs(len - 4)
    } else {
        name.iter().zip(lowercase).all(|(a, b)| a | 0x20 == *b)
    }
}

/// RFC 9110's `tchar`: the bytes of a method and of a field name, as `httparse` takes them.
static TOKEN: [bool; 256] = {
    let mut map = [false; 256];
    let mut b = 0;
    while b < 256 {
        map[b] = matches!(b as u8, b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9')
            || matches!(
                b as u8,
                b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+' | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~'
            );
        b += 1;
    }
    map
};

/// Whether every byte of `bytes` is a token byte.
pub(crate) fn is_token(bytes: &[u8]) -> bool {
    bytes.iter().all(|&b| is_token_byte(b))
}

/// Whether `b` is a token byte.
pub(crate) fn is_token_byte(b: u8) -> bool {
    TOKEN[usize::from(b)]
}

/// Where a field name's or value's plain run stops.
#[derive(Clone, Copy)]
enum Stop {
    /// At a colon, or at a byte outside printable ASCII (a blank among them).
    Name,
    /// At a byte outside printable ASCII and the space (a tab among them).
    Value,
}

/// Bytes one look covers.
const BLOCK: usize = 16;

/// The bytes of `block` where `stop` stops, as a mask (bit `i` for byte `i`).
fn look(block: &[u8; BLOCK], stop: Stop) -> u32 {
    #[cfg(target_feature = "sse2")]
    {
        use safe_arch::{cmp_eq_mask_i8_m128i, cmp_lt_mask_i8_m128i, m128i, move_mask_i8_m128i, set_splat_i8_m128i};
        let bytes = m128i::from(*block);
        let splat = |byte: u8| set_splat_i8_m128i(i8::from_ne_bytes([byte]));
        // Signed: the bytes from 0x80 up are below the limit too.
        let (limit, colon) = match stop {
            Stop::Name => (b'!', cmp_eq_mask_i8_m128i(bytes, splat(b':'))),
            Stop::Value => (b' ', m128i::default()),
        };
        let outside = cmp_lt_mask_i8_m128i(bytes, splat(limit)) | cmp_eq_mask_i8_m128i(bytes, splat(0x7f));
        move_mask_i8_m128i(outside | colon) as u32
    }
    #[cfg(not(target_feature = "sse2"))]
    {
        block.iter().enumerate().fold(0, |mask, (i, &b)| mask | u32::from(stops(b, stop)) << i)
    }
}

/// Whether `stop` stops at `b` (what [`look`] does, a byte at a time).
#[cfg_attr(target_feature = "sse2", allow(dead_code))]
fn stops(b: u8, stop: Stop) -> bool {
    match stop {
        Stop::Name => !(b'!'..=b'~').contains(&b) || b == b':',
        Stop::Value => !(b' '..=b'~').contains(&b),
    }
}

/// The offset of the first byte of `bytes` where `stop` stops, a block at a time; `None` when
/// none does.
fn first_stop(bytes: &[u8], stop: Stop) -> Option<usize> {
    let mut at = 0;
    while let Some(block) = bytes.get(at..).and_then(|rest| rest.first_chunk::<BLOCK>()) {
        let found = look(block, stop);
        if found != 0 {
            return Some(at + found.trailing_zeros() as usize);
        }
        at += BLOCK;
    }
    // The last few bytes, padded with NULs (where both kinds stop).
    let rest = bytes.get(at..).unwrap_or_default();
    let mut block = [0; BLOCK];
    block.get_mut(..rest.len())?.copy_from_slice(rest);
    let found = at + look(&block, stop).trailing_zeros() as usize;
    (found < bytes.len()).then_some(found)
}

/// Where the plain part of a field value starting at `bytes` ends: the offset of its `\r`,
/// when every byte before it is printable ASCII or a tab and a `\n` follows it. `None` for
/// anything else: other bytes (`httparse` takes bytes from 0x80 up too), a bare line feed, or
/// the end of the bytes.
pub(crate) fn value_end(bytes: &[u8]) -> Option<usize> {
    let mut from = 0;
    loop {
        let end = from + first_stop(bytes.get(from..)?, Stop::Value)?;
        match bytes[end] {
            b'\t' => from = end + 1,
            b'\r' if bytes.get(end + 1) == Some(&b'\n') => return Some(end),
            _ => return None,
        }
    }
}

/// Reads plain field lines from `at` up to the empty line that ends the head, and returns the
/// head's end (after that line). Each field goes to `field` as its name and the ranges of its
/// name and value in `head`; a name is printable ASCII without a colon, for `field` to check
/// as a token (or recognise), and a value has no blanks at either end, as `httparse` reads it.
/// `None` when a line is not plain (nor yet whole) or `field` refuses one.
pub(crate) fn read_fields(
    head: &[u8],
    mut at: usize,
    mut field: impl FnMut(&[u8], Range<usize>, Range<usize>) -> bool,
) -> Option<usize> {
    loop {
        let line = head.get(at..)?;
        if line.starts_with(b"\r\n") {
            return Some(at + 2);
        }
        let name_len = first_stop(line, Stop::Name)?;
        if name_len == 0 || line[name_len] != b':' {
            return None;
        }
        let mut value_start = name_len + 1;
        while matches!(line.get(value_start), Some(b' ' | b'\t')) {
            value_start += 1;
        }
        let value_len = value_end(&line[value_start..])?;
        let mut trimmed = value_len;
        while trimmed > 0 && matches!(line[value_start + trimmed - 1], b' ' | b'\t') {
            trimmed -= 1;
        }
        let value_at = at + value_start;
        if !field(&line[..name_len], at..at + name_len, value_at..value_at + trimmed) {
            return None;
        }
        at = value_at + value_len + 2;
    }
}

/// The variants of `head` the head readers' tests try on both readers, each with whether it
/// replaced a byte: every byte replaced by every value, every byte left out, and a line feed, a
/// carriage return, a blank, a tab, a colon or a byte from 0x80 up put in anywhere.
#[cfg(test)]
pub(crate) fn variants(head: &[u8]) -> impl Iterator<Item = (bool, Vec<u8>)> + '_ {
    (0..head.len()).flat_map(move |at| {
        let replaced = (0..=u8::MAX).map(move |byte| {
            let mut changed = head.to_vec();
            changed[at] = byte;
            (true, changed)
        });
        let mut shorter = head.to_vec();
        shorter.remove(at);
        let longer = [b'\n', b'\r', b' ', b'\t', b':', 0x80].into_iter().map(move |byte| {
            let mut longer = head.to_vec();
            longer.insert(at, byte);
            (false, longer)
        });
        replaced.chain([(false, shorter)]).chain(longer)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_look_stops_where_a_byte_loop_would() {
        for stop in [Stop::Name, Stop::Value] {
            for background in [[b'x'; BLOCK], *b"abcdefghijklmn:\r"] {
                for at in 0..BLOCK {
                    for byte in 0..=u8::MAX {
                        let mut block = background;
                        block[at] = byte;
                        let want = block.iter().position(|&b| stops(b, stop));
                        assert_eq!(first_stop(&block, stop), want, "{byte:#x} at {at} in {background:?}");
                        assert_eq!(
                            first_stop(&block[..at], stop),
                            want.filter(|&i| i < at),
                            "short: {byte:#x} at {at}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_folded_comparison_is_a_case_blind_one_for_printable_names() {
        for lowercase in ["te", "host", "accept", "upgrade", "mcp-name", "content-length", "mcp-protocol-version"] {
            for at in 0..lowercase.len() {
                for byte in b'!'..=b'~' {
                    let mut name = lowercase.as_bytes().to_vec();
                    name[at] = byte;
                    assert_eq!(
                        folded_eq(&name, lowercase.as_bytes()),
                        name.eq_ignore_ascii_case(lowercase.as_bytes()),
                        "{name:?}"
                    );
                }
            }
            assert!(folded_eq(lowercase.to_uppercase().as_bytes(), lowercase.as_bytes()));
            assert!(!folded_eq(&lowercase.as_bytes()[1..], lowercase.as_bytes()));
        }
    }
}
