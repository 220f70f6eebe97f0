//! Borrowed parsing of one JSON-RPC message: only the envelope and, for requests, the handful of
//! `params` fields routing needs (`name`, `uri`, the protocol version in `_meta`). Everything else
//! stays raw bytes that serde skips without allocating.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::valid::{self, Member, TopLevel, Unread, Visit};
use super::{code, RpcError};
use crate::proto::protocol::meta;

/// The top-level fields of a JSON-RPC message, borrowed from the input. The raw fields other
/// than `id` are each value's JSON text, as serde_json's `RawValue` would hold it.
#[derive(Debug)]
pub struct Envelope<'a> {
    jsonrpc: Option<Cow<'a, str>>,
    /// Request or response id (string or number), raw. Present even when it is `null`: a
    /// request with `"id": null` is invalid, not a notification.
    pub id: Option<&'a RawValue>,
    /// Method name of requests and notifications.
    pub method: Option<Cow<'a, str>>,
    /// Parameters, raw.
    pub params: Option<&'a str>,
    /// Result of a success response, raw (`null` is a result).
    pub result: Option<&'a str>,
    /// Error of a failed response, raw.
    pub error: Option<&'a str>,
}

/// The envelope as serde_json reads it, for what the validating walk leaves to it.
#[derive(Deserialize)]
struct Parsed<'a> {
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    jsonrpc: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "present")]
    id: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    method: Option<Cow<'a, str>>,
    #[serde(borrow, default, deserialize_with = "present")]
    params: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    result: Option<&'a RawValue>,
    #[serde(borrow, default, deserialize_with = "present")]
    error: Option<&'a RawValue>,
}

/// What kind of message an [`Envelope`] holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Has `method` and `id`.
    Request,
    /// Has `method`, no `id`.
    Notification,
    /// Has `id` and `result` or `error`, no `method`.
    Response,
}

/// Why a body is not a usable JSON-RPC message; carries the error to answer with.
#[derive(Debug, Clone)]
pub struct Invalid {
    /// The error response to send.
    pub error: RpcError,
    /// The request id, when it could be read.
    pub id: Option<Box<RawValue>>,
}

impl<'a> Envelope<'a> {
    /// Parses and checks one message (not a batch).
    pub fn parse(body: &'a [u8]) -> Result<(Self, Kind), Invalid> {
        Self::parse_with(body, None::<(&[u8], &mut Unread)>).0
    }

    /// [`Self::parse`], also giving `each_inner` the members of the top-level member named
    /// `inner` (when its value is an object) as the walk validates them; says too whether the
    /// walk read the message. When it did not (serde_json read it), what `each_inner` was given
    /// is to be ignored: the walk may have stopped halfway.
    pub fn parse_and_inner(
        body: &'a [u8],
        inner: &[u8],
        each_inner: impl FnMut(Member) -> Option<()>,
    ) -> (Result<(Self, Kind), Invalid>, bool) {
        Self::parse_with(body, Some((inner, &mut TopLevel(each_inner))))
    }

    /// [`Self::parse`] and [`ParamsHead::parse`] of the message's `params`, from one walk
    /// where the walk reads the message (it hands `params`' members over as it checks them);
    /// else each as it reads on its own.
    pub fn parse_request(body: &'a [u8]) -> Result<(Self, Kind, Result<ParamsHead<'a>, RpcError>), Invalid> {
        let text = utf8(body)?;
        let mut head = HeadWalk::new(text);
        let (parsed, walked) = Self::parse_text_with(text, Some((b"params".as_slice(), &mut head)));
        let (env, kind) = parsed?;
        let head = match head.finish() {
            Some(head) if walked => Ok(head),
            _ => ParamsHead::parse(env.params),
        };
        Ok((env, kind, head))
    }

    fn parse_with<I: Visit>(body: &'a [u8], inner: Option<(&[u8], &mut I)>) -> (Result<(Self, Kind), Invalid>, bool) {
        match utf8(body) {
            Ok(text) => Self::parse_text_with(text, inner),
            Err(e) => (Err(e), false),
        }
    }

