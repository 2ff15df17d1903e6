//! A budget for retransmissions: an interceptor between webrtc-rs's NACK responder and the
//! transport-wide numbering that lets a retransmitted packet through only while
//! retransmissions stay under a share of the congestion-control target.
//!
//! Without it the responder answers every NACK at once, outside the video writer's pacing:
//! on a link that was already full, the retransmissions of what the full queue dropped
//! were dropped in turn, asked for again, and became most of what was sent (measured:
//! 70 % loss on a 1 Mbit/s uplink with a 850 kbit/s target). A retransmission is a packet
//! on a stream's RTX SSRC (RFC 4588, when the peer negotiated it), or, without RTX, one
//! whose sequence number is not newer than the newest sent on its SSRC.
//!
//! On a path that loses packets at random (the peer reports 10 % or more and it shows no
//! queue: [`Bandwidth::random_loss`]) a repair takes a round of NACK and
//! retransmission, and each is lost at that rate: at 40 % a round succeeds 36 times in
//! 100 and a frame waited for several (each wait long enough is a freeze). Here both are
//! sent twice, so a round succeeds 70 times in 100 at 40 %: repairs (while the budget
//! allows the copy), and the NACKs and keyframe requests we send. A repair asked for
//! again within [`ANSWERED_WINDOW`] (the peer's second copy of a NACK) is not sent again.
//! From [`COPY_ALL_FROM_LOSS_PERMILLE`] on, on a path with no bottleneck, video packets go
//! twice as they are first sent too, so that most need no repair at all. A second copy counts against the same
//! budget as repairs; the peer drops whichever copy arrives second (an SRTP replay), and
//! the estimator leaves second copies out of the loss it counts (bwe/coverage.rs).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use rtc::interceptor::{Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::sansio::Protocol;
use rtc::shared::marshal::MarshalSize;

use crate::packets::{Bandwidth, CONGESTED_QUEUE_MS};

/// Retransmissions may use this share of the target (on top of it: the encoder is
/// given 90 % of what audio leaves, pipeline/ladder.rs) while the path shows no queue
/// (random loss: at 20 % it takes a quarter of the rate to repair, and retransmissions
/// are lost too), more when the loss the peer reports needs it: repairing a loss rate
/// `p` takes `p / (1 - p)` of the rate (every retransmission is lost at `p` too), with
/// half as much again for repeated NACKs, up to [`MAX_SHARE`] ...
const SHARE: f64 = 0.5;
const MAX_SHARE: f64 = 1.5;
/// ... and this share while it does (congestion: what is resent competes with what is
/// new for a link that is already full).
const CONGESTED_SHARE: f64 = 0.15;
/// ... and burst up to this many seconds of it.
const BURST_S: f64 = 0.1;
/// Always affordable: one full packet ...
const MIN_BURST_BITS: f64 = 1500.0 * 8.0;
/// ... and, while repairs go twice (random loss, no queue), the repairs of a frame: eight
/// packets, twice. With one packet, at 40 % loss and a 150 kbit/s target, the budget let
/// a packet through every ~50 ms and refused more than half of all repairs; frames
/// waited past their deadline and were given up (26 in a 20 s call, `bench --net
/// loss40,seed=1`; 4 with this).
const LOSSY_BURST_BITS: f64 = 16.0 * 1200.0 * 8.0;
/// From this random loss on, every video packet (a stream that has RTX) is sent twice as
/// it is first sent, while the budget allows the copy: a repair takes a round of NACK and
/// retransmission at the least, and a frame whose packets are all lost shows the loss
/// only when the next frame arrives; at 40 % loss that left 1–8 freezes of ~200–300 ms
/// per direction in 20 s (the link's loss came in runs of up to six packets) and
/// capture→render p95 115–135 ms. Two copies are lost together 16 times in 100.
const COPY_ALL_FROM_LOSS_PERMILLE: u32 = 250;
/// On a path with this round trip (ms) or more, a round of repair that fails (the NACK
/// or the repair lost) costs another round trip, a W3C freeze even with the playout
/// delay that covers one round (pipeline/playout.rs) ...
const FAR_RTT_MS: u32 = 100;
/// ... so from this loss (per mille) on, repairs and NACKs go twice: at 10 % loss a
/// round fails 19 times in 100 with one copy of each, 2 with two. `bench --net farloss`
/// (200 ms, 10 %): 8–12 freezes and 2.5–4.4 s frozen per direction → 1–6 and 0.2–1.8 s
/// (seeds 1–3).
const FAR_LOSS_PERMILLE: u32 = 30;
/// A packet resent this recently is not resent again (the peer's NACK came twice); the
/// peer asks again no sooner than every 25 ms (interceptors.rs). Nor is one resent less
/// than a round trip ago, as libwebrtc does (`RtpPacketHistory`): the peer asks every
/// 25 ms until the repair arrives, so on a far path every NACK sent before it could
/// arrive was answered (at 200 ms round trip, eight repairs of each lost packet; they
/// overran the repair budget, repairs were refused, and frames were given up: `bench
/// --net farloss`).
const ANSWERED_WINDOW: Duration = Duration::from_millis(15);

