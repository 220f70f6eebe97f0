//! Resumable reply streams for legacy (2025-xx) sessions.
//!
//! In the legacy protocol a dropped connection is not a cancellation, and a client may reopen a
//! reply stream with `GET` + `Last-Event-ID`. So a legacy reply is produced into a buffer owned by
//! the session, not straight into the socket: the POST that started it reads the buffer live, and
//! a later GET can replay it from any event id and follow it to its end. Event ids are
//! `<stream>-<seq>`; sequence 0 is the priming event.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;

use bytes::Bytes;
use tokio::sync::Notify;

/// Finished streams kept per session for late reconnections; older ones are forgotten first.
const KEPT_STREAMS: usize = 32;

/// The messages of one reply, in order; the last one is the response once `done`.
#[derive(Default)]
pub struct ReplyBuffer {
    messages: Mutex<Vec<Bytes>>,
    done: AtomicBool,
    /// Whether the last message is the response (a cancelled request has none).
    answered: AtomicBool,
    /// HTTP status for a reply sent as plain JSON (0: 200).
    status: AtomicU16,
    changed: Notify,
}

impl ReplyBuffer {
    /// Appends a message (a notification or server request relayed during the call).
    pub fn push(&self, json: Bytes) {
        {
            let mut m = self.messages.lock();
            m.push(json);
        }
        self.changed.notify_waiters();
    }

    /// Appends the response and ends the reply.
    pub fn answer(&self, json: Bytes) {
        self.push(json);
        self.answered.store(true, Ordering::Release);
        self.finish();
    }

    /// Appends the response, to be sent with HTTP `status` if it goes out as plain JSON (an
    /// error that ends the session goes out as 404).
    pub fn answer_with_status(&self, json: Bytes, status: u16) {
        self.status.store(status, Ordering::Release);
        self.answer(json);
    }

    /// The HTTP status of a plain JSON reply.
    pub fn status(&self) -> u16 {
        match self.status.load(Ordering::Acquire) {
            0 => 200,
            s => s,
        }
    }

    /// Ends the reply without a response (cancelled).
    pub fn finish(&self) {
        self.done.store(true, Ordering::Release);
        self.changed.notify_waiters();
    }

    /// Messages from index `from` on, and whether the reply has ended (and was answered).
    pub fn read_from(&self, from: usize) -> (Vec<Bytes>, bool, bool) {
        let done = self.done.load(Ordering::Acquire);
        let msgs = self.messages.lock().get(from..).map(<[Bytes]>::to_vec).unwrap_or_default();
        (msgs, done, self.answered.load(Ordering::Acquire))
    }

    /// Waits until something is appended or the reply ends; check [`Self::read_from`] after.
    pub async fn changed(&self, seen: usize) {
        let notified = self.changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let len = self.messages.lock().len();
        if len > seen || self.done.load(Ordering::Acquire) {
            return;
        }
        notified.await;
    }
}

/// The reply streams of one session.
#[derive(Default)]
pub struct ReplayStreams {
    next: AtomicU64,
    streams: Mutex<VecDeque<(u64, Arc<ReplyBuffer>)>>,
}

impl ReplayStreams {
    /// Opens a new reply buffer and returns its stream number.
    pub fn open(&self) -> (u64, Arc<ReplyBuffer>) {
        let n = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let buf = Arc::new(ReplyBuffer::default());
        {
            let mut s = self.streams.lock();
            while s.len() >= KEPT_STREAMS {
                // Forget the oldest finished stream; live ones are never dropped.
                match s.iter().position(|(_, b)| b.done.load(Ordering::Acquire)) {
                    Some(i) => {
                        s.remove(i);
                    }
                    None => break,
                }
            }
            s.push_back((n, buf.clone()));
        }
        (n, buf)
    }

    /// The buffer of stream `n`, if kept.
    pub fn find(&self, n: u64) -> Option<Arc<ReplyBuffer>> {
        self.streams.lock().iter().find(|(k, _)| *k == n).map(|(_, b)| b.clone())
    }
}

/// The SSE event id of message `seq` (1-based; 0 is the priming event) of stream `stream`.
pub fn event_id(stream: u64, seq: usize) -> String {
    format!("{stream}-{seq}")
}

/// Parses a `Last-Event-ID` of ours into (stream, seq).
pub fn parse_event_id(id: &str) -> Option<(u64, usize)> {
    let (s, n) = id.trim().split_once('-')?;
    Some((s.parse().ok()?, n.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn buffers_replay_from_any_point_and_follow() {
        let streams = ReplayStreams::default();
        let (n, buf) = streams.open();
        buf.push(Bytes::from_static(b"a"));
        buf.push(Bytes::from_static(b"b"));
        assert_eq!(buf.read_from(1), (vec![Bytes::from_static(b"b")], false, false));
        let follower = {
            let buf = buf.clone();
            tokio::spawn(async move {
                buf.changed(2).await;
                buf.read_from(2)
            })
        };
        buf.answer(Bytes::from_static(b"final"));
        assert_eq!(follower.await.expect("join"), (vec![Bytes::from_static(b"final")], true, true));
        assert!(streams.find(n).is_some());
        assert_eq!(parse_event_id(&event_id(n, 3)), Some((n, 3)));
        assert_eq!(parse_event_id("garbage"), None);
    }

    #[test]
    fn finished_streams_are_forgotten_first() {
        let streams = ReplayStreams::default();
        let (first, live) = streams.open();
        for _ in 0..KEPT_STREAMS + 5 {
            let (_, b) = streams.open();
            b.finish();
        }
        assert!(streams.find(first).is_some(), "a live stream is kept");
        live.finish();
    }
}