    fn parse_text_with<I: Visit>(
        text: &'a str,
        inner: Option<(&[u8], &mut I)>,
    ) -> (Result<(Self, Kind), Invalid>, bool) {
        // A batch is never walked (the walk takes an object only), so it is told apart only
        // where the walk gave up.
        match Self::walk(text, inner) {
            Some(env) => (env.checked(), true),
            None if text.trim_start().starts_with('[') => {
                (Err(invalid(code::INVALID_REQUEST, "JSON-RPC batches are not supported by MCP", None)), false)
            }
            None => (Self::parsed(text).and_then(Self::checked), false),
        }
    }

    /// The message's kind, or why it is no JSON-RPC message MCP allows.
    fn checked(self) -> Result<(Self, Kind), Invalid> {
        let id_owned = || self.id.map(|i| i.to_owned());
        if self.jsonrpc.as_deref() != Some("2.0") {
            return Err(invalid(code::INVALID_REQUEST, "\"jsonrpc\" must be \"2.0\"", id_owned()));
        }
        if let Some(id) = self.id {
            let b = id.get().as_bytes().first().copied();
            if !matches!(b, Some(b'"' | b'-' | b'0'..=b'9')) {
                return Err(invalid(code::INVALID_REQUEST, "\"id\" must be a string or a number", None));
            }
        }
        if let Some(p) = self.params {
            if !p.starts_with('{') {
                return Err(invalid(code::INVALID_REQUEST, "\"params\" must be an object", id_owned()));
            }
        }
        let kind = match (&self.method, self.id, self.result.is_some() || self.error.is_some()) {
            (Some(_), Some(_), false) => Kind::Request,
            (Some(_), None, false) => Kind::Notification,
            (None, Some(_), true) => Kind::Response,
            _ => {
                return Err(invalid(
                    code::INVALID_REQUEST,
                    "not a JSON-RPC request, notification or response",
                    id_owned(),
                ))
            }
        };
        Ok((self, kind))
    }

    /// The envelope read by the validating walk; `None` to leave it to serde_json (text the walk
    /// is not sure of, a key with escapes, a repeated field, a `jsonrpc` or `method` that is not
    /// a plain string).
    pub fn walked(text: &'a str) -> Option<Self> {
        Self::walk(text, None::<(&[u8], &mut Unread)>)
    }

    fn walk<I: Visit>(text: &'a str, inner: Option<(&[u8], &mut I)>) -> Option<Self> {
        let env = Self { jsonrpc: None, id: None, method: None, params: None, result: None, error: None };
        let mut walk = EnvelopeWalk { text, env, seen: [false; 6], inner };
        valid::walk(text.as_bytes(), &mut walk)?;
        Some(walk.env)
    }

    /// The envelope as serde_json reads it, or its error: what the walk falls back to, and
    /// what tests, the fuzz target and the benchmarks hold it to.
    pub fn parsed(text: &'a str) -> Result<Self, Invalid> {
        let env: Parsed<'a> = serde_json::from_str(text).map_err(|e| {
            let c = if e.is_data() { code::INVALID_REQUEST } else { code::PARSE_ERROR };
            invalid(c, format!("invalid JSON-RPC message: {e}"), None)
        })?;
        Ok(Self {
            jsonrpc: env.jsonrpc,
            id: env.id,
            method: env.method,
            params: env.params.map(RawValue::get),
            result: env.result.map(RawValue::get),
            error: env.error.map(RawValue::get),
        })
    }

    /// The method name (`""` for responses).
    pub fn method_str(&self) -> &str {
        self.method.as_deref().unwrap_or("")
    }

    /// The message's payload as a JSON tree, for the paths that work on one: a request's or
    /// notification's `params` (`{}` when absent), a response's `{"result": …}` or
    /// `{"error": …}`. Fails, saying why, when bytes that passed the borrowed parse cannot become
    /// a tree: nesting deeper than serde_json's limit, or a lone surrogate (`"\ud800"`) in a
    /// string.
    pub fn payload(&self, kind: Kind) -> Result<serde_json::Value, RpcError> {
        let tree = |raw: &str, what: &str| {
            super::tree::tree(raw)
                .map_err(|e| RpcError::new(code::INVALID_PARAMS, format!("{what} cannot be read: {e}")))
        };
        match (kind, self.params, self.result, self.error) {
            (Kind::Response, _, _, Some(e)) => Ok(serde_json::json!({"error": tree(e, "error")?})),
            (Kind::Response, _, Some(r), _) => Ok(serde_json::json!({"result": tree(r, "result")?})),
            (_, Some(p), _, _) => tree(p, "params"),
            _ => Ok(serde_json::json!({})),
        }
    }
}

