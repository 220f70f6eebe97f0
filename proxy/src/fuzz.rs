//! Fuzz targets: the code that reads bytes a client or an upstream chose, each behind a function
//! that takes arbitrary bytes, runs it, and panics only when an invariant is broken. They run two
//! ways: `proxy/tests/fuzz.rs` drives them in `cargo test` from the corpus in `proxy/fuzz/corpus/`
//! with random mutations for a fixed time (CI), and `proxy/fuzz/` wraps them for `cargo fuzz`
//! (coverage-guided, nightly) for longer runs.

use pingora_http::RequestHeader;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::front::checks;
use crate::jsonrpc::code;
use crate::jsonrpc::outcome;
use crate::jsonrpc::parse::{span_in, Envelope, ParamsHead};
use crate::jsonrpc::splice;
use crate::jsonrpc::sse;
use crate::proto::headers::{check_modern, decode_header_value, encode_header_value};
use crate::proto::protocol::MODERN_VERSION;
use crate::routing::index::UriTemplate;
use crate::telemetry::w3c;

/// A fuzz target: takes any bytes, panics only on a broken invariant.
pub type Target = fn(&[u8]);

/// The targets by name, for drivers.
pub const TARGETS: &[(&str, Target)] = &[
    ("jsonrpc", jsonrpc),
    ("sse", sse),
    ("uri_template", uri_template),
    ("headers", headers),
    ("credentials", credentials),
];

/// A client's JSON-RPC body: the borrowed envelope parse, the params head, the payload as a tree.
/// Errors carry only JSON-RPC's own codes; a name located in the body is really there; the
/// params head walked and the tree built are serde_json's own reading.
pub fn jsonrpc(data: &[u8]) {
    same_outcome(data);
    same_envelope(data);
    same_request(data);
    match Envelope::parse(data) {
        Err(invalid) => {
            assert!(matches!(invalid.error.code, code::PARSE_ERROR | code::INVALID_REQUEST), "{:?}", invalid.error);
        }
        Ok((env, kind)) => {
            let _ = env.method_str();
            if let Err(e) = env.payload(kind) {
                assert_eq!(e.code, code::INVALID_PARAMS);
            }
            for raw in [env.params, env.result, env.error].into_iter().flatten() {
                same_tree(raw);
            }
            let head = ParamsHead::parse(env.params);
            if let Some(params) = env.params {
                let parsed = ParamsHead::parsed(params);
                assert_eq!(format!("{head:?}"), format!("{parsed:?}"), "walked and parsed heads differ: {params}");
            }
            if let Ok(head) = head {
                for field in [head.name.as_deref(), head.uri.as_deref()].into_iter().flatten() {
                    if let Some(range) = span_in(data, field) {
                        assert_eq!(data.get(range), Some(field.as_bytes()), "a located field is the field");
                    }
                }
                let _ = head.protocol_version();
                if let Some(params) = env.params {
                    spliced_request(params, &head);
                }
            }
            if let (Some(id), Some(result)) = (env.id, env.result) {
                spliced_response(id, result);
            }
        }
    }
}

/// An envelope the validating walk reads is the one serde_json reads: the walk never accepts
/// what serde_json refuses.
fn same_envelope(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Some(walked) = Envelope::walked(text) {
        match Envelope::parsed(text) {
            Ok(parsed) => assert_eq!(format!("{walked:?}"), format!("{parsed:?}"), "walked and parsed differ: {text}"),
            Err(e) => panic!("the walk accepted what serde_json refuses ({:?}): {text}", e.error),
        }
    }
}

/// A request's envelope and params head read in one walk are each what it is read alone.
fn same_request(data: &[u8]) {
    let together = Envelope::parse_request(data);
    let apart = Envelope::parse(data).map(|(env, kind)| {
        let head = ParamsHead::parse(env.params);
        (env, kind, head)
    });
    assert_eq!(format!("{together:?}"), format!("{apart:?}"), "read in one walk and apart differ");
}

/// The tree built from accepted text is serde_json's own, and so is its error.
fn same_tree(text: &str) {
    let (built, parsed) = (crate::jsonrpc::tree::tree(text), serde_json::from_str::<Value>(text));
    match (&built, &parsed) {
        (Ok(b), Ok(p)) => assert!(b == p, "trees differ: {text}"),
        (Err(b), Err(p)) => assert_eq!(b.to_string(), p.to_string()),
        _ => panic!("built {built:?}, parsed {parsed:?}: {text}"),
    }
}

