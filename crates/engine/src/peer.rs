//! The WebRTC peer connection: the only module that names webrtc-rs types.
//!
//! One [`Peer`] per call: one H.264 video and one Opus audio track each way, a data
//! channel for chat and control, NACK, PLI and RTCP reports through the default
//! interceptors. Events from the connection's driver are forwarded to a bounded channel
//! without blocking (handler callbacks run inside the driver); inbound RTP goes to the
//! media pipeline as [`RtpIn`], free of webrtc-rs types. Always [`Peer::close`]: a peer
//! connection dropped without it leaks its driver (see ../shared/notes).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chingu_proto::{IceServer, Signal};
use rtc::interceptor::{Attribute, Interceptor, Packet, Slot, StreamInfo, TaggedPacket};
use rtc::media::Sample;
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::media_engine::{MIME_TYPE_H264, MIME_TYPE_OPUS};
use rtc::rtcp::payload_feedbacks::full_intra_request::FullIntraRequest;
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp::packetizer::Packetizer;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters, RTCRtpEncodingParameters,
    RtpCodecKind,
};
use rtc::sansio::Protocol;
use tokio::sync::{Mutex, mpsc};
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, RTCIceCandidateInit, RTCIceServer, RTCPeerConnectionIceEvent,
    RTCPeerConnectionState, RTCSessionDescription, RTCStatsReport, Registry, SettingEngineBuilder,
    StatsSelector, register_default_interceptors,
};

/// Payload types we offer; the answer may pick others, so senders read the negotiated one.
const H264_PT: u8 = 102;
const OPUS_PT: u8 = 111;
const H264_FMTP: &str = "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f";
/// Label of the data channel that carries chat and media-state messages.
pub const CONTROL_CHANNEL: &str = "chingu";
/// Events queued from the driver to the engine; beyond this, state changes still arrive
/// (they are few) but candidates are dropped with a warning.
const EVENT_QUEUE: usize = 256;
/// Inbound RTP per track queued towards the media pipeline (~1 s of 720p video).
pub const RTP_QUEUE: usize = 512;
/// Remote candidates kept while waiting for the remote description.
const MAX_PENDING_CANDIDATES: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("the peer's session description is not valid: {0}")]
    BadDescription(String),
    #[error("the peer's ICE candidate is not valid: {0}")]
    BadCandidate(String),
    #[error("the peer connection failed: {0}")]
    Connection(String),
    #[error("the chat channel is not open")]
    ChannelNotOpen,
}

/// How to build a peer connection.
#[derive(Debug, Clone)]
pub struct PeerOptions {
    pub ice_servers: Vec<IceServer>,
    /// Local addresses to gather host candidates on. `0.0.0.0:0` means every interface
    /// except loopback; a loopback address is used as given (tests, benchmarks).
    pub udp_addrs: Vec<SocketAddr>,
    /// Relay only (TURN), for users who do not want to reveal their address.
    pub relay_only: bool,
    /// Unique per peer in a process: equal track ids on both ends misroute RTCP.
    pub track_prefix: String,
}

impl Default for PeerOptions {
    fn default() -> Self {
        Self {
            ice_servers: Vec::new(),
            udp_addrs: vec![SocketAddr::from(([0, 0, 0, 0], 0))],
            relay_only: false,
            track_prefix: "chingu".into(),
        }
    }
}

/// One inbound RTP packet, as the media pipeline needs it.
#[derive(Debug, Clone)]
pub struct RtpIn {
    pub sequence: u16,
    pub timestamp: u32,
    pub marker: bool,
    pub payload: Bytes,
}

/// What the peer connection reports to the engine.
#[derive(Debug, Clone)]
pub enum PeerEvent {
    /// A local candidate to send to the peer.
    Candidate(Signal),
    /// Gathering finished; tell the peer there are no more candidates.
    GatheringComplete,
    /// DTLS is up: media can flow.
    Connected,
    /// The connection failed or was lost.
    Failed(String),
    /// Nothing arrived from the peer for a few seconds (ICE disconnected): the network
    /// may be down. Either `Restored` or `Failed` follows.
    Interrupted,
    /// Packets flow again after `Interrupted`.
    Restored,
    /// The peer's control channel opened (chat can be sent).
    ChannelOpen,
    /// A text message on the control channel.
    ChannelMessage(String),
    /// The peer asked for a keyframe (PLI or FIR).
    KeyframeRequested,
}

