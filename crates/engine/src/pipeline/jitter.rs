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
//!
//! Frames are placed by their RTP timestamp (20 ms, 960 ticks, a frame), not their
//! sequence number: a sender in discontinuous transmission (Opus DTX) sends nothing for
//! most of a silence, so its packets' numbers run on while their timestamps jump. After
//! a DTX frame (the sender fell silent) what does not come was not sent: the decoder
//! makes comfort noise, which is not concealment, and the clock runs on through the
//! silence at the same delay, so the next talkspurt plays as the last one did; its first
//! packet, if later than that, takes the clock back to it.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use chingu_media::opus_codec::is_dtx_packet;

/// Starting (and minimum) playout delay.
pub const MIN_DELAY: Duration = Duration::from_millis(40);
/// Never more than this, however bad the network.
pub const MAX_DELAY: Duration = Duration::from_millis(400);
const FRAME: Duration = Duration::from_millis(20);
/// RTP ticks (48 kHz) in a frame.
const FRAME_TICKS: u64 = 960;
/// A packet this many frames past the one due restarts the buffer.
const RESTART_FRAMES: u64 = 50;
/// The furthest back a talkspurt's late first packet takes the clock (the delay's most).
const MAX_REWIND: u64 = MAX_DELAY.as_millis() as u64 / 20;

/// What to play for this tick.
#[derive(Debug, PartialEq)]
pub enum Playout {
    /// Not started, or stopped after a long silence: play nothing.
    Waiting,
    Packet(Bytes),
    /// The sender is in DTX (silent) and sent nothing for this frame: comfort noise.
    ComfortNoise,
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
    clock: super::seq::TimestampExtender,
    started: bool,
    target: Duration,
    /// The least target (more while redundant copies come from further back).
    min_delay: Duration,
    /// Running arrival jitter estimate (RFC 3550 style), from inter-arrival deviations.
    jitter: Duration,
    last_arrival: Option<(u64, Instant)>,
    /// How long packets take to arrive, against 20 ms per frame.
    transit: TransitFloor,
    /// Consecutive ticks without a packet; playout pauses after a while (a sender
    /// that stopped sending without DTX).
    missing_run: u32,
    /// The last frame played was a DTX frame: the sender is silent.
    dtx: bool,
    /// The last frame played from a packet.
    last_played: Option<u64>,
    // W3C-style counters.
    pub emitted: u64,
    pub total_delay: Duration,
    pub concealed: u64,
    pub fec_recovered: u64,
    /// Frames of comfort noise while the sender was silent (DTX), not concealment.
    pub comfort_noise: u64,
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

    /// The frame an RTP timestamp (48 kHz) falls in.
    fn frame(&mut self, timestamp: u32) -> u64 {
        self.clock.extend(timestamp) / FRAME_TICKS
    }

    /// A copy of the frame at `timestamp` from a later packet's redundancy: kept if that
    /// frame is still to be played and did not arrive itself. Arrival statistics are the
    /// packets' own; a copy that is not needed is not counted as late.
    pub fn push_copy(&mut self, timestamp: u32, payload: Bytes, now: Instant) {
        let ext = self.frame(timestamp);
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

    /// The packet of the frame at `timestamp` (48 kHz).
    pub fn push(&mut self, timestamp: u32, payload: Bytes, now: Instant) {
        let ext = self.frame(timestamp);
        if self.next.is_some_and(|n| ext > n + RESTART_FRAMES) {
            // The peer's clock jumped a second or more ahead (a sender that restarted):
            // start afresh from this packet rather than wait for its time to come.
            self.restart();
            self.packets.clear();
            self.last_arrival = None;
        }
        if self.dtx
            && self.last_played.is_some_and(|p| ext > p)
            && self.next.is_some_and(|n| ext < n && n - ext <= MAX_REWIND)
        {
            // A talkspurt's first packet, later than the clock that ran on through the
            // silence: go back to it (the clock passed comfort noise, not packets), so
            // the delay grows, as when a late packet is waited for.
            self.next = Some(ext);
        }
        if self.next.is_some_and(|n| ext < n) || self.packets.contains_key(&ext) {
            self.late += 1;
            return;
        }
        // Jitter: how far this packet's arrival strays from 20 ms per frame.
        if let Some((prev, prev_at)) = self.last_arrival
            && ext > prev
        {
            let expected = FRAME * (ext - prev).min(50) as u32;
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
            && let Some((&oldest, _)) = self.packets.iter().next()
        {
            self.packets.remove(&oldest);
            self.discarded += 1;
            self.next = Some(self.next.map_or(oldest + 1, |n| n.max(oldest + 1)));
        }
        let Some(next) = self.next else {
            return Playout::Waiting;
        };
        if let Some(held) = self.packets.remove(&next) {
            self.next = Some(next + 1);
            self.missing_run = 0;
            self.emitted += 1;
            self.total_delay += now.duration_since(held.arrived);
            self.dtx = is_dtx_packet(&held.payload);
            self.last_played = Some(next);
            return Playout::Packet(held.payload);
        }
        if self.dtx {
            // The sender is silent: this frame was not sent. The clock moves on once the
            // frame would have come by now (its soonest arrival, the target ago) had it
            // been sent, so through the silence the delay stays what it was (at least
            // the target) and the next talkspurt plays as the last one did. (Bringing it
            // down to the target in each silence, as first written, made each talkspurt
            // wait out its late packets again: ±30 ms of jitter, 0 → 0.8–1.4 % of audio
            // concealed.)
            let due = self.transit.earliest_arrival(next);
            if due.is_none_or(|due| now.saturating_duration_since(due) >= self.target) {
                self.next = Some(next + 1);
            }
            self.comfort_noise += 1;
            return Playout::ComfortNoise;
        }
        self.missing_run += 1;
        if self.packets.is_empty() && self.missing_run > 25 {
            // Half a second of nothing: the sender stopped (without DTX). Restart on the
            // next packet with a fresh delay instead of concealing forever.
            self.restart();
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

impl JitterBuffer {
    /// Back to waiting for a first packet, which will wait the target again.
    fn restart(&mut self) {
        self.started = false;
        self.next = None;
        self.dtx = false;
        self.transit = TransitFloor::default();
    }
}

/// Packets' transit time (arrival against 20 ms per frame, from the first
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
    fn newest(&mut self, frame: u64, at: Instant) {
        let (frame0, t0) = *self.origin.get_or_insert((frame, at));
        let elapsed = at.saturating_duration_since(t0).as_micros() as i64;
        let expected = frame.saturating_sub(frame0) as i64 * FRAME.as_micros() as i64;
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

    /// The soonest `frame` could have arrived: at the path's least transit.
    fn earliest_arrival(&self, frame: u64) -> Option<Instant> {
        let (frame0, t0) = self.origin?;
        let floor = self.floor.min(self.previous_floor);
        let offset_us = frame.checked_sub(frame0)? as i64 * FRAME.as_micros() as i64 + floor;
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
mod tests;
