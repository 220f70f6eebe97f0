//! Validation of the 2026-07-28 request headers against the body. A gateway that reads the body
//! must reject a mismatch (HTTP 400, `HeaderMismatch` -32020): otherwise a router trusting the
//! headers and an upstream trusting the body could be made to disagree.

use crate::proto::fields::Fields;
use base64::Engine as _;

use crate::jsonrpc::parse::ParamsHead;
use crate::jsonrpc::{code, RpcError};
use crate::proto::protocol::name_field;

/// Checks `Mcp-Method`, `Mcp-Name` and the protocol version header against the parsed body.
pub fn check_modern(req: &impl Fields, method: &str, head: &ParamsHead<'_>, version: &str) -> Result<(), RpcError> {
    let header_method =
        header_text(req, "mcp-method")?.ok_or_else(|| mismatch("required header Mcp-Method is missing".to_owned()))?;
    if header_method != method.as_bytes() {
        return Err(mismatch(format!(
            "Mcp-Method header value '{}' does not match body method '{method}'",
            String::from_utf8_lossy(header_method)
        )));
    }
    if let Some(body_version) = head.protocol_version() {
        if body_version != version {
            return Err(mismatch(format!(
                "MCP-Protocol-Version header value '{version}' does not match _meta protocolVersion '{body_version}'"
            )));
        }
    }
    let Some(field) = name_field(method) else { return Ok(()) };
    let body_value = if field == "name" { head.name.as_deref() } else { head.uri.as_deref() };
    let Some(body_value) = body_value else {
        return Err(RpcError::new(code::INVALID_PARAMS, format!("params.{field} is required for {method}")));
    };
    let raw = header_text(req, "mcp-name")?
        .ok_or_else(|| mismatch(format!("required header Mcp-Name is missing for {method}")))?;
    // The usual case, a plain value equal to the body's, compared as it lies.
    let sentinel = raw.starts_with(b"=?base64?") && raw.ends_with(b"?=");
    if !sentinel && raw == body_value.as_bytes() {
        return Ok(());
    }
    let raw = String::from_utf8_lossy(raw); // text, so never lossy
    let decoded =
        decode_header_value(&raw).ok_or_else(|| mismatch(format!("Mcp-Name header value '{raw}' is not valid")))?;
    if decoded != body_value {
        return Err(mismatch(format!("Mcp-Name header value '{decoded}' does not match body value '{body_value}'")));
    }
    Ok(())
}

/// A header that must be text (visible ASCII, RFC 9110 field value), as bytes; an error when
/// present but not text.
fn header_text<'r>(req: &'r impl Fields, name: &str) -> Result<Option<&'r [u8]>, RpcError> {
    match req.first(name) {
        None => Ok(None),
        Some(bytes) if crate::proto::fields::is_text(bytes) => Ok(Some(bytes)),
        Some(_) => Err(mismatch(format!("header {name} contains invalid characters"))),
    }
}

/// Decodes the Base64 sentinel form `=?base64?…?=`; plain values are returned as they are.
pub fn decode_header_value(raw: &str) -> Option<std::borrow::Cow<'_, str>> {
    match raw.strip_prefix("=?base64?").and_then(|r| r.strip_suffix("?=")) {
        None => Some(std::borrow::Cow::Borrowed(raw)),
        Some(b64) => {
            let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
            String::from_utf8(bytes).ok().map(std::borrow::Cow::Owned)
        }
    }
}

/// Encodes a value for `Mcp-Name`/`Mcp-Param-*`: plain when header-safe, Base64 sentinel otherwise.
pub fn encode_header_value(value: &str) -> std::borrow::Cow<'_, str> {
    let safe = !value.is_empty()
        && value.bytes().all(|b| (0x20..0x7f).contains(&b))
        && !value.starts_with(' ')
        && !value.ends_with(' ')
        && (!value.starts_with("=?base64?") || !value.ends_with("?="));
    if safe {
        std::borrow::Cow::Borrowed(value)
    } else {
        let b64 = base64::engine::general_purpose::STANDARD.encode(value.as_bytes());
        std::borrow::Cow::Owned(format!("=?base64?{b64}?="))
    }
}

