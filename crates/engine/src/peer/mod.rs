//! The WebRTC peer connection: the only module that names webrtc-rs types.
//!
//! One [`Peer`] per call: one H.264 video and one Opus audio track each way
//! ([`tracks`]), a data channel for chat and control, NACK, PLI and RTCP reports
//! through the default interceptors plus one that hands keyframe requests to us
//! ([`keyframe`]). Events from the connection's driver are forwarded to a bounded channel
//! without blocking ([`handler`]); inbound RTP goes to the media pipeline and encoded
//! media comes from it through [`crate::packets`], free of webrtc-rs types.
//!
//! The engine's actor is the only owner of a `Peer`. Every task a peer starts (RTP and
//! data channel pumps, RTCP drains, media writers) lives in its [`PeerTasks`] and is
//! aborted and awaited by [`Peer::close`]. Always close: a peer connection dropped
//! without it leaks its driver (see ../shared/notes).

mod bwe;
pub mod depacketize;
mod handler;
mod ice;
mod interceptors;
mod keyframe;
mod liveness;
mod net_stats;
mod nudge;
pub mod privacy;
mod redundant;
mod retransmit;
pub mod route;
mod rtx;
mod tasks;
mod tcp_turn;
mod tracks;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chingu_proto::{IceServer, Signal};
use rtc::peer_connection::transport::RTCDtlsRole;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use tokio::sync::{Mutex, mpsc};
use webrtc::data_channel::DataChannel;
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, RTCConfigurationBuilder,
    RTCIceCandidateInit, RTCIceTransportPolicy, RTCSessionDescription, SettingEngineBuilder,
    StatsSelector,
};

use crate::packets::{Bandwidth, InboundSinks, OutboundMedia, PictureFeedback};
use crate::stats::NetStats;
use handler::Handler;
pub use ice::local_addresses;
use ice::{lock, rtc_ice_servers};
pub(crate) use nudge::NudgeState;
use nudge::nudge_driver;
use privacy::CandidatePolicy;
use route::MediaRoute;
pub(crate) use tasks::PeerTasks;
use tracks::Tracks;

pub use tracks::duration_for_ticks;

/// Label of the data channel that carries chat and media-state messages.
pub const CONTROL_CHANNEL: &str = "chingu";
/// Events queued from the driver to the engine; beyond this, state changes still arrive
/// (they are few) but candidates are dropped with a warning.
const EVENT_QUEUE: usize = 256;
/// Remote candidates kept while waiting for the remote description.
const MAX_PENDING_CANDIDATES: usize = 64;
/// How long after checks start a relay pair must wait before it may be nominated: a
/// direct pair that works within this grace is preferred.
const RELAY_ACCEPTANCE_WAIT: Duration = Duration::from_millis(50);

/// Silence after which ICE reports the connection disconnected (media interrupted).
const DISCONNECTED_AFTER: Duration = Duration::from_secs(2);
/// Consent checks on the selected pair. Only STUN counts as hearing from the peer (not
/// media), so several must fit in [`DISCONNECTED_AFTER`]: with the default 2 s the
/// connection flapped to disconnected and back in quiet moments.
const KEEPALIVE_INTERVAL: Duration = Duration::from_millis(500);

/// What can go wrong with a peer connection, one variant per step that can fail.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    #[error("the peer's session description is not valid: {0}")]
    BadDescription(String),
    #[error("the peer's ICE candidate is not valid: {0}")]
    BadCandidate(String),
    #[error("the peer sent more than {MAX_PENDING_CANDIDATES} candidates before its description")]
    TooManyCandidates,
    #[error("codecs or interceptors could not be set up: {0}")]
    Codec(String),
    #[error("the peer connection could not be built: {0}")]
    Build(String),
    #[error("a track could not be added: {0}")]
    AddTrack(String),
    #[error("the control channel could not be created: {0}")]
    DataChannel(String),
    #[error("no offer could be made: {0}")]
    CreateOffer(String),
    #[error("no answer could be made: {0}")]
    CreateAnswer(String),
    #[error("our own description was refused: {0}")]
    LocalDescription(String),
    #[error("no codec has been negotiated yet")]
    NotNegotiated,
    #[error("a frame could not be packetized: {0}")]
    Packetize(String),
    #[error("media could not be sent: {0}")]
    Send(String),
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
    /// Send every packet through this (a network simulator; see [`route`]).
    pub route: Option<Arc<dyn MediaRoute>>,
    /// The most congestion control will ever let us send, bits/s (all media).
    pub max_bitrate_bps: u32,
}