/// Where inbound media goes.
#[derive(Debug)]
pub struct MediaSinks {
    pub video: mpsc::Sender<RtpIn>,
    pub audio: mpsc::Sender<RtpIn>,
}

struct Handler {
    events: mpsc::Sender<PeerEvent>,
    sinks: MediaSinks,
    channel: Arc<Mutex<Option<Arc<dyn DataChannel>>>>,
    connected: AtomicBool,
    closing: Arc<AtomicBool>,
}

impl Handler {
    fn emit(&self, event: PeerEvent) {
        if let Err(e) = self.events.try_send(event) {
            tracing::warn!("peer event dropped: {e}");
        }
    }
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        match event.candidate.to_json() {
            Ok(init) => self.emit(PeerEvent::Candidate(Signal::Candidate {
                candidate: init.candidate,
                sdp_mid: init.sdp_mid,
                sdp_mline_index: init.sdp_mline_index,
            })),
            Err(e) => tracing::warn!("local candidate not serialisable: {e}"),
        }
    }

    async fn on_ice_gathering_state_change(
        &self,
        state: webrtc::peer_connection::RTCIceGatheringState,
    ) {
        if state == webrtc::peer_connection::RTCIceGatheringState::Complete {
            self.emit(PeerEvent::GatheringComplete);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        tracing::debug!(%state, "peer connection state");
        match state {
            RTCPeerConnectionState::Connected => {
                if self.connected.swap(true, Ordering::SeqCst) {
                    self.emit(PeerEvent::Restored);
                } else {
                    self.emit(PeerEvent::Connected);
                }
            }
            RTCPeerConnectionState::Disconnected => self.emit(PeerEvent::Interrupted),
            RTCPeerConnectionState::Failed => {
                self.emit(PeerEvent::Failed("ICE/DTLS connection failed".into()))
            }
            RTCPeerConnectionState::Closed if !self.closing.load(Ordering::SeqCst) => {
                self.emit(PeerEvent::Failed("the connection was closed".into()))
            }
            _ => {}
        }
    }

    async fn on_data_channel(&self, channel: Arc<dyn DataChannel>) {
        match channel.label().await {
            Ok(label) if label == CONTROL_CHANNEL => {}
            other => {
                tracing::warn!(?other, "unexpected data channel from the peer; closing it");
                let _ = channel.close().await;
                return;
            }
        }
        *self.channel.lock().await = Some(Arc::clone(&channel));
        tokio::spawn(pump_channel(channel, self.events.clone()));
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let sink = match track.kind().await {
            RtpCodecKind::Video => self.sinks.video.clone(),
            RtpCodecKind::Audio => self.sinks.audio.clone(),
            _ => return,
        };
        tokio::spawn(pump_track(track, sink));
    }
}

/// Forwards inbound RTP to the pipeline. A full queue drops the packet (the pipeline is
/// behind: NACK and PLI recover) rather than stalling the driver.
async fn pump_track(track: Arc<dyn TrackRemote>, sink: mpsc::Sender<RtpIn>) {
    let mut dropped = 0u64;
    while let Some(event) = track.poll().await {
        match event {
            TrackRemoteEvent::OnRtpPacket(packet) => {
                let rtp = RtpIn {
                    sequence: packet.header.sequence_number,
                    timestamp: packet.header.timestamp,
                    marker: packet.header.marker,
                    payload: packet.payload,
                };
                match sink.try_send(rtp) {
                    Ok(()) => {}
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        dropped += 1;
                        if dropped.is_power_of_two() {
                            tracing::warn!(dropped, "media pipeline behind: RTP dropped");
                        }
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => break,
                }
            }
            TrackRemoteEvent::OnEnded => break,
            _ => {}
        }
    }
}

