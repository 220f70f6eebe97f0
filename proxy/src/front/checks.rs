//! Request checks done before any body is read: `Origin` (DNS-rebinding protection), `Host`,
//! content negotiation.

use crate::proto::fields::Fields;

/// Whether `origin` (an `Origin` header value) is allowed by `allowed` (config entries:
/// `*`, or `scheme://host[:port]`; an entry without a port allows any port).
pub fn origin_allowed(origin: &str, allowed: &[String]) -> bool {
    if allowed.iter().any(|a| a == "*") {
        return true;
    }
    let Some((scheme, rest)) = origin.split_once("://") else { return false };
    let (host, port) = split_host_port(rest);
    allowed.iter().any(|entry| {
        let Some((e_scheme, e_rest)) = entry.split_once("://") else { return false };
        let (e_host, e_port) = split_host_port(e_rest);
        e_scheme.eq_ignore_ascii_case(scheme)
            && e_host.eq_ignore_ascii_case(host)
            && (e_port.is_none() || e_port == port)
    })
}

/// Whether a `Host` header is acceptable for a gateway bound to `bind_host`. A gateway bound to a
/// loopback address only answers loopback host names: a DNS-rebinding page cannot reach it
/// through a name it controls.
pub fn host_allowed(host_header: Option<&str>, bind_host: &str) -> bool {
    let loopback_bind = matches!(bind_host, "127.0.0.1" | "::1" | "localhost" | "[::1]")
        || bind_host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback_bind {
        return true;
    }
    let Some(h) = host_header else { return true };
    let (name, _) = split_host_port(h);
    ["127.0.0.1", "localhost", "::1", "[::1]"].iter().any(|l| name.eq_ignore_ascii_case(l))
        || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `host[:port]` (an IPv6 address in brackets; anything from a `/` on left out) as its host and
/// port; a name with more than one colon is a bare IPv6 address, all host. One pass over the
/// bytes: these values are short, and every request's `Host` is split.
fn split_host_port(s: &str) -> (&str, Option<&str>) {
    let (mut end, mut colons, mut last) = (s.len(), 0, 0);
    for (at, b) in s.bytes().enumerate() {
        match b {
            b'/' => {
                end = at;
                break;
            }
            b':' => (colons, last) = (colons + 1, at),
            _ => {}
        }
    }
    let s = s.get(..end).unwrap_or_default();
    if let Some(v6) = s.strip_prefix('[') {
        return match v6.split_once(']') {
            Some((h, after)) => (h, after.strip_prefix(':')),
            None => (s, None),
        };
    }
    match colons {
        1 => (s.get(..last).unwrap_or_default(), s.get(last + 1..)),
        _ => (s, None),
    }
}

/// What the client accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Accepts {
    /// `application/json`.
    pub json: bool,
    /// `text/event-stream`.
    pub sse: bool,
    /// The client listed `text/event-stream` before `application/json`: stream even a lone
    /// response.
    pub prefer_sse: bool,
}

/// Reads `Accept`; no header, or `*/*`, accepts both.
pub fn accepts(req: &impl Fields) -> Accepts {
    let Some(v) = req.text_bytes("accept") else {
        return Accepts { json: true, sse: true, prefer_sse: false };
    };
    // The values the SDKs send, known whole before any is taken apart.
    match v {
        b"application/json, text/event-stream" => Accepts { json: true, sse: true, prefer_sse: false },
        b"text/event-stream, application/json" => Accepts { json: true, sse: true, prefer_sse: true },
        _ => accepts_list(v),
    }
}

/// `Accept`'s value read item by item.
fn accepts_list(v: &[u8]) -> Accepts {
    let mut a = Accepts::default();
    for part in list_items(v) {
        let mime = media_type(part);
        let is = |m: &str| mime == m.as_bytes() || mime.eq_ignore_ascii_case(m.as_bytes());
        if is("application/json") || is("application/*") {
            a.json = true;
        } else if is("text/event-stream") || is("text/*") {
            a.prefer_sse |= !a.json;
            a.sse = true;
        } else if is("*/*") {
            a.json = true;
            a.sse = true;
        }
    }
    a
}

