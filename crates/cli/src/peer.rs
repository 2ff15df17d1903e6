//! Headless peers on the call engine: `bot` (synthetic media, measures), `echo` (sends back
//! what it receives) and the probes they share.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chingu_engine::call_state::SearchPrefs;
use chingu_engine::peer::PeerOptions;
use chingu_engine::pipeline::{
    AudioOutput, AudioRelay, AudioSource, FrameRelay, MediaConfig, VideoSource,
};
use chingu_engine::signaling::SignalingConfig;
use chingu_engine::stats::{CallPath, CallStats, PathCandidate};
use chingu_engine::{CallView, Command, Engine, EngineConfig, EngineEvent};
use chingu_media::barcode;
use serde::Serialize;

/// A fresh random device id (the server keys blocks and same-device rules on it).
pub fn device_id(kind: &str) -> String {
    chingu_engine::ids::new_device_id(&format!("cli-{kind}"))
}

/// What the probes on decoded media saw.
#[derive(Debug, Default)]
pub struct Probe {
    pub first_frame: Option<Instant>,
    pub frames: u64,
    /// Capture-to-render latencies (µs) from the barcodes, with when they were seen.
    pub latencies: Vec<(Instant, u32)>,
    pub last_frame_number: Option<u32>,
    pub out_of_order: u64,
    /// Barcodes read that said the frame was captured more than [`PLAUSIBLE_US`] ago
    /// (or in the future): misreads, left out of every figure.
    pub implausible: u64,
    /// How many of the last frames shown in a row carried no barcode the reader could
    /// read.
    pub unread_run: u64,
    /// The `.y4m` file the peer sends, to measure received pictures against.
    pub reference: Option<Reference>,
    /// Y-PSNR of each received picture against its source frame (dB), with when.
    pub psnr: Vec<(Instant, f64)>,
    /// When the last frame was shown, and each wait between shown frames, with when it
    /// ended.
    pub last_shown: Option<Instant>,
    pub gaps: Vec<(Instant, Duration)>,
}

/// After this many frames in a row without a readable barcode, the probe says so (and,
/// with `CHINGU_UNREAD_DUMP=DIR`, writes the frame to `DIR` as a `.y4m` file).
const UNREAD_RUN: u64 = 60;

/// The longest capture→render a barcode may say (µs); beyond it the read was wrong.
pub const PLAUSIBLE_US: u32 = 60_000_000;

/// A sender's source file and the buffers for comparing a received picture with it.
#[derive(Debug)]
pub struct Reference {
    file: chingu_media::y4m::Y4mFile,
    source: chingu_media::I420Frame,
    scaled: chingu_media::I420Frame,
}

impl Reference {
    pub fn open(path: &std::path::Path) -> anyhow::Result<Self> {
        Ok(Self {
            file: chingu_media::y4m::Y4mFile::open(path)?,
            source: chingu_media::I420Frame::new(2, 2)?,
            scaled: chingu_media::I420Frame::new(2, 2)?,
        })
    }

    /// Y-PSNR of `received` against the source frame `stamp` names, stamped as the
    /// sender stamped it and scaled to the received size as the sender's ladder would;
    /// the barcode rows are left out.
    fn psnr(&mut self, received: &chingu_media::I420Frame, stamp: barcode::Stamp) -> Option<f64> {
        self.file
            .read(stamp.frame_number as usize, &mut self.source)
            .ok()?;
        barcode::write(&mut self.source, stamp);
        let (w, h) = (received.width(), received.height());
        let band = barcode::band_height(self.source.width(), self.source.height()).unwrap_or(0);
        let skip = (band * h).div_ceil(self.source.height()) + 2;
        let reference = if (w, h) == (self.source.width(), self.source.height()) {
            &self.source
        } else {
            self.scaled.resize(w, h).ok()?;
            chingu_media::scale::scale(&self.source, &mut self.scaled);
            &self.scaled
        };
        chingu_media::y4m::psnr_y(reference, received, skip)
    }
}

impl Probe {
    /// The longest the picture stood still between `from` and `to`: the longest wait
    /// between two shown frames (the part of it from `from` on), or since the last one
    /// shown until `to`.
    pub fn longest_still(&self, from: Instant, to: Instant) -> Duration {
        let waits = self
            .gaps
            .iter()
            .filter(|(end, _)| *end > from && *end <= to)
            .map(|&(end, gap)| gap.min(end - from));
        let since_last = self
            .last_shown
            .map_or(to.saturating_duration_since(from), |last| {
                to.saturating_duration_since(last.max(from))
            });
        waits.fold(since_last, Duration::max)
    }