async fn pump_channel(channel: Arc<dyn DataChannel>, events: mpsc::Sender<PeerEvent>) {
    while let Some(event) = channel.poll().await {
        let out = match event {
            DataChannelEvent::OnOpen => PeerEvent::ChannelOpen,
            DataChannelEvent::OnMessage(msg) => match String::from_utf8(msg.data.to_vec()) {
                Ok(text) if msg.is_string => PeerEvent::ChannelMessage(text),
                _ => {
                    tracing::warn!("non-text message on the control channel ignored");
                    continue;
                }
            },
            DataChannelEvent::OnClose => break,
            _ => continue,
        };
        if events.send(out).await.is_err() {
            break;
        }
    }
}

/// Marks inbound keyframe requests (PLI, FIR) for delivery to the application; every
/// other inbound RTCP stays with the interceptors. Registered last in the chain.
struct KeyframeRequestForwarder {
    read: std::collections::VecDeque<TaggedPacket>,
    write: std::collections::VecDeque<TaggedPacket>,
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
                .filter(|p| {
                    let any = p.as_any();
                    any.is::<PictureLossIndication>() || any.is::<FullIntraRequest>()
                })
                .cloned()
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

fn h264_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_H264.to_owned(),
        clock_rate: 90_000,
        channels: 0,
        sdp_fmtp_line: H264_FMTP.to_owned(),
        rtcp_feedback: vec![],
    }
}

fn opus_codec() -> RTCRtpCodec {
    RTCRtpCodec {
        mime_type: MIME_TYPE_OPUS.to_owned(),
        clock_rate: 48_000,
        channels: 2,
        sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
        rtcp_feedback: vec![],
    }
}

/// One sending track: ids unique per peer (`prefix`), one encoding with our SSRC.
fn media_track(
    prefix: &str,
    kind: RtpCodecKind,
    ssrc: u32,
    codec: RTCRtpCodec,
) -> MediaStreamTrack {
    MediaStreamTrack::new(
        format!("{prefix}-stream"),
        format!("{prefix}-{kind}"),
        format!("{prefix}-{kind}"),
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec,
            ..Default::default()
        }],
    )
}

struct LocalTrack {
    track: Arc<TrackLocalStaticSample>,
    ssrc: u32,
    payload_type: std::sync::atomic::AtomicU8,
}

impl LocalTrack {
    fn new(kind: RtpCodecKind, codec: RTCRtpCodec, prefix: &str) -> Result<Self, PeerError> {
        let ssrc = random_u32();
        let track =
            TrackLocalStaticSample::new(Instant::now(), media_track(prefix, kind, ssrc, codec))
                .map_err(|e| PeerError::Connection(e.to_string()))?;
        Ok(Self {
            track: Arc::new(track),
            ssrc,
            payload_type: std::sync::atomic::AtomicU8::new(0),
        })
    }
}

/// The outgoing video track. We packetize ourselves so a large frame (a keyframe is ~150
/// packets at 720p) goes out in paced batches rather than one burst, which overflowed
/// the receiving socket's buffer even on loopback, and so RTP timestamps are exactly the
/// capture-time ticks we choose.
struct VideoTrack {
    track: Arc<TrackLocalStaticRTP>,
    ssrc: u32,
    payload_type: std::sync::atomic::AtomicU8,
    packetizer: std::sync::Mutex<Box<dyn Packetizer>>,
}

/// Packets written back to back; then the writer yields for a millisecond.
const PACE_BATCH: usize = 16;
const RTP_MTU: usize = 1200;

impl VideoTrack {
    fn new(prefix: &str) -> Result<Self, PeerError> {
        let ssrc = random_u32();
        let codec = h264_codec();
        let payloader = codec
            .payloader()
            .map_err(|e| PeerError::Connection(e.to_string()))?;
        let packetizer = rtc::rtp::packetizer::new_packetizer(
            Instant::now(),
            RTP_MTU,
            0,
            ssrc,
            payloader,
            Box::new(rtc::rtp::sequence::new_random_sequencer()),
            codec.clock_rate,
        );
        let track = TrackLocalStaticRTP::new(media_track(prefix, RtpCodecKind::Video, ssrc, codec));
        Ok(Self {
            track: Arc::new(track),
            ssrc,
            payload_type: std::sync::atomic::AtomicU8::new(0),
            packetizer: std::sync::Mutex::new(Box::new(packetizer)),
        })
    }
}

fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    // getrandom only fails on exotic platforms; a clock-derived value still works there.
    if getrandom::fill(&mut b).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        return t.subsec_nanos() ^ (t.as_secs() as u32);
    }
    u32::from_le_bytes(b)
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("video_ssrc", &self.video.ssrc)
            .field("audio_ssrc", &self.audio.ssrc)
            .finish_non_exhaustive()
    }
}

/// A live peer connection for one call.
pub struct Peer {
    pc: Arc<dyn PeerConnection>,
    video: VideoTrack,
    audio: LocalTrack,
    channel: Arc<Mutex<Option<Arc<dyn DataChannel>>>>,
    closing: Arc<AtomicBool>,
    remote_description_set: AtomicBool,
    /// Candidates that arrived before the remote description.
    pending_candidates: Mutex<Vec<RTCIceCandidateInit>>,
}

impl Peer {
    /// Builds the connection and its local tracks. The offerer also creates the control
    /// channel; the answerer receives it.
    pub async fn new(
        options: PeerOptions,
        offerer: bool,
        sinks: MediaSinks,
    ) -> Result<(Self, mpsc::Receiver<PeerEvent>), PeerError> {
        let err = |e: rtc::shared::error::Error| PeerError::Connection(e.to_string());
        let mut media = MediaEngine::default();
        media
            .register_codec(
                RTCRtpCodecParameters {
                    rtp_codec: h264_codec(),
                    payload_type: H264_PT,
                },
                RtpCodecKind::Video,
            )
            .map_err(err)?;
        media
            .register_codec(
                RTCRtpCodecParameters {
                    rtp_codec: opus_codec(),
                    payload_type: OPUS_PT,
                },
                RtpCodecKind::Audio,
            )
            .map_err(err)?;
        let registry = register_default_interceptors(Registry::new(), &mut media)
            .map_err(err)?
            .with(
                Slot::from(14_000),
                KeyframeRequestForwarder {
                    read: Default::default(),
                    write: Default::default(),
                },
            );
        let loopback = options.udp_addrs.iter().any(|a| a.ip().is_loopback());
        // ICE checks every 10 ms instead of 200 ms: the driver only flushes queued
        // handshake packets on a timer tick, so the interval is most of setup time.
        // A connection silent for 5 s (the default) is reported as interrupted; one
        // silent for 15 s (not the default 25) has failed and the call ends: nobody waits
        // that long on a frozen picture.
        let settings = SettingEngineBuilder::new()
            .with_ice_connection_attempts(Some(Duration::from_millis(10)), Some(140))
            .with_ice_timeouts(None, Some(Duration::from_secs(15)), None)
            .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
            .with_include_loopback_candidate(loopback)
            .build();
        let config = RTCConfigurationBuilder::new()
            .with_ice_servers(
                options
                    .ice_servers
                    .iter()
                    .map(|s| RTCIceServer {
                        urls: s.urls.clone(),
                        username: s.username.clone().unwrap_or_default(),
                        credential: s.credential.clone().unwrap_or_default(),
                    })
                    .collect(),
            )
            .with_ice_transport_policy(if options.relay_only {
                webrtc::peer_connection::RTCIceTransportPolicy::Relay
            } else {
                webrtc::peer_connection::RTCIceTransportPolicy::All
            })
            .build();
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
        let channel = Arc::new(Mutex::new(None));
        let closing = Arc::new(AtomicBool::new(false));
        let handler = Arc::new(Handler {
            events: events_tx.clone(),
            sinks,
            channel: Arc::clone(&channel),
            connected: AtomicBool::new(false),
            closing: Arc::clone(&closing),
        });
        let pc = Box::pin(
            PeerConnectionBuilder::new()
                .with_configuration(config)
                .with_media_engine(media)
                .with_setting_engine(settings)
                .with_interceptor_registry(registry)
                .with_handler(handler)
                .with_udp_addrs(options.udp_addrs.clone())
                .build(),
        )
        .await
        .map_err(err)?;
        let pc: Arc<dyn PeerConnection> = Arc::new(pc);
        let peer = Self {
            video: VideoTrack::new(&options.track_prefix)?,
            audio: LocalTrack::new(RtpCodecKind::Audio, opus_codec(), &options.track_prefix)?,
            pc,
            channel,
            closing,
            remote_description_set: AtomicBool::new(false),
            pending_candidates: Mutex::new(Vec::new()),
        };
        if let Err(e) = peer.setup(offerer, events_tx).await {
            peer.close().await;
            return Err(e);
        }
        Ok((peer, events_rx))
    }

