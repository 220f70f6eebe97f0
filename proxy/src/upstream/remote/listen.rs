//! The change stream of a modern upstream: a long-lived `subscriptions/listen` whose notifications
//! go to the unsolicited sink.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderName;
use serde_json::Value;

use super::{message_bytes, with_modern_meta, Inner, MAX_EVENT_BYTES};
use crate::jsonrpc::sse;
use crate::proto::protocol::{meta, MODERN_VERSION};
use crate::upstream::http::Request;
use crate::upstream::{Caller, SessionKey};

/// Keeps a `subscriptions/listen` stream open to a modern upstream, relaying its notifications to
/// the sink, reconnecting with backoff.
pub(super) async fn listen_stream(inner: Arc<Inner>, uris: Vec<String>, acked: tokio::sync::oneshot::Sender<()>) {
    let mut acked = Some(acked);
    let mut backoff = Duration::from_millis(500);
    loop {
        let id = inner.next_id.fetch_add(1, Ordering::Relaxed);
        let params = with_modern_meta(crate::upstream::listen_params(&uris), &Caller::gateway());
        let body = message_bytes(Some(id), "subscriptions/listen", &params);
        let mut timeouts = inner.timeouts;
        timeouts.idle = Duration::from_secs(24 * 3600);
        let req = {
            let mut headers: Vec<(HeaderName, std::borrow::Cow<'_, str>)> = vec![
                (http::header::CONTENT_TYPE, "application/json".into()),
                (http::header::ACCEPT, "application/json, text/event-stream".into()),
                (HeaderName::from_static("mcp-protocol-version"), MODERN_VERSION.into()),
                (HeaderName::from_static("mcp-method"), "subscriptions/listen".into()),
            ];
            headers.extend(inner.configured());
            Request { method: "POST", start: None, headers, body: body.into(), replayable: true }
        };
        match inner.client.send(&inner.endpoint, &req, &timeouts).await {
            Ok(mut resp) if resp.status == 200 && resp.is_event_stream() => {
                tracing::debug!(provider = %inner.name, uris = uris.len(), "watching the upstream for changes");
                backoff = Duration::from_millis(500);
                let mut decoder = sse::Decoder::new(MAX_EVENT_BYTES);
                while let Ok(Some(chunk)) = resp.chunk().await {
                    let Ok(evs) = decoder.feed(&chunk) else { break };
                    for ev in evs.into_iter().filter(|e| e.is_message() && !e.data.is_empty()) {
                        let Ok(mut msg) = serde_json::from_str::<Value>(&ev.data) else { continue };
                        let method = msg.get("method").and_then(Value::as_str).unwrap_or_default().to_owned();
                        if method == "notifications/subscriptions/acknowledged" {
                            if let Some(tx) = acked.take() {
                                let _ = tx.send(());
                            }
                            continue;
                        }
                        if method.is_empty() {
                            continue;
                        }
                        if let Some(m) = msg.pointer_mut("/params/_meta").and_then(Value::as_object_mut) {
                            m.remove(meta::SUBSCRIPTION_ID);
                        }
                        tracing::debug!(provider = %inner.name, method, "change notification");
                        inner.sink.notification(&inner.name, &SessionKey::Shared, msg);
                    }
                }
                tracing::debug!(provider = %inner.name, "change stream ended");
            }
            Ok(resp) => {
                tracing::debug!(provider = %inner.name, status = resp.status, "upstream refused subscriptions/listen");
                resp.release().await;
                backoff = Duration::from_secs(60);
            }
            Err(e) => tracing::debug!(provider = %inner.name, "subscriptions/listen failed: {e}"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(60));
    }
}
