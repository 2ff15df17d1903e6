//! Which reference pictures the decoder holds, to judge a frame that comes after a loss.
//!
//! A picture's `frame_num` is one more than that of the last *reference* picture before
//! it; a picture no other refers to (`nal_ref_idc` 0) does not advance it. So when a frame
//! is lost and the next one's `frame_num` still follows the last reference picture the
//! decoder has, what was lost was a non-reference picture and nothing the decoder needs
//! is missing. With two temporal layers (`H264Encoder::with_temporal_layers`) every other
//! frame is such a picture: losing it costs one frame, not a picture frozen until a
//! keyframe arrives.
//!
//! A frame that refers only to a long-term picture the decoder holds (an encoder's
//! answer to a recovery request, `H264Encoder::recover`) mends the picture too. openh264's
//! decoder cannot be asked: with long-term references the stream allows gaps in
//! `frame_num`, and the decoder then predicts from whatever older picture it has, without
//! an error.

use crate::h264_syntax::{HeaderReader, Mmco, SliceHeader, SliceInfo};

/// Long-term picture indices followed (openh264 uses two).
const LONG_TERM_SLOTS: usize = 16;

/// What a frame that comes after a loss can do, judged by [`ReferenceChain::after_loss`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterLoss {
    /// An IDR: it needs nothing.
    Keyframe,
    /// Its `frame_num` follows the last reference picture given: what was lost was a
    /// picture nothing refers to.
    Continues,
    /// It refers only to a long-term picture the decoder holds (an encoder's answer to a
    /// recovery request).
    Recovers,
    /// It needs a picture the decoder does not have (or the header is not understood).
    Broken,
}

/// Follows the reference pictures the decoder has been given, to judge a frame that
/// comes after a loss: the last short-term reference picture's `frame_num`, and the
/// long-term pictures (marked by an IDR's `long_term_reference_flag` or by memory
/// management operations) by index.
#[derive(Debug, Default)]
pub struct ReferenceChain {
    reader: HeaderReader,
    /// `frame_num` of the last reference picture handed to the decoder; `None` until an
    /// IDR, and after a loss that broke the chain.
    last_reference: Option<u32>,
    /// The long-term pictures the decoder holds, by `long_term_frame_idx`: their
    /// `frame_num`.
    long_term: [Option<u32>; LONG_TERM_SLOTS],
}

impl ReferenceChain {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `annex_b`, the first frame after one or more were lost, can be decoded
    /// with what the decoder already has. `false` when in doubt (no SPS seen,
    /// unreadable header).
    pub fn decodable_after_loss(&mut self, annex_b: &[u8]) -> bool {
        self.after_loss(annex_b) != AfterLoss::Broken
    }

    /// What `annex_b`, a frame after one or more were lost (or while the chain is
    /// broken), can do with what the decoder has.
    pub fn after_loss(&mut self, annex_b: &[u8]) -> AfterLoss {
        let Some((info, header)) = self.first_slice(annex_b) else {
            return AfterLoss::Broken;
        };
        if info.idr {
            return AfterLoss::Keyframe;
        }
        if let (Some(sps), Some(last)) = (self.reader.sps().copied(), self.last_reference)
            && info.frame_num == (last + 1) % (1 << sps.log2_max_frame_num)
        {
            return AfterLoss::Continues;
        }
        match header {
            Some(h)
                if h.predicted
                    && h.num_ref_idx_active == 1
                    && h.first_ref_long_term
                        .is_some_and(|n| self.holds_long_term(n)) =>
            {
                AfterLoss::Recovers
            }
            _ => AfterLoss::Broken,
        }
    }

    /// Notes a frame handed to the decoder. Returns whether it made a picture long-term
    /// (what a receiver confirms to an encoder that recovers from long-term pictures).
    pub fn decoded(&mut self, annex_b: &[u8]) -> bool {
        let Some((info, header)) = self.first_slice(annex_b) else {
            self.last_reference = None;
            self.long_term = [None; LONG_TERM_SLOTS];
            return false;
        };
        if info.idr {
            self.long_term = [None; LONG_TERM_SLOTS];
        }
        let mut marked = false;
        let mut frame_num = info.frame_num;
        match (header, self.reader.sps().copied()) {
            (Some(h), Some(sps)) => {
                if h.idr_long_term {
                    self.long_term[0] = Some(frame_num);
                    marked = true;
                }
                let max = 1u32 << sps.log2_max_frame_num;
                for op in h.mmco() {
                    match op {
                        Mmco::ShortUnused { .. } => {}
                        Mmco::LongUnused { long_term_pic_num } => {
                            self.set_long_term(long_term_pic_num, None);
                        }
                        Mmco::ShortToLong {
                            difference_minus1,
                            long_term_frame_idx,
                        } => {
                            let back = (difference_minus1 % max) + 1;
                            let short = (frame_num + max - back) % max;
                            self.set_long_term(long_term_frame_idx, Some(short));
                            marked = true;
                        }
                        Mmco::MaxLongTermIdxPlus1(max_plus1) => {
                            for slot in self.long_term.iter_mut().skip(max_plus1 as usize) {
                                *slot = None;
                            }
                        }
                        Mmco::Reset => {
                            self.long_term = [None; LONG_TERM_SLOTS];
                            frame_num = 0;
                        }
                        Mmco::CurrentToLong {
                            long_term_frame_idx,
                        } => {
                            self.set_long_term(long_term_frame_idx, Some(frame_num));
                            marked = true;
                        }
                    }
                }
            }
            // A reference picture whose marking we cannot read: what it kept is unknown.
            _ if info.reference => self.long_term = [None; LONG_TERM_SLOTS],
            _ => {}
        }
        if info.reference {
            self.last_reference = Some(frame_num);
        }
        marked
    }

    /// The chain is broken (a reference picture is missing): only an IDR, or a picture
    /// that refers to a long-term one held, mends it.
    pub fn broken(&mut self) {
        self.last_reference = None;
    }

    fn holds_long_term(&self, idx: u32) -> bool {
        self.long_term
            .get(idx as usize)
            .is_some_and(|slot| slot.is_some())
    }

    fn set_long_term(&mut self, idx: u32, frame_num: Option<u32>) {
        if let Some(slot) = self.long_term.get_mut(idx as usize) {
            *slot = frame_num;
        }
    }

    fn first_slice(&mut self, annex_b: &[u8]) -> Option<(SliceInfo, Option<SliceHeader>)> {
        self.reader.first_slice(annex_b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncated_or_foreign_input_breaks_nothing() {
        let mut chain = ReferenceChain::new();
        assert!(!chain.decodable_after_loss(&[0, 0, 1]));
        assert!(!chain.decodable_after_loss(&[]));
        assert_eq!(chain.after_loss(&[0, 0, 1, 0x41, 0xff]), AfterLoss::Broken);
        assert!(!chain.decoded(&[0, 0, 1, 0x67]));
    }
}