fn mismatch(message: String) -> RpcError {
    RpcError::new(code::HEADER_MISMATCH, format!("Header mismatch: {message}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pingora_http::RequestHeader;

    fn req(headers: &[(&str, &str)]) -> RequestHeader {
        let mut r = RequestHeader::build("POST", b"/mcp", None).expect("request header");
        for (n, v) in headers {
            r.insert_header(n.to_string(), *v).expect("header");
        }
        r
    }

    fn head(json: &str) -> ParamsHead<'_> {
        ParamsHead::parse(Some(json)).expect("head")
    }

    #[test]
    fn accepts_matching_headers() {
        let h = head(r#"{"name":"a__b","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}"#);
        let r = req(&[("mcp-method", "tools/call"), ("mcp-name", "a__b")]);
        assert_eq!(check_modern(&r, "tools/call", &h, "2026-07-28"), Ok(()));
        let r = req(&[("Mcp-Method", "tools/list")]);
        assert_eq!(check_modern(&r, "tools/list", &head("{}"), "2026-07-28"), Ok(()));
    }

    #[test]
    fn rejects_missing_and_mismatched_headers() {
        let h = head(r#"{"name":"a__b"}"#);
        let cases = [
            (req(&[]), "Mcp-Method is missing"),
            (req(&[("mcp-method", "tools/list")]), "does not match body method"),
            (req(&[("mcp-method", "tools/call")]), "Mcp-Name is missing"),
            (req(&[("mcp-method", "tools/call"), ("mcp-name", "other")]), "'other' does not match body value 'a__b'"),
        ];
        for (r, want) in cases {
            let err = check_modern(&r, "tools/call", &h, "2026-07-28").expect_err(want);
            assert_eq!(err.code, code::HEADER_MISMATCH);
            assert!(err.message.contains(want), "{} / {want}", err.message);
        }
        let h = head(r#"{"_meta":{"io.modelcontextprotocol/protocolVersion":"2025-11-25"}}"#);
        let err =
            check_modern(&req(&[("mcp-method", "tools/list")]), "tools/list", &h, "2026-07-28").expect_err("version");
        assert!(err.message.contains("does not match _meta protocolVersion"), "{}", err.message);
    }

    #[test]
    fn base64_sentinel_round_trips() {
        for v in ["us-west1", "Hello, 世界", " padded ", "line1\nline2", "=?base64?literal?="] {
            let enc = encode_header_value(v);
            assert_eq!(decode_header_value(&enc).as_deref(), Some(v), "{enc}");
        }
        assert_eq!(encode_header_value("Hello, 世界"), "=?base64?SGVsbG8sIOS4lueVjA==?=");
        let h = head(r#"{"uri":"file:///ü"}"#);
        let enc = encode_header_value("file:///ü");
        let r = req(&[("mcp-method", "resources/read"), ("mcp-name", &enc)]);
        assert_eq!(check_modern(&r, "resources/read", &h, "2026-07-28"), Ok(()));
        assert_eq!(decode_header_value("=?base64?!!!?="), None);
        // A name that looks like the sentinel is sent encoded; sent as it is, it is decoded and
        // no longer matches, even though the bytes are the body's.
        let h = head(r#"{"name":"=?base64?YQ==?="}"#);
        let literal = req(&[("mcp-method", "tools/call"), ("mcp-name", "=?base64?YQ==?=")]);
        let err = check_modern(&literal, "tools/call", &h, "2026-07-28").expect_err("decoded to 'a'");
        assert!(err.message.contains("'a' does not match"), "{}", err.message);
        let encoded = encode_header_value("=?base64?YQ==?=");
        let r = req(&[("mcp-method", "tools/call"), ("mcp-name", &encoded)]);
        assert_eq!(check_modern(&r, "tools/call", &h, "2026-07-28"), Ok(()));
    }
}
