//! Writing complete responses, for everything the gateway answers itself.

use bytes::Bytes;
use pingora_core::protocols::http::ServerSession as Session;
use pingora_http::ResponseHeader;

/// Writes a whole response (status, content type, extra headers, body) and ends it.
pub async fn send(
    session: &mut Session,
    status: u16,
    content_type: &str,
    extra_headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> pingora_core::Result<()> {
    let body = body.into();
    let mut header = ResponseHeader::build(status, Some(3 + extra_headers.len()))?;
    if !body.is_empty() {
        header.insert_header("content-type", content_type)?;
    }
    header.insert_header("content-length", body.len())?;
    header.insert_header("cache-control", "no-store")?;
    for (name, value) in extra_headers {
        header.append_header(name.to_string(), *value)?;
    }
    super::cors::decorate(&mut header)?;
    session.write_response_header(Box::new(header)).await?;
    session.write_response_body(body, true).await
}

/// Writes a response without a body (204, and the like): no `Content-Length`, no content type.
pub async fn empty(session: &mut Session, status: u16, extra_headers: &[(&str, &str)]) -> pingora_core::Result<()> {
    let mut header = ResponseHeader::build(status, Some(1 + extra_headers.len()))?;
    header.insert_header("cache-control", "no-store")?;
    for (name, value) in extra_headers {
        header.append_header(name.to_string(), *value)?;
    }
    super::cors::decorate(&mut header)?;
    session.write_response_header(Box::new(header)).await?;
    session.write_response_body(Bytes::new(), true).await
}

/// Writes a JSON response.
pub async fn json(session: &mut Session, status: u16, body: impl Into<Bytes>) -> pingora_core::Result<()> {
    send(session, status, "application/json", &[], body).await
}
