//! A legacy session's messages to its client outside any request (notifications, server→client
//! requests), queued for the session's GET stream: one bounded queue, read by whichever stream
//! is the session's current one, and kept for the next when none is.
//!
//! A queue and a `Notify` in the session rather than a channel per stream: an idle session with
//! its GET stream open holds no allocation for messages it may never get (a channel allocates
//! a block of slots when it is made), which is what ten thousand idle streams cost most.

use std::collections::VecDeque;

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::Notify;

/// Messages kept for a session at most; older ones are dropped first.
pub const LIMIT: usize = 256;

/// The queue and who reads it.
#[derive(Default)]
pub struct Outbox {
    state: Mutex<State>,
    changed: Notify,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Bytes>,
    /// The number of the stream reading now, if one is.
    reader: Option<u64>,
    /// The number the next stream gets.
    next: u64,
    /// The session ended: its stream ends too, and none reads any more.
    closed: bool,
}

impl Outbox {
    /// Queues a message (dropping the oldest beyond [`LIMIT`]) and wakes the reader.
    pub fn push(&self, message: Bytes) {
        {
            let mut s = self.state.lock();
            if s.queue.len() >= LIMIT {
                s.queue.pop_front();
            }
            s.queue.push_back(message);
        }
        self.changed.notify_waiters();
    }

    /// Makes a new stream the reader, in place of any other (which then ends); its number.
    pub fn attach(&self) -> u64 {
        let number = {
            let mut s = self.state.lock();
            s.next += 1;
            s.reader = Some(s.next);
            s.next
        };
        self.changed.notify_waiters();
        number
    }

    /// Stream `number` stopped reading (if it still was the reader).
    pub fn detach(&self, number: u64) {
        let mut s = self.state.lock();
        if s.reader == Some(number) {
            s.reader = None;
        }
    }

    /// Ends the outbox with its session: the stream reading it ends, and no other will.
    pub fn close(&self) {
        {
            let mut s = self.state.lock();
            s.closed = true;
            s.reader = None;
            s.queue.clear();
        }
        self.changed.notify_waiters();
    }

    /// Whether a stream reads the queue now.
    pub fn is_read(&self) -> bool {
        self.state.lock().reader.is_some()
    }

    /// The next message for stream `number`, waiting for one; `None` once another stream took
    /// its place.
    pub async fn next(&self, number: u64) -> Option<Bytes> {
        loop {
            let changed = self.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            {
                let mut s = self.state.lock();
                if s.closed || s.reader != Some(number) {
                    return None;
                }
                if let Some(message) = s.queue.pop_front() {
                    return Some(message);
                }
            }
            changed.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queue_is_bounded_and_kept_for_the_next_stream() {
        let outbox = Outbox::default();
        for i in 0..(LIMIT + 10) {
            outbox.push(Bytes::from(i.to_string()));
        }
        assert!(!outbox.is_read());
        let stream = outbox.attach();
        assert!(outbox.is_read());
        let first = futures_util::FutureExt::now_or_never(outbox.next(stream)).flatten();
        assert_eq!(first, Some(Bytes::from("10")), "the oldest went first");
        outbox.detach(stream);
        assert!(!outbox.is_read());
        let next = outbox.attach();
        let second = futures_util::FutureExt::now_or_never(outbox.next(next)).flatten();
        assert_eq!(second, Some(Bytes::from("11")), "what the first stream did not read waits for the next");
    }

    #[tokio::test]
    async fn a_reader_wakes_for_a_message_and_ends_when_replaced() {
        let outbox = std::sync::Arc::new(Outbox::default());
        let first = outbox.attach();
        let reading = tokio::spawn({
            let outbox = outbox.clone();
            async move { (outbox.next(first).await, outbox.next(first).await) }
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        outbox.push(Bytes::from("hello"));
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let second = outbox.attach();
        let (message, after) =
            tokio::time::timeout(std::time::Duration::from_secs(2), reading).await.expect("woken").expect("task");
        assert_eq!(message, Some(Bytes::from("hello")));
        assert_eq!(after, None, "a stream replaced by another ends");
        outbox.detach(first);
        assert!(outbox.is_read(), "the old stream's end does not detach the new one");
        outbox.detach(second);
        assert!(!outbox.is_read());
        let third = outbox.attach();
        outbox.push(Bytes::from("late"));
        outbox.close();
        assert_eq!(outbox.next(third).await, None, "a closed outbox ends its stream");
        assert!(!outbox.is_read());
    }
}