impl Default for PeerOptions {
    fn default() -> Self {
        Self {
            ice_servers: Vec::new(),
            udp_addrs: vec![SocketAddr::from(([0, 0, 0, 0], 0))],
            relay_only: false,
            track_prefix: "chingu".into(),
            route: None,
            max_bitrate_bps: 2_600_000,
        }
    }
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
    /// Nothing arrived from the peer for a few seconds (ICE disconnected and no media for
    /// a second, or an ICE restart under way): the network may be down. Either
    /// `Restored` or `Failed` follows.
    Interrupted,
    /// Packets flow again after `Interrupted`.
    Restored,
    /// The peer's control channel opened (chat can be sent).
    ChannelOpen,
    /// A text message on the control channel.
    ChannelMessage(String),
    /// The peer asked for a keyframe (PLI or FIR).
    KeyframeRequested,
    /// The peer's decoder tells what it has of our video (recovery without keyframes).
    PictureFeedback(PictureFeedback),
}

/// A live peer connection for one call.
pub struct Peer {
    pc: Arc<dyn PeerConnection>,
    tracks: Tracks,
    channel: Arc<Mutex<Option<Arc<dyn DataChannel>>>>,
    closing: Arc<AtomicBool>,
    remote_description_set: AtomicBool,
    /// Candidates that arrived before the remote description.
    pending_candidates: Mutex<Vec<RTCIceCandidateInit>>,
    tasks: Arc<PeerTasks>,
    /// What of our addresses may be sent to the peer.
    policy: CandidatePolicy,
    route: Option<Arc<dyn MediaRoute>>,
    nudge: Arc<NudgeState>,
    /// TURN/TCP bridges: the server URL each serves, and its loopback address.
    bridges: std::sync::Mutex<Vec<(String, SocketAddr)>>,
}

impl Peer {
    /// What congestion control says about our sending (the encoder follows it).
    pub fn bandwidth(&self) -> Arc<Bandwidth> {
        Arc::clone(&self.tracks.bandwidth)
    }
}

impl std::fmt::Debug for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Peer")
            .field("video_ssrc", &self.tracks.video.ssrc)
            .field("audio_ssrc", &self.tracks.audio.ssrc)
            .finish_non_exhaustive()
    }
}

