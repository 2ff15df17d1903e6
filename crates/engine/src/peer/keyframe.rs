//! Keyframe requests both ways: an interceptor that hands the peer's PLI, FIR and
//! picture feedback to the application (webrtc-rs keeps inbound RTCP inside its
//! interceptors unless one marks it for delivery), and the PLI we send when our decoder
//! needs a fresh picture.
//!
//! Picture feedback ([`PictureFeedback`]: a long-term picture decoded, or a request to
//! recover from one) travels as an RTCP Reference Picture Selection Indication (RFC 4585
//! 6.3.3, payload-specific feedback 3) whose "native" bit string is ours: the bytes `CH`,
//! a kind, and frame fingerprints ([`Rpsi`]). A peer offers it with `a=rtcp-fb:<pt> nack
//! rpsi`; others never see one.

use std::collections::VecDeque;
use std::time::Instant;

use bytes::{Buf, BufMut};
use rtc::interceptor::{Attribute, Interceptor, Packet, StreamInfo, TaggedPacket};
use rtc::rtcp::header::{Header, PacketType};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtcp::raw_packet::RawPacket;
use rtc::sansio::Protocol;
use rtc::shared::error::Error;
use rtc::shared::marshal::{Marshal, MarshalSize, Unmarshal};

use crate::packets::PictureFeedback;

/// RFC 4585's format number for a Reference Picture Selection Indication.
const FORMAT_RPSI: u8 = 3;
/// Header, two SSRCs, then PB, payload type, `CH`, kind, two fingerprints, and three
/// bytes of padding to a 32-bit boundary (PB counts them in bits).
const RPSI_LEN: usize = 28;
const RPSI_PADDING_BITS: u8 = 24;
const MAGIC: [u8; 2] = *b"CH";

/// Our picture feedback, as an RTCP packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rpsi {
    pub(crate) sender_ssrc: u32,
    pub(crate) media_ssrc: u32,
    pub(crate) payload_type: u8,
    pub(crate) feedback: PictureFeedback,
}

impl std::fmt::Display for Rpsi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RPSI {:x} {:?}", self.media_ssrc, self.feedback)
    }
}

impl rtc::rtcp::Packet for Rpsi {
    fn header(&self) -> Header {
        Header {
            padding: false,
            count: FORMAT_RPSI,
            packet_type: PacketType::PayloadSpecificFeedback,
            length: (RPSI_LEN / 4 - 1) as u16,
        }
    }

    fn destination_ssrc(&self) -> Vec<u32> {
        vec![self.media_ssrc]
    }

    fn raw_size(&self) -> usize {
        RPSI_LEN
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }

    fn equal(&self, other: &dyn rtc::rtcp::Packet) -> bool {
        other.as_any().downcast_ref::<Rpsi>() == Some(self)
    }

    fn cloned(&self) -> Box<dyn rtc::rtcp::Packet> {
        Box::new(self.clone())
    }
}

impl MarshalSize for Rpsi {
    fn marshal_size(&self) -> usize {
        RPSI_LEN
    }
}

impl Marshal for Rpsi {
    fn marshal_to(&self, mut buf: &mut [u8]) -> Result<usize, Error> {
        if buf.len() < RPSI_LEN {
            return Err(Error::BufferTooShort);
        }
        let n = rtc::rtcp::Packet::header(self).marshal_to(buf)?;
        buf = &mut buf[n..];
        buf.put_u32(self.sender_ssrc);
        buf.put_u32(self.media_ssrc);
        buf.put_u8(RPSI_PADDING_BITS);
        buf.put_u8(self.payload_type & 0x7f);
        buf.put_slice(&MAGIC);
        let (kind, a, b) = match self.feedback {
            PictureFeedback::LongTermDecoded { frame } => (1, frame, 0),
            PictureFeedback::Recover {
                last_decoded,
                current,
            } => (2, last_decoded, current),
        };
        buf.put_u8(kind);
        buf.put_u32(a);
        buf.put_u32(b);
        buf.put_slice(&[0; 3]);
        Ok(RPSI_LEN)
    }
}