/// The envelope spliced into any params the borrowed parse accepted gives valid JSON, which reads
/// as the same params plus the envelope; the quick tree check misses nothing serde_json refuses.
fn spliced_request(params: &str, head: &ParamsHead<'_>) {
    let text = params.as_bytes();
    let tree = serde_json::from_str::<Value>(params);
    assert!(tree.is_ok() || splice::may_not_make_a_tree(text), "the quick check missed {params}");
    let Some(slot) = splice::meta_slot(text) else { return };
    if let splice::MetaSlot::Inside(meta) = &slot {
        let own = head.meta.as_ref().map(|m| m.protocol_version.as_deref());
        assert!(own.is_some(), "a _meta the scan finds is the _meta serde read");
        assert_eq!(text.get(meta.start), Some(&b'{'));
    }
    let out = splice::modern_request(9, "tools/call", text, 0..0, &slot, br#""k":1"#).expect("offsets fit");
    let out = valid_json(out);
    if let Ok(mut want) = tree {
        match want.get_mut("_meta").and_then(Value::as_object_mut) {
            Some(m) if !m.contains_key("k") => drop(m.insert("k".into(), 1.into())),
            Some(_) => return, // a key the envelope repeats: JSON keeps the last, serde the first
            None => want["_meta"] = serde_json::json!({"k": 1}),
        }
        let spliced: Value = serde_json::from_str(&out).expect("a tree, as the params make one");
        assert_eq!(spliced["params"], want, "only the envelope was added");
    }
}

/// A result re-addressed as bytes is valid JSON, and reads as the tree path's result.
fn spliced_response(id: &RawValue, result: &str) {
    let Some(out) = splice::legacy_response(id, result) else { return };
    let out = valid_json(out);
    if let Ok(tree) = serde_json::from_str::<Value>(result) {
        let want = crate::mcp::hub::finish_result(tree, crate::proto::protocol::Era::Legacy);
        // (The id is the client's, echoed as sent: a tree of it is not the point.)
        #[derive(serde::Deserialize)]
        struct Response {
            result: Value,
        }
        let spliced: Response = serde_json::from_str(&out).expect("a tree, as the result makes one");
        assert_eq!(spliced.result, want, "the splice and the tree agree on {result}");
    }
}

/// `out` as text, checked to be valid JSON (what the borrowed parse accepts).
fn valid_json(out: Vec<u8>) -> String {
    let out = String::from_utf8(out).expect("UTF-8 in, UTF-8 out");
    let valid = serde_json::from_str::<&RawValue>(&out);
    assert!(valid.is_ok(), "{valid:?}: {out}");
    out
}

/// An upstream's SSE stream, in chunks of sizes the input chooses: the decoder keeps events within
/// its bound, and each event's outcome, walked, is the state machine's.
pub fn sse(data: &[u8]) {
    const MAX_EVENT: usize = 4096;
    let Some((&step, body)) = data.split_first() else { return };
    let step = usize::from(step % 64) + 1;
    let mut decoder = Some(sse::Decoder::new(MAX_EVENT));
    let mut decoded = Vec::new();
    for chunk in body.chunks(step) {
        // A stream the decoder refuses (too large, not UTF-8) is not decoded further.
        match decoder.as_mut().map(|d| d.feed(chunk)) {
            Some(Ok(events)) => {
                for e in events {
                    assert!(e.data.len() <= MAX_EVENT, "an event past the bound");
                    same_outcome(e.data.as_bytes());
                    decoded.push(e);
                }
            }
            Some(Err(_)) => decoder = None,
            None => {}
        }
    }
    // However the stream was cut into chunks, the same events come out of it, and they are the
    // events the plain reading of the whole stream finds.
    if decoder.is_some() {
        let whole = sse::Decoder::new(MAX_EVENT).feed(body);
        assert_eq!(whole.as_ref().ok(), Some(&decoded), "decoded in pieces of {step} and whole");
        if let Ok(text) = std::str::from_utf8(body) {
            assert_eq!(decoded, sse_events(text), "the decoder and the plain reading disagree");
        }
    }
    same_outcome(body);
}

/// The events of a whole SSE stream read the plain way, as the format describes it, one line
/// after another: the decoder's oracle. A line ends at CRLF, LF or CR; a CR that ends the text
/// may be the first half of a CRLF, so its line waits, as the decoder's does.
fn sse_events(text: &str) -> Vec<sse::Event> {
    let (mut events, mut event, mut has_data) = (Vec::new(), sse::Event::default(), false);
    let mut rest = text;
    while let Some(end) = rest.find(['\r', '\n']) {
        let ending = &rest[end..];
        if ending == "\r" {
            break;
        }
        let line = &rest[..end];
        rest = &rest[end + if ending.starts_with("\r\n") { 2 } else { 1 }..];
        if line.is_empty() {
            let ended = std::mem::take(&mut event);
            if has_data || ended.id.is_some() || ended.retry.is_some() {
                events.push(ended);
            }
            has_data = false;
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => event.event = Some(value.to_owned()),
            "data" => {
                if has_data {
                    event.data.push('\n');
                }
                event.data.push_str(value);
                has_data = true;
            }
            "id" => event.id = Some(value.to_owned()),
            "retry" => event.retry = value.trim().parse().ok(),
            _ => {}
        }
    }
    events
}

/// A reply's outcome, walked, is the state machine's; read together with the envelope, the
/// outcome and the envelope are each what they are read alone.
fn same_outcome(body: &[u8]) {
    let said = outcome::of_json(body);
    assert_eq!(said, outcome::scanned(body), "the walk and the scan disagree");
    let (envelope, read) = outcome::reply(body);
    assert_eq!(read, said, "the envelope's walk and the reply's disagree");
    assert_eq!(format!("{envelope:?}"), format!("{:?}", Envelope::parse(body)), "the envelopes differ");
}

/// A provider's URI template and a client's URI (split at the first NUL): compiling and matching
/// never panic, and a template without expressions matches exactly itself.
pub fn uri_template(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (template, uri) = text.split_once('\0').unwrap_or((&text, ""));
    let t = UriTemplate::parse(template);
    let _ = t.matches(uri);
    if !template.contains('{') && template.len() < 1024 {
        assert!(t.matches(template), "a literal template matches itself");
        assert_eq!(t.matches(uri), uri == template);
    }
}

/// A request's headers (lines up to a blank line) and body: the header/body check, content
/// negotiation, duplicate detection, Origin/Host checks, the `Mcp-Name` codec (which must round
/// trip) and the trace-context validators; and the express path's reading of the same head,
/// which every check must read as Pingora's is read.
pub fn headers(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let Ok(mut req) = RequestHeader::build("POST", b"/mcp", None) else { return };
    let mut raw = b"POST /mcp HTTP/1.1\r\n".to_vec();
    for line in head.lines() {
        if let Some((name, value)) = line.split_once(':') {
            if req.append_header(name.trim().to_owned(), value.trim()).is_ok() {
                raw.extend_from_slice(format!("{}: {}\r\n", name.trim(), value.trim()).as_bytes());
            }
        }
    }
    raw.extend_from_slice(b"\r\n");
    same_head_reading(&req, &raw, body);
    // The express path's two head readers agree on the built head and on the input as it came.
    crate::front::request_head::read_alike(&raw);
    crate::front::request_head::read_alike(data);
    let _ = checks::accepts(&req);
    let _ = checks::is_json_body(&req);
    let _ = checks::conflicting_duplicate(&req);
    let value = |n: &str| req.headers.get(n).and_then(|v| v.to_str().ok());
    let _ = checks::origin_allowed(value("origin").unwrap_or(""), &["http://localhost".to_owned()]);
    let _ = checks::host_allowed(value("host"), "127.0.0.1");
    if let Ok((env, _)) = Envelope::parse(body.as_bytes()) {
        if let Ok(head) = ParamsHead::parse(env.params) {
            if let Err(e) = check_modern(&req, env.method_str(), &head, MODERN_VERSION) {
                assert!(matches!(e.code, code::HEADER_MISMATCH | code::INVALID_PARAMS), "{e:?}");
            }
        }
    }
    for s in [head, body] {
        let encoded = encode_header_value(s);
        assert!(encoded.bytes().all(|b| (0x20..0x7f).contains(&b)), "an encoded value is header-safe");
        if !s.is_empty() {
            assert_eq!(decode_header_value(&encoded).as_deref(), Some(s), "the Mcp-Name codec round trips");
        }
        let _ = decode_header_value(s);
        if w3c::traceparent_ok(s) {
            assert!(s.len() >= 55 && s.is_ascii());
        }
        if w3c::tracestate_ok(s) || w3c::baggage_ok(s) {
            assert!(!s.bytes().any(|b| b < 0x20 && b != b'\t'), "no control characters pass");
        }
    }
}

/// The express path's views over `raw` (the head `req` was built from) answer every lookup and
/// check as Pingora's header map does.
fn same_head_reading(req: &RequestHeader, raw: &[u8], body: &str) {
    use crate::front::request_head::{RequestHead, Scan, INDEXED};
    use crate::proto::fields::Fields;
    let mut scanned = RequestHead::default();
    // A head the express path does not read (too many fields, a byte httparse refuses) is
    // Pingora's alone.
    let Scan::Complete(len) = scanned.scan(raw) else { return };
    let view = scanned.view(&raw[..len]);
    for name in INDEXED.into_iter().chain(["x-other", "traceparent", "mcp-param-region"]) {
        assert_eq!(view.first(name), req.first(name), "{name}");
        assert_eq!(view.each(name).collect::<Vec<_>>(), req.each(name).collect::<Vec<_>>(), "{name}");
        assert_eq!(view.text_bytes(name), req.text_bytes(name), "{name}");
        assert_eq!(view.text(name), req.text(name), "{name}");
    }
    assert_eq!(checks::accepts(&view), checks::accepts(req));
    assert_eq!(checks::is_json_body(&view), checks::is_json_body(req));
    assert_eq!(checks::conflicting_duplicate(&view), checks::conflicting_duplicate(req));
    if let Ok((env, _)) = Envelope::parse(body.as_bytes()) {
        if let Ok(head) = ParamsHead::parse(env.params) {
            let method = env.method_str();
            assert_eq!(
                check_modern(&view, method, &head, MODERN_VERSION),
                check_modern(req, method, &head, MODERN_VERSION)
            );
        }
    }
}

/// The one API key [`credentials`] accepts.
const FUZZ_KEY: &str = "mcp_fuzz_key";

/// Credentials in every shape (the first line is an `X-API-Key`, the rest an `Authorization`):
/// nothing but the configured key passes, and nothing panics. Token signing keys are never
/// available here (the key set's address refuses connections), so no token can pass either.
pub fn credentials(data: &[u8]) {
    use std::sync::OnceLock;

    use crate::auth::{keys, Security};

    static SECURITY: OnceLock<Option<(Security, tokio::runtime::Runtime)>> = OnceLock::new();
    let Some((security, runtime)) = SECURITY.get_or_init(|| {
        let text = format!(
            "auth:\n  enabled: true\n  api_key:\n    keys:\n      - {{name: f, key_hash: \"{}\", principal: \"service:fuzz\"}}\n  oidc:\n    issuer: http://127.0.0.1:9\n    audience: fuzz\n    jwks_uri: http://127.0.0.1:9/jwks\n",
            keys::key_hash(FUZZ_KEY)
        );
        let config = hangar_config::parse(&text, "fuzz", &|_| None).ok()?;
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
        Some((Security::build(&config, None), runtime))
    }) else {
        return;
    };
    let text = String::from_utf8_lossy(data);
    let (key, authorization) = text.split_once('\n').unwrap_or((&text, ""));
    let mut headers = http::HeaderMap::new();
    for (name, value) in [("x-api-key", key), ("authorization", authorization)] {
        if let (false, Ok(v)) = (value.is_empty(), http::HeaderValue::from_str(value)) {
            headers.append(name, v);
        }
    }
    if let Ok(who) = runtime.block_on(security.authenticate(&headers)) {
        assert_eq!(who.id, "service:fuzz", "only the configured key passes");
        assert_eq!(headers.get("x-api-key").and_then(|v| v.to_str().ok()).map(str::trim), Some(FUZZ_KEY));
    }
}
