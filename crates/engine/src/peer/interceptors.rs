//! The interceptor chain of a peer connection: webrtc-rs's defaults (NACK both ways,
//! TWCC reports on what we receive, RTCP reports) with NACK bounded, plus ours: keyframe
//! requests handed to the application ([`super::keyframe`]), send-side congestion
//! control — our packets carry transport-wide sequence numbers, the peer's feedback drives
//! our estimator ([`super::bwe`]) and the encoder follows what it publishes —, the
//! retransmission budget ([`super::retransmit`]) and retransmissions received over RTX
//! restored before the NACK generator sees them ([`super::rtx`]). No pacer interceptor: its one FIFO would
//! queue audio behind video; the video writer paces (`tracks.rs`).

use std::sync::Arc;
use std::time::Duration;

use rtc::interceptor::{
    CongestionControlBuilder, Interceptor, NackGeneratorBuilder, NackResponderBuilder, Slot,
    StreamInfo, TaggedPacket, TwccSenderBuilder,
};
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_rtcp_reports, configure_simulcast_extension_headers, configure_twcc_receiver_only,
};
use rtc::rtp_transceiver::rtp_sender::{RTCPFeedback, RtpCodecKind, TYPE_RTCP_FB_NACK};
use rtc::sansio::Protocol;
use webrtc::peer_connection::{MediaEngine, Registry};

use super::keyframe::KeyframeRequestForwarder;
use super::{bwe, retransmit, rtx};
use crate::packets::Bandwidth;

/// How often the receiver asks again for packets still missing.
const NACK_INTERVAL: Duration = Duration::from_millis(25);
/// How many times a missing packet is asked for (over 400 ms). webrtc-rs's default is
/// without limit: every missing packet, every interval, for as long as it is in the
/// receive log — under loss into a full queue those retransmissions became most of what
/// was sent. What is resent is also held to a budget (retransmit.rs).
const NACKS_PER_PACKET: u16 = 16;

/// NACK both ways (as webrtc-rs's `configure_nack`), asking for each packet a bounded
/// number of times.
fn bounded_nack(registry: Registry, media: &mut MediaEngine) -> Registry {
    // `rpsi`: our picture feedback (keyframe.rs), for recovery without keyframes.
    for parameter in ["", "pli", "rpsi"] {
        media.register_feedback(
            RTCPFeedback {
                typ: TYPE_RTCP_FB_NACK.to_owned(),
                parameter: parameter.to_owned(),
            },
            RtpCodecKind::Video,
        );
    }
    registry
        .with(Slot::NackResponder, NackResponderBuilder::new().build())
        .with(
            Slot::NackGenerator,
            NackGeneratorBuilder::new()
                .with_interval(NACK_INTERVAL)
                .with_max_nacks_per_packet(NACKS_PER_PACKET)
                .build(),
        )
}

/// The whole chain; registers what it needs (feedback types, header extensions) in
/// `media`. The estimator starts at [`bwe::INITIAL_BPS`], never above `max_bitrate_bps`,
/// and publishes to `bandwidth`.
pub(super) fn registry(
    media: &mut MediaEngine,
    max_bitrate_bps: u32,
    bandwidth: &Arc<Bandwidth>,
) -> Result<Registry, rtc::shared::error::Error> {
    let estimator = bwe::Estimator::new(
        bwe::INITIAL_BPS,
        f64::from(max_bitrate_bps),
        Arc::clone(bandwidth),
    );
    let coverage = estimator.coverage();
    configure_simulcast_extension_headers(media)?;
    let registry = bounded_nack(Registry::new(), media);
    let registry = configure_twcc_receiver_only(registry, media)?;
    Ok(configure_rtcp_reports(registry)
        .with(Slot::from(14_000), KeyframeRequestForwarder::default())
        // After a FEC decoder's place, before the NACK generator's (7_000): a packet that
        // came over RTX counts as arrived on its media stream.
        .with(Slot::from(6_500), rtx::RtxReceiver::new())
        // Wire-ward of the controller: marks what each feedback names as lost before the
        // controller hands its reports to the estimator.
        .with(Slot::from(500), bwe::LossRecorder::new(coverage))
        .with(
            Slot::CongestionControl,
            WithRepairs(CongestionControlBuilder::new(estimator).build()),
        )
        .with(
            Slot::TwccSender,
            WithRepairs(TwccSenderBuilder::new().build()),
        )
        // Where webrtc-rs's pacer would go: between the NACK responder and numbering.
        .with(
            Slot::Pacer,
            retransmit::RetransmissionBudget::new(Arc::clone(bandwidth)),
        ))
}

