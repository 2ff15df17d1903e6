//! Video frames from RTP packets, sans-IO: packets may arrive out of order (NACK
//! retransmissions) or not at all. A frame is released when every packet from its first
//! to the one with the marker bit is present, in order. A frame that stays incomplete
//! longer than its wait ([`FRAME_WAIT`], longer on a slow path: [`FrameAssembler::set_wait`]),
//! counted from when its loss showed or, while it still streams in, from its last
//! packet, is given up; the frames after it cannot be decoded until a keyframe, which the caller
//! requests.
//!
//! Assembling on the marker bit, not on the next frame's first packet, saves a frame
//! interval of latency (33 ms at 30 fps) against webrtc-rs's `SampleBuilder`.
//!
//! When the caller tells which packets begin a frame, a lost frame costs only itself;
//! otherwise the frame after a lost one's packets is given up too (it might be the rest
//! of it).
//!
//! A packet without payload (padding only: a peer without RTX probing the path on its
//! media stream, as browsers do) fills its sequence number and belongs to no frame; it
//! neither completes nor breaks one.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;

/// How long an incomplete frame may wait for retransmissions (at least): a repair on a
/// bursty path can take several rounds, and giving up means a keyframe (decision 10).
pub const FRAME_WAIT: Duration = Duration::from_millis(250);
/// The longest wait, however slow the path.
pub const MAX_FRAME_WAIT: Duration = Duration::from_millis(1000);
/// Packets buffered at most; beyond this the oldest frame is given up.
const MAX_PACKETS: usize = 2048;
/// How often the NACK sender asks again for a missing packet, and how many times at most
/// (peer/interceptors.rs).
const NACK_INTERVAL: Duration = Duration::from_millis(25);
const NACK_ROUNDS: f64 = 16.0;
/// The weight of one sequence number in the loss average.
const LOSS_WEIGHT: f64 = 1.0 / 256.0;

#[derive(Debug)]
struct Held {
    timestamp: u32,
    marker: bool,
    /// The payload is known to begin a picture (the caller reads the codec's syntax).
    starts_frame: bool,
    payload: Bytes,
    arrived: Instant,
    /// It came after a later packet (a retransmission, or reordered on the way).
    out_of_order: bool,
}

/// A complete frame's packets, in order.
#[derive(Debug, PartialEq)]
pub struct Assembled {
    pub timestamp: u32,
    pub payloads: Vec<Bytes>,
    /// When its first packet arrived.
    pub first_arrival: Instant,
    /// One of its packets came after a later one (it waited for a repair).
    pub repaired: bool,
}

#[derive(Debug)]
pub struct FrameAssembler {
    wait: Duration,
    packets: BTreeMap<u64, Held>,
    /// Extended sequence number the next frame starts at; `None` until the first packet.
    next: Option<u64>,
    seq: super::seq::SeqExtender,
    /// Frames given up (each needs a keyframe to recover).
    pub frames_lost: u64,
    /// Packets that arrived after their frame was released or given up.
    pub packets_late: u64,
    /// The timestamp of the frame given up last, while packets of it may still come
    /// (its end was not held): they are dropped, not taken for a frame of their own.
    abandoned: Option<u32>,
    /// The newest sequence number seen, and the smoothed share missing when first due.
    highest: Option<u64>,
    loss: f64,
}

impl Default for FrameAssembler {
    fn default() -> Self {
        Self {
            wait: FRAME_WAIT,
            packets: BTreeMap::new(),
            next: None,
            seq: Default::default(),
            frames_lost: 0,
            packets_late: 0,
            abandoned: None,
            highest: None,
            loss: 0.0,
        }
    }
}

impl FrameAssembler {
    pub fn new() -> Self {
        Self::default()
    }

