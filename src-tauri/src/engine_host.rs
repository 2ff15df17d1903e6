//! The one place that starts, restarts and stops the call engine. It holds the running
//! engine with the settings it was built from, its task and the task forwarding its
//! events to the UI; a restart (a new server or privacy choice) and the app's exit stop
//! the old engine completely — it hangs up, leaves the queue, and both tasks are joined —
//! before anything else happens.

use std::sync::Arc;
use std::time::Duration;

use chingu_engine::peer::PeerOptions;
use chingu_engine::pipeline::{DeviceChoice, MediaConfig};
use chingu_engine::signaling::SignalingConfig;
use chingu_engine::{Command, Engine, EngineConfig};
use tauri::AppHandle;
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use crate::error::{CommandError, CommandErrorCode, CommandResult};
use crate::events;
use crate::settings::Settings;
use crate::video::VideoHub;

/// How long a stopping engine gets to hang up and say goodbye to the server.
const STOP_GRACE: Duration = Duration::from_secs(5);

struct Running {
    engine: Engine,
    settings: Settings,
    task: JoinHandle<()>,
    forwarder: JoinHandle<()>,
}

/// Owns the engine for the app's life.
#[derive(Default)]
pub struct EngineHost {
    running: Mutex<Option<Running>>,
}

impl std::fmt::Debug for EngineHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineHost").finish_non_exhaustive()
    }
}

impl EngineHost {
    /// Runs an engine for `settings`. A different server, privacy choice or identity
    /// needs a new engine (the old one is stopped first); anything else applies on the next search.
    pub async fn apply(
        &self,
        app: &AppHandle,
        settings: Settings,
        video: &Arc<VideoHub>,
    ) -> CommandResult<()> {
        let mut running = self.running.lock().await;
        if let Some(current) = running.as_mut()
            && current.settings.server_url == settings.server_url
            && current.settings.relay_only == settings.relay_only
            && current.settings.device_id == settings.device_id
        {
            // The microphone's processing changes at once, in a call too.
            if current.settings.processing() != settings.processing() {
                let _ = current
                    .engine
                    .send(Command::SetAudioProcessing(settings.processing()))
                    .await;
            }
            current.settings = settings;
            return Ok(());
        }
        if let Some(old) = running.take() {
            stop(old).await;
        }
        let config = engine_config(&settings, video).await?;
        let (engine, events, task) = Engine::start(config);
        let forwarder = tokio::spawn(events::forward(app.clone(), events, Arc::clone(video)));
        *running = Some(Running {
            engine,
            settings,
            task,
            forwarder,
        });
        Ok(())
    }

    /// Sends a command to the running engine.
    pub async fn send(&self, command: Command) -> CommandResult<()> {
        let running = self.running.lock().await;
        let running = running.as_ref().ok_or_else(not_ready)?;
        running
            .engine
            .send(command)
            .await
            .map_err(|e| CommandError::new(CommandErrorCode::EngineStopped, e.to_string()))
    }

    /// The settings the running engine uses.
    pub async fn settings(&self) -> CommandResult<Settings> {
        let running = self.running.lock().await;
        running
            .as_ref()
            .map(|r| r.settings.clone())
            .ok_or_else(not_ready)
    }

    /// Stops the engine, if one runs, and waits for it.
    pub async fn stop(&self) {
        if let Some(old) = self.running.lock().await.take() {
            stop(old).await;
        }
    }
}

fn not_ready() -> CommandError {
    CommandError::new(CommandErrorCode::NotReady, "save your settings first")
}

/// Drops the engine's handle (it hangs up, leaves the queue and ends), then joins its
/// task and the event forwarder (which ends when the engine's events do).
async fn stop(running: Running) {
    let Running {
        engine,
        task,
        forwarder,
        ..
    } = running;
    drop(engine);
    if tokio::time::timeout(STOP_GRACE, task).await.is_err() {
        tracing::warn!("the engine did not stop within {STOP_GRACE:?}");
    }
    let _ = tokio::time::timeout(STOP_GRACE, forwarder).await;
}

/// The engine for `settings`, its video going to `video` (drawn by the webview). Built
/// off the async runtime: asking which audio devices exist can block on the sound server.
async fn engine_config(settings: &Settings, video: &Arc<VideoHub>) -> CommandResult<EngineConfig> {
    let choice = DeviceChoice {
        camera: settings.camera_id.clone(),
        microphone: settings.microphone_id.clone(),
        speaker: settings.speaker_id.clone(),
    };
    let mut media = tauri::async_runtime::spawn_blocking(move || MediaConfig::for_devices(&choice))
        .await
        .map_err(CommandError::internal)?;
    media.processing = settings.processing();
    let (remote, local) = video.sinks();
    media.remote_video = Some(remote);
    media.local_preview = Some(local);
    Ok(EngineConfig {
        signaling: SignalingConfig {
            url: settings.server_url.clone(),
            device_id: settings.device_id.clone(),
            client_version: concat!("chingu-app/", env!("CARGO_PKG_VERSION")).into(),
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
        },
        peer: PeerOptions {
            relay_only: settings.relay_only,
            track_prefix: format!("app-{}", std::process::id()),
            ..PeerOptions::default()
        },
        media,
        auto_search: true,
    })
}
