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
}

/// A complete frame's packets, in order.
#[derive(Debug, PartialEq)]
pub struct Assembled {
    pub timestamp: u32,
    pub payloads: Vec<Bytes>,
    /// When its first packet arrived.
    pub first_arrival: Instant,
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
        for seq in next..=end {
            if let Some(p) = self.packets.remove(&seq)
                && !p.payload.is_empty()
            {
                first_arrival.get_or_insert(p.arrived);
                payloads.push(p.payload);
            }
        }
        self.next = Some(end + 1);
        Some(Assembled {
            timestamp,
            payloads,
            first_arrival: first_arrival?,
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
mod tests {
    use super::*;

    fn b(x: u8) -> Bytes {
        Bytes::from(vec![x])
    }

    /// A small seeded pseudo-random sequence for the tests.
    fn xorshift(mut x: u32) -> u32 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    }

    #[test]
    fn in_order_frames_come_out_on_the_marker() {
        let now = Instant::now();
        let mut a = FrameAssembler::new();
        let mut lost = false;
        a.push(10, 100, false, b(1), now);
        assert_eq!(a.pop(now, &mut lost), None);
        a.push(11, 100, true, b(2), now);
        let f = a.pop(now, &mut lost).expect("frame");
        assert_eq!((f.timestamp, f.payloads), (100, vec![b(1), b(2)]));
        a.push(12, 200, true, b(3), now);
        assert_eq!(a.pop(now, &mut lost).unwrap().timestamp, 200);
        assert!(!lost);
    }

    #[test]
    fn after_a_loss_a_frame_whose_start_is_missing_is_never_released() {
        let now = Instant::now();
        let mut a = FrameAssembler::new();
        let mut lost = false;
        // Frame 100: packet 2 (its end) lost. Frame 200: packet 3 (its start) lost.
        // Frame 300: whole.
        a.push(1, 100, false, b(1), now);
        a.push(4, 200, false, b(4), now);
        a.push(5, 200, true, b(5), now);
        a.push(6, 300, true, b(6), now);
        let later = now + FRAME_WAIT;
        let f = a.pop(later, &mut lost).expect("frame 300");
        assert!(lost);
        assert_eq!(
            (f.timestamp, f.payloads),
            (300, vec![b(6)]),
            "frame 200 lacks its first packet"
        );
        assert_eq!(a.frames_lost, 2);
    }

    #[test]
    fn a_frame_lost_whole_costs_only_itself_when_the_next_packet_is_known_to_start_one() {
        let now = Instant::now();
        let later = now + FRAME_WAIT;
        let mut lost = false;
        // One packet per frame; frame 200 (packet 2) lost whole.
        let mut knowing = FrameAssembler::new();
        knowing.push_packet(1, 100, true, true, b(1), now);
        knowing.push_packet(3, 300, true, true, b(3), now);
        knowing.push_packet(4, 400, true, true, b(4), now);
        assert_eq!(
            knowing.pop(now, &mut lost).expect("frame 100").timestamp,
            100
        );
        assert_eq!(
            knowing.pop(now, &mut lost),
            None,
            "waits for a repair first"
        );
        let out: Vec<u32> = std::iter::from_fn(|| knowing.pop(later, &mut lost))
            .map(|f| f.timestamp)
            .collect();
        assert_eq!(out, [300, 400]);
        assert!(lost);
        assert_eq!(knowing.frames_lost, 1);
        // Not knowing where frames start, packet 3 might be the rest of frame 200: it is
        // given up too.
        let mut blind = FrameAssembler::new();
        for (seq, ts) in [(1, 100), (3, 300), (4, 400)] {
            blind.push(seq, ts, true, b(seq as u8), now);
        }
        let out: Vec<u32> = std::iter::from_fn(|| blind.pop(later, &mut lost))
            .map(|f| f.timestamp)
            .collect();
        assert_eq!(out, [100, 400]);
        // A frame whose start is held but whose middle is lost is still given up whole.
        let mut a = FrameAssembler::new();
        a.push_packet(1, 100, false, true, b(1), now);
        a.push_packet(3, 100, true, false, b(3), now);
        a.push_packet(4, 200, true, true, b(4), now);
        let out: Vec<u32> = std::iter::from_fn(|| a.pop(later, &mut lost))
            .map(|f| f.timestamp)
            .collect();
        assert_eq!(out, [200]);
    }

    #[test]
    fn a_retransmitted_packet_completes_the_frame() {
        let now = Instant::now();
        let mut a = FrameAssembler::new();
        let mut lost = false;
        a.push(1, 100, false, b(1), now);
        a.push(3, 100, true, b(3), now);
        a.push(4, 200, true, b(4), now);
        assert_eq!(a.pop(now, &mut lost), None, "packet 2 missing");
        a.push(2, 100, false, b(2), now + Duration::from_millis(40));
        let f = a.pop(now, &mut lost).unwrap();
        assert_eq!(f.payloads, vec![b(1), b(2), b(3)]);
        assert_eq!(a.pop(now, &mut lost).unwrap().timestamp, 200);
        assert!(!lost);
    }

    #[test]
    fn the_timeout_runs_from_when_the_loss_showed() {
        let now = Instant::now();
        let mut a = FrameAssembler::new();
        assert_eq!(a.poll_timeout(), None, "nothing held, nothing to wait for");
        a.push(1, 100, false, b(1), now);
        // Packet 2 is missing; 3 shows it at +5 ms.
        let showed = now + Duration::from_millis(5);
        a.push(3, 100, true, b(3), showed);
        assert_eq!(a.poll_timeout(), Some(showed + FRAME_WAIT));
        let mut lost = false;
        assert_eq!(
            a.pop(showed + FRAME_WAIT - Duration::from_millis(1), &mut lost),
            None
        );
        assert!(!lost, "not yet");
        assert_eq!(a.pop(showed + FRAME_WAIT, &mut lost), None);
        assert!(lost, "given up at the timeout");
        assert_eq!(a.poll_timeout(), None);
    }

    #[test]
    fn a_frame_streaming_in_slowly_is_not_given_up() {
        let now = Instant::now();
        let mut a = FrameAssembler::new();
        let mut lost = false;
        // A keyframe of 40 packets, one every 10 ms (400 ms, far over the wait).
        let mut t = now;
        for seq in 1..=40u16 {
            a.push(seq, 100, seq == 40, b(seq as u8), t);
            if seq < 40 {
                assert_eq!(a.pop(t, &mut lost), None);
                assert_eq!(
                    a.poll_timeout(),
                    Some(t + FRAME_WAIT),
                    "from the last packet"
                );
            }
            t += Duration::from_millis(10);
        }
        let f = a.pop(t, &mut lost).expect("the whole keyframe");
        assert_eq!(f.payloads.len(), 40);
        assert!(!lost);
        // One whose end never comes is given up once nothing more arrived for the wait.
        a.push(41, 200, false, b(41), t);
        assert_eq!(
            a.pop(t + FRAME_WAIT - Duration::from_millis(1), &mut lost),
            None
        );
        assert_eq!(a.pop(t + FRAME_WAIT, &mut lost), None);
        assert!(lost);
    }

    #[test]
    fn a_frame_that_never_completes_is_given_up() {
        let now = Instant::now();
        let mut a = FrameAssembler::new();
        let mut lost = false;
        a.push(1, 100, false, b(1), now);
        a.push(3, 100, true, b(3), now);
        a.push(4, 200, false, b(4), now);
        a.push(5, 200, true, b(5), now);
        assert_eq!(a.pop(now, &mut lost), None);
        let later = now + FRAME_WAIT;
        let f = a.pop(later, &mut lost).expect("the next frame");
        assert!(lost);
        assert_eq!(f.timestamp, 200);
        assert_eq!(a.frames_lost, 1);
        // The lost packet arriving now is late, not a new frame.
        assert!(!a.push(2, 100, false, b(2), later));
    }

    #[test]
    fn heavy_loss_waits_for_more_nack_rounds() {
        let now = Instant::now();
        let rtt = Duration::from_millis(2);
        let mut clean = FrameAssembler::new();
        let mut lossy = FrameAssembler::new();
        let mut lost = false;
        let mut x = 0x2545_f491u32;
        for seq in 0..2000u16 {
            clean.push(seq, u32::from(seq), true, b(0), now);
            while clean.pop(now, &mut lost).is_some() {}
            x = xorshift(x);
            // 40 % never come.
            if x % 10 >= 4 {
                lossy.push(seq, u32::from(seq), true, b(0), now);
            }
        }
        assert_eq!(clean.loss(), 0.0);
        assert!((0.3..0.5).contains(&lossy.loss()), "{}", lossy.loss());
        clean.set_wait(rtt);
        lossy.set_wait(rtt);
        assert_eq!(clean.wait, FRAME_WAIT);
        // About eleven NACK rounds 25 ms apart (as many as 40 % loss of each NACK and
        // each repair needs) and a round trip; never more rounds than the NACK sender asks.
        let rounds = (lossy.wait - rtt).as_secs_f64() / NACK_INTERVAL.as_secs_f64();
        assert!((8.0..=NACK_ROUNDS).contains(&rounds), "{rounds} rounds");
    }

    #[test]
    fn padding_only_packets_cost_no_frame() {
        let now = Instant::now();
        let mut a = FrameAssembler::new();
        let mut lost = false;
        let pad = Bytes::new;
        // Padding before the first frame, between frames (with the last frame's
        // timestamp, as browsers send it), inside a frame's run, and after a frame whose
        // retransmission is still on its way.
        a.push(1, 100, false, pad(), now);
        a.push(2, 100, true, b(2), now);
        a.push(3, 100, false, pad(), now);
        a.push(4, 100, false, pad(), now);
        a.push(5, 200, false, b(5), now);
        a.push(6, 200, false, pad(), now);
        a.push(7, 200, true, b(7), now);
        let f = a.pop(now, &mut lost).expect("frame 100");
        assert_eq!((f.timestamp, f.payloads), (100, vec![b(2)]));
        let f = a.pop(now, &mut lost).expect("frame 200");
        assert_eq!((f.timestamp, f.payloads), (200, vec![b(5), b(7)]));
        a.push(9, 300, true, b(9), now);
        a.push(10, 300, false, pad(), now);
        a.push(11, 400, true, b(11), now);
        assert_eq!(a.pop(now, &mut lost), None, "packet 8 is missing");
        a.push(8, 300, false, b(8), now + Duration::from_millis(30));
        let f = a.pop(now, &mut lost).expect("frame 300");
        assert_eq!(f.payloads, vec![b(8), b(9)]);
        assert_eq!(a.pop(now, &mut lost).expect("frame 400").timestamp, 400);
        assert_eq!(a.pop(now + MAX_FRAME_WAIT, &mut lost), None);
        assert!(!lost, "nothing was given up");
        assert_eq!(a.frames_lost, 0);
        assert!(a.packets.is_empty());
    }

    #[test]
    fn sequence_numbers_wrap() {
        let now = Instant::now();
        let mut a = FrameAssembler::new();
        let mut lost = false;
        a.push(65_535, 100, false, b(1), now);
        a.push(0, 100, true, b(2), now);
        assert_eq!(a.pop(now, &mut lost).unwrap().payloads.len(), 2);
        a.push(1, 200, true, b(3), now);
        assert_eq!(a.pop(now, &mut lost).unwrap().timestamp, 200);
    }

    #[test]
    fn duplicates_and_garbage_never_panic() {
        let now = Instant::now();
        let mut a = FrameAssembler::new();
        let mut lost = false;
        let mut x = 0x1234_5678u32;
        for i in 0..20_000u32 {
            x = xorshift(x);
            a.push(x as u16, x >> 8, x & 3 == 0, b(x as u8), now);
            let t = now + Duration::from_millis(u64::from(i / 10));
            while a.pop(t, &mut lost).is_some() {}
        }
        assert!(a.packets.len() <= MAX_PACKETS + 1);
    }
}