impl Peer {
    /// Builds the connection and its local tracks. The offerer also creates the control
    /// channel; the answerer receives it.
    pub async fn new(
        options: PeerOptions,
        offerer: bool,
        sinks: InboundSinks,
    ) -> Result<(Self, mpsc::Receiver<PeerEvent>), PeerError> {
        let codec = |e: rtc::shared::error::Error| PeerError::Codec(e.to_string());
        let mut media = MediaEngine::default();
        tracks::register_codecs(&mut media).map_err(codec)?;
        let bandwidth = Arc::new(Bandwidth::default());
        let registry = interceptors::registry(&mut media, options.max_bitrate_bps, &bandwidth)
            .map_err(codec)?;
        let loopback = options.udp_addrs.iter().any(|a| a.ip().is_loopback());
        let policy = CandidatePolicy {
            relay_only: options.relay_only,
            allow_loopback: loopback,
        };
        // ICE checks every 10 ms instead of 200 ms: the driver only flushes queued
        // handshake packets on a timer tick, so the interval is most of setup time.
        // A connection silent for 2 s (not the default 5) is reported as interrupted,
        // and the engine restarts ICE (call_state::RESTART_RETRY); the agent itself
        // never gives up before the engine does (call_state::MEDIA_LOST_AFTER).
        // The controlling agent nominates the best pair that works once it has waited
        // a minimum time for its candidate types (defaults: srflx 0.5 s, prflx 1 s,
        // relay 2 s — most of setup time across NATs). A pair that works is nominated at
        // once; a relay pair after a short grace in which a direct pair may still win.
        let settings = SettingEngineBuilder::new()
            .with_ice_connection_attempts(Some(Duration::from_millis(10)), Some(140))
            .with_ice_timeouts(
                Some(DISCONNECTED_AFTER),
                Some(Duration::from_secs(60)),
                Some(KEEPALIVE_INTERVAL),
            )
            .with_host_acceptance_min_wait(Some(Duration::ZERO))
            .with_srflx_acceptance_min_wait(Some(Duration::ZERO))
            .with_prflx_acceptance_min_wait(Some(Duration::ZERO))
            .with_relay_acceptance_min_wait(Some(RELAY_ACCEPTANCE_WAIT))
            // As answerer, be the DTLS server: the offerer is the controlling ICE agent,
            // the last to learn that ICE connected, so its ClientHello never arrives
            // before our side has selected the pair (with the default, the answerer's
            // first ClientHello often came in the same datagram burst as the check
            // response and was dropped: a 200 ms DTLS retransmission on relayed paths).
            .with_answering_dtls_role(RTCDtlsRole::Server)
            // An ICE restart binds new sockets and gathers anew (the default keeps the old
            // candidates and sends the peer none for the new generation: it never connects;
            // after a network change they would name addresses that are gone anyway).
            .with_discard_local_candidates_during_ice_restart(true)
            .with_multicast_dns_mode(rtc::ice::mdns::MulticastDnsMode::Disabled)
            .with_include_loopback_candidate(loopback)
            .build();
        let tasks = Arc::new(PeerTasks::new());
        let bridges = std::sync::Mutex::new(Vec::new());
        let ice_servers = tcp_turn::bridged(&options.ice_servers, &tasks, &bridges).await;
        let config = RTCConfigurationBuilder::new()
            .with_ice_servers(rtc_ice_servers(&ice_servers))
            .with_ice_transport_policy(if options.relay_only {
                RTCIceTransportPolicy::Relay
            } else {
                RTCIceTransportPolicy::All
            })
            .build();
        let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
        let channel = Arc::new(Mutex::new(None));
        let closing = Arc::new(AtomicBool::new(false));
        let nudge = Arc::new(NudgeState::default());
        let tracks = Tracks::new(&options.track_prefix, Arc::clone(&bandwidth))?;
        let handler = Arc::new(Handler {
            red_payload_type: Arc::clone(&tracks.audio.red_payload_type),
            events: events_tx.clone(),
            policy,
            route: options.route.clone(),
            sinks,
            channel: Arc::clone(&channel),
            connected: AtomicBool::new(false),
            liveness: Arc::new(liveness::Liveness::new(Instant::now())),
            closing: Arc::clone(&closing),
            tasks: Arc::clone(&tasks),
            nudge: Arc::clone(&nudge),
        });
        let mut builder = PeerConnectionBuilder::new();
        if let Some(runtime) = redundant::HandshakeRuntime::shared() {
            builder = builder.with_runtime(runtime);
        }
        let pc = Box::pin(
            builder
                .with_configuration(config)
                .with_media_engine(media)
                .with_setting_engine(settings)
                .with_interceptor_registry(registry)
                .with_handler(handler)
                .with_udp_addrs(options.udp_addrs.clone())
                .build(),
        )
        .await
        .map_err(|e| PeerError::Build(e.to_string()))?;
        let pc: Arc<dyn PeerConnection> = Arc::new(pc);
        tasks.spawn(nudge_driver(Arc::clone(&pc), Arc::clone(&nudge)));
        let peer = Self {
            pc,
            tracks,
            channel,
            closing,
            remote_description_set: AtomicBool::new(false),
            pending_candidates: Mutex::new(Vec::new()),
            tasks,
            policy,
            route: options.route.clone(),
            nudge,
            bridges,
        };
        if let Err(e) = peer.setup(offerer, events_tx).await {
            peer.close().await;
            return Err(e);
        }
        Ok((peer, events_rx))
    }

