//! Syntax of the W3C trace-context fields a client may send (`traceparent`, `tracestate`,
//! `baggage`, in `_meta` or in headers). The gateway passes them upstream in HTTP headers, so a
//! value that is not what the W3C specifications allow is dropped where it enters: otherwise one
//! client could make every upstream request it sends unbuildable (a control character in a header)
//! and have that counted against the provider.

/// Longest `tracestate` the W3C Trace Context specification lets a vendor pass on.
const MAX_TRACESTATE: usize = 512;
/// Most `tracestate` list members.
const MAX_TRACESTATE_MEMBERS: usize = 32;
/// Longest `baggage` (W3C Baggage: 8192 bytes).
const MAX_BAGGAGE: usize = 8192;
/// Most `baggage` list members.
const MAX_BAGGAGE_MEMBERS: usize = 180;

fn lower_hex(s: &str) -> bool {
    s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// `version-traceid-parentid-flags`: lowercase hex of 2, 32, 16 and 2 digits; version `ff` and
/// all-zero ids are invalid; a future version may append fields after a `-`.
pub fn traceparent_ok(s: &str) -> bool {
    let b = s.as_bytes();
    if b.len() < 55 || !s.is_ascii() {
        return false;
    }
    let (version, trace_id, parent_id, flags) = (&s[0..2], &s[3..35], &s[36..52], &s[53..55]);
    let dashes = b[2] == b'-' && b[35] == b'-' && b[52] == b'-';
    let rest_ok = match version {
        "00" => b.len() == 55,
        _ => b.len() == 55 || (b[55] == b'-' && s[56..].bytes().all(|c| c.is_ascii_graphic())),
    };
    dashes
        && rest_ok
        && [version, trace_id, parent_id, flags].iter().all(|p| lower_hex(p))
        && version != "ff"
        && trace_id.bytes().any(|c| c != b'0')
        && parent_id.bytes().any(|c| c != b'0')
}

/// A `tracestate` list: `key=value` members separated by commas, keys of lowercase letters,
/// digits and `_-*/` (with an optional `@tenant`), values of printable ASCII without `,` and `=`.
pub fn tracestate_ok(s: &str) -> bool {
    if s.len() > MAX_TRACESTATE {
        return false;
    }
    let mut members = 0;
    for member in s.split(',').map(|m| m.trim_matches([' ', '\t'])) {
        if member.is_empty() {
            continue;
        }
        members += 1;
        let Some((key, value)) = member.split_once('=') else { return false };
        let key_ok = !key.is_empty()
            && key.len() <= 256
            && key.bytes().next().is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            && key.bytes().all(|c| matches!(c, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'*' | b'/' | b'@'));
        let value_ok = !value.is_empty()
            && value.len() <= 256
            && value.bytes().all(|c| (0x20..0x7f).contains(&c) && c != b',' && c != b'=')
            && !value.ends_with(' ');
        if !key_ok || !value_ok {
            return false;
        }
    }
    members <= MAX_TRACESTATE_MEMBERS
}

/// A `baggage` list, as far as passing it on safely needs: bounded, visible ASCII and spaces only
/// (the specification percent-encodes everything else), every member a `key=value`.
pub fn baggage_ok(s: &str) -> bool {
    s.len() <= MAX_BAGGAGE
        && s.bytes().all(|c| c == b' ' || c == b'\t' || c.is_ascii_graphic())
        && s.split(',').count() <= MAX_BAGGAGE_MEMBERS
        && s.split(',').all(|m| m.split(';').next().is_some_and(|kv| kv.contains('=')))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VALID: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    #[test]
    fn traceparents() {
        assert!(traceparent_ok(VALID));
        assert!(traceparent_ok("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-future"));
        for bad in [
            "",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\nx: y",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\0",
            "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
            "00-00000000000000000000000000000000-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
            "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra",
            "00_0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331_01",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b716920333é-01",
        ] {
            assert!(!traceparent_ok(bad), "{bad:?}");
        }
    }

    #[test]
    fn tracestates() {
        assert!(tracestate_ok("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"));
        assert!(tracestate_ok("tenant@vendor=x , other=y"));
        assert!(tracestate_ok(""));
        for bad in ["a=b\x7f", "a=b\r\nx: y", "A=b", "a", "a=", "a=b=c", &"a=b,".repeat(40), &"x".repeat(600)] {
            assert!(!tracestate_ok(bad), "{bad:?}");
        }
    }

    #[test]
    fn baggages() {
        assert!(baggage_ok("userId=alice,serverNode=DF%2028;prop"));
        for bad in ["a=b\x7f", "a=b\nx", "novalue", &"k=v,".repeat(200), &format!("k={}", "v".repeat(9000))] {
            assert!(!baggage_ok(bad), "{bad:?}");
        }
    }
}