pub(super) struct RetransmissionBudget {
    bandwidth: Arc<Bandwidth>,
    newest: HashMap<u32, u16>,
    /// Our streams' RTX SSRCs.
    rtx: HashSet<u32>,
    /// The media SSRCs those repair (video).
    repaired: HashSet<u32>,
    tokens_bits: f64,
    last: Option<Instant>,
    /// When each packet (SSRC of its media stream's sequence, original number) was last
    /// resent.
    resent: HashMap<(u32, u16), Instant>,
    write: VecDeque<TaggedPacket>,
    read: VecDeque<TaggedPacket>,
}

impl RetransmissionBudget {
    pub(super) fn new(bandwidth: Arc<Bandwidth>) -> Self {
        Self {
            bandwidth,
            newest: HashMap::new(),
            rtx: HashSet::new(),
            repaired: HashSet::new(),
            tokens_bits: MIN_BURST_BITS,
            last: None,
            resent: HashMap::new(),
            write: VecDeque::new(),
            read: VecDeque::new(),
        }
    }

    /// Whether repairs and the requests for them go twice: random loss on our outgoing
    /// path (no queue); on a far path (a round trip of [`FAR_RTT_MS`] or more), from
    /// [`FAR_LOSS_PERMILLE`] on, since there a failed round of repair costs a freeze.
    fn doubling(&self) -> bool {
        let far = self.bandwidth.rtt_ms.load(Relaxed) >= FAR_RTT_MS
            && self.bandwidth.loss_permille.load(Relaxed) >= FAR_LOSS_PERMILLE
            && self.bandwidth.queue_delay_ms.load(Relaxed) <= CONGESTED_QUEUE_MS;
        far || self.bandwidth.random_loss()
    }

    /// Whether every video packet goes twice as it is first sent: random loss of
    /// [`COPY_ALL_FROM_LOSS_PERMILLE`] or more, on a path that spreads none of our
    /// packets out (no bottleneck narrower than our pace, bwe.rs). After a drop in a
    /// link's rate the smoothed loss stays high for a while after the queue has drained,
    /// and copies then refilled it: at the step to 500 kbit/s the longest freeze was
    /// 0.6–1.0 s in 8 of 21 runs; with this, 0.36–0.37 s in 4 of 4.
    fn copying_all(&self) -> bool {
        self.doubling()
            && self.bandwidth.loss_permille.load(Relaxed) >= COPY_ALL_FROM_LOSS_PERMILLE
            && !self.bandwidth.bottleneck.load(Relaxed)
    }

