//! The audio jitter buffer, sans-IO: packets go in as they arrive; the playout clock
//! takes one 20 ms frame out per tick, as a packet, as FEC recovered from the packet after
//! a lost one, or as concealment. Playout starts once the first packet has waited the
//! target delay; the target grows with observed arrival jitter and the buffer is trimmed
//! when it runs far ahead of it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

/// Starting (and minimum) playout delay.
pub const MIN_DELAY: Duration = Duration::from_millis(40);
/// Never more than this, however bad the network.
pub const MAX_DELAY: Duration = Duration::from_millis(400);
const FRAME: Duration = Duration::from_millis(20);

/// What to play for this tick.
#[derive(Debug, PartialEq)]
pub enum Playout {
    /// Not started, or stopped after a long silence: play nothing.
    Waiting,
    Packet(Bytes),
    /// The packet was lost; the next one's FEC data recovers it.
    Fec(Bytes),
    /// Lost with nothing to recover it from.
    Conceal,
}

#[derive(Debug)]
struct Held {
    payload: Bytes,
    arrived: Instant,
}

#[derive(Debug, Default)]
pub struct JitterBuffer {
    packets: BTreeMap<u64, Held>,
    next: Option<u64>,
    seq: super::seq::SeqExtender,
    started: bool,
    target: Duration,
    /// Running arrival jitter estimate (RFC 3550 style), from inter-arrival deviations.
    jitter: Duration,
    last_arrival: Option<(u64, Instant)>,
    /// Consecutive ticks without a packet; playout pauses after a while (DTX, mute).
    missing_run: u32,
    // W3C-style counters.
    pub emitted: u64,
    pub total_delay: Duration,
    pub concealed: u64,
    pub fec_recovered: u64,
    pub late: u64,
    pub discarded: u64,
}

impl JitterBuffer {
    pub fn new() -> Self {
        Self {
            target: MIN_DELAY,
            ..Self::default()
        }
    }

    pub fn target_delay(&self) -> Duration {
        self.target
    }

    pub fn push(&mut self, seq: u16, payload: Bytes, now: Instant) {
        let ext = self.seq.extend(seq);
        if self.next.is_some_and(|n| ext < n) || self.packets.contains_key(&ext) {
            self.late += 1;
            return;
        }
        // Jitter: how far this packet's arrival strays from 20 ms per sequence step.
        if let Some((prev_seq, prev_at)) = self.last_arrival
            && ext > prev_seq
        {
            let expected = FRAME * (ext - prev_seq).min(50) as u32;
            let actual = now.duration_since(prev_at);
            let deviation = actual.abs_diff(expected);
            // jitter += (|D| - jitter) / 16
            self.jitter = if deviation > self.jitter {
                self.jitter + (deviation - self.jitter) / 16
            } else {
                self.jitter - (self.jitter - deviation) / 16
            };
            self.target = (MIN_DELAY.max(self.jitter * 3)).min(MAX_DELAY);
        }
        if self.last_arrival.is_none_or(|(s, _)| ext > s) {
            self.last_arrival = Some((ext, now));
        }
        self.packets.insert(
            ext,
            Held {
                payload,
                arrived: now,
            },
        );
    }