    async fn setup(&self, offerer: bool, events: mpsc::Sender<PeerEvent>) -> Result<(), PeerError> {
        for track in self.tracks.as_track_locals() {
            self.pc
                .add_track(track)
                .await
                .map_err(|e| PeerError::AddTrack(e.to_string()))?;
        }
        // Keyframe requests and picture feedback for our video arrive as events on the
        // local video track.
        let video = Arc::clone(&self.tracks.video.track);
        self.tasks
            .spawn(keyframe::forward_requests(video, events.clone()));
        // Drain RTCP events on the audio track so its queue never fills.
        let audio = Arc::clone(&self.tracks.audio.track);
        self.tasks
            .spawn(async move { while audio.poll().await.is_some() {} });
        if offerer {
            let channel = self
                .pc
                .create_data_channel(CONTROL_CHANNEL, None)
                .await
                .map_err(|e| PeerError::DataChannel(e.to_string()))?;
            *self.channel.lock().await = Some(Arc::clone(&channel));
            self.tasks.spawn(handler::pump_channel(channel, events));
        }
        Ok(())
    }

    /// Restarts ICE (new credentials, sockets bound again, candidates gathered again on
    /// whatever interfaces exist now) and returns the offer that carries it. Offerer only.
    pub async fn restart_offer(&self) -> Result<String, PeerError> {
        self.pc
            .restart_ice()
            .await
            .map_err(|e| PeerError::CreateOffer(format!("ICE restart: {e}")))?;
        self.nudge.restarting();
        self.create_offer().await
    }

    /// Fresh STUN/TURN servers (credentials) for the next gathering (an ICE restart).
    pub async fn set_ice_servers(&self, servers: &[IceServer]) {
        let servers = tcp_turn::bridged(servers, &self.tasks, &self.bridges).await;
        let current = self.pc.get_configuration().await;
        let configuration = RTCConfigurationBuilder::new()
            .with_ice_servers(rtc_ice_servers(&servers))
            .with_ice_transport_policy(current.ice_transport_policy())
            .with_bundle_policy(current.bundle_policy())
            .with_rtcp_mux_policy(current.rtcp_mux_policy())
            .with_certificates(current.certificates().to_vec())
            .with_ice_candidate_pool_size(current.ice_candidate_pool_size())
            .build();
        if let Err(e) = self.pc.set_configuration(configuration).await {
            tracing::debug!("new ICE servers not applied: {e}");
        }
    }

    pub async fn create_offer(&self) -> Result<String, PeerError> {
        let offer = self
            .pc
            .create_offer(None)
            .await
            .map_err(|e| PeerError::CreateOffer(e.to_string()))?;
        let sdp = self.outgoing_sdp(&offer.sdp);
        self.pc
            .set_local_description(offer)
            .await
            .map_err(|e| PeerError::LocalDescription(e.to_string()))?;
        Ok(sdp)
    }

    /// Applies the peer's offer and returns our answer.
    pub async fn accept_offer(&self, sdp: String) -> Result<String, PeerError> {
        let bad = |e: rtc::shared::error::Error| PeerError::BadDescription(e.to_string());
        self.tracks.note_peer_takes(&sdp);
        let offer = RTCSessionDescription::offer(self.incoming_sdp(sdp)).map_err(bad)?;
        self.pc.set_remote_description(offer).await.map_err(bad)?;
        self.remote_description_applied().await;
        let answer = self
            .pc
            .create_answer(None)
            .await
            .map_err(|e| PeerError::CreateAnswer(e.to_string()))?;
        let out = self.outgoing_sdp(&answer.sdp);
        self.pc
            .set_local_description(answer)
            .await
            .map_err(|e| PeerError::LocalDescription(e.to_string()))?;
        self.learn_payload_types().await;
        Ok(out)
    }

    pub async fn accept_answer(&self, sdp: String) -> Result<(), PeerError> {
        let bad = |e: rtc::shared::error::Error| PeerError::BadDescription(e.to_string());
        self.tracks.note_peer_takes(&sdp);
        let answer = RTCSessionDescription::answer(self.incoming_sdp(sdp)).map_err(bad)?;
        self.pc.set_remote_description(answer).await.map_err(bad)?;
        self.remote_description_applied().await;
        self.learn_payload_types().await;
        Ok(())
    }

