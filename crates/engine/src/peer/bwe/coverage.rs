//! Which of our packets the peer's feedback said were lost.
//!
//! webrtc-rs's send history (`rtpfb/history.rs`, `take_reports`) hands the estimator
//! every packet up to the highest one acknowledged, and any it has no word on counts as
//! lost. When a feedback packet is itself lost — the peer's uplink is full, or the path
//! is lossy — every packet that feedback covered is reported lost with it, though most
//! arrived. With A's uplink full, B's estimator read 13–36 % "loss" on a clean path and
//! cut its rate from 1.16 Mbit/s to ~290 kbit/s (session 12, decision 10). A packet the
//! peer named as not received is lost; one nobody named is unknown.
//!
//! [`LossRecorder`] sits wire-ward of the congestion controller and marks each
//! transport-wide sequence number a feedback names as not received; the estimator
//! counts as lost only the marked ones ([`FeedbackCoverage::take`]).
//!
//! A packet sent twice (a repair, or a video packet under heavy random loss: see
//! peer/retransmit.rs) reaches the peer as one: its SRTP drops whichever copy comes
//! second as a replay, and the feedback names that copy as not received. Counted, the
//! copies alone read as loss (at 20 % loss with every video packet sent twice the
//! estimator read ~40 %, took it for severe loss, and cut the rate to its floor). So the
//! recorder also notes which numbers carried a second copy ([`FeedbackCoverage::mark_copy`]),
//! and the estimator leaves those out of the loss it counts.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use rtc::interceptor::{Interceptor, Packet, StreamInfo, TaggedPacket, convert_twcc};
use rtc::rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc;
use rtc::sansio::Protocol;
use rtc::sdp::extmap::TRANSPORT_CC_URI;

/// One bit per transport-wide sequence number (65,536 of them, 8 KiB).
const WORDS: usize = (u16::MAX as usize + 1) / 64;

/// The sequence numbers named lost and not yet taken. Shared between the recorder and the
/// estimator, which run one after the other in the same chain; atomics keep it lock-free.
#[derive(Debug)]
pub struct FeedbackCoverage {
    lost: Box<[AtomicU64]>,
    /// The numbers that carried the second copy of a packet.
    copies: Box<[AtomicU64]>,
}