/// Headers whose value decides how a request is routed, checked or attributed. A second copy with
/// a different value is refused: otherwise a router trusting one copy and an upstream trusting the
/// other could be made to disagree (the same reason the body must match `Mcp-Name`).
const SINGLE_VALUED: [&str; 9] = [
    "host",
    "origin",
    "content-type",
    "authorization",
    "mcp-protocol-version",
    "mcp-method",
    "mcp-name",
    "mcp-session-id",
    "last-event-id",
];

/// The first single-valued header sent twice with different values, if any (identical copies are
/// harmless and allowed).
pub fn conflicting_duplicate(req: &impl Fields) -> Option<&'static str> {
    if !req.may_repeat() {
        return None;
    }
    SINGLE_VALUED.into_iter().find(|name| {
        let mut values = req.each(name);
        let first = values.next();
        values.any(|v| Some(v) != first)
    })
}

/// Whether `Content-Type` is JSON.
pub fn is_json_body(req: &impl Fields) -> bool {
    req.text_bytes("content-type").is_some_and(|v| media_type(v).eq_ignore_ascii_case(b"application/json"))
}

/// A media type without its parameters and the blanks around it (`text/html; q=1` → `text/html`).
/// Bytes, cut where `memchr` finds the `;` (a byte-at-a-time loop cost five instructions a byte,
/// and these values are read on every request).
fn media_type(value: &[u8]) -> &[u8] {
    memchr::memchr(b';', value).map_or(value, |end| &value[..end]).trim_ascii()
}

