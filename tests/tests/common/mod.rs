//! Engines and a server in one process on loopback, with synthetic media and probes.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chingu_engine::call_state::SearchPrefs;
use chingu_engine::peer::PeerOptions;
use chingu_engine::pipeline::{
    AudioOutput, AudioSource, MediaConfig, ProcessingSettings, VideoSource,
};
use chingu_engine::signaling::SignalingConfig;
use chingu_engine::{CallView, Command, Engine, EngineConfig, EngineEvent};
use chingu_media::barcode;
use chingu_server::{Config, RunningServer};
use tokio::sync::mpsc;

/// The workspace's `chingu-cli`: in CHINGU_BIN_DIR (set by `cargo xtask test`), else in
/// the profile directory these tests were built into; `None` if it is not there.
pub fn cli() -> Option<std::path::PathBuf> {
    let dir = match std::env::var_os("CHINGU_BIN_DIR") {
        Some(dir) => std::path::PathBuf::from(dir),
        None => std::env::current_exe().ok()?.parent()?.parent()?.to_owned(),
    };
    let cli = dir.join("chingu-cli");
    cli.is_file().then_some(cli)
}

/// Every wait in these tests has this deadline, so a broken build fails instead of hanging.
pub const WAIT: Duration = Duration::from_secs(20);

pub async fn server(dir: &std::path::Path) -> RunningServer {
    chingu_server::start(Config {
        listen: "127.0.0.1:0".parse().expect("addr"),
        data_dir: dir.to_owned(),
        cooldown_s: 0,
        // Calls here take ~50 ms each, so back-to-back calls send signaling far faster
        // than any person could; the per-client limit is for people.
        rate_limit_per_s: 1000,
        rate_limit_burst: 1000,
        address_rate_limit_per_s: 100_000,
        address_rate_limit_burst: 100_000,
        ..Config::default()
    })
    .await
    .expect("server starts")
}

/// What one engine's probes saw.
#[derive(Debug, Default)]
pub struct Seen {
    /// Frame numbers read from the barcodes of decoded remote frames, in order.
    pub frames: Vec<u32>,
    /// Capture-to-render latencies in microseconds, from the barcodes.
    pub latencies_us: Vec<u32>,
    /// The last 2 s of remote audio.
    pub audio: Vec<i16>,
}

pub struct Client {
    pub name: String,
    pub engine: Engine,
    pub events: mpsc::Receiver<EngineEvent>,
    pub task: tokio::task::JoinHandle<()>,
    pub seen: Arc<Mutex<Seen>>,
}

pub struct ClientOptions {
    pub tone_hz: f64,
    pub width: u32,
    pub height: u32,
    pub auto_search: bool,
    pub audio: Option<AudioSource>,
    pub output: AudioOutput,
    /// Instead of the test pattern (e.g. a camera).
    pub video: Option<VideoSource>,
    pub camera_fallback: bool,
    /// The microphone's processing (the app's default: everything on).
    pub processing: ProcessingSettings,
}

impl Default for ClientOptions {
    fn default() -> Self {
        Self {
            tone_hz: 440.0,
            width: 320,
            height: 240,
            auto_search: false,
            audio: None,
            output: AudioOutput::Discard,
            video: None,
            camera_fallback: false,
            processing: ProcessingSettings::default(),
        }
    }
}

/// Logs to stderr when RUST_LOG is set (for debugging a failing test).
pub fn init_logging() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