    /// One 20 ms tick of the playout clock.
    pub fn pop(&mut self, now: Instant) -> Playout {
        if !self.started {
            let Some((&first, held)) = self.packets.iter().next() else {
                return Playout::Waiting;
            };
            if now.duration_since(held.arrived) < self.target {
                return Playout::Waiting;
            }
            self.started = true;
            self.next = Some(first);
        }
        // Running far ahead of the target (a burst after a stall): drop the oldest.
        let max_held = (self.target.as_millis() / FRAME.as_millis()) as usize + 5;
        while self.packets.len() > max_held {
            if let Some((&seq, _)) = self.packets.iter().next() {
                self.packets.remove(&seq);
                self.discarded += 1;
                self.next = Some(seq + 1);
            }
        }
        let Some(next) = self.next else {
            return Playout::Waiting;
        };
        self.next = Some(next + 1);
        if let Some(held) = self.packets.remove(&next) {
            self.missing_run = 0;
            self.emitted += 1;
            self.total_delay += now.duration_since(held.arrived);
            return Playout::Packet(held.payload);
        }
        self.missing_run += 1;
        if self.packets.is_empty() && self.missing_run > 25 {
            // Half a second of nothing: the sender is silent (DTX or mute). Restart on
            // the next packet with a fresh delay instead of concealing forever.
            self.started = false;
            self.next = None;
            return Playout::Waiting;
        }
        // Recovered from FEC is decoded audio, not concealment (W3C `concealedSamples`
        // counts only what the decoder had to make up).
        match self.packets.get(&(next + 1)) {
            Some(after) => {
                self.fec_recovered += 1;
                Playout::Fec(after.payload.clone())
            }
            None => {
                self.concealed += 1;
                Playout::Conceal
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(x: u8) -> Bytes {
        Bytes::from(vec![x])
    }

    #[test]
    fn waits_the_target_delay_then_plays_in_order() {
        let t0 = Instant::now();
        let mut j = JitterBuffer::new();
        j.push(7, p(7), t0);
        assert_eq!(j.pop(t0), Playout::Waiting);
        j.push(8, p(8), t0 + FRAME);
        assert_eq!(j.pop(t0 + MIN_DELAY), Playout::Packet(p(7)));
        assert_eq!(j.pop(t0 + MIN_DELAY + FRAME), Playout::Packet(p(8)));
    }

    #[test]
    fn reorders_and_recovers_a_loss_with_fec() {
        let t0 = Instant::now();
        let mut j = JitterBuffer::new();
        j.push(1, p(1), t0);
        j.push(3, p(3), t0 + FRAME);
        j.push(2, p(2), t0 + FRAME);
        j.push(5, p(5), t0 + FRAME * 2);
        let t = t0 + MIN_DELAY;
        assert_eq!(j.pop(t), Playout::Packet(p(1)));
        assert_eq!(j.pop(t), Playout::Packet(p(2)));
        assert_eq!(j.pop(t), Playout::Packet(p(3)));
        assert_eq!(j.pop(t), Playout::Fec(p(5)), "4 lost, 5 carries its FEC");
        assert_eq!(j.pop(t), Playout::Packet(p(5)));
        assert_eq!(j.pop(t), Playout::Conceal);
        assert_eq!(
            (j.fec_recovered, j.concealed),
            (1, 1),
            "FEC is not concealment"
        );
        // A packet for a slot already played is late.
        j.push(4, p(4), t);
        assert_eq!(j.late, 1);
    }

    #[test]
    fn long_silence_pauses_instead_of_concealing_forever() {
        let t0 = Instant::now();
        let mut j = JitterBuffer::new();
        j.push(1, p(1), t0);
        let mut t = t0 + MIN_DELAY;
        assert_eq!(j.pop(t), Playout::Packet(p(1)));
        let mut waiting = false;
        for _ in 0..40 {
            t += FRAME;
            waiting |= j.pop(t) == Playout::Waiting;
        }
        assert!(waiting);
        j.push(100, p(100), t);
        assert_eq!(j.pop(t + MIN_DELAY), Playout::Packet(p(100)));
    }

    #[test]
    fn jitter_raises_the_target_within_bounds() {
        let t0 = Instant::now();
        let mut j = JitterBuffer::new();
        for i in 0..200u16 {
            // Arrivals alternate 0 and 40 ms late.
            let late = if i % 2 == 0 { 0 } else { 40 };
            j.push(
                i,
                p(0),
                t0 + FRAME * u32::from(i) + Duration::from_millis(late),
            );
        }
        assert!(j.target_delay() > MIN_DELAY, "{:?}", j.target_delay());
        assert!(j.target_delay() <= MAX_DELAY);
    }
}
