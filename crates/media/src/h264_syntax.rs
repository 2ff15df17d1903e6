//! Just enough H.264 syntax to tell, after a lost frame, whether the next one can still
//! be decoded: the parameter sets' fields a slice header needs, and each slice header
//! up to its reference marking (ITU-T H.264 7.3.2.1, 7.3.2.2 and 7.3.3) — `frame_num`,
//! `nal_ref_idc`, the reference list's modification and the memory management
//! operations that make pictures long-term. `ReferenceChain` (`h264_chain.rs`) follows
//! them.

use crate::MediaError;

/// The parts of a sequence parameter set a slice header needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sps {
    pub log2_max_frame_num: u32,
    pub separate_colour_plane: bool,
    pub pic_order_cnt_type: u32,
    /// `log2_max_pic_order_cnt_lsb` (picture order type 0).
    pub log2_max_poc_lsb: u32,
    pub delta_pic_order_always_zero: bool,
    pub frame_mbs_only: bool,
}

impl Sps {
    /// The parts a slice header's first fields need (type 0 picture order, frames only).
    pub fn basic(log2_max_frame_num: u32) -> Self {
        Self {
            log2_max_frame_num,
            separate_colour_plane: false,
            pic_order_cnt_type: 2,
            log2_max_poc_lsb: 4,
            delta_pic_order_always_zero: true,
            frame_mbs_only: true,
        }
    }
}

/// The parts of a picture parameter set a slice header needs (ITU-T H.264 7.3.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pps {
    pub id: u32,
    pub bottom_field_pic_order_in_frame_present: bool,
    pub num_ref_idx_l0_default_active: u32,
    pub weighted_pred: bool,
    pub redundant_pic_cnt_present: bool,
}

/// A memory management control operation (`dec_ref_pic_marking`, 7.3.3.3): how a
/// reference picture changes hands between the short- and long-term lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mmco {
    /// 1: a short-term picture (`difference_of_pic_nums_minus1`) is no longer a reference.
    ShortUnused { difference_minus1: u32 },
    /// 2: a long-term picture is no longer a reference.
    LongUnused { long_term_pic_num: u32 },
    /// 3: a short-term picture becomes long-term picture `long_term_frame_idx`.
    ShortToLong {
        difference_minus1: u32,
        long_term_frame_idx: u32,
    },
    /// 4: long-term indices from this one up are dropped.
    MaxLongTermIdxPlus1(u32),
    /// 5: every reference picture is dropped.
    Reset,
    /// 6: this picture becomes long-term picture `long_term_frame_idx`.
    CurrentToLong { long_term_frame_idx: u32 },
}

/// The most operations one slice header may carry here (openh264 writes three).
pub const MAX_MMCO: usize = 16;

/// Everything in a P or I slice header that says which pictures it refers to and keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SliceHeader {
    pub info: SliceInfo,
    /// A P slice (it refers to earlier pictures); otherwise I.
    pub predicted: bool,
    pub idr_pic_id: Option<u32>,
    /// How many pictures the slice's reference list holds.
    pub num_ref_idx_active: u32,
    /// The list's first entry, when the slice moves a long-term picture there
    /// (`ref_pic_list_modification`, `modification_of_pic_nums_idc` 2).
    pub first_ref_long_term: Option<u32>,
    /// An IDR that becomes long-term picture 0 (`long_term_reference_flag`).
    pub idr_long_term: bool,
    mmco: [Option<Mmco>; MAX_MMCO],
}

impl SliceHeader {
    /// The slice's memory management operations, in order.
    pub fn mmco(&self) -> impl Iterator<Item = Mmco> + '_ {
        self.mmco.iter().map_while(|m| *m)
    }

    /// The `frame_num` of the picture this slice makes long-term, if any: the IDR
    /// itself, this picture (operation 6) or an earlier short-term one (operation 3).
    pub fn long_term_marked(&self, sps: &Sps) -> Option<u32> {
        if self.idr_long_term {
            return Some(self.info.frame_num);
        }
        let max = 1u32 << sps.log2_max_frame_num;
        self.mmco().fold(None, |marked, op| match op {
            Mmco::CurrentToLong { .. } => Some(self.info.frame_num),
            Mmco::ShortToLong {
                difference_minus1, ..
            } => Some((self.info.frame_num + max - (difference_minus1 % max) - 1) % max),
            _ => marked,
        })
    }
}