/// The envelope's fields read from the top-level members as the walk gives them; the members
/// of the one named in `inner` (and what they lead into) go on to its visitor.
struct EnvelopeWalk<'a, 'i, I> {
    text: &'a str,
    env: Envelope<'a>,
    /// Which of the six fields were given (a repeated one is left to serde_json, whose error
    /// it is).
    seen: [bool; 6],
    inner: Option<(&'i [u8], &'i mut I)>,
}

// The walk asks these once a member: inlined into its loop (a call each cost more than most
// members' reading).
impl<I: Visit> Visit for EnvelopeWalk<'_, '_, I> {
    #[inline(always)]
    fn enters(&mut self, depth: usize, key: &[u8]) -> bool {
        match (depth, self.inner.as_mut()) {
            (0, Some((name, _))) => key == *name,
            (_, Some((_, inner))) if depth > 0 => inner.enters(depth - 1, key),
            _ => false,
        }
    }

    #[inline(always)]
    fn member(&mut self, depth: usize, member: Member) -> Option<()> {
        if depth > 0 {
            return self.inner.as_mut().map_or(Some(()), |(_, inner)| inner.member(depth - 1, member));
        }
        if member.key_escaped {
            return None;
        }
        let value = self.text.get(member.value)?;
        // Keys are read as bytes: the walk's ranges lie between ASCII quotes.
        let field = match self.text.as_bytes().get(member.key)? {
            b"jsonrpc" => 0,
            b"id" => 1,
            b"method" => 2,
            b"params" => 3,
            b"result" => 4,
            b"error" => 5,
            _ => return Some(()),
        };
        if std::mem::replace(&mut self.seen[field], true) {
            return None;
        }
        let env = &mut self.env;
        match field {
            0 => env.jsonrpc = plain_string(value, member.plain_string)?,
            // An id is short: serde_json makes its `RawValue` from the walked text.
            1 => env.id = Some(serde_json::from_str(value).ok()?),
            2 => env.method = plain_string(value, member.plain_string)?,
            3 => env.params = Some(value),
            4 => env.result = Some(value),
            _ => env.error = Some(value),
        }
        Some(())
    }
}

/// A field that is present, whatever its value: serde reads a JSON `null` into `Option` as `None`,
/// which would make `"id": null` look like no id at all.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&'de RawValue>::deserialize(d).map(Some)
}

/// Deserialises an optional string borrowing from the input when it has no escapes. serde's own
/// `Option<Cow<str>>` always copies, which would cost an allocation per field on the hot path.
fn opt_cow<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    #[derive(Deserialize)]
    struct Borrowed<'a>(#[serde(borrow)] Cow<'a, str>);
    Ok(Option::<Borrowed<'de>>::deserialize(d)?.map(|b| b.0))
}

/// A raw value's text (`null` reads as absent, as for any `Option`).
fn raw_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<&'de str>, D::Error> {
    Option::<&'de RawValue>::deserialize(d).map(|raw| raw.map(RawValue::get))
}

/// A string value without escapes (`plain`, as the walk found it), borrowed (`Some(None)` for
/// `null`); `None` for anything else, which serde_json then reads.
fn plain_string(value: &str, plain: bool) -> Option<Option<Cow<'_, str>>> {
    match plain {
        true => value.get(1..value.len().saturating_sub(1)).map(|inner| Some(Cow::Borrowed(inner))),
        false => (value == "null").then_some(None),
    }
}

