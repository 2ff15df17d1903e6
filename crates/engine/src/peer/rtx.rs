//! Retransmissions on their own SSRC (RFC 4588 RTX), receive side: an interceptor that
//! turns each RTX packet back into the media packet it repairs *before* webrtc-rs's NACK
//! generator sees it.
//!
//! webrtc-rs 0.21.1 sends NACK retransmissions over RTX once an `video/rtx` format is
//! negotiated (its NACK responder), and its endpoint de-encapsulates them — but only after
//! the interceptor chain. Its NACK generator, in the chain, therefore never learnt that a
//! retransmission arrived: it kept asking for the packet (up to its limit), and it
//! tracked the RTX stream's own sequence numbers as a stream to repair, asking for lost
//! retransmissions by their RTX numbers, which no sender answers. Here the packet takes
//! its original SSRC, payload type and sequence number (the OSN, RFC 4588 §4) in the
//! chain, so every interceptor after this one and the application see a media packet; a
//! padding-only RTX packet (a sender's bandwidth probe, no OSN) carries no media and is
//! dropped, so it can never cost a frame.

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use rtc::interceptor::{Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::sansio::Protocol;

/// The media stream an RTX stream repairs.
#[derive(Debug, Clone, Copy)]
struct Primary {
    ssrc: u32,
    payload_type: u8,
    rtx_payload_type: u8,
}

pub(super) struct RtxReceiver {
    /// By RTX SSRC.
    streams: HashMap<u32, Primary>,
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

impl RtxReceiver {
    pub(super) fn new() -> Self {
        Self {
            streams: HashMap::new(),
            read: VecDeque::new(),
            write: VecDeque::new(),
        }
    }

    /// Restores `packet` if it is an RTX packet of a bound stream; `false` if it carries
    /// nothing to restore and must be dropped.
    fn restore(&mut self, packet: &mut rtc::rtp::Packet) -> bool {
        let Some(primary) = self.streams.get(&packet.header.ssrc).copied() else {
            return true;
        };
        if packet.header.payload_type != primary.rtx_payload_type {
            return true;
        }
        let Some(osn) = packet.payload.get(..2) else {
            tracing::trace!(ssrc = packet.header.ssrc, "padding-only RTX packet dropped");
            return false;
        };
        packet.header.sequence_number = u16::from_be_bytes([osn[0], osn[1]]);
        packet.header.ssrc = primary.ssrc;
        packet.header.payload_type = primary.payload_type;
        packet.header.padding = false;
        packet.payload = packet.payload.slice(2..);
        true
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for RtxReceiver {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtp(rtp) = &mut msg.message.packet
            && !self.restore(rtp)
        {
            return Ok(());
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.read.pop_front()
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.write.push_back(msg);
        Ok(())
    }

    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.write.pop_front()
    }
}

impl Interceptor for RtxReceiver {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, info: &StreamInfo) {
        if let (Some(rtx), Some(rtx_payload_type)) = (info.ssrc_rtx, info.payload_type_rtx) {
            self.streams.insert(
                rtx,
                Primary {
                    ssrc: info.ssrc,
                    payload_type: info.payload_type,
                    rtx_payload_type,
                },
            );
        }
    }
    fn unbind_remote_stream(&mut self, info: &StreamInfo) {
        if let Some(rtx) = info.ssrc_rtx {
            self.streams.remove(&rtx);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn receiver() -> RtxReceiver {
        let mut r = RtxReceiver::new();
        r.bind_remote_stream(&StreamInfo {
            ssrc: 1000,
            ssrc_rtx: Some(2000),
            payload_type: 102,
            payload_type_rtx: Some(103),
            ..Default::default()
        });
        r
    }

    fn packet(
        ssrc: u32,
        payload_type: u8,
        sequence_number: u16,
        payload: &[u8],
    ) -> rtc::rtp::Packet {
        let mut p = rtc::rtp::Packet::default();
        p.header.ssrc = ssrc;
        p.header.payload_type = payload_type;
        p.header.sequence_number = sequence_number;
        p.payload = Bytes::copy_from_slice(payload);
        p
    }

    #[test]
    fn an_rtx_packet_becomes_the_media_packet_it_repairs() {
        let mut r = receiver();
        // RTX sequence number 7 carries media packet 0x1234.
        let mut p = packet(2000, 103, 7, &[0x12, 0x34, 0xAA, 0xBB]);
        assert!(r.restore(&mut p));
        assert_eq!(
            (
                p.header.ssrc,
                p.header.payload_type,
                p.header.sequence_number
            ),
            (1000, 102, 0x1234)
        );
        assert_eq!(&p.payload[..], &[0xAA, 0xBB]);
    }

    #[test]
    fn padding_only_rtx_is_dropped_and_media_passes_untouched() {
        let mut r = receiver();
        assert!(
            !r.restore(&mut packet(2000, 103, 8, &[])),
            "a probe: no OSN"
        );
        assert!(
            !r.restore(&mut packet(2000, 103, 9, &[0x01])),
            "a truncated OSN"
        );
        let mut media = packet(1000, 102, 5, &[1, 2, 3]);
        assert!(r.restore(&mut media));
        assert_eq!((media.header.ssrc, media.header.sequence_number), (1000, 5));
        assert_eq!(&media.payload[..], &[1, 2, 3]);
        // Another payload type on the RTX SSRC is not ours to rewrite.
        let mut other = packet(2000, 96, 1, &[0, 1, 2]);
        assert!(r.restore(&mut other));
        assert_eq!(other.header.ssrc, 2000);
        // After the stream is unbound its RTX packets pass as they are.
        r.unbind_remote_stream(&StreamInfo {
            ssrc: 1000,
            ssrc_rtx: Some(2000),
            ..Default::default()
        });
        let mut late = packet(2000, 103, 10, &[0, 1, 2]);
        assert!(r.restore(&mut late));
        assert_eq!(late.header.ssrc, 2000);
    }
}
