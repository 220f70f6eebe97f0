//! Borrowed parsing of one JSON-RPC message: only the envelope and, for requests, the handful of
//! `params` fields routing needs (`name`, `uri`, the protocol version in `_meta`). Everything else
//! stays raw bytes that serde skips without allocating.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::scan::Members;
use super::{code, RpcError};

/// The top-level fields of a JSON-RPC message, borrowed from the input.
#[derive(Debug, Deserialize)]
pub struct Envelope<'a> {
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    jsonrpc: Option<Cow<'a, str>>,
    /// Request or response id (string or number), raw. Present even when it is `null`: a
    /// request with `"id": null` is invalid, not a notification.
    #[serde(borrow, default, deserialize_with = "present")]
    pub id: Option<&'a RawValue>,
    /// Method name of requests and notifications.
    #[serde(borrow, default, deserialize_with = "opt_cow")]
    pub method: Option<Cow<'a, str>>,
    /// Parameters, raw.
    #[serde(borrow, default, deserialize_with = "present")]
    pub params: Option<&'a RawValue>,
    /// Result of a success response, raw (`null` is a result).
    #[serde(borrow, default, deserialize_with = "present")]
    pub result: Option<&'a RawValue>,
    /// Error of a failed response, raw.
    #[serde(borrow, default, deserialize_with = "present")]
    pub error: Option<&'a RawValue>,
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
        let text = std::str::from_utf8(body).map_err(|_| invalid(code::PARSE_ERROR, "body is not UTF-8", None))?;
        let first = text.trim_start().as_bytes().first().copied();
        if first == Some(b'[') {
            return Err(invalid(code::INVALID_REQUEST, "JSON-RPC batches are not supported by MCP", None));
        }
        let env: Envelope<'a> = serde_json::from_str(text).map_err(|e| {
            let c = if e.is_data() { code::INVALID_REQUEST } else { code::PARSE_ERROR };
            invalid(c, format!("invalid JSON-RPC message: {e}"), None)
        })?;
        let id_owned = || env.id.map(|i| i.to_owned());
        if env.jsonrpc.as_deref() != Some("2.0") {
            return Err(invalid(code::INVALID_REQUEST, "\"jsonrpc\" must be \"2.0\"", id_owned()));
        }
        if let Some(id) = env.id {
            let b = id.get().as_bytes().first().copied();
            if !matches!(b, Some(b'"' | b'-' | b'0'..=b'9')) {
                return Err(invalid(code::INVALID_REQUEST, "\"id\" must be a string or a number", None));
            }
        }
        if let Some(p) = env.params {
            if !p.get().starts_with('{') {
                return Err(invalid(code::INVALID_REQUEST, "\"params\" must be an object", id_owned()));
            }
        }
        let kind = match (&env.method, env.id, env.result.is_some() || env.error.is_some()) {
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
        Ok((env, kind))
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
        let tree = |raw: &RawValue, what: &str| {
            super::tree::tree(raw.get())
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

/// A string value without escapes, borrowed (`Some(None)` for `null`); `None` for anything
/// else, which serde_json then reads.
fn plain_string(value: &str) -> Option<Option<Cow<'_, str>>> {
    if value == "null" {
        return Some(None);
    }
    let inner = value.strip_prefix('"')?.strip_suffix('"')?;
    (!inner.contains('\\')).then_some(Some(Cow::Borrowed(inner)))
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
    /// Reads the head of `params`; `None` params read as empty. `params` was accepted by the
    /// envelope's parse, so its members are walked rather than parsed again (on a large body
    /// that pass costs as much as the envelope's); whatever the walk does not read exactly as
    /// serde_json would (a key or name with escapes, a repeated field, a field of the wrong type)
    /// is parsed by serde_json, whose answer, or error, it is.
    pub fn parse(params: Option<&'a RawValue>) -> Result<Self, RpcError> {
        match params {
            None => Ok(Self::default()),
            Some(raw) => Self::walk(raw.get()).map_or_else(|| Self::parsed(raw.get()), Ok),
        }
    }

    /// The head as serde_json reads it.
    pub(crate) fn parsed(params: &'a str) -> Result<Self, RpcError> {
        serde_json::from_str(params).map_err(|e| RpcError::new(code::INVALID_PARAMS, format!("invalid params: {e}")))
    }

    /// The head read from `params`' top-level members; `None` to leave it to [`Self::parsed`].
    fn walk(params: &'a str) -> Option<Self> {
        let mut head = Self::default();
        let mut seen = [false; 4];
        for member in Members::of(params.as_bytes()).ok()? {
            let member = member.ok()?;
            let (key, value) = (params.get(member.key)?, params.get(member.value)?);
            let field = match key {
                "name" => 0,
                "uri" => 1,
                "_meta" => 2,
                "arguments" => 3,
                _ if key.contains('\\') => return None,
                _ => continue,
            };
            if std::mem::replace(&mut seen[field], true) {
                return None;
            }
            match field {
                0 => head.name = plain_string(value)?,
                1 => head.uri = plain_string(value)?,
                2 => head.meta = serde_json::from_str(value).ok()?,
                _ => head.arguments = (value != "null").then_some(value),
            }
        }
        Some(head)
    }

    /// The protocol version in `_meta`, if any.
    pub fn protocol_version(&self) -> Option<&str> {
        self.meta.as_ref().and_then(|m| m.protocol_version.as_deref())
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
        let got = Envelope::parse(br#"{"jsonrpc":"1.0","id":7,"method":"x"}"#).expect_err("invalid");
        assert_eq!(got.id.map(|i| i.get().to_owned()).as_deref(), Some("7"));
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
            r#"{}"#,
            &many,
        ] {
            let raw: &RawValue = serde_json::from_str(params).expect("json");
            let (walked, parsed) = (ParamsHead::parse(Some(raw)), ParamsHead::parsed(params));
            assert_eq!(format!("{walked:?}"), format!("{parsed:?}"), "{params}");
        }
        let raw: &RawValue = serde_json::from_str(&many).expect("json");
        assert!(ParamsHead::walk(raw.get()).is_some(), "a plain head is walked, not parsed");
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
