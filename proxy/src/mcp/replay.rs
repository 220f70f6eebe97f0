//! Resumable reply streams for legacy (2025-xx) sessions.
//!
//! In the legacy protocol a dropped connection is not a cancellation, and a client may reopen a
//! reply stream with `GET` + `Last-Event-ID`. So a legacy reply is produced into a buffer owned by
//! the session, not straight into the socket: the POST that started it reads the buffer live, and
//! a later GET can replay it from any event id and follow it to its end. Event ids are
//! `<stream>-<seq>`; sequence 0 is the priming event.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use std::sync::Arc;
use tokio::time::Instant;

use parking_lot::Mutex;

use bytes::Bytes;
use tokio::sync::Notify;

/// Finished streams kept per session for late reconnections; older ones are forgotten first.
const KEPT_STREAMS: usize = 32;

/// Messages one reply keeps for replay at most, and their total size: a tool that streams
/// progress for hours must not grow the buffer without end. The oldest go first (the response,
/// last, always stays); a client resuming from before them misses them.
const MAX_KEPT_MESSAGES: usize = 1024;
/// Bytes one reply keeps for replay at most.
const MAX_KEPT_BYTES: usize = 8 << 20;

/// A reply's messages still kept: `first` is the index of `list[0]` in the whole reply.
#[derive(Default)]
struct Kept {
    list: VecDeque<Bytes>,
    first: usize,
    bytes: usize,
}

/// The messages of one reply, in order; the last one is the response once `done`.
#[derive(Default)]
pub struct ReplyBuffer {
    messages: Mutex<Kept>,
    done: AtomicBool,
    /// Whether the last message is the response (a cancelled request has none).
    answered: AtomicBool,
    /// HTTP status for a reply sent as plain JSON (0: 200).
    status: AtomicU16,
    changed: Notify,
    /// Clients reading the reply now, and since when (ms after `created`) none has.
    readers: AtomicUsize,
    unread_since_ms: AtomicU64,
    readers_changed: Notify,
    created: OnceInstant,
}

/// When a buffer was made (`Instant` has no `Default`).
struct OnceInstant(Instant);

impl Default for OnceInstant {
    fn default() -> Self {
        Self(Instant::now())
    }
}

/// A client reading a reply; dropping it (the client went away) starts the reply's grace time.
pub struct Reader(Arc<ReplyBuffer>);

impl Drop for Reader {
    fn drop(&mut self) {
        if self.0.readers.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.unread_since_ms.store(self.0.now_ms(), Ordering::Release);
        }
        self.0.readers_changed.notify_waiters();
    }
}

impl ReplyBuffer {
    /// Appends a message (a notification or server request relayed during the call); `true`
    /// when older messages had to be forgotten to keep the buffer bounded.
    pub fn push(&self, json: Bytes) -> bool {
        let mut dropped = false;
        {
            let mut m = self.messages.lock();
            m.bytes += json.len();
            m.list.push_back(json);
            while m.list.len() > 1 && (m.list.len() > MAX_KEPT_MESSAGES || m.bytes > MAX_KEPT_BYTES) {
                if let Some(old) = m.list.pop_front() {
                    m.bytes -= old.len();
                    m.first += 1;
                    dropped = true;
                }
            }
        }
        self.changed.notify_waiters();
        dropped
    }