    /// Our description as the peer may see it: private candidates removed, and with a
    /// route only the route's addresses.
    fn outgoing_sdp(&self, sdp: &str) -> String {
        let scrubbed = self.policy.scrub_sdp(sdp);
        match &self.route {
            Some(r) => route::sdp(&scrubbed, |c| route::local(r.as_ref(), c)),
            None => scrubbed,
        }
    }

    /// The peer's description with its candidates reached through the route, if any.
    fn incoming_sdp(&self, sdp: String) -> String {
        match &self.route {
            Some(r) => route::sdp(&sdp, |c| route::remote(r.as_ref(), c)),
            None => sdp,
        }
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
            // The first is what we send; RED, if the answer kept it, wraps it.
            for (i, codec) in params.rtp_parameters.codecs.iter().enumerate() {
                let mime = &codec.rtp_codec.mime_type;
                if i == 0 || mime.eq_ignore_ascii_case(tracks::MIME_TYPE_RED) {
                    self.tracks.learn_payload_type(mime, codec.payload_type);
                }
            }
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
        let candidate = match &self.route {
            Some(r) => match route::remote(r.as_ref(), &candidate) {
                Some(routed) => routed,
                None => return Ok(()),
            },
            None => candidate,
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
                return Err(PeerError::TooManyCandidates);
            }
            pending.push(init);
            return Ok(());
        }
        self.pc
            .add_ice_candidate(init)
            .await
            .map_err(|e| PeerError::BadCandidate(e.to_string()))
    }

    /// Sends the pipeline's encoded media until its queues close (writer tasks owned by
    /// this peer).
    pub fn send_media(&self, media: OutboundMedia) {
        for writer in self.tracks.writers(media) {
            self.tasks.spawn(writer);
        }
    }

    /// Asks the peer for a keyframe (after loss the decoder cannot conceal).
    pub async fn request_keyframe(&self) {
        self.video_feedback(keyframe::picture_loss).await;
    }

    /// Tells the peer what our decoder has of its video (only to a peer that offered
    /// it: [`Bandwidth::peer_recovers`]).
    pub async fn send_picture_feedback(&self, feedback: PictureFeedback) {
        self.video_feedback(|ssrc| {
            keyframe::picture_feedback_packet(ssrc, tracks::H264_PT, feedback)
        })
        .await;
    }

    /// Sends `packet(media SSRC)` about the peer's video.
    async fn video_feedback(&self, packet: impl Fn(u32) -> Box<dyn rtc::rtcp::Packet>) {
        for receiver in self.pc.get_receivers().await {
            let track = receiver.track();
            if track.kind().await != RtpCodecKind::Video {
                continue;
            }
            let Some(&media_ssrc) = track.ssrcs().await.first() else {
                continue;
            };
            if let Err(e) = track.write_rtcp(vec![packet(media_ssrc)]).await {
                tracing::debug!("video feedback not sent: {e}");
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
    pub async fn net_stats(&self) -> NetStats {
        let report = self.pc.get_stats(Instant::now(), StatsSelector::None).await;
        let bridged = lock(&self.bridges).clone();
        let stats = net_stats::net_stats(
            &report,
            self.tracks.frames_sent.load(Ordering::Relaxed),
            &bridged,
        );
        let mut stats = stats;
        if let Some(rtt) = stats.round_trip_time {
            let ms = (rtt * 1000.0).round().clamp(0.0, 60_000.0) as u32;
            self.tracks.bandwidth.rtt_ms.store(ms, Ordering::Relaxed);
        }
        if stats.path.is_some() {
            stats.available_outgoing_bitrate =
                Some(self.tracks.bandwidth.target_bps.load(Ordering::Relaxed) as f64);
        }
        let local_relay = stats
            .path
            .as_ref()
            .is_some_and(|p| p.local.kind == crate::stats::CandidateKind::Relay);
        self.nudge.local_relay.store(local_relay, Ordering::Relaxed);
        stats
    }

    /// Closes the connection and ends every task it started. Idempotent; never fails (a
    /// failure is logged).
    pub async fn close(&self) {
        self.closing.store(true, Ordering::SeqCst);
        if let Some(channel) = self.channel.lock().await.take() {
            let _ = channel.close().await;
        }
        if let Err(e) = self.pc.close().await {
            tracing::debug!("peer close: {e}");
        }
        self.tasks.shutdown().await;
    }
}
