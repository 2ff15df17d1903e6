//! [`Latest`]: a one-value, newest-wins handoff between two threads, with buffer
//! recycling. A producer that runs ahead replaces the unread value (counted); a consumer
//! that falls behind gets the newest value, never a backlog. Buffers circulate between
//! the two sides, so steady state allocates nothing per value.
//!
//! Used for every frame handoff in the project: the camera thread to the encoder, one
//! engine's decoder to another's encoder (the echo peer) and the decoder to the app's
//! video server.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// A newest-wins slot holding at most one unread value and one spare buffer.
#[derive(Debug)]
pub struct Latest<T> {
    inner: Mutex<Inner<T>>,
    ready: Condvar,
}

#[derive(Debug)]
struct Inner<T> {
    /// The newest value, not yet taken.
    newest: Option<T>,
    /// A buffer given back by the consumer (or displaced), for the producer to fill next.
    spare: Option<T>,
    /// Values replaced before anyone took them.
    replaced: u64,
    /// Values put so far.
    put: u64,
}

impl<T> Default for Latest<T> {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner {
                newest: None,
                spare: None,
                replaced: 0,
                put: 0,
            }),
            ready: Condvar::new(),
        }
    }
}

impl<T> Latest<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// The lock guards plain data that is never left half-written, so a panic elsewhere
    /// while it was held does not make it unusable.
    fn lock(&self) -> MutexGuard<'_, Inner<T>> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stores `value` as the newest one. An unread older value becomes the spare buffer
    /// and counts as replaced. Wakes a consumer waiting in [`Self::wait_swap`].
    pub fn put(&self, value: T) {
        {
            let mut inner = self.lock();
            if let Some(old) = inner.newest.replace(value) {
                inner.replaced += 1;
                inner.spare = Some(old);
            }
            inner.put += 1;
        }
        self.ready.notify_one();
    }

    /// A buffer for the producer to fill outside the lock: the spare one, else the
    /// unread newest value (which is then replaced and counted as such). `None` when
    /// both are out (the caller allocates).
    pub fn take_buffer(&self) -> Option<T> {
        let mut inner = self.lock();
        if let Some(spare) = inner.spare.take() {
            return Some(spare);
        }
        let unread = inner.newest.take();
        if unread.is_some() {
            inner.replaced += 1;
        }
        unread
    }

    /// Swaps the newest value into `into`, if one came since the last take; the value
    /// `into` held becomes the spare buffer.
    pub fn swap(&self, into: &mut T) -> bool {
        let mut inner = self.lock();
        Self::swap_locked(&mut inner, into)
    }

    /// Like [`Self::swap`], but waits up to `timeout` for a value to arrive.
    pub fn wait_swap(&self, into: &mut T, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut inner = self.lock();
        loop {
            if Self::swap_locked(&mut inner, into) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            inner = self
                .ready
                .wait_timeout(inner, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn swap_locked(inner: &mut Inner<T>, into: &mut T) -> bool {
        match inner.newest.take() {
            Some(mut newest) => {
                std::mem::swap(into, &mut newest);
                inner.spare = Some(newest);
                true
            }
            None => false,
        }
    }

    /// Takes the newest value, giving no buffer back.
    pub fn take(&self) -> Option<T> {
        self.lock().newest.take()
    }

    /// Drops the unread value, if any (kept as the spare buffer).
    pub fn clear(&self) {
        let mut inner = self.lock();
        if let Some(unread) = inner.newest.take() {
            inner.spare = Some(unread);
        }
    }

    /// Values replaced before anyone took them, so far.
    pub fn replaced(&self) -> u64 {
        self.lock().replaced
    }

    /// Values put so far.
    pub fn put_count(&self) -> u64 {
        self.lock().put
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn the_newest_value_wins_and_replacements_are_counted() {
        let slot = Latest::new();
        slot.put(1);
        slot.put(2);
        slot.put(3);
        let mut got = 0;
        assert!(slot.swap(&mut got));
        assert_eq!(got, 3, "the consumer gets the newest value");
        assert_eq!(slot.replaced(), 2);
        assert!(!slot.swap(&mut got), "nothing new since");
        assert_eq!(slot.put_count(), 3);
    }

    #[test]
    fn buffers_circulate_between_the_two_sides() {
        let slot: Latest<Vec<u8>> = Latest::new();
        assert_eq!(slot.take_buffer(), None, "nothing to recycle at first");
        slot.put(vec![1; 4]);
        let mut consumer = vec![9; 4];
        assert!(slot.swap(&mut consumer));
        assert_eq!(consumer, vec![1; 4]);
        assert_eq!(
            slot.take_buffer(),
            Some(vec![9; 4]),
            "the consumer's old buffer goes back to the producer"
        );
        slot.put(vec![2]);
        assert_eq!(
            slot.take_buffer(),
            Some(vec![2]),
            "with no spare, the unread value is overwritten"
        );
        assert_eq!(slot.replaced(), 1);
    }

    #[test]
    fn clear_drops_the_unread_value() {
        let slot = Latest::new();
        slot.put("old picture");
        slot.clear();
        assert_eq!(slot.take(), None);
        assert_eq!(slot.take_buffer(), Some("old picture"), "kept as a buffer");
    }

    #[test]
    fn a_waiting_consumer_wakes_when_a_value_arrives() {
        let slot = Arc::new(Latest::new());
        let producer = Arc::clone(&slot);
        let thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            producer.put(7u32);
        });
        let mut got = 0;
        assert!(
            slot.wait_swap(&mut got, Duration::from_secs(10)),
            "woken by the put, well before the timeout"
        );
        assert_eq!(got, 7);
        thread.join().expect("producer");
        assert!(
            !slot.wait_swap(&mut got, Duration::from_millis(20)),
            "times out with nothing new"
        );
    }
}