    /// Whether the retransmission of `key` was sent within [`ANSWERED_WINDOW`] or a round
    /// trip of `now`; notes it as sent now if not.
    fn answered_recently(&mut self, key: (u32, u16), now: Instant) -> bool {
        let rtt = Duration::from_millis(u64::from(self.bandwidth.rtt_ms.load(Relaxed)));
        let window = ANSWERED_WINDOW.max(rtt);
        if let Some(&at) = self.resent.get(&key)
            && now.saturating_duration_since(at) < window
        {
            return true;
        }
        if self.resent.len() > 4096 {
            self.resent
                .retain(|_, &mut at| now.saturating_duration_since(at) < window);
        }
        self.resent.insert(key, now);
        false
    }

    /// Whether a packet of `bits` that is a retransmission may leave `now`.
    fn afford(&mut self, now: Instant, bits: f64) -> bool {
        let congested = self.bandwidth.queue_delay_ms.load(Relaxed) > CONGESTED_QUEUE_MS;
        let share = if congested {
            CONGESTED_SHARE
        } else {
            let loss = (f64::from(self.bandwidth.loss_permille.load(Relaxed)) / 1000.0).min(0.9);
            let copies = if self.doubling() { 2.0 } else { 1.0 };
            (loss / (1.0 - loss) * 1.5 * copies).clamp(SHARE, MAX_SHARE * copies)
        };
        let rate = self.bandwidth.target_bps.load(Relaxed) as f64 * share;
        let min_burst = if self.doubling() {
            LOSSY_BURST_BITS
        } else {
            MIN_BURST_BITS
        };
        let capacity = (rate * BURST_S).max(min_burst);
        if let Some(last) = self.last {
            self.tokens_bits += rate * now.saturating_duration_since(last).as_secs_f64();
        }
        self.last = Some(now);
        self.tokens_bits = self.tokens_bits.min(capacity);
        if self.tokens_bits >= bits {
            self.tokens_bits -= bits;
            true
        } else {
            false
        }
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for RetransmissionBudget {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        let mut twice = false;
        match &msg.message.packet {
            Packet::Rtp(rtp) => {
                let seq = rtp.header.sequence_number;
                let ssrc = rtp.header.ssrc;
                let on_rtx = self.rtx.contains(&ssrc);
                let newer = !on_rtx
                    && self
                        .newest
                        .get(&ssrc)
                        .is_none_or(|&newest| (seq.wrapping_sub(newest) as i16) > 0);
                if newer {
                    self.newest.insert(ssrc, seq);
                    twice = self.repaired.contains(&ssrc)
                        && self.copying_all()
                        && self.afford(msg.now, rtp.marshal_size() as f64 * 8.0);
                } else {
                    // An RTX packet carries the original number first (RFC 4588).
                    let original = match (on_rtx, rtp.payload.get(..2)) {
                        (true, Some(osn)) => u16::from_be_bytes([osn[0], osn[1]]),
                        _ => seq,
                    };
                    if self.answered_recently((ssrc, original), msg.now) {
                        tracing::trace!(ssrc, original, "asked again at once: already resent");
                        return Ok(());
                    }
                    let bits = rtp.marshal_size() as f64 * 8.0;
                    if !self.afford(msg.now, bits) {
                        tracing::trace!(ssrc, seq, "retransmission over budget: not sent");
                        return Ok(());
                    }
                    twice = self.doubling() && self.afford(msg.now, bits);
                }
            }
            Packet::Rtcp(packets) => {
                twice = self.doubling()
                    && packets.iter().any(|p| {
                        let p = p.as_any();
                        p.is::<TransportLayerNack>()
                            || p.is::<PictureLossIndication>()
                            || p.is::<FullIntraRequest>()
                            || p.is::<super::keyframe::Rpsi>()
                    });
            }
            _ => {}
        }
        if twice {
            self.write.push_back(TaggedPacket {
                now: msg.now,
                transport: msg.transport,
                message: msg.message.clone(),
            });
        }
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.write.pop_front()
    }
}

impl Interceptor for RetransmissionBudget {
    fn bind_local_stream(&mut self, info: &StreamInfo) {
        if let Some(rtx) = info.ssrc_rtx {
            self.rtx.insert(rtx);
            self.repaired.insert(info.ssrc);
        }
    }
    fn unbind_local_stream(&mut self, info: &StreamInfo) {
        self.newest.remove(&info.ssrc);
        self.repaired.remove(&info.ssrc);
        if let Some(rtx) = info.ssrc_rtx {
            self.rtx.remove(&rtx);
        }
    }
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// Offers one packet of `bits` every millisecond for a second from `start`; returns
    /// the bits let through.
    fn offer_for_a_second(budget: &mut RetransmissionBudget, start: Instant, bits: f64) -> f64 {
        (0..1000u64)
            .filter(|&i| budget.afford(start + Duration::from_millis(i), bits))
            .count() as f64
            * bits
    }