/// `body` as text. Through `simdutf8`: a body is checked before any other look at it, and the
/// standard library's check, eight bytes at a time, cost about half an instruction a byte (as
/// much as the walk that follows it spends in long strings).
fn utf8(body: &[u8]) -> Result<&str, Invalid> {
    simdutf8::basic::from_utf8(body).map_err(|_| invalid(code::PARSE_ERROR, "body is not UTF-8", None))
}

fn invalid(code: i64, message: impl Into<String>, id: Option<Box<RawValue>>) -> Invalid {
    Invalid { error: RpcError::new(code, message), id }
}

/// The `params` fields that routing and header validation read.
#[derive(Debug, Default, Deserialize)]
pub struct ParamsHead<'a> {
    /// `params.name` (tools/call, prompts/get).
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub name: Option<Cow<'a, str>>,
    /// `params.uri` (resources/read, subscribe).
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub uri: Option<Cow<'a, str>>,
    /// `params._meta`.
    #[serde(borrow, default, rename = "_meta")]
    pub meta: Option<MetaHead<'a>>,
    /// `params.arguments` (tools/call) as its JSON text, unparsed: read only when a schema is to
    /// check it.
    #[serde(borrow, default, deserialize_with = "raw_text")]
    pub arguments: Option<&'a str>,
}

/// The `_meta` fields the gateway reads.
#[derive(Debug, Default, Deserialize)]
pub struct MetaHead<'a> {
    /// The request's protocol version (modern requests).
    #[serde(borrow, default, rename = "io.modelcontextprotocol/protocolVersion", deserialize_with = "opt_cow")]
    pub protocol_version: Option<Cow<'a, str>>,
    /// Who the client says it is (for the audit trail).
    #[serde(borrow, default, rename = "io.modelcontextprotocol/clientInfo")]
    pub client_info: Option<ClientInfoHead<'a>>,
    /// W3C trace context of the request.
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub traceparent: Option<Cow<'a, str>>,
    /// Its vendor part.
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub tracestate: Option<Cow<'a, str>>,
    /// W3C baggage.
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub baggage: Option<Cow<'a, str>>,
}

/// The part of `clientInfo` the gateway reads.
#[derive(Debug, Default, Deserialize)]
pub struct ClientInfoHead<'a> {
    /// The client's name.
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub name: Option<Cow<'a, str>>,
}

impl<'a> ParamsHead<'a> {
    /// Reads the head of `params` on its own (a request's usually comes with its envelope, from
    /// [`Envelope::parse_request`]'s one walk); `None` params read as empty. Whatever the
    /// validating walk does not read exactly as serde_json would (a key or name with escapes, a
    /// repeated field, a field of the wrong type, text the walk is not sure of) is parsed by
    /// serde_json, whose answer, or error, it is.
    pub fn parse(params: Option<&'a str>) -> Result<Self, RpcError> {
        match params {
            None => Ok(Self::default()),
            Some(raw) => Self::walk(raw).map_or_else(|| Self::parsed(raw), Ok),
        }
    }

    /// The head as serde_json reads it.
    pub(crate) fn parsed(params: &'a str) -> Result<Self, RpcError> {
        serde_json::from_str(params).map_err(|e| RpcError::new(code::INVALID_PARAMS, format!("invalid params: {e}")))
    }

    /// The head read by the validating walk; `None` to leave it to [`Self::parsed`].
    fn walk(params: &'a str) -> Option<Self> {
        let mut head = HeadWalk::new(params);
        valid::walk(params.as_bytes(), &mut head)?;
        head.finish()
    }

    /// The protocol version in `_meta`, if any.
    pub fn protocol_version(&self) -> Option<&str> {
        self.meta.as_ref().and_then(|m| m.protocol_version.as_deref())
    }
}

/// The keys of the objects [`ParamsHead`] reads fields of, as the walk sees keys.
const META: &[u8] = b"_meta";
const CLIENT_INFO: &[u8] = meta::CLIENT_INFO.as_bytes();

/// The fields [`ParamsHead`] reads: in `params`, in its `_meta`, in that one's `clientInfo`.
#[derive(Debug, Clone, Copy)]
enum HeadField {
    Name,
    Uri,
    Meta,
    Arguments,
    ProtocolVersion,
    ClientInfo,
    Traceparent,
    Tracestate,
    Baggage,
    ClientName,
}