impl Unmarshal for Rpsi {
    fn unmarshal<B: Buf>(raw: &mut B) -> Result<Self, Error> {
        if raw.remaining() < RPSI_LEN {
            return Err(Error::PacketTooShort);
        }
        let header = Header::unmarshal(raw)?;
        if header.packet_type != PacketType::PayloadSpecificFeedback || header.count != FORMAT_RPSI
        {
            return Err(Error::WrongType);
        }
        let sender_ssrc = raw.get_u32();
        let media_ssrc = raw.get_u32();
        raw.get_u8(); // PB
        let payload_type = raw.get_u8() & 0x7f;
        let mut magic = [0; 2];
        raw.copy_to_slice(&mut magic);
        let kind = raw.get_u8();
        let (a, b) = (raw.get_u32(), raw.get_u32());
        raw.advance(raw.remaining());
        let feedback = match (magic, kind) {
            (MAGIC, 1) => PictureFeedback::LongTermDecoded { frame: a },
            (MAGIC, 2) => PictureFeedback::Recover {
                last_decoded: a,
                current: b,
            },
            // Another implementation's RPSI (a codec's own picture ids): not ours.
            _ => return Err(Error::WrongType),
        };
        Ok(Self {
            sender_ssrc,
            media_ssrc,
            payload_type,
            feedback,
        })
    }
}

/// Reads our picture feedback from an RTCP packet webrtc-rs did not parse.
fn picture_feedback(packet: &dyn rtc::rtcp::Packet) -> Option<Rpsi> {
    let raw = packet.as_any().downcast_ref::<RawPacket>()?;
    Rpsi::unmarshal(&mut raw.0.clone()).ok()
}