    /// When, from `from` on (until `to`), the delay settled: the first frame shown
    /// within `limit` of its capture after which every frame for `hold` (or until `to`)
    /// was too; `from` itself when no frame was later than `limit`. `None`: it never
    /// settled.
    pub fn settled(
        &self,
        from: Instant,
        to: Instant,
        limit: Duration,
        hold: Duration,
    ) -> Option<Instant> {
        let mut since = Some(from);
        for &(t, us) in self
            .latencies
            .iter()
            .filter(|(t, _)| *t >= from && *t <= to)
        {
            if u128::from(us) > limit.as_micros() {
                since = None;
            } else if let Some(s) = since {
                if t.saturating_duration_since(s) >= hold {
                    return Some(s);
                }
            } else {
                since = Some(t);
            }
        }
        since
    }

    pub fn sink(probe: &Arc<Mutex<Self>>) -> chingu_engine::pipeline::VideoSink {
        let probe = Arc::clone(probe);
        Arc::new(move |frame, _info| {
            let now = Instant::now();
            let now_us = chingu_media::frame::now_us();
            let Ok(mut p) = probe.lock() else { return };
            p.first_frame.get_or_insert(now);
            p.frames += 1;
            if let Some(gap) = p.last_shown.replace(now).map(|last| now - last) {
                p.gaps.push((now, gap));
            }
            let Some(stamp) = barcode::read(frame) else {
                p.unread_run += 1;
                if p.unread_run == UNREAD_RUN {
                    unreadable(frame, p.unread_run);
                }
                return;
            };
            p.unread_run = 0;
            let elapsed = stamp.elapsed_us(now_us);
            if elapsed > PLAUSIBLE_US {
                // A misread that passed the 8-bit check (seen at 428 s and 786 s).
                p.implausible += 1;
                return;
            }
            p.latencies.push((now, elapsed));
            if p.last_frame_number.is_some_and(|n| stamp.frame_number <= n) {
                p.out_of_order += 1;
            }
            p.last_frame_number = Some(stamp.frame_number);
            let psnr = p.reference.as_mut().and_then(|r| r.psnr(frame, stamp));
            if let Some(db) = psnr {
                p.psnr.push((now, db));
            }
        })
    }
}

#[derive(Debug, Clone)]
pub struct PeerSetup {
    pub server: String,
    pub nickname: String,
    pub languages: Vec<String>,
    pub interests: Vec<String>,
    /// Local address for host candidates (`None`: every interface).
    pub udp_addr: Option<SocketAddr>,
    /// TURN relay only ("Hide my IP").
    pub relay_only: bool,
    /// Send this peer's packets through the network simulator (a peer on this machine).
    pub net: Option<crate::netsim::Scenario>,
    /// The device secret to say hello with (default: a fresh one each run). Friends are
    /// devices: the same id is the same person to their friends.
    pub device_id: Option<String>,
}

/// Says that `run` frames in a row carried no readable barcode, and keeps the last one
/// where `CHINGU_UNREAD_DUMP` says.
fn unreadable(frame: &chingu_media::I420Frame, run: u64) {
    let (width, height) = (frame.width(), frame.height());
    let dump = std::env::var_os("CHINGU_UNREAD_DUMP").map(|dir| {
        let path = std::path::Path::new(&dir).join(format!(
            "unread-{width}x{height}-{}.y4m",
            chingu_media::frame::now_us()
        ));
        let written = std::fs::File::create(&path)
            .and_then(|mut f| chingu_media::y4m::write(&mut f, std::slice::from_ref(frame), 30));
        (path, written)
    });
    tracing::warn!(
        width,
        height,
        run,
        ?dump,
        "probe: frames shown without a readable barcode"
    );
}

impl PeerSetup {
    pub fn prefs(&self) -> SearchPrefs {
        SearchPrefs {
            nickname: self.nickname.clone(),
            languages: self.languages.clone(),
            interests: self.interests.clone(),
        }
    }