/// An interceptor that also treats each stream's RTX SSRC as a stream of its own.
///
/// webrtc-rs binds a sending stream once, by its media SSRC, and its TWCC numbering and
/// send history key on that: retransmissions, which go out on the RTX SSRC, carried no
/// transport-wide number (measured: 337 of 2,011 packets in a 5 s call at 20 % loss), so
/// the peer's feedback never covered them and the estimator saw neither their rate nor
/// their loss, while on a randomly lossy path they may be up to three times the target
/// (retransmit.rs). Wrapped around the numbering and the history, repairs are numbered
/// and counted like the media they repair.
struct WithRepairs<I>(I);

impl<I> WithRepairs<I> {
    /// The stream as the RTX SSRC's own, if it has one.
    fn repairs(info: &StreamInfo) -> Option<StreamInfo> {
        info.ssrc_rtx.map(|rtx| StreamInfo {
            ssrc: rtx,
            ssrc_rtx: None,
            ..info.clone()
        })
    }
}

impl<I: Interceptor> Protocol<TaggedPacket, TaggedPacket, ()> for WithRepairs<I> {
    type Rout = TaggedPacket;
    type Wout = TaggedPacket;
    type Eout = ();
    type Error = rtc::shared::error::Error;
    type Time = std::time::Instant;

    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.0.handle_read(msg)
    }
    fn poll_read(&mut self) -> Option<TaggedPacket> {
        self.0.poll_read()
    }
    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Self::Error> {
        self.0.handle_write(msg)
    }
    fn poll_write(&mut self) -> Option<TaggedPacket> {
        self.0.poll_write()
    }
    fn handle_event(&mut self, evt: ()) -> Result<(), Self::Error> {
        self.0.handle_event(evt)
    }
    fn poll_event(&mut self) -> Option<()> {
        self.0.poll_event()
    }
    fn handle_timeout(&mut self, now: Self::Time) -> Result<(), Self::Error> {
        self.0.handle_timeout(now)
    }
    fn poll_timeout(&mut self) -> Option<Self::Time> {
        self.0.poll_timeout()
    }
    fn close(&mut self) -> Result<(), Self::Error> {
        self.0.close()
    }
}

impl<I: Interceptor> Interceptor for WithRepairs<I> {
    fn bind_local_stream(&mut self, info: &StreamInfo) {
        self.0.bind_local_stream(info);
        if let Some(repairs) = Self::repairs(info) {
            self.0.bind_local_stream(&repairs);
        }
    }
    fn unbind_local_stream(&mut self, info: &StreamInfo) {
        self.0.unbind_local_stream(info);
        if let Some(repairs) = Self::repairs(info) {
            self.0.unbind_local_stream(&repairs);
        }
    }
    fn bind_remote_stream(&mut self, info: &StreamInfo) {
        self.0.bind_remote_stream(info);
    }
    fn unbind_remote_stream(&mut self, info: &StreamInfo) {
        self.0.unbind_remote_stream(info);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::interceptor::{Packet, RTPHeaderExtension};
    use rtc::sdp::extmap::TRANSPORT_CC_URI;

    /// Sends one packet on `ssrc` through `numbering`; whether it left with a
    /// transport-wide number (extension 5).
    fn numbered(numbering: &mut impl Interceptor, ssrc: u32) -> bool {
        let mut rtp = rtc::rtp::Packet::default();
        rtp.header.ssrc = ssrc;
        numbering
            .handle_write(TaggedPacket {
                now: std::time::Instant::now(),
                transport: Default::default(),
                message: Packet::Rtp(rtp).into(),
            })
            .expect("write");
        match numbering.poll_write().map(|m| m.message.packet) {
            Some(Packet::Rtp(rtp)) => rtp.header.get_extension(5).is_some(),
            _ => panic!("the packet did not come out"),
        }
    }

    #[test]
    fn repairs_on_the_rtx_ssrc_get_transport_wide_numbers() {
        let video = StreamInfo {
            ssrc: 1000,
            ssrc_rtx: Some(2000),
            rtp_header_extensions: vec![RTPHeaderExtension {
                uri: TRANSPORT_CC_URI.to_owned(),
                id: 5,
            }],
            ..Default::default()
        };
        // webrtc-rs alone numbers the media SSRC only.
        let mut plain = TwccSenderBuilder::new().build();
        plain.bind_local_stream(&video);
        assert!(numbered(&mut plain, 1000));
        assert!(!numbered(&mut plain, 2000));
        // Wrapped, the RTX SSRC too, until the stream is unbound.
        let mut wrapped = WithRepairs(TwccSenderBuilder::new().build());
        wrapped.bind_local_stream(&video);
        assert!(numbered(&mut wrapped, 1000));
        assert!(numbered(&mut wrapped, 2000));
        wrapped.unbind_local_stream(&video);
        assert!(!numbered(&mut wrapped, 2000));
    }
}
