//! Engine and device-check events to the UI: one typed event, `engine` on the app's
//! event bus, whose TypeScript type is generated (`UiEvent` in ui/src/lib/bindings.ts).

use std::sync::Arc;

use chingu_engine::device_check::{CheckEvent, MicTestStep};
use chingu_engine::pipeline::Device;
use chingu_engine::stats::CallStats;
use chingu_engine::{CallView, EngineEvent};
use chingu_proto::{ErrorCode as ServerErrorCode, Friend, FriendCallFailure, FriendId};
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
    /// The whole friend list, each time anything in it changes.
    Friends {
        friends: Vec<Friend>,
    },
    /// Our friend request is noted (nothing is said about the other side's).
    FriendRequested,
    /// Both asked: a new friend.
    FriendAdded {
        friend: Friend,
    },
    /// A friend's devices are ringing.
    Ringing {
        friend: FriendId,
    },
    /// A friend is calling.
    IncomingCall {
        friend: FriendId,
    },
    /// A ring to us stopped without a call here.
    RingEnded {
        friend: FriendId,
    },
    /// A call to a friend did not happen: `offline`, `busy`, `declined` or `missed`.
    FriendCallFailed {
        friend: FriendId,
        reason: FriendCallFailure,
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
    // The friend list as last told, for the name on a ring's notification.
    let mut friends: Vec<Friend> = Vec::new();
    while let Some(event) = events.recv().await {
        if let EngineEvent::State(view) = &event
            && !matches!(view, CallView::InCall { .. })
        {
            video.remote.clear();
        }
        if let EngineEvent::Friends(list) = &event {
            friends.clone_from(list);
        }
        if let EngineEvent::IncomingCall(id) = &event {
            let name = friends
                .iter()
                .find(|f| f.id == *id)
                .map_or_else(String::new, |f| f.nickname.clone());
            ask_for_attention(&app, &name);
        }
        if let Some(event) = to_ui(event) {
            emit(&app, event);
        }
    }
}

/// A friend is calling. With the window minimised or behind others: a system
/// notification (in the UI's language), the window brought back, the taskbar flashing.
fn ask_for_attention(app: &AppHandle, name: &str) {
    use tauri::Manager;
    let Some(window) = app.get_webview_window("main") else {
        return;
    };
    let minimised = window.is_minimized().unwrap_or(false);
    let focused = window.is_focused().unwrap_or(true);
    if !minimised && focused {
        return;
    }
    let language = match crate::settings::load(app).map(|s| s.ui_language) {
        Ok(crate::settings::UiLanguage::Ko) => "ko".to_string(),
        Ok(crate::settings::UiLanguage::En) => "en".to_string(),
        _ => std::env::var("LANG").unwrap_or_default(),
    };
    let (summary, body) = crate::notify::ring_text(&language, name);
    // The bus call may wait up to two seconds: off the async workers.
    tauri::async_runtime::spawn_blocking(move || {
        if let Err(e) = crate::notify::show(&summary, &body, std::time::Duration::from_secs(30)) {
            tracing::info!("no system notification for the ring: {e}");
        }
    });
    if minimised {
        let _ = window.unminimize();
    }
    let _ = window.request_user_attention(Some(tauri::UserAttentionType::Critical));
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
        EngineEvent::Friends(friends) => UiEvent::Friends { friends },
        EngineEvent::FriendRequested => UiEvent::FriendRequested,
        EngineEvent::FriendAdded(friend) => UiEvent::FriendAdded { friend },
        EngineEvent::Ringing(friend) => UiEvent::Ringing { friend },
        EngineEvent::IncomingCall(friend) => UiEvent::IncomingCall { friend },
        EngineEvent::RingEnded(friend) => UiEvent::RingEnded { friend },
        EngineEvent::FriendCallFailed { friend, reason } => {
            UiEvent::FriendCallFailed { friend, reason }
        }
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
        assert_eq!(
            json(EngineEvent::Friends(vec![chingu_proto::Friend {
                id: FriendId("f1".into()),
                nickname: "민지".into(),
                presence: chingu_proto::Presence::InCall,
                last_call_unix: 1_764_547_200,
            }])),
            json!({"type": "friends", "friends": [{"id": "f1", "nickname": "민지", "presence": "in_call", "last_call_unix": 1_764_547_200}]})
        );
        assert_eq!(
            json(EngineEvent::FriendCallFailed {
                friend: FriendId("f1".into()),
                reason: FriendCallFailure::Missed
            }),
            json!({"type": "friend_call_failed", "friend": "f1", "reason": "missed"})
        );
        assert_eq!(
            json(EngineEvent::State(CallView::InCall {
                peer: chingu_proto::PeerProfile {
                    nickname: "Sam".into(),
                    languages: vec![],
                    shared_interests: vec![]
                },
                friend: Some(FriendId("f1".into()))
            })),
            json!({"type": "state", "view": {"state": "in_call", "peer": {"nickname": "Sam", "languages": [], "shared_interests": []}, "friend": "f1"}})
        );
    }
}