    #[test]
    fn retransmissions_are_limited_to_a_share_of_the_target() {
        let bandwidth = Arc::new(Bandwidth::default());
        bandwidth.target_bps.store(1_000_000, Relaxed);
        let mut budget = RetransmissionBudget::new(bandwidth);
        let t0 = Instant::now();
        // Over one second, offer 1 Mbit of retransmissions: about half may pass.
        let passed = offer_for_a_second(&mut budget, t0, 1000.0);
        assert!((450_000.0..=560_000.0).contains(&passed), "{passed}");
        // With a queue on the path, much less.
        budget.bandwidth.queue_delay_ms.store(100, Relaxed);
        let passed = offer_for_a_second(&mut budget, t0 + Duration::from_secs(2), 1000.0);
        assert!((100_000.0..=200_000.0).contains(&passed), "{passed}");
    }

    #[test]
    fn heavy_random_loss_gets_a_larger_share() {
        let bandwidth = Arc::new(Bandwidth::default());
        bandwidth.target_bps.store(200_000, Relaxed);
        bandwidth.loss_permille.store(400, Relaxed);
        let mut budget = RetransmissionBudget::new(bandwidth);
        let t0 = Instant::now();
        // 40 % loss: 0.4 / 0.6 × 1.5 = the whole target again, and as much for the
        // second copies.
        let passed = offer_for_a_second(&mut budget, t0, 400.0);
        assert!((390_000.0..=430_000.0).contains(&passed), "{passed}");
    }

    #[test]
    fn under_heavy_random_loss_a_frames_repairs_pass_at_once_but_not_under_congestion() {
        let bandwidth = Arc::new(Bandwidth::default());
        bandwidth.target_bps.store(150_000, Relaxed);
        bandwidth.loss_permille.store(400, Relaxed);
        let mut budget = RetransmissionBudget::new(Arc::clone(&bandwidth));
        let t0 = Instant::now();
        budget.afford(t0, 0.0);
        // A second later: eight 1,200-byte repairs at once, each with its second copy.
        let later = t0 + Duration::from_secs(1);
        let passed = (0..16)
            .filter(|_| budget.afford(later, 1200.0 * 8.0))
            .count();
        assert_eq!(passed, 16);
        // The same loss with a queue (congestion): one packet's worth of burst.
        bandwidth.queue_delay_ms.store(100, Relaxed);
        let mut budget = RetransmissionBudget::new(bandwidth);
        budget.afford(t0, 0.0);
        let passed = (0..16)
            .filter(|_| budget.afford(later, 1200.0 * 8.0))
            .count();
        assert!(passed <= 2, "{passed}");
    }

    /// Offers `n` RTP packets on `ssrc`, numbered from `first`, all at `now`; returns how
    /// many were let through.
    fn write_packets(
        budget: &mut RetransmissionBudget,
        now: Instant,
        ssrc: u32,
        first: u16,
        n: u16,
    ) -> usize {
        for seq in first..first + n {
            let mut rtp = rtc::rtp::Packet::default();
            rtp.header.ssrc = ssrc;
            rtp.header.sequence_number = seq;
            rtp.payload = bytes::Bytes::from(vec![0u8; 1000]);
            let msg = TaggedPacket {
                now,
                transport: Default::default(),
                message: Packet::Rtp(rtp).into(),
            };
            budget.handle_write(msg).expect("write");
        }
        std::iter::from_fn(|| budget.poll_write()).count()
    }

