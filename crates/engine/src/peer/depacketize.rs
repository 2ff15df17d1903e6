//! H.264 RTP payloads (RFC 6184: single NAL units, STAP-A, FU-A) back to Annex B, for the
//! pipeline's frame assembly. A thin wrapper so webrtc-rs stays inside `peer`.

use rtc::rtp::codec::h264::H264Packet;
use rtc::rtp::packetizer::Depacketizer;

/// A payload that is not valid H.264 RTP.
#[derive(Debug, thiserror::Error)]
#[error("not a valid H.264 RTP payload: {0}")]
pub struct DepacketizeError(String);

/// Turns the payloads of one frame, in sequence order, into an Annex B access unit.
/// Stateful across payloads (a fragmented NAL unit spans several); [`Self::reset`] after
/// a loss.
#[derive(Debug, Default)]
pub struct H264Depacketizer {
    inner: H264Packet,
}

impl H264Depacketizer {
    /// Appends what `payload` carries to `annex_b`.
    pub fn push(
        &mut self,
        payload: &bytes::Bytes,
        annex_b: &mut Vec<u8>,
    ) -> Result<(), DepacketizeError> {
        let out = self
            .inner
            .depacketize(payload)
            .map_err(|e| DepacketizeError(e.to_string()))?;
        annex_b.extend_from_slice(&out);
        Ok(())
    }

    /// Forgets a half-received fragmented NAL unit.
    pub fn reset(&mut self) {
        self.inner = H264Packet::default();
    }
}

/// Whether an H.264 RTP payload begins an access unit (a frame): an access unit
/// delimiter or a sequence parameter set (what a keyframe starts with), or a non-IDR
/// slice with `first_mb_in_slice` 0 (its first bit is then 1) or the first fragment of
/// one; for an aggregation packet, its first NAL unit. After a lost run of packets, the
/// packet that follows can then be known to start a frame of its own rather than to be
/// the rest of a lost one. A picture parameter set or an IDR slice is not taken for a
/// start: each follows the sequence parameter set in its access unit, and a keyframe
/// released without that (a new size's) would not decode.
pub fn starts_picture(payload: &[u8]) -> bool {
    const FIRST_MB_ZERO: u8 = 0x80;
    let nal_starts = |nal_type: u8, first_payload_byte: Option<&u8>| match nal_type {
        7 | 9 => true,
        1 => first_payload_byte.is_some_and(|b| b & FIRST_MB_ZERO != 0),
        _ => false,
    };
    match payload.first().map(|h| h & 0x1f) {
        Some(24) => {
            // STAP-A: header, then (16-bit size, NAL unit) pairs.
            payload
                .get(3)
                .is_some_and(|&h| nal_starts(h & 0x1f, payload.get(4)))
        }
        Some(28) => {
            // FU-A: indicator, header (S bit 0x80, original type), then the NAL's payload.
            payload
                .get(1)
                .is_some_and(|&fu| fu & 0x80 != 0 && nal_starts(fu & 0x1f, payload.get(2)))
        }
        Some(t) => nal_starts(t, payload.get(1)),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_packet_of_a_picture_is_recognised() {
        // Single NAL units: SPS, a slice starting at macroblock 0, one starting later.
        assert!(starts_picture(&[0x67, 0x42, 0xe0]));
        assert!(starts_picture(&[0x41, 0x9a, 0x00]));
        assert!(!starts_picture(&[0x41, 0x5a, 0x00]), "first_mb_in_slice 1");
        // What comes after the SPS in a keyframe: its PPS, its IDR slice.
        assert!(!starts_picture(&[0x68, 0xce, 0x3c]));
        assert!(!starts_picture(&[0x65, 0x88, 0x84]));
        // STAP-A carrying SPS first; FU-A start and middle fragments of a P slice, and
        // the start of an IDR slice's.
        assert!(starts_picture(&[0x78, 0x00, 0x03, 0x67, 0x42, 0xe0]));
        assert!(starts_picture(&[0x7c, 0x81, 0x9a, 0x84]));
        assert!(
            !starts_picture(&[0x7c, 0x01, 0x9a, 0x84]),
            "not the first fragment"
        );
        assert!(!starts_picture(&[0x7c, 0x85, 0x88, 0x84]), "an IDR slice");
        // Nothing, padding, truncated aggregation and fragmentation packets.
        for payload in [&[][..], &[0x78, 0x00], &[0x7c], &[0x41]] {
            assert!(!starts_picture(payload), "{payload:?}");
        }
    }

    #[test]
    fn single_nal_units_get_a_start_code_and_garbage_is_an_error() {
        let mut depacketizer = H264Depacketizer::default();
        let mut out = Vec::new();
        depacketizer
            .push(&bytes::Bytes::from_static(&[0x65, 1, 2, 3]), &mut out)
            .expect("an IDR slice");
        assert_eq!(out, [0, 0, 0, 1, 0x65, 1, 2, 3]);
        assert!(
            depacketizer.push(&bytes::Bytes::new(), &mut out).is_err(),
            "empty payload"
        );
    }
}