    /// Waits for retransmissions as long as a round trip of `rtt` needs: two round trips
    /// (a NACK may be lost too) and a NACK interval; on a lossy path, as many NACK rounds
    /// as it takes to get a packet through 99 times in 100 when each round's NACK and
    /// retransmission are both lost at the rate measured here (at 40 % loss, eleven rounds;
    /// the NACK sender asks at most sixteen times). Within `FRAME_WAIT..=MAX_FRAME_WAIT`.
    pub fn set_wait(&mut self, rtt: Duration) {
        let delivered = (1.0 - self.loss).powi(2);
        let rounds = if self.loss > 0.0 && delivered > 0.0 {
            (0.01f64.ln() / (1.0 - delivered).ln())
                .ceil()
                .min(NACK_ROUNDS)
        } else {
            0.0
        };
        let by_loss = NACK_INTERVAL.max(rtt).mul_f64(rounds) + rtt;
        self.wait = (rtt * 2 + NACK_INTERVAL)
            .max(by_loss)
            .clamp(FRAME_WAIT, MAX_FRAME_WAIT);
    }

    /// The share of packets missing when they were due (lost, or late), smoothed over
    /// the last few hundred.
    pub fn loss(&self) -> f64 {
        self.loss
    }

    /// Takes one packet, not known to begin a frame. Returns `true` if it was kept.
    pub fn push(
        &mut self,
        seq: u16,
        timestamp: u32,
        marker: bool,
        payload: Bytes,
        now: Instant,
    ) -> bool {
        self.push_packet(seq, timestamp, marker, false, payload, now)
    }

    /// Takes one packet; `starts_frame` when its payload is known to begin a frame (then,
    /// should the packets before it be lost, only they are given up: see
    /// [`Self::pop`]). Returns `true` if it was kept.
    pub fn push_packet(
        &mut self,
        seq: u16,
        timestamp: u32,
        marker: bool,
        starts_frame: bool,
        payload: Bytes,
        now: Instant,
    ) -> bool {
        let ext = self.seq.extend(seq);
        let out_of_order = self.highest.is_some_and(|highest| ext < highest);
        match self.highest {
            Some(highest) if ext > highest => {
                // Every number skipped is missing for now; a huge jump (a restarted
                // sender) counts as one.
                let missing = (ext - highest - 1).min(64) as i32;
                self.loss = self.loss * (1.0 - LOSS_WEIGHT).powi(missing + 1)
                    + (1.0 - (1.0 - LOSS_WEIGHT).powi(missing)) * (1.0 - LOSS_WEIGHT);
                self.highest = Some(ext);
            }
            Some(_) => {}
            None => self.highest = Some(ext),
        }
        let next = *self.next.get_or_insert(ext);
        if ext < next || self.packets.contains_key(&ext) {
            self.packets_late += 1;
            return false;
        }
        self.packets.insert(
            ext,
            Held {
                timestamp,
                marker,
                starts_frame,
                payload,
                arrived: now,
                out_of_order,
            },
        );
        true
    }

    /// When [`Self::pop`] may give up the frame it waits for (`None`: nothing is held):
    /// `wait` after a packet beyond its first missing one arrived (when the loss showed,
    /// and a NACK went out), or, while none has, `wait` after the last packet arrived. A
    /// frame still streaming in is not given up: at 1 Mbit/s a 640x480 keyframe takes
    /// 300 ms to arrive, and timing it from its first packet gave up every keyframe on a
    /// slow link (a loop of keyframe requests, each answered by another slow keyframe).
    pub fn poll_timeout(&self) -> Option<Instant> {
        let next = self.next?;
        let mut gap = next;
        for &seq in self.packets.range(next..).map(|(seq, _)| seq) {
            if seq != gap {
                break;
            }
            gap += 1;
        }
        let beyond_gap = self.packets.range(gap..).map(|(_, p)| p.arrived).min();
        let basis = beyond_gap.or_else(|| self.packets.values().map(|p| p.arrived).max())?;
        Some(basis + self.wait)
    }