/// A frame's name both ends can compute: FNV-1a of its first slice's bytes (the NAL unit,
/// start code left out). A receiver names the frames it decoded with it; the sender finds
/// them among those it sent since its last IDR, so a name from an earlier stream (another
/// encoder, a lost IDR) matches nothing.
pub fn fingerprint(annex_b: &[u8]) -> Option<u32> {
    let slice = nal_units(annex_b).find(|nal| matches!(nal[0] & 0x1f, 1 | 5))?;
    Some(slice.iter().fold(0x811c_9dc5u32, |hash, &b| {
        (hash ^ u32::from(b)).wrapping_mul(0x0100_0193)
    }))
}

/// Reads access units in order: keeps the last parameter sets and reads each unit's
/// first slice header.
#[derive(Debug, Default, Clone)]
pub struct HeaderReader {
    sps: Option<Sps>,
    pps: Option<Pps>,
}

impl HeaderReader {
    pub fn new() -> Self {
        Self::default()
    }

    /// The parameter set the last slice read refers to.
    pub fn sps(&self) -> Option<&Sps> {
        self.sps.as_ref()
    }

    /// Reads the parameter sets (kept) and the first slice header of an access unit:
    /// its first fields, and the whole header when the parameter sets allow.
    pub fn first_slice(&mut self, annex_b: &[u8]) -> Option<(SliceInfo, Option<SliceHeader>)> {
        for nal in nal_units(annex_b) {
            match nal[0] & 0x1f {
                7 => self.sps = Some(parse_sps(nal).ok()?),
                8 => self.pps = parse_pps(nal).ok(),
                1 | 5 => {
                    let sps = self.sps.as_ref()?;
                    let info = parse_slice(nal, sps).ok()?;
                    let header = self
                        .pps
                        .as_ref()
                        .and_then(|pps| parse_slice_header(nal, sps, pps).ok());
                    return Some((info, header));
                }
                _ => {}
            }
        }
        None
    }
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
        let pic_order_cnt_type = r.ue()?;
        let (mut log2_max_poc_lsb, mut delta_pic_order_always_zero) = (4, false);
        match pic_order_cnt_type {
            0 => log2_max_poc_lsb = r.ue()?.checked_add(4)?,
            1 => {
                delta_pic_order_always_zero = r.bit()? == 1;
                r.se()?; // offset_for_non_ref_pic
                r.se()?; // offset_for_top_to_bottom_field
                let cycle = r.ue()?;
                if cycle > 255 {
                    return None;
                }
                for _ in 0..cycle {
                    r.se()?; // offset_for_ref_frame
                }
            }
            2 => {}
            _ => return None,
        }
        r.ue()?; // max_num_ref_frames
        r.bit()?; // gaps_in_frame_num_value_allowed_flag
        r.ue()?; // pic_width_in_mbs_minus1
        r.ue()?; // pic_height_in_map_units_minus1
        let frame_mbs_only = r.bit()? == 1;
        (log2_max_frame_num <= 16 && log2_max_poc_lsb <= 16).then_some(Sps {
            log2_max_frame_num,
            separate_colour_plane,
            pic_order_cnt_type,
            log2_max_poc_lsb,
            delta_pic_order_always_zero,
            frame_mbs_only,
        })
    })();
    sps.ok_or_else(|| bad("SPS"))
}

