//! The Chingu desktop app: a thin Tauri v2 shell. It owns one call engine, turns UI
//! commands into engine commands and engine events into UI events, and keeps settings
//! in the store plugin. No call logic lives here (that is `chingu-engine`).

#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

mod events;
mod settings;

use std::sync::Arc;

use chingu_engine::call_state::SearchPrefs;
use chingu_engine::{Command, Engine};
use serde::Serialize;
use tauri::{AppHandle, Emitter, Manager, State};
use tokio::sync::Mutex;

use settings::Settings;

/// Every command's error: a stable code the UI can act on, and a message for people.
#[derive(Debug, Clone, Serialize, thiserror::Error)]
#[error("{code}: {message}")]
pub struct CommandError {
    code: &'static str,
    message: String,
}

impl CommandError {
    fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

type CommandResult<T> = Result<T, CommandError>;

#[derive(Default)]
struct Shell {
    engine: Mutex<Option<(Engine, Settings)>>,
}

#[tauri::command]
async fn load_settings(app: AppHandle) -> CommandResult<Settings> {
    settings::load(&app)
}

#[tauri::command]
async fn save_settings(
    app: AppHandle,
    shell: State<'_, Arc<Shell>>,
    settings: Settings,
) -> CommandResult<()> {
    let settings = settings.validated()?;
    settings::save(&app, &settings)?;
    let mut engine = shell.engine.lock().await;
    // A different server or privacy choice needs a new engine; the rest applies on the
    // next search.
    let restart = engine.as_ref().is_none_or(|(_, old)| {
        old.server_url != settings.server_url || old.relay_only != settings.relay_only
    });
    if restart {
        *engine = None; // the old engine hangs up and stops when its handle drops
        let (handle, events, _task) = Engine::start(engine_config(&settings).await?);
        tauri::async_runtime::spawn(events::forward(app.clone(), events));
        *engine = Some((handle, settings));
    } else if let Some((_, current)) = engine.as_mut() {
        *current = settings;
    }
    Ok(())
}

/// Builds the engine configuration off the async runtime: it enumerates audio devices,
/// which can block on the sound server.
async fn engine_config(settings: &Settings) -> CommandResult<chingu_engine::EngineConfig> {
    let settings = settings.clone();
    tauri::async_runtime::spawn_blocking(move || settings::engine_config(&settings))
        .await
        .map_err(|e| CommandError::new("internal", e.to_string()))
}

async fn send(shell: &Shell, command: Command) -> CommandResult<()> {
    let engine = shell.engine.lock().await;
    let (engine, _) = engine
        .as_ref()
        .ok_or_else(|| CommandError::new("not_ready", "save your settings first"))?;
    engine
        .send(command)
        .await
        .map_err(|e| CommandError::new("engine_stopped", e.to_string()))
}

#[tauri::command]
async fn search(shell: State<'_, Arc<Shell>>) -> CommandResult<()> {
    let prefs = {
        let engine = shell.engine.lock().await;
        let (_, settings) = engine
            .as_ref()
            .ok_or_else(|| CommandError::new("not_ready", "save your settings first"))?;
        SearchPrefs {
            nickname: settings.nickname.clone(),
            languages: settings.languages.clone(),
            interests: settings.interests.clone(),
        }
    };
    send(&shell, Command::Search(prefs)).await
}

#[tauri::command]
async fn cancel(shell: State<'_, Arc<Shell>>) -> CommandResult<()> {
    send(&shell, Command::Cancel).await
}

#[tauri::command]
async fn next(shell: State<'_, Arc<Shell>>) -> CommandResult<()> {
    send(&shell, Command::Next).await
}

#[tauri::command]
async fn hang_up(shell: State<'_, Arc<Shell>>) -> CommandResult<()> {
    send(&shell, Command::HangUp).await
}

#[tauri::command]
async fn set_muted(shell: State<'_, Arc<Shell>>, muted: bool) -> CommandResult<()> {
    send(&shell, Command::SetMuted(muted)).await
}

#[tauri::command]
async fn set_camera_enabled(shell: State<'_, Arc<Shell>>, enabled: bool) -> CommandResult<()> {
    send(&shell, Command::SetCameraEnabled(enabled)).await
}

#[tauri::command]
async fn send_chat(shell: State<'_, Arc<Shell>>, text: String) -> CommandResult<()> {
    send(&shell, Command::SendChat(text)).await
}

#[tauri::command]
async fn report(
    shell: State<'_, Arc<Shell>>,
    reason: chingu_proto::ReportReason,
    note: Option<String>,
) -> CommandResult<()> {
    send(&shell, Command::Report { reason, note }).await
}

#[tauri::command]
async fn block(shell: State<'_, Arc<Shell>>) -> CommandResult<()> {
    send(&shell, Command::Block).await
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = tauri::Builder::default()
        .plugin(tauri_plugin_store::Builder::default().build())
        .manage(Arc::new(Shell::default()))
        .setup(|app| {
            // Start the engine at once when settings exist, so the lobby shows the
            // server connection and online count.
            let handle = app.handle().clone();
            if let Ok(saved) = settings::load(&handle).and_then(Settings::validated) {
                let shell = Arc::clone(app.state::<Arc<Shell>>().inner());
                tauri::async_runtime::spawn(async move {
                    let Ok(config) = engine_config(&saved).await else {
                        return;
                    };
                    let (engine, events, _task) = Engine::start(config);
                    tauri::async_runtime::spawn(events::forward(handle.clone(), events));
                    *shell.engine.lock().await = Some((engine, saved));
                    let _ = handle.emit("ready", ());
                });
            }
            Ok(())
        })
        .invoke_handler(tauri::generate_handler![
            load_settings,
            save_settings,
            search,
            cancel,
            next,
            hang_up,
            set_muted,
            set_camera_enabled,
            send_chat,
            report,
            block
        ])
        .run(tauri::generate_context!());
    if let Err(e) = result {
        eprintln!("chingu: {e}");
        std::process::exit(1);
    }
}
