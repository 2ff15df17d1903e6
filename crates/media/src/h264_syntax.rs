//! Just enough H.264 syntax to tell, after a lost frame, whether the next one can still
//! be decoded: the sequence parameter set's `log2_max_frame_num` and each slice's
//! `frame_num` and `nal_ref_idc` (ITU-T H.264 7.3.2.1 and 7.3.3).
//!
//! A picture's `frame_num` is one more than that of the last *reference* picture before
//! it; a picture no other refers to (`nal_ref_idc` 0) does not advance it. So when a frame
//! is lost and the next one's `frame_num` still follows the last reference picture the
//! decoder has, what was lost was a non-reference picture and nothing the decoder needs
//! is missing ([`ReferenceChain`]). With two temporal layers (`H264Encoder::with_temporal_layers`) every
//! other frame is such a picture: losing it costs one frame, not a picture frozen until a
//! keyframe arrives.

use crate::MediaError;

/// The parts of a sequence parameter set a slice header needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sps {
    pub log2_max_frame_num: u32,
    pub separate_colour_plane: bool,
}

/// What a slice header says about its picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SliceInfo {
    pub idr: bool,
    /// `nal_ref_idc` is not zero: later pictures may refer to this one.
    pub reference: bool,
    pub frame_num: u32,
}

fn bad(what: &str) -> MediaError {
    MediaError::H264(format!("unreadable H.264 {what}"))
}

/// Reads bits from a NAL unit's payload, skipping emulation-prevention bytes
/// (`00 00 03`).
struct Bits<'a> {
    data: &'a [u8],
    byte: usize,
    bit: u32,
    zeros: u32,
}

impl<'a> Bits<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            byte: 0,
            bit: 0,
            zeros: 0,
        }
    }

    fn bit(&mut self) -> Option<u32> {
        if self.bit == 0 {
            // At a byte boundary: an 03 after two zero bytes is not payload.
            if self.zeros >= 2 && self.data.get(self.byte) == Some(&3) {
                self.byte += 1;
                self.zeros = 0;
            }
            let &b = self.data.get(self.byte)?;
            self.zeros = if b == 0 { self.zeros + 1 } else { 0 };
        }
        let b = *self.data.get(self.byte)?;
        let value = u32::from(b >> (7 - self.bit)) & 1;
        self.bit += 1;
        if self.bit == 8 {
            self.bit = 0;
            self.byte += 1;
        }
        Some(value)
    }

    fn bits(&mut self, n: u32) -> Option<u32> {
        let mut v = 0;
        for _ in 0..n {
            v = (v << 1) | self.bit()?;
        }
        Some(v)
    }

    /// Unsigned Exp-Golomb (`ue(v)`), up to 31 leading zeros.
    fn ue(&mut self) -> Option<u32> {
        let mut zeros = 0;
        while self.bit()? == 0 {
            zeros += 1;
            if zeros > 31 {
                return None;
            }
        }
        let rest = self.bits(zeros)?;
        Some(((1u64 << zeros) - 1 + u64::from(rest)).min(u64::from(u32::MAX)) as u32)
    }

    /// Signed Exp-Golomb (`se(v)`).
    fn se(&mut self) -> Option<i64> {
        let k = i64::from(self.ue()?);
        Some(if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) })
    }
}

/// Parses a sequence parameter set (a NAL unit of type 7, header byte included).
pub fn parse_sps(nal: &[u8]) -> Result<Sps, MediaError> {
    if nal.first().map(|h| h & 0x1f) != Some(7) {
        return Err(bad("SPS (wrong NAL type)"));
    }
    let mut r = Bits::new(&nal[1..]);
    let sps = (|| {
        let profile_idc = r.bits(8)?;
        r.bits(16)?; // constraint flags, level_idc
        r.ue()?; // seq_parameter_set_id
        let mut separate_colour_plane = false;
        if matches!(
            profile_idc,
            100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
        ) {
            let chroma_format_idc = r.ue()?;
            if chroma_format_idc == 3 {
                separate_colour_plane = r.bit()? == 1;
            }
            r.ue()?; // bit_depth_luma_minus8
            r.ue()?; // bit_depth_chroma_minus8
            r.bit()?; // qpprime_y_zero_transform_bypass_flag
            if r.bit()? == 1 {
                // seq_scaling_matrix_present_flag: skip the scaling lists.
                let lists = if chroma_format_idc == 3 { 12 } else { 8 };
                for i in 0..lists {
                    if r.bit()? == 1 {
                        let size = if i < 6 { 16 } else { 64 };
                        let (mut last, mut next) = (8i64, 8i64);
                        for _ in 0..size {
                            if next != 0 {
                                next = (last + r.se()? + 256).rem_euclid(256);
                            }
                            if next != 0 {
                                last = next;
                            }
                        }
                    }
                }
            }
        }
        let log2_max_frame_num = r.ue()?.checked_add(4)?;
        (log2_max_frame_num <= 16).then_some(Sps {
            log2_max_frame_num,
            separate_colour_plane,
        })
    })();
    sps.ok_or_else(|| bad("SPS"))
}