    async fn setup(&self, offerer: bool, events: mpsc::Sender<PeerEvent>) -> Result<(), PeerError> {
        let err = |e: rtc::shared::error::Error| PeerError::Connection(e.to_string());
        for track in [
            Arc::clone(&self.video.track) as Arc<dyn TrackLocal>,
            Arc::clone(&self.audio.track) as Arc<dyn TrackLocal>,
        ] {
            self.pc.add_track(track).await.map_err(err)?;
        }
        // Keyframe requests for our video arrive as events on the local video track.
        let video = Arc::clone(&self.video.track);
        let keyframe_events = events.clone();
        tokio::spawn(async move {
            while let Some(event) = video.poll().await {
                if !matches!(event, TrackLocalEvent::OnRtcpPacket(_)) {
                    continue;
                }
                if keyframe_events
                    .try_send(PeerEvent::KeyframeRequested)
                    .is_err()
                    && keyframe_events.is_closed()
                {
                    break;
                }
            }
        });
        // Drain RTCP events on the audio track so its queue never fills.
        let audio = Arc::clone(&self.audio.track);
        tokio::spawn(async move { while audio.poll().await.is_some() {} });
        if offerer {
            let channel = self
                .pc
                .create_data_channel(CONTROL_CHANNEL, None)
                .await
                .map_err(err)?;
            *self.channel.lock().await = Some(Arc::clone(&channel));
            tokio::spawn(pump_channel(channel, events));
        }
        Ok(())
    }

    pub async fn create_offer(&self) -> Result<String, PeerError> {
        let err = |e: rtc::shared::error::Error| PeerError::Connection(e.to_string());
        let offer = self.pc.create_offer(None).await.map_err(err)?;
        let sdp = offer.sdp.clone();
        self.pc.set_local_description(offer).await.map_err(err)?;
        Ok(sdp)
    }

    /// Applies the peer's offer and returns our answer.
    pub async fn accept_offer(&self, sdp: String) -> Result<String, PeerError> {
        let bad = |e: rtc::shared::error::Error| PeerError::BadDescription(e.to_string());
        let offer = RTCSessionDescription::offer(sdp).map_err(bad)?;
        self.pc.set_remote_description(offer).await.map_err(bad)?;
        self.remote_description_applied().await;
        let err = |e: rtc::shared::error::Error| PeerError::Connection(e.to_string());
        let answer = self.pc.create_answer(None).await.map_err(err)?;
        let out = answer.sdp.clone();
        self.pc.set_local_description(answer).await.map_err(err)?;
        self.learn_payload_types().await;
        Ok(out)
    }

    pub async fn accept_answer(&self, sdp: String) -> Result<(), PeerError> {
        let bad = |e: rtc::shared::error::Error| PeerError::BadDescription(e.to_string());
        let answer = RTCSessionDescription::answer(sdp).map_err(bad)?;
        self.pc.set_remote_description(answer).await.map_err(bad)?;
        self.remote_description_applied().await;
        self.learn_payload_types().await;
        Ok(())
    }

    async fn remote_description_applied(&self) {
        self.remote_description_set.store(true, Ordering::SeqCst);
        let pending = std::mem::take(&mut *self.pending_candidates.lock().await);
        for candidate in pending {
            if let Err(e) = self.pc.add_ice_candidate(candidate).await {
                tracing::warn!("early candidate rejected: {e}");
            }
        }
    }