/// Marks inbound keyframe requests (PLI, FIR) and picture feedback for delivery to the
/// application; every other inbound RTCP stays with the interceptors. Registered last in
/// the chain.
#[derive(Default)]
pub(super) struct KeyframeRequestForwarder {
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for KeyframeRequestForwarder {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = Instant;

    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Self::Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            let requests: Vec<Box<dyn rtc::rtcp::Packet>> = packets
                .iter()
                .filter_map(|p| {
                    let any = p.as_any();
                    if any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>() {
                        Some(p.clone())
                    } else {
                        // Routed to our video track by its media SSRC (webrtc-rs routes
                        // what it delivers by the first packet's destination).
                        picture_feedback(p.as_ref())
                            .map(|r| Box::new(r) as Box<dyn rtc::rtcp::Packet>)
                    }
                })
                .collect();
            if requests.is_empty() {
                return Ok(());
            }
            msg.message.packet = Packet::Rtcp(requests);
            msg.message.add(Attribute::DeliverToApplication);
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

impl Interceptor for KeyframeRequestForwarder {
    fn bind_local_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_local_stream(&mut self, _info: &StreamInfo) {}
    fn bind_remote_stream(&mut self, _info: &StreamInfo) {}
    fn unbind_remote_stream(&mut self, _info: &StreamInfo) {}
}

/// Picture feedback for the peer's video stream `media_ssrc` (payload type
/// `payload_type`).
pub(super) fn picture_feedback_packet(
    media_ssrc: u32,
    payload_type: u8,
    feedback: PictureFeedback,
) -> Box<dyn rtc::rtcp::Packet> {
    Box::new(Rpsi {
        sender_ssrc: 0,
        media_ssrc,
        payload_type,
        feedback,
    })
}

/// The keyframe requests and picture feedback in RTCP delivered on our video track.
pub(super) fn requests(packets: &[Box<dyn rtc::rtcp::Packet>]) -> (bool, Vec<PictureFeedback>) {
    let mut keyframe = false;
    let mut feedback = Vec::new();
    for p in packets {
        let any = p.as_any();
        if any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>() {
            keyframe = true;
        } else if let Some(r) = any.downcast_ref::<Rpsi>() {
            feedback.push(r.feedback);
        }
    }
    (keyframe, feedback)
}

/// Hands the keyframe requests and picture feedback that arrive on our video track to
/// the peer's events, until the track or the events end.
pub(super) async fn forward_requests(
    video: std::sync::Arc<webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP>,
    events: tokio::sync::mpsc::Sender<super::PeerEvent>,
) {
    use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
    while let Some(event) = video.poll().await {
        let TrackLocalEvent::OnRtcpPacket(packets) = event else {
            continue;
        };
        let (keyframe, feedback) = requests(&packets);
        let arrived = keyframe
            .then_some(super::PeerEvent::KeyframeRequested)
            .into_iter()
            .chain(feedback.into_iter().map(super::PeerEvent::PictureFeedback));
        for event in arrived {
            if events.try_send(event).is_err() && events.is_closed() {
                return;
            }
        }
    }
}

/// Whether the peer whose description this is takes our picture feedback: it offers
/// it, and `CHINGU_NO_PICTURE_FEEDBACK` is not set (a switch to measure what recovery
/// brings in the same build: keyframes only).
pub(super) fn peer_recovers(sdp: &str) -> bool {
    offers_picture_feedback(sdp) && std::env::var_os("CHINGU_NO_PICTURE_FEEDBACK").is_none()
}

/// Whether a session description offers our picture feedback (`a=rtcp-fb:<pt> nack
/// rpsi`).
fn offers_picture_feedback(sdp: &str) -> bool {
    sdp.lines().any(|line| {
        line.trim_end()
            .strip_prefix("a=rtcp-fb:")
            .and_then(|rest| rest.split_once(' '))
            .is_some_and(|(_, feedback)| feedback.trim() == "nack rpsi")
    })
}

/// A PLI for the peer's video stream `media_ssrc`.
pub(super) fn picture_loss(media_ssrc: u32) -> Box<dyn rtc::rtcp::Packet> {
    Box::new(PictureLossIndication {
        sender_ssrc: 0,
        media_ssrc,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picture_feedback_survives_the_wire_and_foreign_rpsi_is_not_ours() {
        for feedback in [
            PictureFeedback::LongTermDecoded { frame: 0xdead_beef },
            PictureFeedback::Recover {
                last_decoded: 7,
                current: u32::MAX,
            },
        ] {
            let packet = picture_feedback_packet(0x1234, 102, feedback);
            let bytes = rtc::rtcp::packet::marshal(&[packet]).expect("marshal");
            assert_eq!(bytes.len(), RPSI_LEN);
            // webrtc-rs reads it as a packet it does not know; we read it back.
            let parsed = rtc::rtcp::packet::unmarshal(&mut bytes.freeze()).expect("unmarshal");
            let rpsi = picture_feedback(parsed[0].as_ref()).expect("ours");
            assert_eq!(rpsi.feedback, feedback);
            assert_eq!((rpsi.media_ssrc, rpsi.payload_type), (0x1234, 102));
        }
        // Another stack's RPSI (no `CH`), and a short one: not ours, no panic.
        let mut foreign = vec![0x83, 206, 0, 6];
        foreign.extend_from_slice(&[0; 24]);
        assert!(Rpsi::unmarshal(&mut &foreign[..]).is_err());
        assert!(Rpsi::unmarshal(&mut &foreign[..12]).is_err());
    }

    #[test]
    fn picture_feedback_is_used_only_when_the_peer_offers_it() {
        let ours = "v=0\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\na=rtcp-fb:102 nack\r\n\
                    a=rtcp-fb:102 nack pli\r\na=rtcp-fb:102 nack rpsi\r\n";
        assert!(offers_picture_feedback(ours));
        let browser = "m=video 9 UDP/TLS/RTP/SAVPF 96\r\na=rtcp-fb:96 nack\r\n\
                       a=rtcp-fb:96 nack pli\r\na=rtcp-fb:96 goog-remb\r\n";
        assert!(!offers_picture_feedback(browser));
        assert!(!offers_picture_feedback(""));
    }
}
