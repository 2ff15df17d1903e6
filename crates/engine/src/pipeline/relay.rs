//! Handing media from one part of the program to another: the echo peer sends back what
//! it decodes. Video goes newest-wins through [`Latest`]; audio through a short bounded
//! queue. Both wake a waiting consumer, so the threads reading them block instead of
//! polling.

use std::collections::VecDeque;
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use chingu_media::I420Frame;
use chingu_media::latest::Latest;

/// Video frames, newest wins. Buffers are recycled: no allocation per frame once sized.
#[derive(Debug, Default)]
pub struct FrameRelay {
    slot: Latest<I420Frame>,
}

impl PartialEq for FrameRelay {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

impl FrameRelay {
    /// Copies `frame` in, replacing a frame not yet taken.
    pub fn push(&self, frame: &I420Frame) {
        let mut buf = self.slot.take_buffer().unwrap_or_else(|| frame.clone());
        if buf.resize(frame.width(), frame.height()).is_ok() {
            buf.y.copy_from_slice(&frame.y);
            buf.u.copy_from_slice(&frame.u);
            buf.v.copy_from_slice(&frame.v);
            buf.capture_us = frame.capture_us;
            self.slot.put(buf);
        }
    }

    /// Swaps the newest frame into `frame`, if one came since the last take.
    pub fn take(&self, frame: &mut I420Frame) -> bool {
        self.slot.swap(frame)
    }

    /// Like [`Self::take`], waiting up to `timeout` for a frame.
    pub fn wait_take(&self, frame: &mut I420Frame, timeout: Duration) -> bool {
        self.slot.wait_swap(frame, timeout)
    }
}

/// 48 kHz mono audio; holds at most 200 ms (older samples are dropped).
#[derive(Debug, Default)]
pub struct AudioRelay {
    buf: Mutex<VecDeque<i16>>,
    ready: Condvar,
}

impl PartialEq for AudioRelay {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

impl AudioRelay {
    const MAX: usize = 9_600;

    pub fn push(&self, pcm: &[i16]) {
        {
            let mut buf = self.buf.lock().unwrap_or_else(PoisonError::into_inner);
            buf.extend(pcm.iter().copied());
            let excess = buf.len().saturating_sub(Self::MAX);
            buf.drain(..excess);
        }
        self.ready.notify_one();
    }

    /// Fills `out` if that much is buffered.
    pub fn pop(&self, out: &mut [i16]) -> bool {
        self.pop_timeout(out, Duration::ZERO)
    }

    /// Fills `out`, waiting up to `timeout` for that much to be buffered.
    pub fn pop_timeout(&self, out: &mut [i16], timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut buf = self.buf.lock().unwrap_or_else(PoisonError::into_inner);
        while buf.len() < out.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            buf = self
                .ready
                .wait_timeout(buf, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        let n = out.len();
        for (o, s) in out.iter_mut().zip(buf.drain(..n)) {
            *o = s;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn audio_is_relayed_in_order_and_bounded() {
        let relay = AudioRelay::default();
        let mut out = [0i16; 4];
        assert!(!relay.pop(&mut out), "nothing yet");
        relay.push(&[1, 2, 3]);
        assert!(!relay.pop(&mut out), "not enough yet");
        relay.push(&[4, 5]);
        assert!(relay.pop(&mut out));
        assert_eq!(out, [1, 2, 3, 4]);
        relay.push(&vec![7; 20_000]);
        let mut all = vec![0i16; AudioRelay::MAX];
        assert!(relay.pop(&mut all), "holds at most 200 ms");
        assert!(!relay.pop(&mut out), "and no more");
    }

    #[test]
    fn a_waiting_reader_wakes_when_audio_arrives() {
        let relay = Arc::new(AudioRelay::default());
        let writer = Arc::clone(&relay);
        let thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            writer.push(&[5; 960]);
        });
        let mut out = [0i16; 960];
        assert!(relay.pop_timeout(&mut out, Duration::from_secs(10)));
        assert_eq!(out[0], 5);
        thread.join().expect("writer");
    }

    #[test]
    fn frames_are_copied_and_the_newest_wins() {
        let relay = FrameRelay::default();
        let mut a = I420Frame::new(4, 4).expect("size");
        a.y.fill(1);
        a.capture_us = 1;
        relay.push(&a);
        a.y.fill(2);
        a.capture_us = 2;
        relay.push(&a);
        let mut got = I420Frame::new(2, 2).expect("size");
        assert!(relay.take(&mut got));
        assert_eq!((got.width(), got.y[0], got.capture_us), (4, 2, 2));
        assert!(!relay.take(&mut got));
    }
}