    pub fn engine_config(&self, kind: &str, media: MediaConfig, auto_search: bool) -> EngineConfig {
        let mut peer = PeerOptions {
            track_prefix: format!("{kind}-{}", device_id("t")),
            relay_only: self.relay_only,
            ..PeerOptions::default()
        };
        if let Some(addr) = self.udp_addr {
            peer.udp_addrs = vec![addr];
        }
        EngineConfig {
            signaling: SignalingConfig {
                url: self.server.clone(),
                device_id: self.device_id.clone().unwrap_or_else(|| device_id(kind)),
                client_version: concat!("chingu-cli/", env!("CARGO_PKG_VERSION")).into(),
                initial_backoff: Duration::from_millis(200),
                max_backoff: Duration::from_secs(5),
            },
            peer,
            media,
            auto_search,
        }
    }
}

#[derive(Debug, Clone)]
pub struct BotConfig {
    pub setup: PeerSetup,
    pub width: u32,
    pub height: u32,
    pub tone_hz: f64,
    /// A `.y4m` file to send instead of the pattern (`width`/`height` not used).
    pub video_file: Option<std::path::PathBuf>,
    /// How long to stay in the call.
    pub duration: Duration,
    /// How long to wait for a partner.
    pub wait: Duration,
    /// Chat messages to send once the peer's control channel is up.
    pub chat: Vec<String>,
    /// The system's default microphone and speaker (processed as the app does) instead
    /// of a tone and no playback.
    pub devices: bool,
    /// Ask to be friends with whoever the bot is matched with.
    pub add_friend: bool,
    /// Instead of searching: ring the friend with this nickname once they are online.
    pub call_friend: Option<String>,
    /// Accept a friend's call (instead of searching or while waiting).
    pub answer_calls: bool,
}

/// The bot's last line.
#[derive(Debug, Clone, Serialize)]
pub struct BotSummary {
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Media flowed both ways: we decoded video and audio from the peer, and sent ours.
    pub ok: bool,
    pub peer: Option<String>,
    /// Matched to media connected (DTLS up), ms.
    pub connected_ms: Option<u64>,
    /// Matched to the first decoded frame, ms.
    pub setup_ms: Option<u64>,
    pub frames_decoded: u64,
    pub frames_sent: u64,
    pub audio_packets_received: u64,
    pub audio_packets_sent: u64,
    pub capture_to_render_p50_ms: Option<f64>,
    pub ended: Option<String>,
    /// The candidate pair the call used (last seen).
    pub path: Option<CallPath>,
    /// Every candidate of the peer's that ICE learnt: what the peer revealed.
    pub remote_candidates: Vec<PathCandidate>,
    /// The peer's chat messages.
    pub chat_received: Vec<String>,
    /// Our chat messages the engine accepted for sending.
    pub chat_sent: u64,
    /// Friends as last listed (nicknames), and whether the call was with one.
    pub friends: Vec<String>,
    pub with_friend: bool,
}

/// Milliseconds at percentile `p` (0–100) of microsecond samples.
pub fn percentile_ms(sorted_us: &[u32], p: f64) -> Option<f64> {
    if sorted_us.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * (sorted_us.len() - 1) as f64).round() as usize;
    Some(f64::from(sorted_us[rank.min(sorted_us.len() - 1)]) / 1000.0)
}