    #[test]
    fn packets_on_an_rtx_ssrc_are_retransmissions_and_new_media_is_never_held() {
        let bandwidth = Arc::new(Bandwidth::default());
        bandwidth.target_bps.store(1_000_000, Relaxed);
        let mut budget = RetransmissionBudget::new(bandwidth);
        budget.bind_local_stream(&StreamInfo {
            ssrc: 1000,
            ssrc_rtx: Some(2000),
            ..Default::default()
        });
        let t0 = Instant::now();
        // New media passes whatever the budget: 50 packets at once.
        assert_eq!(write_packets(&mut budget, t0, 1000, 1, 50), 50);
        // 50 retransmissions at once, over RTX with fresh RTX sequence numbers: only the
        // burst allowance (0.1 s of half of 1 Mbit/s: six 1 kB packets) passes.
        let passed = write_packets(&mut budget, t0, 2000, 1, 50);
        assert!((1..=7).contains(&passed), "{passed}");
        // Once unbound, the RTX SSRC is just another stream.
        budget.unbind_local_stream(&StreamInfo {
            ssrc: 1000,
            ssrc_rtx: Some(2000),
            ..Default::default()
        });
        assert_eq!(write_packets(&mut budget, t0, 2000, 100, 20), 20);
    }

    fn nack() -> TaggedPacket {
        TaggedPacket {
            now: Instant::now(),
            transport: Default::default(),
            message: Packet::Rtcp(vec![Box::new(TransportLayerNack {
                sender_ssrc: 1,
                media_ssrc: 1000,
                nacks: vec![],
            })])
            .into(),
        }
    }

    /// An RTX packet on `ssrc` repairing `original`, with RTX number `rtx_seq`.
    fn rtx_packet(now: Instant, ssrc: u32, rtx_seq: u16, original: u16) -> TaggedPacket {
        let mut rtp = rtc::rtp::Packet::default();
        rtp.header.ssrc = ssrc;
        rtp.header.sequence_number = rtx_seq;
        let mut payload = original.to_be_bytes().to_vec();
        payload.extend_from_slice(&[0u8; 1000]);
        rtp.payload = bytes::Bytes::from(payload);
        TaggedPacket {
            now,
            transport: Default::default(),
            message: Packet::Rtp(rtp).into(),
        }
    }

    #[test]
    fn on_a_randomly_lossy_path_repairs_and_requests_go_twice_and_are_answered_once() {
        let bandwidth = Arc::new(Bandwidth::default());
        bandwidth.target_bps.store(1_000_000, Relaxed);
        let mut budget = RetransmissionBudget::new(Arc::clone(&bandwidth));
        budget.bind_local_stream(&StreamInfo {
            ssrc: 1000,
            ssrc_rtx: Some(2000),
            ..Default::default()
        });
        let sent =
            |budget: &mut RetransmissionBudget| std::iter::from_fn(|| budget.poll_write()).count();
        let t0 = Instant::now();
        // A clean path: once each.
        budget.handle_write(nack()).expect("write");
        budget
            .handle_write(rtx_packet(t0, 2000, 1, 500))
            .expect("write");
        assert_eq!(sent(&mut budget), 2);
        // 40 % loss, no queue: twice each.
        bandwidth.loss_permille.store(400, Relaxed);
        let t1 = t0 + Duration::from_secs(1);
        budget.handle_write(nack()).expect("write");
        budget
            .handle_write(rtx_packet(t1, 2000, 2, 501))
            .expect("write");
        assert_eq!(sent(&mut budget), 4);
        // The peer's second copy of that NACK: packet 501 is not sent again at once ...
        budget
            .handle_write(rtx_packet(t1 + Duration::from_millis(1), 2000, 3, 501))
            .expect("write");
        assert_eq!(sent(&mut budget), 0);
        // ... but is when asked again a NACK interval later.
        budget
            .handle_write(rtx_packet(t1 + Duration::from_millis(25), 2000, 4, 501))
            .expect("write");
        assert_eq!(sent(&mut budget), 2);
        // The same loss with a queue on the path is congestion: once each.
        bandwidth.queue_delay_ms.store(100, Relaxed);
        budget.handle_write(nack()).expect("write");
        budget
            .handle_write(rtx_packet(t1 + Duration::from_secs(1), 2000, 5, 502))
            .expect("write");
        assert_eq!(sent(&mut budget), 2);
    }