/// Reads a coded slice's header (NAL types 1 and 5, header byte included).
pub fn parse_slice(nal: &[u8], sps: &Sps) -> Result<SliceInfo, MediaError> {
    let &header = nal.first().ok_or_else(|| bad("slice (empty)"))?;
    let nal_type = header & 0x1f;
    if nal_type != 1 && nal_type != 5 {
        return Err(bad("slice (wrong NAL type)"));
    }
    let mut r = Bits::new(&nal[1..]);
    let frame_num = (|| {
        r.ue()?; // first_mb_in_slice
        r.ue()?; // slice_type
        r.ue()?; // pic_parameter_set_id
        if sps.separate_colour_plane {
            r.bits(2)?; // colour_plane_id
        }
        r.bits(sps.log2_max_frame_num)
    })()
    .ok_or_else(|| bad("slice header"))?;
    Ok(SliceInfo {
        idr: nal_type == 5,
        reference: header & 0x60 != 0,
        frame_num,
    })
}

/// The NAL units of an Annex B access unit (start codes of three or four bytes).
pub fn nal_units(annex_b: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = annex_b;
    std::iter::from_fn(move || {
        loop {
            let start = rest.windows(3).position(|w| w == [0, 0, 1])? + 3;
            rest = &rest[start..];
            let end = rest
                .windows(3)
                .position(|w| w == [0, 0, 1])
                .map_or(rest.len(), |e| {
                    // A four-byte start code's leading zero belongs to it.
                    if e > 0 && rest[e - 1] == 0 { e - 1 } else { e }
                });
            let nal = &rest[..end];
            rest = &rest[end..];
            if !nal.is_empty() {
                return Some(nal);
            }
        }
    })
}

/// Follows the reference pictures the decoder has been given, to judge a frame that
/// comes after a loss.
#[derive(Debug, Default)]
pub struct ReferenceChain {
    sps: Option<Sps>,
    /// `frame_num` of the last reference picture handed to the decoder; `None` until an
    /// IDR, and after a loss that broke the chain.
    last_reference: Option<u32>,
}

impl ReferenceChain {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether `annex_b`, the first frame after one or more were lost, can be decoded
    /// with what the decoder already has: an IDR, or a picture whose `frame_num` follows
    /// the last reference picture given. `false` when in doubt (no SPS seen, unreadable
    /// header).
    pub fn decodable_after_loss(&mut self, annex_b: &[u8]) -> bool {
        let Some(slice) = self.first_slice(annex_b) else {
            return false;
        };
        if slice.idr {
            return true;
        }
        let (Some(sps), Some(last)) = (self.sps, self.last_reference) else {
            return false;
        };
        slice.frame_num == (last + 1) % (1 << sps.log2_max_frame_num)
    }

    /// Notes a frame handed to the decoder.
    pub fn decoded(&mut self, annex_b: &[u8]) {
        match self.first_slice(annex_b) {
            Some(slice) if slice.reference => self.last_reference = Some(slice.frame_num),
            Some(_) => {}
            None => self.last_reference = None,
        }
    }

    /// The chain is broken (a reference picture is missing): only an IDR mends it.
    pub fn broken(&mut self) {
        self.last_reference = None;
    }

    /// Reads the SPS (kept) and the first slice header of an access unit.
    fn first_slice(&mut self, annex_b: &[u8]) -> Option<SliceInfo> {
        for nal in nal_units(annex_b) {
            match nal[0] & 0x1f {
                7 => self.sps = Some(parse_sps(nal).ok()?),
                1 | 5 => return parse_slice(nal, self.sps.as_ref()?).ok(),
                _ => {}
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_golomb_and_emulation_prevention() {
        // 1 → 0; 010 → 1; 011 → 2; 00100 → 3; then an 00 00 03 01 run.
        let mut r = Bits::new(&[0b1010_0110, 0b0100_0000]);
        assert_eq!(
            [r.ue(), r.ue(), r.ue(), r.ue()],
            [Some(0), Some(1), Some(2), Some(3)]
        );
        let mut r = Bits::new(&[0, 0, 3, 1]);
        assert_eq!(r.bits(24), Some(1), "the 03 is not payload");
        let mut r = Bits::new(&[0b0011_0000]);
        assert_eq!(r.se(), Some(3), "00110 is ue 5, which is se +3");
        let mut r = Bits::new(&[0b0010_1000]);
        assert_eq!(r.se(), Some(-2), "00101 is ue 4, which is se -2");
    }

    #[test]
    fn truncated_or_foreign_input_is_an_error_not_a_panic() {
        assert!(parse_sps(&[]).is_err());
        assert!(parse_sps(&[0x67]).is_err());
        assert!(parse_sps(&[0x68, 1, 2, 3]).is_err());
        let sps = Sps {
            log2_max_frame_num: 16,
            separate_colour_plane: false,
        };
        assert!(parse_slice(&[0x41], &sps).is_err());
        assert!(parse_slice(&[0x67, 0xff], &sps).is_err());
        // 40 zero bits: an Exp-Golomb code longer than any valid one.
        assert!(parse_slice(&[0x41, 0, 0, 0, 0, 0], &sps).is_err());
        let mut chain = ReferenceChain::new();
        assert!(!chain.decodable_after_loss(&[0, 0, 1]));
        assert!(!chain.decodable_after_loss(&[]));
    }
}
