//! The audio jitter buffer, sans-IO: packets go in as they arrive; the playout clock
//! takes one 20 ms frame out per tick, as a packet, as FEC recovered from the packet after
//! a lost one, or as concealment. Playout starts once the first packet has waited the
//! target delay; the target grows with observed arrival jitter. A packet that is late
//! (nothing after it has arrived either) is waited for, concealing meanwhile, so a queue
//! building on the path raises the delay instead of losing every late packet; the buffer
//! is trimmed a frame at a time when it runs far ahead of its target. Copies of frames
//! from a later packet's redundancy (RED) fill in what was lost; while copies come, the
//! target covers the distance they arrive from, and a missing frame whose soonest
//! possible arrival (at the path's least transit) is less than the target ago is waited
//! for, concealing meanwhile (the delay grows to the target), rather than skipped.

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
    /// The least target (more while redundant copies come from further back).
    min_delay: Duration,
    /// Running arrival jitter estimate (RFC 3550 style), from inter-arrival deviations.
    jitter: Duration,
    last_arrival: Option<(u64, Instant)>,
    /// How long packets take to arrive, against 20 ms per sequence number.
    transit: TransitFloor,
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
            min_delay: MIN_DELAY,
            ..Self::default()
        }
    }

    /// Raises (or lowers back) the least delay: redundant copies `n` frames back arrive
    /// `n` frames late, and are only of use if the buffer waits that long.
    pub fn set_min_delay(&mut self, min: Duration) {
        self.min_delay = min.clamp(MIN_DELAY, MAX_DELAY);
        self.target = (self.min_delay.max(self.jitter * 3)).min(MAX_DELAY);
    }

    /// A copy of frame `seq` from a later packet's redundancy: kept if that frame is
    /// still to be played and did not arrive itself. Arrival statistics are the
    /// packets' own; a copy that is not needed is not counted as late.
    pub fn push_copy(&mut self, seq: u16, payload: Bytes, now: Instant) {
        let ext = self.seq.extend(seq);
        if self.next.is_some_and(|n| ext < n) || self.packets.contains_key(&ext) {
            return;
        }
        self.packets.insert(
            ext,
            Held {
                payload,
                arrived: now,
            },
        );
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
            self.target = (self.min_delay.max(self.jitter * 3)).min(MAX_DELAY);
        }
        if self.last_arrival.is_none_or(|(s, _)| ext > s) {
            self.last_arrival = Some((ext, now));
            self.transit.newest(ext, now);
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
        // Running far ahead of the target (the burst after a queue on the path drained):
        // drop the oldest, one per tick, so the delay comes down in 20 ms steps rather
        // than in one jump.
        let max_held = (self.target.as_millis() / FRAME.as_millis()) as usize + 5;
        if self.packets.len() > max_held
            && let Some((&seq, _)) = self.packets.iter().next()
        {
            self.packets.remove(&seq);
            self.discarded += 1;
            self.next = Some(self.next.map_or(seq + 1, |n| n.max(seq + 1)));
        }
        let Some(next) = self.next else {
            return Playout::Waiting;
        };
        if let Some(held) = self.packets.remove(&next) {
            self.next = Some(next + 1);
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
            self.transit = TransitFloor::default();
            return Playout::Waiting;
        }
        if self.packets.is_empty() && self.transit.queued() {
            // Nothing after it has come either, and the last packet came late: a queue on
            // the path is growing, so this one is late rather than lost. Conceal this tick
            // and keep waiting for it: the delay grows by 20 ms, where moving on would
            // throw away every packet that arrives late for as long as the queue stands
            // (NetEq's "expand"). Without a queue (random loss) it is lost: move on.
            self.concealed += 1;
            return Playout::Conceal;
        }
        // Played sooner after it was due to arrive than the target (the target rose, or
        // the path got faster): wait this one out, concealing — the delay grows a frame,
        // and its copy in a later packet may still come.
        if self
            .transit
            .earliest_arrival(next)
            .is_some_and(|due| now.saturating_duration_since(due) < self.target)
        {
            self.concealed += 1;
            return Playout::Conceal;
        }
        self.next = Some(next + 1);
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

/// Packets' transit time (arrival against 20 ms per sequence number, from the first
/// packet: the sender's clock is not known, only differences matter) and its floor over
/// the last 5–10 s (the path without a queue; windowed, so clock drift between the two
/// ends does not build up).
#[derive(Debug, Default)]
struct TransitFloor {
    origin: Option<(u64, Instant)>,
    /// The newest packet's transit, µs.
    newest: i64,
    floor: i64,
    previous_floor: i64,
    window_start: Option<Instant>,
}

/// Transit this far above the floor means packets queue somewhere on the path.
const QUEUED: Duration = FRAME;
const FLOOR_WINDOW: Duration = Duration::from_secs(5);

impl TransitFloor {
    fn newest(&mut self, seq: u64, at: Instant) {
        let (seq0, t0) = *self.origin.get_or_insert((seq, at));
        let elapsed = at.saturating_duration_since(t0).as_micros() as i64;
        let expected = seq.saturating_sub(seq0) as i64 * FRAME.as_micros() as i64;
        let transit = elapsed - expected;
        self.newest = transit;
        match self.window_start {
            Some(start) if at.duration_since(start) < FLOOR_WINDOW => {
                self.floor = self.floor.min(transit);
            }
            Some(_) => {
                self.previous_floor = self.floor;
                self.floor = transit;
                self.window_start = Some(at);
            }
            None => {
                (self.floor, self.previous_floor) = (transit, transit);
                self.window_start = Some(at);
            }
        }
    }

    /// The soonest frame `seq` could have arrived: at the path's least transit.
    fn earliest_arrival(&self, seq: u64) -> Option<Instant> {
        let (seq0, t0) = self.origin?;
        let floor = self.floor.min(self.previous_floor);
        let offset_us = seq.checked_sub(seq0)? as i64 * FRAME.as_micros() as i64 + floor;
        let offset = Duration::from_micros(offset_us.unsigned_abs());
        if offset_us >= 0 {
            t0.checked_add(offset)
        } else {
            t0.checked_sub(offset)
        }
    }

    fn queued(&self) -> bool {
        let floor = self.floor.min(self.previous_floor);
        self.window_start.is_some() && self.newest - floor > QUEUED.as_micros() as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(x: u8) -> Bytes {
        Bytes::from(vec![x])
    }

    #[test]
    fn a_copy_fills_a_loss_and_the_delay_grows_to_cover_the_copies() {
        let frame = Duration::from_millis(20);
        let t0 = Instant::now();
        let at = |n: u32| t0 + frame * n;
        let mut j = JitterBuffer::new();
        // A packet every 20 ms; playout starts 40 ms after the first.
        j.push(1, p(1), at(1));
        j.push(2, p(2), at(2));
        assert_eq!(j.pop(at(3)), Playout::Packet(p(1)));
        // Copies now come from two frames back: the target covers them.
        j.set_min_delay(MIN_DELAY + frame);
        assert_eq!(j.target_delay(), Duration::from_millis(60));
        j.push(4, p(4), at(4));
        assert_eq!(j.pop(at(4)), Playout::Packet(p(2)));
        // 3 was lost; its copy comes with 5, just after 3 is due. The buffer holds less
        // than its target, so it waits a frame instead of moving on ...
        assert_eq!(j.pop(at(5)), Playout::Conceal);
        j.push(5, p(5), at(5));
        j.push_copy(3, p(3), at(5));
        // ... and plays the copy.
        assert_eq!(j.pop(at(6)), Playout::Packet(p(3)));
        j.push(6, p(6), at(6));
        // A copy of a frame that came itself, and one of a frame already played: ignored.
        j.push_copy(5, p(99), at(6));
        j.push_copy(1, p(98), at(6));
        assert_eq!(j.pop(at(7)), Playout::Packet(p(4)));
        assert_eq!(j.pop(at(8)), Playout::Packet(p(5)));
        assert_eq!(
            (j.concealed, j.late),
            (1, 0),
            "unneeded copies are not late"
        );
    }

    #[test]
    fn at_its_target_a_loss_is_skipped_not_waited_for() {
        let frame = Duration::from_millis(20);
        let t0 = Instant::now();
        let mut j = JitterBuffer::new();
        // 40 ms target; 1, 2, 4, 5 arrive; 3 never does.
        let mut out = Vec::new();
        for seq in [1u16, 2, 4, 5, 6] {
            let t = t0 + frame * u32::from(seq);
            j.push(seq, p(seq as u8), t);
            out.push(j.pop(t));
        }
        assert!(out.contains(&Playout::Fec(p(4))), "{out:?}");
        assert_eq!(j.concealed, 0);
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
        assert_eq!(j.pop(t + FRAME), Playout::Packet(p(2)));
        assert_eq!(j.pop(t + FRAME * 2), Playout::Packet(p(3)));
        assert_eq!(
            j.pop(t + FRAME * 3),
            Playout::Fec(p(5)),
            "4 lost, 5 carries its FEC"
        );
        assert_eq!(j.pop(t + FRAME * 4), Playout::Packet(p(5)));
        assert_eq!(j.pop(t + FRAME * 5), Playout::Conceal);
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
    fn a_delay_that_grows_is_waited_out_not_thrown_away() {
        let t0 = Instant::now();
        let mut j = JitterBuffer::new();
        // Packets every 20 ms; from packet 10 on a queue on the path holds each one
        // 10 ms longer than the one before, up to 100 ms (video filling a bottleneck).
        let arrival = |i: u16| {
            let extra = u64::from(i.saturating_sub(9).min(10)) * 10;
            t0 + FRAME * u32::from(i) + Duration::from_millis(extra)
        };
        let mut pushed = 0u16;
        let mut played = Vec::new();
        let mut t = t0;
        while played.len() < 40 {
            while pushed < 60 && arrival(pushed) <= t {
                j.push(pushed, p(pushed as u8), arrival(pushed));
                pushed += 1;
            }
            match j.pop(t) {
                Playout::Packet(b) => played.push(Some(b[0])),
                Playout::Conceal => played.push(None),
                Playout::Waiting => {}
                Playout::Fec(_) => panic!("nothing was lost"),
            }
            t += FRAME;
        }
        let packets: Vec<u8> = played.iter().flatten().copied().collect();
        assert_eq!(
            packets,
            (0..packets.len() as u8).collect::<Vec<_>>(),
            "every packet played, in order: {played:?}"
        );
        assert_eq!(j.late, 0);
        assert_eq!(
            j.concealed, 3,
            "once, for the 100 ms the delay grew by less the 40 ms it already had"
        );
    }

    #[test]
    fn without_a_queue_a_missing_packet_is_lost_not_waited_for() {
        let t0 = Instant::now();
        let mut j = JitterBuffer::new();
        // On time every 20 ms, but 10, 11 and 12 never come.
        let mut t = t0;
        let mut played = Vec::new();
        for tick in 0..20u16 {
            if !(10..=12).contains(&tick) {
                j.push(tick, p(tick as u8), t);
            }
            played.push(j.pop(t));
            t += FRAME;
        }
        let at = |seq: u8| played.iter().position(|x| *x == Playout::Packet(p(seq)));
        assert_eq!(at(13), at(9).map(|i| i + 4), "13 plays on time: {played:?}");
        assert_eq!((j.concealed, j.fec_recovered), (2, 1));
    }

    #[test]
    fn a_burst_after_a_stall_is_trimmed_a_frame_at_a_time() {
        let t0 = Instant::now();
        let mut j = JitterBuffer::new();
        j.push(0, p(0), t0);
        assert_eq!(j.pop(t0 + MIN_DELAY), Playout::Packet(p(0)));
        // Twenty packets arrive at once, far more than the 40 ms target holds.
        let t = t0 + MIN_DELAY + FRAME;
        for i in 1..=20u16 {
            j.push(i, p(i as u8), t);
        }
        let mut played = Vec::new();
        for tick in 0..20u32 {
            let before = j.discarded;
            if let Playout::Packet(b) = j.pop(t + FRAME * tick) {
                played.push(b[0]);
            }
            assert!(j.discarded - before <= 1, "one dropped per tick at most");
        }
        assert!(
            played.windows(2).all(|w| w[0] < w[1]),
            "in order: {played:?}"
        );
        // 20 held: each tick drops one and plays one until 7 (40 ms + 5 frames) are left.
        assert_eq!(j.discarded, 7);
        assert_eq!(played.len(), 13);
        assert_eq!(played.last(), Some(&20));
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

    /// Packets every 20 ms with 0–20 ms of jitter, `loss` % of them lost at random, each
    /// carrying `copies` earlier frames (RED) from the 50th on, as a sender does once it
    /// has heard of the loss; returns the share of frames concealed, %.
    fn concealed_pct(loss: u32, copies: u16) -> f64 {
        let t0 = Instant::now();
        let mut j = JitterBuffer::new();
        let mut x = 0x2545_f491u32;
        let mut random = || {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        };
        let frames = 5000u32;
        let mut arrivals: Vec<(u64, u16)> = (0..frames)
            .filter_map(|seq| {
                let lost = random() % 100 < loss;
                let jitter_us = u64::from(random() % 20_000);
                (!lost).then_some((u64::from(seq) * 20_000 + 10_000 + jitter_us, seq as u16))
            })
            .collect();
        arrivals.sort_unstable();
        let mut arrivals = arrivals.into_iter().peekable();
        let (mut played, mut concealed) = (0u32, 0u32);
        for tick in 0..u64::from(frames) {
            let now_us = tick * 20_000;
            while let Some((at_us, seq)) = arrivals.next_if(|&(at, _)| at <= now_us) {
                let at = t0 + Duration::from_micros(at_us);
                let carried = if seq >= 50 { copies } else { 0 };
                for back in (1..=carried).filter(|&b| b <= seq) {
                    j.push_copy(seq - back, p(0), at);
                }
                if carried > 0 {
                    j.set_min_delay(MIN_DELAY + FRAME * u32::from(carried - 1));
                }
                j.push(seq, p(1), at);
            }
            match j.pop(t0 + Duration::from_micros(now_us)) {
                Playout::Waiting => {}
                Playout::Conceal => (played, concealed) = (played + 1, concealed + 1),
                _ => played += 1,
            }
        }
        f64::from(concealed) * 100.0 / f64::from(played)
    }

    #[test]
    fn redundancy_keeps_audio_going_through_heavy_random_loss() {
        // Opus's own FEC alone: a frame is concealed when it and the next are lost.
        let alone = concealed_pct(40, 0);
        assert!((12.0..20.0).contains(&alone), "{alone}");
        // Three copies (the sender's choice above 25 % loss): the delay grows to cover
        // them, and a frame is lost only if four packets in a row are.
        let red = concealed_pct(40, 3);
        assert!(
            red < 3.0,
            "{red} % concealed with three copies at 40 % loss"
        );
        // And no loss, no concealment, whatever the copies.
        assert_eq!(concealed_pct(0, 2), 0.0);
    }
}