    #[test]
    fn on_a_far_path_a_packet_is_resent_once_per_round_trip() {
        let bandwidth = Arc::new(Bandwidth::default());
        bandwidth.target_bps.store(1_000_000, Relaxed);
        bandwidth.rtt_ms.store(200, Relaxed);
        let mut budget = RetransmissionBudget::new(Arc::clone(&bandwidth));
        budget.bind_local_stream(&StreamInfo {
            ssrc: 1000,
            ssrc_rtx: Some(2000),
            ..Default::default()
        });
        let t0 = Instant::now();
        let mut resent_at = Vec::new();
        // The peer asks every 25 ms for 400 ms (its repair never arrives).
        for i in 0..16u16 {
            let at = t0 + Duration::from_millis(25 * u64::from(i));
            budget
                .handle_write(rtx_packet(at, 2000, i, 700))
                .expect("write");
            if std::iter::from_fn(|| budget.poll_write()).count() > 0 {
                resent_at.push(25 * i);
            }
        }
        assert_eq!(resent_at, [0, 200]);
    }

    #[test]
    fn under_heavy_random_loss_new_video_goes_twice_and_audio_once() {
        let bandwidth = Arc::new(Bandwidth::default());
        bandwidth.target_bps.store(150_000, Relaxed);
        let mut budget = RetransmissionBudget::new(Arc::clone(&bandwidth));
        // Video has RTX; audio (SSRC 3000) has not.
        budget.bind_local_stream(&StreamInfo {
            ssrc: 1000,
            ssrc_rtx: Some(2000),
            ..Default::default()
        });
        let t0 = Instant::now();
        budget.afford(t0, 0.0);
        let mut at = t0;
        let mut next = |budget: &mut RetransmissionBudget, ssrc, first| {
            at += Duration::from_secs(1);
            write_packets(budget, at, ssrc, first, 2)
        };
        // 20 % random loss: repairs go twice, new packets once.
        bandwidth.loss_permille.store(200, Relaxed);
        assert_eq!(next(&mut budget, 1000, 1), 2);
        // 40 %: each new video packet twice; audio once.
        bandwidth.loss_permille.store(400, Relaxed);
        assert_eq!(next(&mut budget, 1000, 3), 4);
        assert_eq!(next(&mut budget, 3000, 1), 2);
        // The same loss with a queue on the path (congestion): once.
        bandwidth.queue_delay_ms.store(100, Relaxed);
        assert_eq!(next(&mut budget, 1000, 5), 2);
        // Or behind a bottleneck narrower than our pace (a capped link): once.
        bandwidth.queue_delay_ms.store(0, Relaxed);
        bandwidth.bottleneck.store(true, Relaxed);
        assert_eq!(next(&mut budget, 1000, 7), 2);
        bandwidth.bottleneck.store(false, Relaxed);
        // And the copies come out of the repair budget: none while it is spent.
        while budget.afford(at, 1000.0) {}
        assert_eq!(write_packets(&mut budget, at, 1000, 9, 2), 2);
    }

    #[test]
    fn with_no_target_one_packet_still_passes() {
        let mut budget = RetransmissionBudget::new(Arc::new(Bandwidth::default()));
        let t0 = Instant::now();
        assert!(budget.afford(t0, 1200.0 * 8.0));
        assert!(!budget.afford(t0, 1200.0 * 8.0));
    }
}
