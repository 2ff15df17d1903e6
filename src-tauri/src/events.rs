//! Engine events to UI events (`engine` on the app's event bus), in the shapes of
//! `ui/src/lib/types.ts`.

use chingu_engine::device_check::CheckEvent;
use chingu_engine::{CallView, EngineEvent};
use serde_json::{Value, json};
use tauri::{AppHandle, Emitter};
use tokio::sync::mpsc;

pub async fn forward(app: AppHandle, mut events: mpsc::Receiver<EngineEvent>) {
    while let Some(event) = events.recv().await {
        let Some(payload) = to_ui(&event) else {
            continue;
        };
        if let Err(e) = app.emit("engine", payload) {
            tracing::warn!("engine event not delivered to the UI: {e}");
        }
    }
}

/// Device check events, on the same `engine` channel.
pub async fn forward_check(app: AppHandle, mut events: mpsc::Receiver<CheckEvent>) {
    while let Some(event) = events.recv().await {
        let payload = match event {
            CheckEvent::Level { dbfs } => json!({"type": "mic_level", "dbfs": dbfs}),
            CheckEvent::DeviceError { device, message } => {
                json!({"type": "device_error", "device": device, "message": message})
            }
        };
        if let Err(e) = app.emit("engine", payload) {
            tracing::warn!("device check event not delivered to the UI: {e}");
        }
    }
}

pub fn to_ui(event: &EngineEvent) -> Option<Value> {
    Some(match event {
        EngineEvent::ServerConnected => json!({"type": "server_connected"}),
        EngineEvent::ServerDisconnected { why, retry_in } => json!({
            "type": "server_disconnected", "why": why, "retryInMs": retry_in.as_millis() as u64
        }),
        EngineEvent::ServerRefused { message } => {
            json!({"type": "error", "code": "server_refused", "message": message})
        }
        EngineEvent::State(view) => json!({"type": "state", "view": view_json(view)}),
        EngineEvent::Chat(text) => json!({"type": "chat", "text": text}),
        EngineEvent::PeerMedia { audio, video } => {
            json!({"type": "peer_media", "audio": audio, "video": video})
        }
        EngineEvent::Stats(stats) => json!({"type": "stats", "stats": stats}),
        EngineEvent::AudioLevels {
            local_dbfs,
            remote_dbfs,
        } => json!({"type": "audio_levels", "localDbfs": local_dbfs, "remoteDbfs": remote_dbfs}),
        EngineEvent::DeviceError { device, message } => {
            json!({"type": "device_error", "device": device, "message": message})
        }
        EngineEvent::Error { code, message } => json!({
            "type": "error",
            "code": code.map(|c| serde_json::to_value(c).unwrap_or(Value::Null)),
            "message": message
        }),
        EngineEvent::OnlineCount { online, waiting } => {
            json!({"type": "online_count", "online": online, "waiting": waiting})
        }
        _ => return None,
    })
}

fn view_json(view: &CallView) -> Value {
    serde_json::to_value(view).unwrap_or_else(|_| json!({"state": "idle"}))
}
