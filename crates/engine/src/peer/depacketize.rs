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

#[cfg(test)]
mod tests {
    use super::*;

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
