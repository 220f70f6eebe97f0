//! Where a JSON string's plain run stops, sixteen bytes at a time: the first quote, backslash or
//! control character of a block.
//!
//! Why: the validating walk ([`super::valid`]) and the scan ([`super::scan`]) spend most of
//! their time in strings, and most of a message's strings are short. One SSE2 block compare (through `safe_arch`, since the crate
//! forbids `unsafe`) reads sixteen bytes in about as many instructions as the word-at-a-time
//! test needs for eight. Targets without SSE2 use that word test.

/// Bytes one look covers.
pub(super) const BLOCK: usize = 16;

/// The offset of the first quote, backslash or control character (below 0x20) in `block`.
pub(super) fn first(block: &[u8; BLOCK]) -> Option<usize> {
    #[cfg(target_feature = "sse2")]
    return sse2(block);
    #[cfg(not(target_feature = "sse2"))]
    return words(block);
}

/// The first stop in a block shorter than [`BLOCK`] (a text's end): its length when there is
/// none. The block is padded with quotes, so a look always stops.
pub(super) fn first_in_short(rest: &[u8]) -> usize {
    let mut block = [b'"'; BLOCK];
    let len = rest.len().min(BLOCK);
    block[..len].copy_from_slice(&rest[..len]);
    first(&block).unwrap_or(len)
}

/// Bytes [`first_of_run`] looks at in one step.
pub(super) const RUN: usize = 4 * BLOCK;

/// The offset of the first stop in `run`, four blocks a step: in a long string one test of the
/// four blocks' stops together costs less than a test of each.
pub(super) fn first_of_run(run: &[u8; RUN]) -> Option<usize> {
    let block = |i: usize| {
        let mut block = [0; BLOCK];
        block.copy_from_slice(&run[i * BLOCK..(i + 1) * BLOCK]);
        block
    };
    #[cfg(target_feature = "sse2")]
    {
        let stops = [0, 1, 2, 3].map(|i| sse2_stops(&block(i)));
        if safe_arch::move_mask_i8_m128i(stops[0] | stops[1] | stops[2] | stops[3]) == 0 {
            return None;
        }
        stops.iter().enumerate().find_map(|(i, &stops)| {
            let found = safe_arch::move_mask_i8_m128i(stops);
            (found != 0).then(|| i * BLOCK + found.trailing_zeros() as usize)
        })
    }
    #[cfg(not(target_feature = "sse2"))]
    {
        (0..4).find_map(|i| words(&block(i)).map(|at| i * BLOCK + at))
    }
}

#[cfg(target_feature = "sse2")]
fn sse2(block: &[u8; BLOCK]) -> Option<usize> {
    let found = safe_arch::move_mask_i8_m128i(sse2_stops(block));
    (found != 0).then(|| found.trailing_zeros() as usize)
}

/// The stops of `block` as a vector: all ones in the lanes of a quote, a backslash or a control
/// character.
#[cfg(target_feature = "sse2")]
fn sse2_stops(block: &[u8; BLOCK]) -> safe_arch::m128i {
    use safe_arch::{cmp_eq_mask_i8_m128i, m128i, min_u8_m128i, set_splat_i8_m128i};
    let bytes = m128i::from(*block);
    let splat = |byte: u8| set_splat_i8_m128i(i8::from_ne_bytes([byte]));
    let quote = cmp_eq_mask_i8_m128i(bytes, splat(b'"'));
    let backslash = cmp_eq_mask_i8_m128i(bytes, splat(b'\\'));
    // Unsigned `byte < 0x20` is `min(byte, 0x1f) == byte`.
    let control = cmp_eq_mask_i8_m128i(min_u8_m128i(bytes, splat(0x1f)), bytes);
    quote | backslash | control
}

/// The portable look: two eight-byte words, each tested for the three kinds of byte at once.
#[cfg_attr(target_feature = "sse2", allow(dead_code))]
fn words(block: &[u8; BLOCK]) -> Option<usize> {
    let (low, high) = block.split_at(BLOCK / 2);
    [low, high].into_iter().enumerate().find_map(|(half, word)| {
        let word = u64::from_le_bytes(*word.first_chunk()?);
        let found = equal(word, b'"') | equal(word, b'\\') | below(word, 0x20);
        (found != 0).then(|| half * 8 + (found.trailing_zeros() / 8) as usize)
    })
}

const ONES: u64 = u64::from_ne_bytes([1; 8]);
const HIGH: u64 = ONES << 7;

/// The high bit of every byte of `word` (eight bytes read little-endian) that is `byte`. Only
/// the lowest flagged byte is sure to be one: a borrow can flag bytes above it.
#[cfg_attr(target_feature = "sse2", allow(dead_code))]
fn equal(word: u64, byte: u8) -> u64 {
    let x = word ^ (ONES * u64::from(byte));
    x.wrapping_sub(ONES) & !x & HIGH
}

/// The high bit of every byte of `word` under `limit` (at most 128), with [`equal`]'s caveat.
#[cfg_attr(target_feature = "sse2", allow(dead_code))]
fn below(word: u64, limit: u8) -> u64 {
    word.wrapping_sub(ONES * u64::from(limit)) & !word & HIGH
}

#[cfg(test)]
mod tests {
    use super::*;

    fn byte_by_byte(block: &[u8]) -> Option<usize> {
        block.iter().position(|&b| b == b'"' || b == b'\\' || b < 0x20)
    }

    #[test]
    fn both_looks_stop_where_a_byte_loop_would() {
        // Every byte value at every offset, over a plain block and over one with a later stop
        // (a lower stop must win, a borrow must not flag a byte below it).
        for background in [[b'x'; BLOCK], [0xff; BLOCK], *b"abcdefghijklmno\""] {
            for at in 0..BLOCK {
                for byte in 0..=u8::MAX {
                    let mut block = background;
                    block[at] = byte;
                    let want = byte_by_byte(&block);
                    assert_eq!(words(&block), want, "words: {byte:#x} at {at} in {background:?}");
                    assert_eq!(first(&block), want, "first: {byte:#x} at {at} in {background:?}");
                }
            }
        }
    }

    #[test]
    fn a_run_of_four_blocks_stops_where_a_byte_loop_would() {
        for background in [[b'x'; RUN], [0xff; RUN]] {
            for at in 0..RUN {
                for byte in 0..=u8::MAX {
                    let mut run = background;
                    run[at] = byte;
                    // A later stop too: the first one wins.
                    if at + 1 < RUN {
                        run[RUN - 1] = b'"';
                    }
                    assert_eq!(first_of_run(&run), byte_by_byte(&run), "{byte:#x} at {at}");
                }
            }
            assert_eq!(first_of_run(&background), None);
        }
    }

    #[test]
    fn a_short_block_stops_at_its_end_when_nothing_else_stops_it() {
        assert_eq!(first_in_short(b""), 0);
        assert_eq!(first_in_short(b"abc"), 3);
        assert_eq!(first_in_short(b"a\\c"), 1);
        assert_eq!(first_in_short(b"abcdefghijklmno"), 15);
        assert_eq!(first_in_short(b"abcdefghijklmn\x01"), 14);
    }
}