pub fn client(url: &str, name: &str, options: ClientOptions) -> Client {
    init_logging();
    let seen = Arc::new(Mutex::new(Seen::default()));
    let video_seen = Arc::clone(&seen);
    let audio_seen = Arc::clone(&seen);
    let media = MediaConfig {
        video: Some(options.video.unwrap_or(VideoSource::TestPattern {
            width: options.width,
            height: options.height,
            fps: 30,
        })),
        audio: Some(options.audio.unwrap_or(AudioSource::Tone {
            frequency_hz: options.tone_hz,
        })),
        output: options.output,
        processing: options.processing,
        video_bitrate_bps: if options.width >= 640 {
            1_000_000
        } else {
            300_000
        },
        camera_fallback: options.camera_fallback,
        remote_video: Some(Arc::new(move |frame, _info| {
            let now = chingu_media::frame::now_us();
            if let Some(stamp) = barcode::read(frame)
                && let Ok(mut seen) = video_seen.lock()
            {
                seen.frames.push(stamp.frame_number);
                seen.latencies_us.push(stamp.elapsed_us(now));
            }
        })),
        local_preview: None,
        remote_audio: Some(Arc::new(move |pcm| {
            if let Ok(mut seen) = audio_seen.lock() {
                seen.audio.extend_from_slice(pcm);
                let excess = seen.audio.len().saturating_sub(96_000);
                seen.audio.drain(..excess);
            }
        })),
    };
    let config = EngineConfig {
        signaling: SignalingConfig {
            url: url.to_owned(),
            device_id: format!("test-device-{name:-<12}"),
            client_version: "tests".into(),
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(500),
        },
        peer: PeerOptions {
            udp_addrs: vec![SocketAddr::from(([127, 0, 0, 1], 0))],
            track_prefix: format!("{name}-{}", std::process::id()),
            ..PeerOptions::default()
        },
        media,
        auto_search: options.auto_search,
    };
    let (engine, events, task) = Engine::start(config);
    Client {
        name: name.to_owned(),
        engine,
        events,
        task,
        seen,
    }
}

pub fn prefs(name: &str) -> SearchPrefs {
    SearchPrefs {
        nickname: name.to_owned(),
        languages: vec!["ko".into()],
        interests: vec![],
    }
}

impl Client {
    pub async fn send(&self, command: Command) {
        self.engine.send(command).await.expect("engine running");
    }

    pub async fn search(&self) {
        self.send(Command::Search(prefs(&self.name))).await;
    }

    /// Waits for an event the predicate picks, skipping others; fails after [`WAIT`].
    pub async fn wait_for<T>(
        &mut self,
        what: &str,
        mut pick: impl FnMut(&EngineEvent) -> Option<T>,
    ) -> T {
        let deadline = tokio::time::Instant::now() + WAIT;
        let mut skipped = Vec::new();
        loop {
            let Ok(event) = tokio::time::timeout_at(deadline, self.events.recv()).await else {
                skipped.retain(|e| {
                    !matches!(e, EngineEvent::Stats(_) | EngineEvent::AudioLevels { .. })
                });
                panic!("{}: no {what} within {WAIT:?}; saw {skipped:?}", self.name);
            };
            let Some(event) = event else {
                panic!("{}: engine stopped while waiting for {what}", self.name);
            };
            if let Some(t) = pick(&event) {
                return t;
            }
            skipped.push(event);
        }
    }

    pub async fn wait_state(&mut self, what: &str, pick: impl Fn(&CallView) -> bool) -> CallView {
        self.wait_for(what, |e| match e {
            EngineEvent::State(s) if pick(s) => Some(s.clone()),
            _ => None,
        })
        .await
    }

    /// Waits until in a call; returns the peer's nickname.
    pub async fn in_call(&mut self) -> String {
        match self
            .wait_state("in call", |s| matches!(s, CallView::InCall { .. }))
            .await
        {
            CallView::InCall { peer, .. } => peer.nickname,
            _ => unreachable!(),
        }
    }

    pub async fn ended(&mut self) -> chingu_engine::EndReason {
        match self
            .wait_state("call ended", |s| matches!(s, CallView::Ended { .. }))
            .await
        {
            CallView::Ended { reason } => reason,
            _ => unreachable!(),
        }
    }

    pub fn frames_seen(&self) -> usize {
        self.seen.lock().expect("probe").frames.len()
    }

    /// Stops the engine the way an app does: drop the handle, wait for the task.
    pub async fn stop(self) {
        drop(self.engine);
        drop(self.events);
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("engine stops in time")
            .expect("engine task ends cleanly");
    }
}