impl HeadField {
    /// The field that member `key` of an object `depth` deep (0: `params`) is, if any.
    fn of(depth: usize, key: &[u8]) -> Option<Self> {
        const PROTOCOL_VERSION: &[u8] = meta::PROTOCOL_VERSION.as_bytes();
        Some(match (depth, key) {
            (0, b"name") => Self::Name,
            (0, b"uri") => Self::Uri,
            (0, META) => Self::Meta,
            (0, b"arguments") => Self::Arguments,
            (1, PROTOCOL_VERSION) => Self::ProtocolVersion,
            (1, CLIENT_INFO) => Self::ClientInfo,
            (1, b"traceparent") => Self::Traceparent,
            (1, b"tracestate") => Self::Tracestate,
            (1, b"baggage") => Self::Baggage,
            (2, b"name") => Self::ClientName,
            _ => return None,
        })
    }
}

/// [`ParamsHead`] read from `params`' members as a walk gives them, with the members of
/// `_meta` and of its `clientInfo` in the same pass. Whatever it does not read as serde_json
/// would (a key with escapes, a repeated field, a field of the wrong type) fails it, and the
/// head is then serde_json's; the walk goes on all the same (it is checking the message).
struct HeadWalk<'a> {
    text: &'a str,
    head: ParamsHead<'a>,
    /// `_meta`'s fields, given before `_meta` itself.
    meta: MetaHead<'a>,
    /// `clientInfo`'s, given before `clientInfo` itself.
    client_info: ClientInfoHead<'a>,
    /// The fields given so far, a bit per [`HeadField`].
    seen: u16,
    failed: bool,
}

impl<'a> HeadWalk<'a> {
    fn new(text: &'a str) -> Self {
        let (head, meta, client_info) = Default::default();
        Self { text, head, meta, client_info, seen: 0, failed: false }
    }

    /// The head, unless a member failed it.
    fn finish(self) -> Option<ParamsHead<'a>> {
        (!self.failed).then_some(self.head)
    }

    /// Reads one member of `params` (depth 0), `_meta` (1) or `clientInfo` (2); `None` when
    /// it is not read as serde_json would read it. A key with escapes could be a field's.
    fn read(&mut self, depth: usize, member: Member) -> Option<()> {
        if member.key_escaped {
            return None;
        }
        let Some(field) = HeadField::of(depth, self.text.as_bytes().get(member.key)?) else { return Some(()) };
        let bit = 1 << field as u16;
        if self.seen & bit != 0 {
            return None;
        }
        self.seen |= bit;
        let value = self.text.get(member.value)?;
        let string = || plain_string(value, member.plain_string);
        match field {
            HeadField::Name => self.head.name = string()?,
            HeadField::Uri => self.head.uri = string()?,
            HeadField::Meta => self.head.meta = entered(value, std::mem::take(&mut self.meta))?,
            HeadField::Arguments => self.head.arguments = (value != "null").then_some(value),
            HeadField::ProtocolVersion => self.meta.protocol_version = string()?,
            HeadField::ClientInfo => self.meta.client_info = entered(value, std::mem::take(&mut self.client_info))?,
            HeadField::Traceparent => self.meta.traceparent = string()?,
            HeadField::Tracestate => self.meta.tracestate = string()?,
            HeadField::Baggage => self.meta.baggage = string()?,
            HeadField::ClientName => self.client_info.name = string()?,
        }
        Some(())
    }
}

// Inlined into the walk's loop, as the envelope's are.
impl Visit for HeadWalk<'_> {
    #[inline(always)]
    fn enters(&mut self, depth: usize, key: &[u8]) -> bool {
        match depth {
            0 => key == META,
            1 => key == CLIENT_INFO,
            _ => false,
        }
    }

    #[inline(always)]
    fn member(&mut self, depth: usize, member: Member) -> Option<()> {
        self.failed = self.failed || self.read(depth, member).is_none();
        Some(())
    }
}