    /// Appends the response and ends the reply.
    pub fn answer(&self, json: Bytes) {
        let _ = self.push(json);
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

    fn now_ms(&self) -> u64 {
        u64::try_from(self.created.0.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Registers a client reading the reply until the returned guard is dropped.
    pub fn reader(self: &Arc<Self>) -> Reader {
        self.readers.fetch_add(1, Ordering::AcqRel);
        self.readers_changed.notify_waiters();
        Reader(self.clone())
    }

    /// Resolves once no client has read the reply for `grace` (counted from when the last one
    /// left, or from the start if none came). Safe to call again and again: the time is kept in
    /// the buffer, not in the future.
    pub async fn orphaned(&self, grace: Duration) {
        loop {
            let changed = self.readers_changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if self.readers.load(Ordering::Acquire) > 0 {
                changed.await;
                continue;
            }
            let since = Duration::from_millis(self.unread_since_ms.load(Ordering::Acquire));
            let waited = self.created.0.elapsed().saturating_sub(since);
            let Some(left) = grace.checked_sub(waited).filter(|d| !d.is_zero()) else { return };
            tokio::select! {
                () = tokio::time::sleep(left) => {}
                () = changed => {}
            }
        }
    }

    /// Ends the reply without a response (cancelled).
    pub fn finish(&self) {
        self.done.store(true, Ordering::Release);
        self.changed.notify_waiters();
    }

    /// Messages from index `from` on (those still kept), the index after the last of them, and
    /// whether the reply has ended (and was answered).
    pub fn read_from(&self, from: usize) -> (Vec<Bytes>, usize, bool, bool) {
        let done = self.done.load(Ordering::Acquire);
        let m = self.messages.lock();
        let skip = from.saturating_sub(m.first);
        let msgs: Vec<Bytes> = m.list.iter().skip(skip).cloned().collect();
        let end = m.first + m.list.len();
        drop(m);
        (msgs, end, done, self.answered.load(Ordering::Acquire))
    }

    /// Waits until something is appended or the reply ends; check [`Self::read_from`] after.
    pub async fn changed(&self, seen: usize) {
        let notified = self.changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let len = {
            let m = self.messages.lock();
            m.first + m.list.len()
        };
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
        assert_eq!(buf.read_from(1), (vec![Bytes::from_static(b"b")], 2, false, false));
        let follower = {
            let buf = buf.clone();
            tokio::spawn(async move {
                buf.changed(2).await;
                buf.read_from(2)
            })
        };
        buf.answer(Bytes::from_static(b"final"));
        assert_eq!(follower.await.expect("join"), (vec![Bytes::from_static(b"final")], 3, true, true));
        assert!(streams.find(n).is_some());
        assert_eq!(parse_event_id(&event_id(n, 3)), Some((n, 3)));
        assert_eq!(parse_event_id("garbage"), None);
    }

    #[test]
    fn a_long_reply_keeps_a_bounded_tail_and_its_response() {
        let buf = ReplyBuffer::default();
        let mut dropped = false;
        for i in 0..MAX_KEPT_MESSAGES + 10 {
            dropped |= buf.push(Bytes::from(i.to_string()));
        }
        assert!(dropped);
        let (msgs, end, _, _) = buf.read_from(0);
        assert_eq!((msgs.len(), end), (MAX_KEPT_MESSAGES, MAX_KEPT_MESSAGES + 10));
        assert_eq!(msgs[0], Bytes::from("10"), "the oldest went first");
        let (msgs, _, _, _) = buf.read_from(MAX_KEPT_MESSAGES + 5);
        assert_eq!(msgs.len(), 5, "a reader that kept up misses nothing");
        buf.answer(Bytes::from(vec![b'x'; MAX_KEPT_BYTES + 1]));
        let (msgs, _, done, answered) = buf.read_from(0);
        assert_eq!((msgs.len(), done, answered), (1, true, true), "an oversized response is kept alone");
    }

    #[tokio::test(start_paused = true)]
    async fn a_reply_nobody_reads_is_orphaned_after_the_grace_time() {
        let grace = Duration::from_secs(10);
        let buf = Arc::new(ReplyBuffer::default());
        let reader = buf.reader();
        let orphaned = tokio::spawn({
            let buf = buf.clone();
            async move { buf.orphaned(grace).await }
        });
        tokio::time::sleep(Duration::from_secs(60)).await;
        assert!(!orphaned.is_finished(), "read all along");
        drop(reader);
        tokio::time::sleep(Duration::from_secs(5)).await;
        let again = buf.reader(); // the client resumed in time
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(!orphaned.is_finished());
        drop(again);
        tokio::time::sleep(Duration::from_secs(9)).await;
        assert!(!orphaned.is_finished());
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert!(orphaned.is_finished(), "nobody came back within the grace time");
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
