//! Engine and device-check events to the UI: one typed event, `engine` on the app's
//! event bus, whose TypeScript type is generated (`UiEvent` in ui/src/lib/bindings.ts).

use std::sync::Arc;

use chingu_engine::device_check::{CheckEvent, MicTestStep};
use chingu_engine::pipeline::Device;
use chingu_engine::stats::CallStats;
use chingu_engine::{CallView, EngineEvent};
use chingu_proto::ErrorCode as ServerErrorCode;
use serde::Serialize;
use tauri::AppHandle;
use tauri_specta::Event;
use tokio::sync::mpsc;

use crate::error::CommandError;
use crate::video::VideoHub;

/// What the UI hears from the shell.
#[derive(Debug, Clone, Serialize, specta::Type, tauri_specta::Event)]
#[tauri_specta(event_name = "engine")]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum UiEvent {
    ServerConnected,
    ServerDisconnected {
        why: String,
        /// When the next attempt is made.
        #[serde(rename = "retryInMs")]
        retry_in_ms: u32,
    },
    State {
        view: CallView,
    },
    Chat {
        text: String,
    },
    /// The peer's microphone and camera.
    PeerMedia {
        audio: bool,
        video: bool,
    },
    /// Every second of a call, W3C getStats names.
    Stats {
        stats: Box<CallStats>,
    },
    /// Every 100 ms of a call, dBFS.
    AudioLevels {
        #[serde(rename = "localDbfs")]
        local_dbfs: f32,
        #[serde(rename = "remoteDbfs")]
        remote_dbfs: f32,
    },
    /// A device failed or is missing; the call goes on without it (or with the test
    /// pattern for the camera, as the message says).
    DeviceError {
        device: Device,
        message: String,
    },
    /// The server said no to something (codes in docs/protocol.md).
    ServerError {
        code: ServerErrorCode,
        message: String,
    },
    /// The server refused this version of the app for good: it must be updated.
    ServerRefused {
        message: String,
    },
    /// A command was accepted but could not be carried out (chat outside a call, ...).
    CommandFailed {
        error: CommandError,
    },
    OnlineCount {
        online: u32,
        waiting: u32,
    },
    /// The device check's microphone level, every 100 ms, dBFS.
    MicLevel {
        dbfs: f32,
    },
    /// "Test my microphone" moved on.
    MicTest {
        step: MicTestStep,
    },
    /// `true`: nothing has arrived from the peer for a few seconds (the network may be
    /// down; the call ends if it stays so); `false`: media flows again.
    MediaInterrupted {
        interrupted: bool,
    },
}

fn emit(app: &AppHandle, event: UiEvent) {
    if let Err(e) = event.emit(app) {
        tracing::warn!("event not delivered to the UI: {e}");
    }
}

/// Forwards engine events. Between calls the peer's last frame is dropped, so the next
/// call never starts with the previous person's picture.
pub async fn forward(
    app: AppHandle,
    mut events: mpsc::Receiver<EngineEvent>,
    video: Arc<VideoHub>,
) {
    while let Some(event) = events.recv().await {
        if let EngineEvent::State(view) = &event
            && !matches!(view, CallView::InCall { .. })
        {
            video.remote.clear();
        }
        if let Some(event) = to_ui(event) {
            emit(&app, event);
        }
    }
}

/// Device check events, on the same channel.
pub async fn forward_check(app: AppHandle, mut events: mpsc::Receiver<CheckEvent>) {
    while let Some(event) = events.recv().await {
        emit(
            &app,
            match event {
                CheckEvent::Level { dbfs } => UiEvent::MicLevel { dbfs },
                CheckEvent::MicTest(step) => UiEvent::MicTest { step },
                CheckEvent::DeviceError { device, message } => {
                    UiEvent::DeviceError { device, message }
                }
            },
        );
    }
}

pub fn to_ui(event: EngineEvent) -> Option<UiEvent> {
    let saturate = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
    Some(match event {
        EngineEvent::ServerConnected => UiEvent::ServerConnected,
        EngineEvent::ServerDisconnected { why, retry_in } => UiEvent::ServerDisconnected {
            why,
            retry_in_ms: saturate(retry_in.as_millis() as u64),
        },
        EngineEvent::ServerRefused { message } => UiEvent::ServerRefused { message },
        EngineEvent::State(view) => UiEvent::State { view },
        EngineEvent::Chat(text) => UiEvent::Chat { text },
        EngineEvent::PeerMedia { audio, video } => UiEvent::PeerMedia { audio, video },
        EngineEvent::MediaInterrupted(interrupted) => UiEvent::MediaInterrupted { interrupted },
        EngineEvent::Stats(stats) => UiEvent::Stats { stats },
        EngineEvent::AudioLevels {
            local_dbfs,
            remote_dbfs,
        } => UiEvent::AudioLevels {
            local_dbfs,
            remote_dbfs,
        },
        EngineEvent::DeviceError { device, message } => UiEvent::DeviceError { device, message },
        EngineEvent::ServerError { code, message } => UiEvent::ServerError { code, message },
        EngineEvent::CommandFailed(failure) => UiEvent::CommandFailed {
            error: failure.into(),
        },
        EngineEvent::OnlineCount { online, waiting } => UiEvent::OnlineCount { online, waiting },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_have_the_shapes_the_ui_reads() {
        let json = |e: EngineEvent| serde_json::to_value(to_ui(e).expect("forwarded")).unwrap();
        assert_eq!(
            json(EngineEvent::ServerDisconnected {
                why: "gone".into(),
                retry_in: std::time::Duration::from_millis(1500)
            }),
            json!({"type": "server_disconnected", "why": "gone", "retryInMs": 1500})
        );
        assert_eq!(
            json(EngineEvent::State(CallView::Searching)),
            json!({"type": "state", "view": {"state": "searching"}})
        );
        assert_eq!(
            json(EngineEvent::ServerError {
                code: chingu_proto::ErrorCode::RateLimited,
                message: "slow down".into()
            }),
            json!({"type": "server_error", "code": "rate_limited", "message": "slow down"})
        );
        assert_eq!(
            json(EngineEvent::CommandFailed(
                chingu_engine::CommandFailure::NotInCall
            )),
            json!({"type": "command_failed", "error": {"code": "not_in_call", "message": "not in a call"}})
        );
        assert_eq!(
            json(EngineEvent::State(CallView::Ended {
                reason: chingu_engine::EndReason::PeerLeft {
                    reason: chingu_proto::PeerLeftReason::Next
                }
            })),
            json!({"type": "state", "view": {"state": "ended", "reason": {"kind": "peer_left", "reason": "next"}}})
        );
        assert_eq!(
            json(EngineEvent::DeviceError {
                device: Device::Microphone,
                message: "gone".into()
            }),
            json!({"type": "device_error", "device": "microphone", "message": "gone"})
        );
        assert_eq!(
            json(EngineEvent::AudioLevels {
                local_dbfs: -20.0,
                remote_dbfs: -30.0
            }),
            json!({"type": "audio_levels", "localDbfs": -20.0, "remoteDbfs": -30.0})
        );
        assert_eq!(
            json(EngineEvent::MediaInterrupted(true)),
            json!({"type": "media_interrupted", "interrupted": true})
        );
    }
}