/// Joins the queue, calls whoever it is matched with for `duration`, reporting stats
/// through `line` once a second; returns the summary.
pub async fn bot(config: BotConfig, mut line: impl FnMut(String)) -> anyhow::Result<BotSummary> {
    let probe = Arc::new(Mutex::new(Probe::default()));
    // The encoder's ceiling follows what is sent: the file's size, else the pattern's.
    let (width, height) = match &config.video_file {
        Some(path) => {
            let header = chingu_media::y4m::Y4mFile::open(path)?.header();
            (header.width as u32, header.height as u32)
        }
        None => (config.width, config.height),
    };
    let media = MediaConfig {
        video: Some(match &config.video_file {
            Some(path) => VideoSource::File(path.clone()),
            None => VideoSource::TestPattern {
                width: config.width,
                height: config.height,
                fps: 30,
            },
        }),
        audio: Some(if config.devices {
            AudioSource::Microphone { id: None }
        } else {
            AudioSource::Tone {
                frequency_hz: config.tone_hz,
            }
        }),
        output: if config.devices {
            AudioOutput::Speaker { id: None }
        } else {
            AudioOutput::Discard
        },
        processing: Default::default(),
        video_bitrate_bps: bitrate_for(width, height),
        camera_fallback: false,
        remote_video: Some(Probe::sink(&probe)),
        local_preview: None,
        remote_audio: None,
    };
    // Kept until the call is over: dropping it stops the simulated network.
    let sim = config.setup.net.clone().map(crate::netsim::NetSim::start);
    let mut engine_config = config.setup.engine_config("bot", media, false);
    engine_config.peer.route = sim.as_ref().map(crate::netsim::NetSim::route);
    let (engine, mut events, task) = Engine::start(engine_config);
    // Ringing a friend or waiting for one to ring is not searching.
    if config.call_friend.is_none() && !config.answer_calls {
        engine.send(Command::Search(config.setup.prefs())).await?;
    }
    let mut rang = false;
    let mut summary = BotSummary {
        kind: "summary",
        ok: false,
        peer: None,
        connected_ms: None,
        setup_ms: None,
        frames_decoded: 0,
        frames_sent: 0,
        audio_packets_received: 0,
        audio_packets_sent: 0,
        capture_to_render_p50_ms: None,
        ended: None,
        path: None,
        remote_candidates: Vec::new(),
        chat_received: Vec::new(),
        chat_sent: 0,
        friends: Vec::new(),
        with_friend: false,
    };
    let mut chat_to_send: std::collections::VecDeque<String> = config.chat.clone().into();
    let mut matched_at = None;
    let mut in_call_until = None;
    let mut last_stats: Option<CallStats> = None;
    let wait_deadline = tokio::time::Instant::now() + config.wait;
    loop {
        let deadline = match in_call_until {
            Some(t) => t,
            None if matched_at.is_none() => wait_deadline,
            None => tokio::time::Instant::now() + Duration::from_secs(30),
        };
        let event = tokio::select! {
            e = events.recv() => e.context("the engine stopped")?,
            () = tokio::time::sleep_until(deadline) => {
                if in_call_until.take().is_some() {
                    // Hang up and wait for the engine to confirm the call ended.
                    engine.send(Command::HangUp).await?;
                    continue;
                }
                if matched_at.is_none() {
                    bail!("no partner within {:?}", config.wait);
                }
                bail!("the call never connected");
            }
        };
        match event {
            EngineEvent::State(CallView::Connecting { peer, friend }) => {
                matched_at = Some(Instant::now());
                summary.peer = Some(peer.nickname);
                summary.with_friend = friend.is_some();
            }
            EngineEvent::State(CallView::InCall { .. }) => {
                in_call_until = Some(tokio::time::Instant::now() + config.duration);
                if config.add_friend {
                    engine.send(Command::AddFriend).await?;
                }
            }
            EngineEvent::Friends(friends) => {
                line(serde_json::json!({"type": "friends", "friends": friends}).to_string());
                summary.friends = friends.iter().map(|f| f.nickname.clone()).collect();
                let wanted = friends.iter().find(|f| {
                    Some(&f.nickname) == config.call_friend.as_ref()
                        && f.presence == chingu_proto::Presence::Online
                });
                if let Some(friend) = wanted.filter(|_| !rang) {
                    rang = true;
                    engine.send(Command::CallFriend(friend.id.clone())).await?;
                }
            }
            EngineEvent::FriendAdded(friend) => {
                line(serde_json::json!({"type": "friend_added", "friend": friend}).to_string())
            }
            EngineEvent::IncomingCall(friend) if config.answer_calls => {
                line(serde_json::json!({"type": "incoming_call", "friend": friend}).to_string());
                engine
                    .send(Command::AnswerFriendCall {
                        friend,
                        accept: true,
                    })
                    .await?;
            }
            EngineEvent::FriendCallFailed { reason, .. } => {
                bail!("the friend did not take the call: {reason:?}")
            }
            EngineEvent::State(CallView::Ended { reason }) => {
                summary.ended = Some(reason.to_string());
                break;
            }
            EngineEvent::MediaConnected { setup_ms } => summary.connected_ms = Some(setup_ms),
            // The peer announced its media state: its control channel is up.
            EngineEvent::PeerMedia { .. } => {
                while let Some(text) = chat_to_send.pop_front() {
                    engine.send(Command::SendChat(text)).await?;
                    summary.chat_sent += 1;
                }
            }
            EngineEvent::Chat(text) => {
                line(serde_json::json!({"type": "chat", "text": text}).to_string());
                summary.chat_received.push(text);
            }
            EngineEvent::MediaInterrupted(interrupted) => line(
                serde_json::json!({"type": "media_interrupted", "interrupted": interrupted})
                    .to_string(),
            ),
            EngineEvent::Stats(stats) => {
                let mut value = serde_json::to_value(&*stats)?;
                value["type"] = "stats".into();
                line(value.to_string());
                last_stats = Some(*stats);
            }
            EngineEvent::ServerRefused { message } => bail!("the server refused us: {message}"),
            EngineEvent::DeviceError { device, message } => {
                tracing::warn!(%device, message, "device error")
            }
            _ => {}
        }
    }
    {
        let p = probe
            .lock()
            .map_err(|_| anyhow::anyhow!("probe poisoned"))?;
        summary.frames_decoded = p.frames;
        if let (Some(m), Some(f)) = (matched_at, p.first_frame) {
            summary.setup_ms = Some(f.saturating_duration_since(m).as_millis() as u64);
        }
        let mut lat: Vec<u32> = p.latencies.iter().map(|(_, l)| *l).collect();
        lat.sort_unstable();
        summary.capture_to_render_p50_ms = percentile_ms(&lat, 50.0);
    }
    if let Some(s) = &last_stats {
        summary.path = s.path.clone();
        summary.remote_candidates = s.remote_candidates.clone();
        summary.frames_sent = s.outbound_video.frames_sent;
        summary.audio_packets_received = s.inbound_audio.packets_received;
        summary.audio_packets_sent = s.outbound_audio.packets_sent;
    }
    summary.ok = summary.frames_decoded > 0
        && summary.frames_sent > 0
        && summary.audio_packets_received > 0
        && summary.audio_packets_sent > 0;
    drop(engine);
    drop(events);
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    Ok(summary)
}