    async fn learn_payload_types(&self) {
        for sender in self.pc.get_senders().await {
            let Ok(params) = sender.get_parameters().await else {
                continue;
            };
            let Some(codec) = params.rtp_parameters.codecs.first() else {
                continue;
            };
            let target = if codec
                .rtp_codec
                .mime_type
                .eq_ignore_ascii_case(MIME_TYPE_H264)
            {
                &self.video.payload_type
            } else if codec
                .rtp_codec
                .mime_type
                .eq_ignore_ascii_case(MIME_TYPE_OPUS)
            {
                &self.audio.payload_type
            } else {
                continue;
            };
            target.store(codec.payload_type, Ordering::SeqCst);
        }
    }

    /// Adds a remote candidate (`EndOfCandidates` is accepted and needs nothing).
    pub async fn add_candidate(&self, signal: Signal) -> Result<(), PeerError> {
        let Signal::Candidate {
            candidate,
            sdp_mid,
            sdp_mline_index,
        } = signal
        else {
            return Ok(());
        };
        let init = RTCIceCandidateInit {
            candidate,
            sdp_mid,
            sdp_mline_index,
            ..Default::default()
        };
        if !self.remote_description_set.load(Ordering::SeqCst) {
            let mut pending = self.pending_candidates.lock().await;
            if pending.len() >= MAX_PENDING_CANDIDATES {
                return Err(PeerError::BadCandidate("too many candidates".into()));
            }
            pending.push(init);
            return Ok(());
        }
        self.pc
            .add_ice_candidate(init)
            .await
            .map_err(|e| PeerError::BadCandidate(e.to_string()))
    }

    /// Sends one encoded H.264 access unit (Annex B) that advances the RTP clock by
    /// `ticks` (90 kHz) since the previous one, in batches of 16 packets a millisecond
    /// apart.
    pub async fn write_video(&self, data: Bytes, ticks: u32) -> Result<(), PeerError> {
        let pt = self.video.payload_type.load(Ordering::SeqCst);
        if pt == 0 {
            return Err(PeerError::Connection("no codec negotiated yet".into()));
        }
        let packets = {
            let mut packetizer = self
                .video
                .packetizer
                .lock()
                .map_err(|_| PeerError::Connection("packetizer poisoned".into()))?;
            // The packetizer stamps the current timestamp, then advances it: advance
            // first so each frame carries its own capture time.
            packetizer.skip_samples(ticks);
            packetizer
                .packetize(Instant::now(), &data, 0)
                .map_err(|e| PeerError::Connection(e.to_string()))?
        };
        let batches = packets.len().div_ceil(PACE_BATCH);
        let mut packets = packets.into_iter();
        for batch in 0..batches {
            if batch > 0 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            for mut packet in packets.by_ref().take(PACE_BATCH) {
                packet.header.payload_type = pt;
                self.video
                    .track
                    .write_rtp(packet)
                    .await
                    .map_err(|e| PeerError::Connection(e.to_string()))?;
            }
        }
        Ok(())
    }

    /// Sends one Opus packet covering `duration`.
    pub async fn write_audio(&self, data: Bytes, duration: Duration) -> Result<(), PeerError> {
        write_sample(&self.audio, data, duration).await
    }

    /// Asks the peer for a keyframe (after loss the decoder cannot conceal).
    pub async fn request_keyframe(&self) {
        for receiver in self.pc.get_receivers().await {
            let track = receiver.track();
            if track.kind().await != RtpCodecKind::Video {
                continue;
            }
            let Some(&media_ssrc) = track.ssrcs().await.first() else {
                continue;
            };
            let pli = PictureLossIndication {
                sender_ssrc: 0,
                media_ssrc,
            };
            if let Err(e) = track.write_rtcp(vec![Box::new(pli)]).await {
                tracing::debug!("PLI not sent: {e}");
            }
        }
    }

    /// Sends a text message on the control channel.
    pub async fn send_text(&self, text: &str) -> Result<(), PeerError> {
        let channel = self.channel.lock().await.clone();
        let channel = channel.ok_or(PeerError::ChannelNotOpen)?;
        channel
            .send_text(text)
            .await
            .map_err(|_| PeerError::ChannelNotOpen)
    }

    /// The transport's view of the call, in our own types.
    pub async fn net_stats(&self) -> crate::stats::NetStats {
        let report = self.pc.get_stats(Instant::now(), StatsSelector::None).await;
        net_stats(&report)
    }