/// Parses a picture parameter set (a NAL unit of type 8, header byte included).
pub fn parse_pps(nal: &[u8]) -> Result<Pps, MediaError> {
    if nal.first().map(|h| h & 0x1f) != Some(8) {
        return Err(bad("PPS (wrong NAL type)"));
    }
    let mut r = Bits::new(&nal[1..]);
    let pps = (|| {
        let id = r.ue()?;
        r.ue()?; // seq_parameter_set_id
        r.bit()?; // entropy_coding_mode_flag
        let bottom_field_pic_order_in_frame_present = r.bit()? == 1;
        if r.ue()? != 0 {
            // Slice groups (FMO): not in the profiles we take.
            return None;
        }
        let num_ref_idx_l0_default_active = r.ue()?.checked_add(1)?;
        r.ue()?; // num_ref_idx_l1_default_active_minus1
        let weighted_pred = r.bit()? == 1;
        r.bits(2)?; // weighted_bipred_idc
        r.se()?; // pic_init_qp_minus26
        r.se()?; // pic_init_qs_minus26
        r.se()?; // chroma_qp_index_offset
        r.bit()?; // deblocking_filter_control_present_flag
        r.bit()?; // constrained_intra_pred_flag
        let redundant_pic_cnt_present = r.bit()? == 1;
        Some(Pps {
            id,
            bottom_field_pic_order_in_frame_present,
            num_ref_idx_l0_default_active,
            weighted_pred,
            redundant_pic_cnt_present,
        })
    })();
    pps.ok_or_else(|| bad("PPS"))
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

/// Reads a P or I slice's header whole, up to its reference marking (7.3.3). Slices of
/// other kinds (B, SP, SI), field pictures and weighted prediction are errors: nothing we
/// decode makes them, and a caller in doubt keeps to what it knows.
pub fn parse_slice_header(nal: &[u8], sps: &Sps, pps: &Pps) -> Result<SliceHeader, MediaError> {
    let info = parse_slice(nal, sps)?;
    let mut r = Bits::new(&nal[1..]);
    let header = (|| {
        r.ue()?; // first_mb_in_slice
        let slice_type = r.ue()? % 5;
        let predicted = match slice_type {
            0 => true,
            2 => false,
            _ => return None,
        };
        if r.ue()? != pps.id {
            return None;
        }
        if sps.separate_colour_plane {
            r.bits(2)?;
        }
        r.bits(sps.log2_max_frame_num)?; // frame_num
        if !sps.frame_mbs_only && r.bit()? == 1 {
            return None; // field_pic_flag
        }
        let idr_pic_id = if info.idr { Some(r.ue()?) } else { None };
        match sps.pic_order_cnt_type {
            0 => {
                r.bits(sps.log2_max_poc_lsb)?;
                if pps.bottom_field_pic_order_in_frame_present {
                    r.se()?;
                }
            }
            1 if !sps.delta_pic_order_always_zero => {
                r.se()?;
                if pps.bottom_field_pic_order_in_frame_present {
                    r.se()?;
                }
            }
            _ => {}
        }
        if pps.redundant_pic_cnt_present {
            r.ue()?;
        }
        let mut num_ref_idx_active = pps.num_ref_idx_l0_default_active;
        let mut first_ref_long_term = None;
        if predicted {
            if r.bit()? == 1 {
                num_ref_idx_active = r.ue()?.checked_add(1)?;
            }
            if r.bit()? == 1 {
                // ref_pic_list_modification_flag_l0: operations until idc 3.
                for entry in 0..=32 {
                    match r.ue()? {
                        0 | 1 => {
                            r.ue()?;
                        }
                        2 => {
                            let long_term_pic_num = r.ue()?;
                            if entry == 0 {
                                first_ref_long_term = Some(long_term_pic_num);
                            }
                        }
                        3 => break,
                        _ => return None,
                    }
                    if entry == 32 {
                        return None;
                    }
                }
            }
            if pps.weighted_pred {
                return None;
            }
        }
        let mut idr_long_term = false;
        let mut mmco = [None; MAX_MMCO];
        if info.reference {
            if info.idr {
                r.bit()?; // no_output_of_prior_pics_flag
                idr_long_term = r.bit()? == 1;
            } else if r.bit()? == 1 {
                // adaptive_ref_pic_marking_mode_flag: operations until 0.
                let mut count = 0;
                loop {
                    let op = match r.ue()? {
                        0 => break,
                        1 => Mmco::ShortUnused {
                            difference_minus1: r.ue()?,
                        },
                        2 => Mmco::LongUnused {
                            long_term_pic_num: r.ue()?,
                        },
                        3 => Mmco::ShortToLong {
                            difference_minus1: r.ue()?,
                            long_term_frame_idx: r.ue()?,
                        },
                        4 => Mmco::MaxLongTermIdxPlus1(r.ue()?),
                        5 => Mmco::Reset,
                        6 => Mmco::CurrentToLong {
                            long_term_frame_idx: r.ue()?,
                        },
                        _ => return None,
                    };
                    *mmco.get_mut(count)? = Some(op);
                    count += 1;
                }
            }
        }
        Some(SliceHeader {
            info,
            predicted,
            idr_pic_id,
            num_ref_idx_active,
            first_ref_long_term,
            idr_long_term,
            mmco,
        })
    })();
    header.ok_or_else(|| bad("slice header"))
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
        let sps = Sps::basic(16);
        assert!(parse_slice(&[0x41], &sps).is_err());
        assert!(parse_slice(&[0x67, 0xff], &sps).is_err());
        // 40 zero bits: an Exp-Golomb code longer than any valid one.
        assert!(parse_slice(&[0x41, 0, 0, 0, 0, 0], &sps).is_err());
    }
}
