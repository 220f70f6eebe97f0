//! Writing complete responses from `request_filter`, for everything the gateway answers itself.

use bytes::Bytes;
use pingora_http::ResponseHeader;
use pingora_proxy::Session;

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
    session.write_response_header(Box::new(header), body.is_empty()).await?;
    if !body.is_empty() {
        session.write_response_body(Some(body), true).await?;
    }
    Ok(())
}

/// Writes a JSON response.
pub async fn json(session: &mut Session, status: u16, body: impl Into<Bytes>) -> pingora_core::Result<()> {
    send(session, status, "application/json", &[], body).await
}
