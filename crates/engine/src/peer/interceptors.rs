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
    CongestionControlBuilder, NackGeneratorBuilder, NackResponderBuilder, Slot, TwccSenderBuilder,
};
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_rtcp_reports, configure_simulcast_extension_headers, configure_twcc_receiver_only,
};
use rtc::rtp_transceiver::rtp_sender::{RTCPFeedback, RtpCodecKind, TYPE_RTCP_FB_NACK};
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
    for parameter in ["", "pli"] {
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
            CongestionControlBuilder::new(estimator).build(),
        )
        .with(Slot::TwccSender, TwccSenderBuilder::new().build())
        // Where webrtc-rs's pacer would go: between the NACK responder and numbering.
        .with(
            Slot::Pacer,
            retransmit::RetransmissionBudget::new(Arc::clone(bandwidth)),
        ))
}
