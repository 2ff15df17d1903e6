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

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use rtc::interceptor::{Interceptor, Packet, StreamInfo, TaggedPacket, convert_twcc};
use rtc::rtcp::transport_feedbacks::transport_layer_cc::TransportLayerCc;
use rtc::sansio::Protocol;

/// One bit per transport-wide sequence number (65,536 of them, 8 KiB).
const WORDS: usize = (u16::MAX as usize + 1) / 64;

/// The sequence numbers named lost and not yet taken. Shared between the recorder and the
/// estimator, which run one after the other in the same chain; atomics keep it lock-free.
#[derive(Debug)]
pub struct FeedbackCoverage {
    lost: Box<[AtomicU64]>,
}

impl Default for FeedbackCoverage {
    fn default() -> Self {
        Self {
            lost: (0..WORDS).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl FeedbackCoverage {
    fn bit(sequence: u16) -> (usize, u64) {
        (usize::from(sequence) / 64, 1 << (sequence % 64))
    }

    /// The peer said `sequence` did not arrive. The number half the space ahead is
    /// cleared: a mark never taken (its packet left the history unreported) must not
    /// outlive the wrap of the counter.
    pub fn mark_lost(&self, sequence: u16) {
        let (word, bit) = Self::bit(sequence);
        self.lost[word].fetch_or(bit, Relaxed);
        let (word, bit) = Self::bit(sequence.wrapping_add(1 << 15));
        self.lost[word].fetch_and(!bit, Relaxed);
    }

    /// Whether the peer said `sequence` did not arrive; forgets it.
    pub fn take(&self, sequence: u16) -> bool {
        let (word, bit) = Self::bit(sequence);
        self.lost[word].fetch_and(!bit, Relaxed) & bit != 0
    }
}

/// Marks what each TWCC feedback names as not received; passes everything on unchanged.
pub(in crate::peer) struct LossRecorder {
    coverage: Arc<FeedbackCoverage>,
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

impl LossRecorder {
    pub(in crate::peer) fn new(coverage: Arc<FeedbackCoverage>) -> Self {
        Self {
            coverage,
            read: VecDeque::new(),
            write: VecDeque::new(),
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
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<Self::Wout> {
        self.write.pop_front()
    }
}

impl Interceptor for LossRecorder {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
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
        assert!(!coverage.take(8));
        assert!(coverage.take(7));
        assert!(!coverage.take(7));
        assert!(coverage.take(65_535));
    }

    #[test]
    fn a_stale_mark_is_cleared_half_the_counter_later() {
        let coverage = FeedbackCoverage::default();
        coverage.mark_lost(100);
        coverage.mark_lost(100 + (1 << 15));
        assert!(!coverage.take(100));
    }
}
