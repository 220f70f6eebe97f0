//! CORS for browser clients (the Fetch standard's cross-origin protocol) on the MCP endpoints:
//! preflights answered, responses marked readable by the page that sent them, the headers an
//! MCP client must read exposed. Origins come from `server.allowed_origins`, the same list the
//! DNS-rebinding check uses: an origin not in it gets 403 and no CORS header, so the browser
//! refuses the page the response.
//!
//! No maintained CORS crate fits a Pingora `HttpServerApp` (tower-http's layer needs a tower
//! service), and the protocol is a handful of headers, so it is here. The origin a request was
//! admitted for travels in a task-local for the request's duration: every response header the
//! front door writes for it goes through [`decorate`].

use std::sync::Arc;

use pingora_http::ResponseHeader;

/// Methods the MCP endpoint answers.
pub const METHODS: &str = "GET, POST, DELETE, OPTIONS";
/// Request headers an MCP client sends (besides the CORS-safelisted ones).
const REQUEST_HEADERS: &[&str] = &[
    "content-type",
    "accept",
    "authorization",
    "mcp-protocol-version",
    "mcp-session-id",
    "mcp-method",
    "mcp-name",
    "last-event-id",
    "traceparent",
    "tracestate",
    "baggage",
];
/// Response headers a page's script may read.
const EXPOSED: &str = "Mcp-Session-Id, MCP-Protocol-Version, WWW-Authenticate, Retry-After";
/// How long a browser may reuse a preflight's answer (Chromium caps it at two hours).
const MAX_AGE_S: &str = "7200";

tokio::task_local! {
    /// The origin the current request was admitted for.
    static ORIGIN: Arc<str>;
}

/// Runs `work` (the rest of a request from an admitted `origin`) so that its responses carry the
/// CORS headers for that origin.
pub async fn admitted<F: std::future::Future>(origin: Option<&str>, work: F) -> F::Output {
    match origin {
        Some(o) => ORIGIN.scope(Arc::from(o), work).await,
        None => work.await,
    }
}

/// Adds the CORS headers of the current request, if it came from an admitted origin.
pub fn decorate(header: &mut ResponseHeader) -> pingora_core::Result<()> {
    let Ok(origin) = ORIGIN.try_with(Arc::clone) else { return Ok(()) };
    let [allow, vary, expose] = fields(&origin);
    header.insert_header(allow.0, allow.1)?;
    header.append_header(vary.0, vary.1)?;
    header.insert_header(expose.0, expose.1)?;
    Ok(())
}

/// The CORS fields of every response to a request from the admitted `origin`, in order (the
/// express path writes them itself).
pub fn fields(origin: &str) -> [(&'static str, &str); 3] {
    [("access-control-allow-origin", origin), ("vary", "Origin"), ("access-control-expose-headers", EXPOSED)]
}

/// The headers of a preflight's answer (204) for an admitted origin, besides those every
/// response of the request gets ([`decorate`]): the methods, the MCP request headers (and
/// `api_key_header`, when keys travel in a header of their own), how long to keep it.
pub fn preflight(api_key_header: Option<&str>) -> Vec<(&'static str, String)> {
    let mut allowed = REQUEST_HEADERS.join(", ");
    if let Some(h) = api_key_header.filter(|h| !REQUEST_HEADERS.iter().any(|r| r.eq_ignore_ascii_case(h))) {
        allowed.push_str(", ");
        allowed.push_str(&h.to_ascii_lowercase());
    }
    vec![
        ("vary", "Access-Control-Request-Method, Access-Control-Request-Headers".to_owned()),
        ("access-control-allow-methods", METHODS.to_owned()),
        ("access-control-allow-headers", allowed),
        ("access-control-max-age", MAX_AGE_S.to_owned()),
        ("allow", METHODS.to_owned()),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn responses_carry_the_admitted_origin_only_within_its_request() {
        let mut outside = ResponseHeader::build(200, None).expect("header");
        decorate(&mut outside).expect("decorated");
        assert!(outside.headers.get("access-control-allow-origin").is_none(), "no request, no CORS header");

        let inside = admitted(Some("https://app.example.com"), async {
            let mut h = ResponseHeader::build(200, None).expect("header");
            decorate(&mut h).expect("decorated");
            h
        })
        .await;
        assert_eq!(
            inside.headers.get("access-control-allow-origin").map(|v| v.as_bytes()),
            Some(&b"https://app.example.com"[..])
        );
        assert_eq!(inside.headers.get("vary").map(|v| v.as_bytes()), Some(&b"Origin"[..]));
        let exposed =
            inside.headers.get("access-control-expose-headers").and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert!(exposed.contains("Mcp-Session-Id") && exposed.contains("WWW-Authenticate"), "{exposed}");
    }

    #[test]
    fn preflights_name_every_mcp_header_and_the_key_header() {
        let h = preflight(Some("X-API-Key"));
        let get = |n: &str| h.iter().find(|(k, _)| *k == n).map(|(_, v)| v.as_str()).unwrap_or_default();
        for needed in [
            "mcp-session-id",
            "mcp-protocol-version",
            "mcp-method",
            "mcp-name",
            "last-event-id",
            "authorization",
            "x-api-key",
        ] {
            assert!(get("access-control-allow-headers").split(", ").any(|x| x == needed), "{needed}");
        }
        assert!(get("access-control-allow-methods").contains("DELETE"));
        let plain = preflight(Some("authorization"));
        let headers = plain.iter().find(|(k, _)| *k == "access-control-allow-headers").map(|(_, v)| v.clone());
        assert_eq!(headers.map(|v| v.matches("authorization").count()), Some(1), "named once");
    }
}