/// The items of a comma-separated field value, found by `memchr`.
fn list_items(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(value);
    std::iter::from_fn(move || {
        let left = rest?;
        match memchr::memchr(b',', left) {
            Some(comma) => {
                rest = Some(&left[comma + 1..]);
                Some(&left[..comma])
            }
            None => rest.take(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora_http::RequestHeader;

    fn allowed() -> Vec<String> {
        vec!["http://localhost".into(), "https://app.example.com:8443".into()]
    }

    #[test]
    fn origins() {
        assert!(origin_allowed("http://localhost:3000", &allowed()));
        assert!(origin_allowed("http://LOCALHOST", &allowed()));
        assert!(origin_allowed("https://app.example.com:8443", &allowed()));
        assert!(!origin_allowed("https://app.example.com", &allowed()));
        assert!(!origin_allowed("https://localhost", &allowed()));
        assert!(!origin_allowed("http://evil.example", &allowed()));
        assert!(!origin_allowed("null", &allowed()));
        assert!(origin_allowed("null", &["*".into()]));
    }

    #[test]
    fn hosts_and_ports_are_split_as_written() {
        for (value, host, port) in [
            ("127.0.0.1:8000", "127.0.0.1", Some("8000")),
            ("localhost", "localhost", None),
            ("example.com:", "example.com", Some("")),
            ("[::1]:80", "::1", Some("80")),
            ("[::1]", "::1", None),
            ("::1", "::1", None),
            ("fe80::1:8080", "fe80::1:8080", None),
            ("app.example:443/path:x", "app.example", Some("443")),
            ("/x", "", None),
            ("[broken", "[broken", None),
        ] {
            assert_eq!(split_host_port(value), (host, port), "{value}");
        }
    }

    #[test]
    fn hosts() {
        assert!(host_allowed(Some("127.0.0.1:8000"), "127.0.0.1"));
        assert!(host_allowed(Some("localhost"), "127.0.0.1"));
        assert!(host_allowed(Some("[::1]:80"), "127.0.0.1"));
        assert!(!host_allowed(Some("evil.example:8000"), "127.0.0.1"));
        assert!(host_allowed(Some("evil.example:8000"), "0.0.0.0"));
    }

    #[test]
    fn conflicting_duplicates_are_found() {
        let mut r = RequestHeader::build("POST", b"/mcp", None).expect("req");
        r.append_header("mcp-name", "a").expect("h");
        assert_eq!(conflicting_duplicate(&r), None);
        r.append_header("Mcp-Name", "a").expect("h");
        assert_eq!(conflicting_duplicate(&r), None, "identical copies are allowed");
        r.append_header("mcp-name", "b").expect("h");
        assert_eq!(conflicting_duplicate(&r), Some("mcp-name"));
        let mut r = RequestHeader::build("POST", b"/mcp", None).expect("req");
        r.append_header("mcp-protocol-version", "2026-07-28").expect("h");
        r.append_header("mcp-protocol-version", "2025-11-25").expect("h");
        assert_eq!(conflicting_duplicate(&r), Some("mcp-protocol-version"));
    }

    #[test]
    fn the_usual_accept_values_read_as_their_items_do() {
        let mut r = RequestHeader::build("POST", b"/mcp", None).expect("req");
        for value in ["application/json, text/event-stream", "text/event-stream, application/json"] {
            r.insert_header("accept", value).expect("h");
            assert_eq!(accepts(&r), accepts_list(value.as_bytes()), "{value}");
        }
    }

    #[test]
    fn accept_header() {
        let mut r = RequestHeader::build("POST", b"/mcp", None).expect("req");
        assert_eq!(accepts(&r), Accepts { json: true, sse: true, prefer_sse: false });
        r.insert_header("accept", "application/json, text/event-stream").expect("h");
        assert_eq!(accepts(&r), Accepts { json: true, sse: true, prefer_sse: false });
        r.insert_header("accept", "text/event-stream, application/json").expect("h");
        assert_eq!(accepts(&r), Accepts { json: true, sse: true, prefer_sse: true });
        r.insert_header("accept", "text/event-stream").expect("h");
        assert_eq!(accepts(&r), Accepts { json: false, sse: true, prefer_sse: true });
        r.insert_header("accept", "text/html").expect("h");
        assert_eq!(accepts(&r), Accepts::default());
        r.insert_header("accept", "Application/JSON; q=1, TEXT/Event-Stream").expect("h");
        assert_eq!(accepts(&r), Accepts { json: true, sse: true, prefer_sse: false }, "types are case-insensitive");
        for (value, json, sse) in [
            ("text/html,,application/json", true, false),
            (",text/event-stream,", false, true),
            ("text/html;q=0.1,*/*;q=0.5", true, true),
            ("application/json;q=1;x=y", true, false),
            ("", false, false),
        ] {
            r.insert_header("accept", value).expect("h");
            let got = accepts(&r);
            assert_eq!((got.json, got.sse), (json, sse), "{value:?}");
        }
    }

    #[test]
    fn single_valued_names_are_indexed_by_the_express_reader() {
        // Its `may_repeat` knows of repeats among the names it indexes only.
        for name in SINGLE_VALUED {
            assert!(crate::front::request_head::INDEXED.contains(&name), "{name}");
        }
    }

    #[test]
    fn list_items_are_split_at_every_comma() {
        let items =
            |v: &str| list_items(v.as_bytes()).map(|i| String::from_utf8_lossy(i).into_owned()).collect::<Vec<_>>();
        assert_eq!(items("a, b,c"), ["a", " b", "c"]);
        assert_eq!(items(""), [""]);
        assert_eq!(items(",a,"), ["", "a", ""]);
        let split = |v: &str| v.split(',').map(str::to_owned).collect::<Vec<_>>();
        for v in ["a,,b", "x", "text/html;q=1, */*"] {
            assert_eq!(items(v), split(v), "as str::split does");
        }
    }

    #[test]
    fn json_bodies_by_media_type() {
        let mut r = RequestHeader::build("POST", b"/mcp", None).expect("req");
        assert!(!is_json_body(&r), "no content type");
        for (value, json) in [
            ("application/json", true),
            ("Application/JSON ; charset=utf-8", true),
            ("\tapplication/json", true),
            ("application/json-seq", false),
            ("application/jsonx; a=b", false),
            ("text/plain; application/json", false),
        ] {
            r.insert_header("content-type", value).expect("h");
            assert_eq!(is_json_body(&r), json, "{value}");
        }
    }
}