    /// Closes the connection. Idempotent; never fails (a failure is logged).
    pub async fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        if let Some(channel) = self.channel.lock().await.take() {
            let _ = channel.close().await;
        }
        if let Err(e) = self.pc.close().await {
            tracing::debug!("peer close: {e}");
        }
    }
}

async fn write_sample(
    track: &LocalTrack,
    data: Bytes,
    duration: Duration,
) -> Result<(), PeerError> {
    let pt = track.payload_type.load(Ordering::SeqCst);
    if pt == 0 {
        return Err(PeerError::Connection("no codec negotiated yet".into()));
    }
    track
        .track
        .write_sample(
            track.ssrc,
            pt,
            &Sample {
                data,
                duration,
                ..Sample::new(Instant::now())
            },
            &[],
        )
        .await
        .map_err(|e| PeerError::Connection(e.to_string()))
}

fn net_stats(report: &RTCStatsReport) -> crate::stats::NetStats {
    use webrtc::peer_connection::RTCStatsReportEntry as E;
    let mut n = crate::stats::NetStats::default();
    let mut rtt_from_rr = None;
    for entry in report.iter() {
        match entry {
            E::OutboundRtp(s) => {
                let sent = &s.sent_rtp_stream_stats;
                match sent.rtp_stream_stats.kind {
                    RtpCodecKind::Video => {
                        n.video_packets_sent += sent.packets_sent;
                        n.video_bytes_sent += sent.bytes_sent;
                        n.video_nack_count_received += s.nack_count;
                        n.video_pli_count_received += s.pli_count;
                    }
                    RtpCodecKind::Audio => {
                        n.audio_packets_sent += sent.packets_sent;
                        n.audio_bytes_sent += sent.bytes_sent;
                    }
                    _ => {}
                }
            }
            E::InboundRtp(s) => {
                let recv = &s.received_rtp_stream_stats;
                match recv.rtp_stream_stats.kind {
                    RtpCodecKind::Video => {
                        n.video_packets_received += recv.packets_received;
                        n.video_bytes_received += s.bytes_received;
                        n.video_packets_lost += recv.packets_lost;
                        n.video_jitter = recv.jitter;
                        n.video_nack_count_sent += s.nack_count;
                    }
                    RtpCodecKind::Audio => {
                        n.audio_packets_received += recv.packets_received;
                        n.audio_bytes_received += s.bytes_received;
                        n.audio_packets_lost += recv.packets_lost;
                        n.audio_jitter = recv.jitter;
                    }
                    _ => {}
                }
            }
            E::RemoteInboundRtp(s) if s.round_trip_time_measurements > 0 => {
                rtt_from_rr = Some(s.round_trip_time);
            }
            E::IceCandidatePair(p) if p.nominated => {
                n.bytes_sent = p.bytes_sent;
                n.bytes_received = p.bytes_received;
                if p.current_round_trip_time > 0.0 {
                    n.round_trip_time = Some(p.current_round_trip_time);
                }
                if p.available_outgoing_bitrate > 0.0 {
                    n.available_outgoing_bitrate = Some(p.available_outgoing_bitrate);
                }
            }
            _ => {}
        }
    }
    if rtt_from_rr.is_some() {
        n.round_trip_time = rtt_from_rr;
    }
    n
}

/// A duration whose tick count at `clock_rate` truncates to exactly `ticks` (the
/// packetizer multiplies in floating point and truncates: 1/30 s would give 2999).
pub fn duration_for_ticks(ticks: u32, clock_rate: u32) -> Duration {
    let nanos = (u64::from(ticks) * 1_000_000_000).div_ceil(u64::from(clock_rate));
    Duration::from_nanos(nanos)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_give_exact_ticks() {
        for ticks in [1u32, 2999, 3000, 3001, 960, 1920, 90_000] {
            let d = duration_for_ticks(ticks, 90_000);
            assert_eq!((d.as_secs_f64() * 90_000.0) as u32, ticks, "{ticks}");
            let d = duration_for_ticks(ticks, 48_000);
            assert_eq!((d.as_secs_f64() * 48_000.0) as u32, ticks, "{ticks}");
        }
    }
}