/// Waits in the queue and sends back what it receives, call after call. Returns after
/// `calls` calls (or never, with `None`).
pub async fn echo(
    setup: PeerSetup,
    calls: Option<u64>,
    mut line: impl FnMut(String),
) -> anyhow::Result<()> {
    let video = Arc::new(FrameRelay::default());
    let audio = Arc::new(AudioRelay::default());
    let video_in = Arc::clone(&video);
    let audio_in = Arc::clone(&audio);
    let media = MediaConfig {
        video: Some(VideoSource::Relay(video)),
        audio: Some(AudioSource::Relay(audio)),
        output: AudioOutput::Discard,
        processing: Default::default(),
        video_bitrate_bps: 1_500_000,
        camera_fallback: false,
        remote_video: Some(Arc::new(move |frame, _| video_in.push(frame))),
        local_preview: None,
        remote_audio: Some(Arc::new(move |pcm| audio_in.push(pcm))),
    };
    let sim = setup.net.clone().map(crate::netsim::NetSim::start);
    let mut engine_config = setup.engine_config("echo", media, true);
    engine_config.peer.route = sim.as_ref().map(crate::netsim::NetSim::route);
    let (engine, mut events, task) = Engine::start(engine_config);
    engine.send(Command::Search(setup.prefs())).await?;
    let mut done = 0u64;
    // The call's path as last seen, told when it ends (the bot sees only its own side).
    let mut path = None;
    while let Some(event) = events.recv().await {
        match event {
            EngineEvent::State(CallView::InCall { peer, .. }) => {
                path = None;
                line(serde_json::json!({"type": "call", "peer": peer.nickname}).to_string());
            }
            EngineEvent::Stats(stats) if stats.path.is_some() => path = stats.path,
            EngineEvent::Chat(text) => {
                line(serde_json::json!({"type": "chat", "text": text}).to_string());
                engine.send(Command::SendChat(text)).await?;
            }
            EngineEvent::State(CallView::Ended { reason }) => {
                line(
                    serde_json::json!({"type": "ended", "reason": reason.to_string(), "path": path})
                        .to_string(),
                );
                done += 1;
                if calls.is_some_and(|n| done >= n) {
                    break;
                }
                // Hung up on, not by a peer leaving (auto-search covers that): search again.
                engine.send(Command::Search(setup.prefs())).await?;
            }
            EngineEvent::ServerRefused { message } => bail!("the server refused us: {message}"),
            _ => {}
        }
    }
    drop(engine);
    drop(events);
    let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
    Ok(())
}

/// The video bitrate we use for a frame size at 30 fps.
pub fn bitrate_for(width: u32, height: u32) -> u32 {
    match width * height {
        p if p >= 1280 * 720 => 2_500_000,
        p if p >= 640 * 480 => 1_000_000,
        _ => 400_000,
    }
}

#[cfg(test)]
mod tests;