impl Default for FeedbackCoverage {
    fn default() -> Self {
        Self {
            lost: (0..WORDS).map(|_| AtomicU64::new(0)).collect(),
            copies: (0..WORDS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

/// Sets `sequence`'s bit in `bits` and clears the one half the space ahead: a mark never
/// taken (its packet left the history unreported) must not outlive the wrap of the
/// counter.
fn mark(bits: &[AtomicU64], sequence: u16) {
    let (word, bit) = FeedbackCoverage::bit(sequence);
    bits[word].fetch_or(bit, Relaxed);
    let (word, bit) = FeedbackCoverage::bit(sequence.wrapping_add(1 << 15));
    bits[word].fetch_and(!bit, Relaxed);
}

/// Whether `sequence`'s bit was set in `bits`; clears it.
fn take(bits: &[AtomicU64], sequence: u16) -> bool {
    let (word, bit) = FeedbackCoverage::bit(sequence);
    bits[word].fetch_and(!bit, Relaxed) & bit != 0
}

impl FeedbackCoverage {
    fn bit(sequence: u16) -> (usize, u64) {
        (usize::from(sequence) / 64, 1 << (sequence % 64))
    }

    /// The peer said `sequence` did not arrive.
    pub fn mark_lost(&self, sequence: u16) {
        mark(&self.lost, sequence);
    }

    /// `sequence` carried the second copy of a packet.
    pub fn mark_copy(&self, sequence: u16) {
        mark(&self.copies, sequence);
    }

    /// What the feedback on `sequence` says about the path: `Some(true)` lost,
    /// `Some(false)` arrived, `None` nothing (a second copy, which the peer drops as a
    /// replay when the first arrived). Forgets both marks.
    pub fn take(&self, sequence: u16, arrived: bool) -> Option<bool> {
        let lost = take(&self.lost, sequence);
        if take(&self.copies, sequence) {
            None
        } else {
            Some(lost && !arrived)
        }
    }
}

/// The (SSRC, sequence number) pairs of the last packets sent: a second copy follows its
/// first at once (peer/retransmit.rs queues them together).
const RECENT: usize = 16;

/// Marks what each TWCC feedback names as not received; passes everything on unchanged.
/// Marks the transport-wide numbers that carry a second copy of a packet.
pub(in crate::peer) struct LossRecorder {
    coverage: Arc<FeedbackCoverage>,
    /// The transport-wide header extension's id per local SSRC (media and RTX).
    twcc_ids: HashMap<u32, u8>,
    recent: VecDeque<(u32, u16)>,
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

impl LossRecorder {
    pub(in crate::peer) fn new(coverage: Arc<FeedbackCoverage>) -> Self {
        Self {
            coverage,
            twcc_ids: HashMap::new(),
            recent: VecDeque::with_capacity(RECENT),
            read: VecDeque::new(),
            write: VecDeque::new(),
        }
    }

    /// Notes a departing packet; marks its transport-wide number if it repeats one of
    /// the last [`RECENT`] packets.
    fn departing(&mut self, rtp: &rtc::rtp::Packet) {
        let key = (rtp.header.ssrc, rtp.header.sequence_number);
        if !self.recent.contains(&key) {
            if self.recent.len() == RECENT {
                self.recent.pop_front();
            }
            self.recent.push_back(key);
            return;
        }
        let number = self
            .twcc_ids
            .get(&key.0)
            .and_then(|&id| rtp.header.get_extension(id))
            .and_then(|ext| Some(u16::from_be_bytes([*ext.first()?, *ext.get(1)?])));
        if let Some(number) = number {
            self.coverage.mark_copy(number);
        }
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for LossRecorder {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            for packet in packets {
                if let Some(feedback) = packet.as_any().downcast_ref::<TransportLayerCc>() {
                    for ack in convert_twcc(feedback) {
                        if !ack.arrived {
                            self.coverage.mark_lost(ack.sequence_number);
                        }
                    }
                }
            }
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<Self::Rout> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtp(rtp) = &msg.message.packet {
            self.departing(rtp);
        }
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write.pop_front()
    }
}

impl Interceptor for LossRecorder {
    fn bind_local_stream(&mut self, info: &StreamInfo) {
        let id = info
            .rtp_header_extensions
            .iter()
            .find(|ext| ext.uri == TRANSPORT_CC_URI)
            .and_then(|ext| u8::try_from(ext.id).ok());
        if let Some(id) = id {
            self.twcc_ids.insert(info.ssrc, id);
            if let Some(rtx) = info.ssrc_rtx {
                self.twcc_ids.insert(rtx, id);
            }
        }
    }
    fn unbind_local_stream(&mut self, info: &StreamInfo) {
        self.twcc_ids.remove(&info.ssrc);
        if let Some(rtx) = info.ssrc_rtx {
            self.twcc_ids.remove(&rtx);
        }
    }
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_is_taken_once() {
        let coverage = FeedbackCoverage::default();
        coverage.mark_lost(7);
        coverage.mark_lost(65_535);
        assert_eq!(coverage.take(8, false), Some(false));
        assert_eq!(coverage.take(7, false), Some(true));
        assert_eq!(coverage.take(7, false), Some(false));
        assert_eq!(coverage.take(65_535, false), Some(true));
    }

    #[test]
    fn a_second_copy_says_nothing_either_way() {
        let coverage = FeedbackCoverage::default();
        coverage.mark_copy(9);
        coverage.mark_lost(9);
        assert_eq!(coverage.take(9, false), None);
        coverage.mark_copy(10);
        assert_eq!(coverage.take(10, true), None);
        // Both marks were taken.
        assert_eq!(coverage.take(9, false), Some(false));
        assert_eq!(coverage.take(10, true), Some(false));
    }

    /// A packet on `ssrc` numbered `seq`, stamped with transport-wide number `twcc` under
    /// header extension 5.
    fn departing(ssrc: u32, seq: u16, twcc: u16) -> TaggedPacket {
        let mut rtp = rtc::rtp::Packet::default();
        rtp.header.ssrc = ssrc;
        rtp.header.sequence_number = seq;
        rtp.header
            .set_extension(5, bytes::Bytes::copy_from_slice(&twcc.to_be_bytes()))
            .expect("extension");
        TaggedPacket {
            now: Instant::now(),
            transport: Default::default(),
            message: Packet::Rtp(rtp).into(),
        }
    }

    #[test]
    fn the_recorder_marks_the_number_of_each_second_copy() {
        let coverage = Arc::new(FeedbackCoverage::default());
        let mut recorder = LossRecorder::new(Arc::clone(&coverage));
        recorder.bind_local_stream(&StreamInfo {
            ssrc: 1000,
            ssrc_rtx: Some(2000),
            rtp_header_extensions: vec![rtc::interceptor::RTPHeaderExtension {
                uri: TRANSPORT_CC_URI.to_owned(),
                id: 5,
            }],
            ..Default::default()
        });
        // Media 7 twice (numbers 40, 41), media 8 once (42), RTX 3 twice (43, 44).
        for (ssrc, seq, twcc) in [
            (1000, 7, 40),
            (1000, 7, 41),
            (1000, 8, 42),
            (2000, 3, 43),
            (2000, 3, 44),
        ] {
            recorder
                .handle_write(departing(ssrc, seq, twcc))
                .expect("write");
        }
        assert_eq!(std::iter::from_fn(|| recorder.poll_write()).count(), 5);
        let said: Vec<_> = (40..=44).map(|n| coverage.take(n, true)).collect();
        assert_eq!(said, [Some(false), None, Some(false), Some(false), None]);
    }

    #[test]
    fn a_stale_mark_is_cleared_half_the_counter_later() {
        let coverage = FeedbackCoverage::default();
        coverage.mark_lost(100);
        coverage.mark_lost(100 + (1 << 15));
        assert_eq!(coverage.take(100, false), Some(false));
        coverage.mark_copy(200);
        coverage.mark_copy(200 + (1 << 15));
        assert_eq!(coverage.take(200, false), Some(false));
    }
}