    /// The next complete frame, if any; gives up frames that waited too long.
    /// `gave_up` is set when a frame was lost on the way (a keyframe is needed).
    pub fn pop(&mut self, now: Instant, gave_up: &mut bool) -> Option<Assembled> {
        loop {
            self.skip_padding();
            self.skip_abandoned();
            let next = self.next?;
            if let Some(frame) = self.complete_at(next) {
                return Some(frame);
            }
            // Incomplete: wait unless it waited long enough or the buffer is too full.
            let deadline = self.poll_timeout()?;
            if now < deadline && self.packets.len() < MAX_PACKETS {
                return None;
            }
            self.give_up_first_frame();
            *gave_up = true;
        }
    }

    /// Moves past padding-only packets where the next frame would start.
    fn skip_padding(&mut self) {
        while let Some(next) = self.next
            && self
                .packets
                .get(&next)
                .is_some_and(|p| p.payload.is_empty())
        {
            self.packets.remove(&next);
            self.next = Some(next + 1);
        }
    }

    /// Moves past packets of the frame given up last: a repair of its end that came
    /// after it was given up. Released, its last slice alone passed for a frame (an IDR
    /// slice of 23 bytes without its parameter sets: a decoding error, a keyframe
    /// request, and ~0.8 s frozen at 40 % loss).
    fn skip_abandoned(&mut self) {
        let Some(ts) = self.abandoned else { return };
        while let Some(next) = self.next
            && self.packets.get(&next).is_some_and(|p| p.timestamp == ts)
        {
            self.packets.remove(&next);
            self.packets_late += 1;
            self.next = Some(next + 1);
        }
    }

    fn complete_at(&mut self, next: u64) -> Option<Assembled> {
        let first = self.packets.get(&next)?;
        let timestamp = first.timestamp;
        let mut end = next;
        loop {
            let p = self.packets.get(&end)?;
            if p.payload.is_empty() {
                // Padding inside the run: not part of the frame, but not a hole either.
                end += 1;
                continue;
            }
            if p.timestamp != timestamp {
                // A new frame began without a marker on the last one: release what we
                // have as the frame (the decoder judges it).
                end -= 1;
                break;
            }
            if p.marker {
                break;
            }
            end += 1;
        }
        let mut payloads = Vec::with_capacity((end - next + 1) as usize);
        let mut first_arrival = None;
        let mut repaired = false;
        for seq in next..=end {
            if let Some(p) = self.packets.remove(&seq)
                && !p.payload.is_empty()
            {
                first_arrival.get_or_insert(p.arrived);
                repaired |= p.out_of_order;
                payloads.push(p.payload);
            }
        }
        self.next = Some(end + 1);
        self.abandoned = None;
        Some(Assembled {
            timestamp,
            payloads,
            first_arrival: first_arrival?,
            repaired,
        })
    }

    /// Drops the packets of the earliest frame we hold and moves on to the packet after
    /// the last of them — or, when none of the lost frame's packets is held and the
    /// earliest held one begins a frame, moves on to that. Only a packet that follows a
    /// frame's last packet, or whose payload says so, is known to start a frame: moving on to the next packet held instead released frames whose
    /// first packets were lost (a keyframe without its start: a corrupt picture and
    /// another keyframe request, over and over on a congested link). If that packet
    /// never comes, the frame it starts is given up in turn.
    fn give_up_first_frame(&mut self) {
        self.frames_lost += 1;
        let Some((&first, held)) = self.packets.iter().next() else {
            return;
        };
        if self.next.is_some_and(|next| next < first) && held.starts_frame {
            // Everything from the expected start up to this packet is missing, and this
            // packet begins a frame: what was lost was whole frames before it. At low
            // rates a frame is one packet, and without knowing where frames start the
            // one after every lost frame was given up too (a picture that needed no
            // keyframe lost with one that did).
            self.next = Some(first);
            return;
        }
        let ts = held.timestamp;
        self.abandoned = Some(ts);
        let mut after = first;
        while let Some((&seq, p)) = self.packets.iter().next() {
            if p.timestamp != ts {
                break;
            }
            after = seq + 1;
            self.packets.remove(&seq);
        }
        self.next = Some(after);
    }
}

#[cfg(test)]
mod tests;