/// An optional object whose members were read as the walk entered it (`Some(None)` for
/// `null`); `None` for anything else, which serde_json then reads.
fn entered<T>(value: &str, read: T) -> Option<Option<T>> {
    match value.as_bytes().first() {
        Some(b'{') => Some(Some(read)),
        _ => (value == "null").then_some(None),
    }
}

/// Where `s` sits inside `body`: the byte range of its contents (inside the quotes), when `s` was
/// borrowed from `body`. `None` when it was unescaped into a copy (it contained escapes), so it
/// cannot be spliced in place.
pub fn span_in(body: &[u8], s: &str) -> Option<std::ops::Range<usize>> {
    let start = (s.as_ptr() as usize).checked_sub(body.as_ptr() as usize)?;
    let end = start.checked_add(s.len())?;
    (end <= body.len()).then_some(start..end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_messages() {
        let (e, k) = Envelope::parse(br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#).expect("valid");
        assert_eq!((k, e.method_str(), e.id.map(|i| i.get())), (Kind::Request, "ping", Some("1")));
        let (_, k) = Envelope::parse(br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).expect("valid");
        assert_eq!(k, Kind::Notification);
        let (_, k) = Envelope::parse(br#"{"jsonrpc":"2.0","id":"a","result":{}}"#).expect("valid");
        assert_eq!(k, Kind::Response);
        let (_, k) = Envelope::parse(br#"{"jsonrpc":"2.0","id":"a","result":null}"#).expect("null is a result");
        assert_eq!(k, Kind::Response);
    }

    #[test]
    fn rejects_bad_messages_with_the_right_codes() {
        let cases: &[(&[u8], i64)] = &[
            (b"{not json", code::PARSE_ERROR),
            (b"\xff\xfe", code::PARSE_ERROR),
            (b"[]", code::INVALID_REQUEST),
            (br#"{"jsonrpc":"1.0","id":1,"method":"x"}"#, code::INVALID_REQUEST),
            (br#"{"jsonrpc":"2.0","id":true,"method":"x"}"#, code::INVALID_REQUEST),
            (br#"{"jsonrpc":"2.0","id":null,"method":"x"}"#, code::INVALID_REQUEST),
            (br#"{"jsonrpc":"2.0","id":1,"method":"x","params":null}"#, code::INVALID_REQUEST),
            (br#"{"jsonrpc":"2.0","id":1,"method":3}"#, code::INVALID_REQUEST),
            (br#"{"jsonrpc":"2.0","id":1,"method":"x","params":[1]}"#, code::INVALID_REQUEST),
            (br#"{"jsonrpc":"2.0","id":1}"#, code::INVALID_REQUEST),
            (br#"{"jsonrpc":"2.0"}"#, code::INVALID_REQUEST),
            (br#"42"#, code::INVALID_REQUEST),
        ];
        for (body, want) in cases {
            let got = Envelope::parse(body).expect_err("invalid");
            assert_eq!(got.error.code, *want, "{}", String::from_utf8_lossy(body));
        }
        for batch in [&b"[]"[..], b" \n[{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}]", "\u{a0}[1]".as_bytes()] {
            let got = Envelope::parse(batch).expect_err("a batch");
            assert!(got.error.message.contains("batches are not supported"), "{:?}", got.error);
        }
        let got = Envelope::parse(br#"{"jsonrpc":"1.0","id":7,"method":"x"}"#).expect_err("invalid");
        assert_eq!(got.id.map(|i| i.get().to_owned()).as_deref(), Some("7"));
    }

    #[test]
    fn walked_envelopes_are_what_serde_json_reads() {
        let big =
            format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"text":"{}"}}}}"#, "x".repeat(5000));
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a__b","arguments":{"t":[1,2.5,null]}}}"#,
            r#" { "id" : "a\"b" , "result" : null , "jsonrpc" : "2.0" , "extra" : [ ] } "#,
            r#"{"jsonrpc":"2.0","id":-7,"error":{"code":-32600,"message":"m\u00e9"}}"#,
            r#"{"jsonrpc":null,"method":null,"id":null}"#,
            r#"{"jsonrpc":"2.0","method":"notifications/x","other":1,"other":2}"#,
            &big,
        ] {
            let walked = Envelope::walked(body).expect("plain JSON is walked");
            let parsed = Envelope::parsed(body).expect("serde_json reads it");
            assert_eq!(format!("{walked:?}"), format!("{parsed:?}"), "{body}");
        }
        // Left to serde_json, whose answer stands: escapes where the walk would have to decode,
        // repeated fields, fields of the wrong type, text it is not sure of.
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools\/call"}"#,
            r#"{"jsonrpc":"2.0","\u0069d":1,"method":"x"}"#,
            r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"x"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":3}"#,
            r#"{"jsonrpc":2,"id":1,"method":"x"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"s":"\ud83d\ude00"}}"#,
            r#"{"jsonrpc":"2.0","id":01,"method":"x"}"#,
            r#"[{"jsonrpc":"2.0"}]"#,
        ] {
            assert!(Envelope::walked(body).is_none(), "{body}");
        }
        let (env, kind) = Envelope::parse(br#"{"jsonrpc":"2.0","id":1,"method":"tools\/call"}"#).expect("serde's");
        assert_eq!((env.method_str(), kind), ("tools/call", Kind::Request));
    }

    #[test]
    fn a_requests_head_read_in_the_envelopes_walk_is_the_one_read_apart() {
        for body in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a__b","arguments":{"x":[1,{"name":"no"}]},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///x","arguments":null}}"#,
            // The walk hands these to serde_json: an escaped name, an escaped key, a repeat, a
            // field of the wrong type.
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a\"b"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"n\u0061me":"x"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x","name":"y"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":7}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"_meta":{"traceparent":1}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":[1]}"#,
            // `_meta` and its `clientInfo`, read as the walk enters them.
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"_meta":{"io.modelcontextprotocol/clientInfo":{"name":"c","version":"1"},"traceparent":"t","tracestate":"s","baggage":"b","x":{"name":"no"}},"name":"n"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"_meta":{"io.modelcontextprotocol/clientInfo":null},"arguments":{"_meta":{"traceparent":"no"}}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","_meta":{"traceparent":"not params'"},"params":{"_meta":null}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"_meta":{}}}"#,
            // ... and what they hand to serde_json.
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"_meta":{"traceparent":"a"},"_meta":{"traceparent":"b"}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"_meta":"x"}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"_meta":{"tr\u0061ceparent":"t"}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"_meta":{"baggage":"a\"b"}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"_meta":{"io.modelcontextprotocol/clientInfo":{"name":"a","name":"b"}}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"_meta":{"io.modelcontextprotocol/clientInfo":{"name":1}}}}"#,
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"_meta":{"io.modelcontextprotocol/clientInfo":[]}}}"#,
        ] {
            let together = Envelope::parse_request(body.as_bytes());
            let apart = Envelope::parse(body.as_bytes()).map(|(env, kind)| {
                let head = ParamsHead::parse(env.params);
                (env, kind, head)
            });
            assert_eq!(format!("{together:?}"), format!("{apart:?}"), "{body}");
            // Both are serde_json's reading of `params`, or its error.
            if let Ok((env, _, head)) = &together {
                let serdes = env.params.map_or_else(|| Ok(ParamsHead::default()), ParamsHead::parsed);
                assert_eq!(format!("{head:?}"), format!("{serdes:?}"), "{body}");
            }
        }
        let escaped = Envelope::parse_request(br#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"name":"a\"b"}}"#);
        let name = escaped.ok().and_then(|(_, _, head)| head.ok()?.name);
        assert_eq!(name.as_deref(), Some("a\"b"), "an escaped name is serde_json's, unescaped");
        let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a__b"}}"#;
        let (_, _, head) = Envelope::parse_request(body).expect("valid");
        let name = head.expect("head").name.expect("name");
        assert_eq!(span_in(body, &name).map(|r| &body[r]), Some(b"a__b".as_slice()), "borrowed from the body");
    }

    #[test]
    fn reads_the_params_head_and_locates_the_name() {
        let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments":{"big":[1,2,{"name":"inner"}]},"name":"math__add","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","x":{}}}}"#;
        let (env, _) = Envelope::parse(body).expect("valid");
        let head = ParamsHead::parse(env.params).expect("params");
        let name = head.name.as_ref().expect("name");
        assert_eq!(name, "math__add");
        assert_eq!(head.protocol_version(), Some("2026-07-28"));
        let span = span_in(body, name).expect("borrowed");
        assert_eq!(&body[span], b"math__add");
    }

    #[test]
    fn walked_heads_are_what_serde_json_reads() {
        let many = format!(r#"{{"arguments":{{"text":"{}","name":"inner"}},"name":"t"}}"#, "x".repeat(5000));
        for params in [
            r#"{"name":"a__b","arguments":{"x":[1,{"name":"no"}]},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"c"},"traceparent":"t"}}"#,
            r#"{ "uri" : "file:///x" , "other": {"name": 1}, "name": null, "arguments": null }"#,
            r#"{"name":"a","name":"b"}"#,
            r#"{"n\u0061me":"a"}"#,
            r#"{"name":"a\u00e9"}"#,
            r#"{"name":5}"#,
            r#"{"_meta":5}"#,
            r#"{"_meta":null,"arguments":[]}"#,
            r#"{"_meta":{"traceparent":1}}"#,
            r#"{"_meta":{"traceparent":"a","traceparent":"b"}}"#,
            r#"{"_meta":{"tracestate":"s","baggage":"b=1","io.modelcontextprotocol/clientInfo":null,"x":[{}]}}"#,
            r#"{"_meta":{"io.modelcontextprotocol/clientInfo":{"version":"1","name":"n"}}}"#,
            r#"{"_meta":{"io.modelcontextprotocol/clientInfo":{"name":"a","name":"b"}}}"#,
            r#"{"_meta":{"io.modelcontextprotocol/clientInfo":"n"}}"#,
            r#"{"_meta":{"io.modelcontextprotocol/clientInfo":{"name":"a"}}}"#,
            r#"{"_meta":{"io.modelcontextprotocol\/protocolVersion":"2026-07-28"}}"#,
            r#"{"_meta":{"baggage":"ab"}}"#,
            r#"{}"#,
            &many,
        ] {
            let raw: &RawValue = serde_json::from_str(params).expect("json");
            let (walked, parsed) = (ParamsHead::parse(Some(raw.get())), ParamsHead::parsed(params));
            assert_eq!(format!("{walked:?}"), format!("{parsed:?}"), "{params}");
        }
        let raw: &RawValue = serde_json::from_str(&many).expect("json");
        assert!(ParamsHead::walk(raw.get()).is_some(), "a plain head is walked, not parsed");
        let meta = r#"{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"c"},"traceparent":"t"}}"#;
        assert!(ParamsHead::walk(meta).is_some(), "so is a plain _meta");
    }

    #[test]
    fn payloads_that_cannot_become_trees_say_why() {
        let deep = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"t","arguments":{}1{}}}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        let (env, kind) = Envelope::parse(deep.as_bytes()).expect("the envelope itself is fine");
        let err = env.payload(kind).expect_err("too deep for a tree");
        assert_eq!(err.code, code::INVALID_PARAMS);
        assert!(err.message.contains("params cannot be read") && err.message.contains("recursion"), "{}", err.message);
        let body =
            br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"s":"\ud800"}}}"#;
        let (env, kind) = Envelope::parse(body).expect("envelope");
        let err = env.payload(kind).expect_err("lone surrogate");
        assert!(err.message.contains("params cannot be read") && err.message.contains("escape"), "{}", err.message);
        let (env, kind) =
            Envelope::parse(br#"{"jsonrpc":"2.0","id":"a","error":{"code":1,"message":"m"}}"#).expect("env");
        assert_eq!(env.payload(kind).expect("tree")["error"]["code"], 1);
    }

    #[test]
    fn escaped_names_cannot_be_spliced() {
        let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"m\u0061th__add"}}"#;
        let (env, _) = Envelope::parse(body).expect("valid");
        let head = ParamsHead::parse(env.params).expect("params");
        assert_eq!(head.name.as_deref(), Some("math__add"));
        assert_eq!(span_in(body, head.name.as_ref().expect("name")), None);
    }
}
