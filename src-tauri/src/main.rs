//! The Chingu desktop app: a thin Tauri v2 shell. It owns one call engine, turns UI
//! commands into engine commands and engine events into UI events, and keeps settings
//! in the store plugin. No call logic lives here (that is `chingu-engine`).

#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

#[cfg(test)]
mod bindings;
mod events;
mod settings;
mod video;
#[cfg(feature = "video-bench")]
mod video_bench;

use std::sync::Arc;

use chingu_engine::call_state::SearchPrefs;
use chingu_engine::device_check::{self, CheckConfig, DeviceCheck, Devices};
use chingu_engine::{Command, Engine};
use serde::Serialize;
use tauri::{AppHandle, Emitter, Manager, State};
use tokio::sync::Mutex;

use settings::Settings;

/// Every command's error: a stable code the UI can act on, and a message for people.
#[derive(Debug, Clone, Serialize, specta::Type, thiserror::Error)]
#[error("{code}: {message}")]
pub struct CommandError {
    code: String,
    message: String,
}

impl CommandError {
    fn new(code: &str, message: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            message: message.into(),
        }
    }
}

type CommandResult<T> = Result<T, CommandError>;

#[derive(Default)]
struct Shell {
    engine: Mutex<Option<(Engine, Settings)>>,
    video: Arc<video::VideoHub>,
    /// The onboarding camera preview and microphone meter, while that screen shows.
    check: Mutex<Option<DeviceCheck>>,
    /// The loopback video server, started on first use.
    video_server: tokio::sync::OnceCell<video::VideoEndpoint>,
}

impl Shell {
    /// Stops the device check, if any, releasing its devices (joins its thread off the
    /// runtime).
    async fn stop_check(&self) {
        if let Some(check) = self.check.lock().await.take() {
            let _ = tauri::async_runtime::spawn_blocking(move || drop(check)).await;
        }
    }
}

#[tauri::command]
#[specta::specta]
async fn load_settings(app: AppHandle) -> CommandResult<Settings> {
    settings::load(&app)
}

#[tauri::command]
#[specta::specta]
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
        let (handle, events, _task) = Engine::start(engine_config(&settings, &shell.video).await?);
        tauri::async_runtime::spawn(events::forward(
            app.clone(),
            events,
            Arc::clone(&shell.video),
        ));
        *engine = Some((handle, settings));
    } else if let Some((_, current)) = engine.as_mut() {
        *current = settings;
    }
    Ok(())
}

/// Builds the engine configuration off the async runtime: it enumerates audio devices,
/// which can block on the sound server.
/// The engine's video goes to `video` (drawn by the webview).
async fn engine_config(
    settings: &Settings,
    video: &Arc<video::VideoHub>,
) -> CommandResult<chingu_engine::EngineConfig> {
    let settings = settings.clone();
    let mut config =
        tauri::async_runtime::spawn_blocking(move || settings::engine_config(&settings))
            .await
            .map_err(|e| CommandError::new("internal", e.to_string()))?;
    let (remote, local) = video.sinks();
    config.media.remote_video = Some(remote);
    config.media.local_preview = Some(local);
    Ok(config)
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

/// Where the page reads video frames from (see `video`).
#[tauri::command]
#[specta::specta]
async fn video_endpoint(shell: State<'_, Arc<Shell>>) -> CommandResult<video::VideoEndpoint> {
    shell
        .video_server
        .get_or_try_init(|| video::serve(Arc::clone(&shell.video)))
        .await
        .cloned()
        .map_err(|e| CommandError::new("video_server", e.to_string()))
}

/// The cameras, microphones and speakers for the pickers.
#[tauri::command]
#[specta::specta]
async fn list_devices() -> CommandResult<Devices> {
    tauri::async_runtime::spawn_blocking(device_check::devices)
        .await
        .map_err(|e| CommandError::new("internal", e.to_string()))
}

/// Shows the chosen camera on the `local` video stream and reports the chosen
/// microphone's level (`mic_level` events) until stopped or a search starts. With no
/// camera, the test pattern is shown and the UI told.
#[tauri::command]
#[specta::specta]
async fn start_device_check(
    app: AppHandle,
    shell: State<'_, Arc<Shell>>,
    camera_id: Option<String>,
    microphone_id: Option<String>,
) -> CommandResult<()> {
    shell.stop_check().await;
    let (tx, rx) = tokio::sync::mpsc::channel(32);
    let (_, preview) = shell.video.sinks();
    let check = DeviceCheck::start(
        CheckConfig {
            camera: camera_id,
            microphone: microphone_id,
            video: true,
            audio: true,
            camera_fallback: true,
            preview,
        },
        tx,
    )
    .map_err(|e| CommandError::new("internal", e.to_string()))?;
    *shell.check.lock().await = Some(check);
    tauri::async_runtime::spawn(events::forward_check(app, rx));
    Ok(())
}

#[tauri::command]
#[specta::specta]
async fn stop_device_check(shell: State<'_, Arc<Shell>>) -> CommandResult<()> {
    shell.stop_check().await;
    Ok(())
}

#[tauri::command]
#[specta::specta]
async fn search(shell: State<'_, Arc<Shell>>) -> CommandResult<()> {
    // The call needs the camera and microphone the check holds.
    shell.stop_check().await;
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
#[specta::specta]
async fn cancel(shell: State<'_, Arc<Shell>>) -> CommandResult<()> {
    send(&shell, Command::Cancel).await
}

#[tauri::command]
#[specta::specta]
async fn next(shell: State<'_, Arc<Shell>>) -> CommandResult<()> {
    send(&shell, Command::Next).await
}

#[tauri::command]
#[specta::specta]
async fn hang_up(shell: State<'_, Arc<Shell>>) -> CommandResult<()> {
    send(&shell, Command::HangUp).await
}

#[tauri::command]
#[specta::specta]
async fn set_muted(shell: State<'_, Arc<Shell>>, muted: bool) -> CommandResult<()> {
    send(&shell, Command::SetMuted(muted)).await
}

#[tauri::command]
#[specta::specta]
async fn set_camera_enabled(shell: State<'_, Arc<Shell>>, enabled: bool) -> CommandResult<()> {
    send(&shell, Command::SetCameraEnabled(enabled)).await
}

#[tauri::command]
#[specta::specta]
async fn send_chat(shell: State<'_, Arc<Shell>>, text: String) -> CommandResult<()> {
    send(&shell, Command::SendChat(text)).await
}

#[tauri::command]
#[specta::specta]
async fn report(
    shell: State<'_, Arc<Shell>>,
    reason: chingu_proto::ReportReason,
    note: Option<String>,
) -> CommandResult<()> {
    send(&shell, Command::Report { reason, note }).await
}

/// Rates the current or last call, 1 to 5 stars.
#[tauri::command]
#[specta::specta]
async fn rate_call(shell: State<'_, Arc<Shell>>, stars: u8) -> CommandResult<()> {
    if !(1..=5).contains(&stars) {
        return Err(CommandError::new("bad_rating", "a rating is 1 to 5 stars"));
    }
    send(&shell, Command::Rate(stars)).await
}

#[tauri::command]
#[specta::specta]
async fn block(shell: State<'_, Arc<Shell>>) -> CommandResult<()> {
    send(&shell, Command::Block).await
}

/// The commands and events the UI may use, with their TypeScript bindings
/// (ui/src/lib/bindings.ts, checked by `bindings::tests`).
fn specta_builder() -> tauri_specta::Builder<tauri::Wry> {
    tauri_specta::Builder::<tauri::Wry>::new()
        // Commands reject with `CommandError`, which the UI's backend turns into notices.
        .error_handling(tauri_specta::ErrorHandlingMode::Throw)
        // Stats counters are u64 in Rust; a call's counts stay far below 2^53.
        .dangerously_cast_bigints_to_number()
        .commands(tauri_specta::collect_commands![
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
            block,
            rate_call,
            video_endpoint,
            list_devices,
            start_device_check,
            stop_device_check,
        ])
        .events(tauri_specta::collect_events![events::UiEvent])
}

/// Opens the main window at the size it had when last closed.
fn open_window(app: &AppHandle, page: &str) -> tauri::Result<()> {
    let size = settings::window_size(app);
    let window = tauri::WebviewWindowBuilder::new(app, "main", tauri::WebviewUrl::App(page.into()))
        .title("Chingu")
        .inner_size(size.width, size.height)
        .min_inner_size(settings::MIN_WINDOW.width, settings::MIN_WINDOW.height)
        .build()?;
    let handle = app.clone();
    window.on_window_event(move |event| {
        if let tauri::WindowEvent::Resized(physical) = event
            && let Some(window) = handle.get_webview_window("main")
        {
            let scale = window.scale_factor().unwrap_or(1.0);
            let logical = physical.to_logical::<f64>(scale);
            settings::save_window_size(&handle, logical.width, logical.height);
        }
    });
    Ok(())
}

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let shell = Arc::new(Shell::default());
    let specta = specta_builder();
    let app_commands = specta.invoke_handler();
    #[cfg(feature = "video-bench")]
    let bench_commands: fn(tauri::ipc::Invoke) -> bool = tauri::generate_handler![
        video_bench::video_bench_transport,
        video_bench::video_bench_channel,
        video_bench::video_bench_ack,
        video_bench::video_bench_start,
        video_bench::video_bench_done,
    ];
    let builder = tauri::Builder::default();
    #[cfg(feature = "video-bench")]
    let builder = {
        let video = Arc::clone(&shell.video);
        builder.register_asynchronous_uri_scheme_protocol(
            video_bench::SCHEME,
            move |_ctx, request, responder| {
                let video = Arc::clone(&video);
                tauri::async_runtime::spawn(async move {
                    responder.respond(video_bench::respond(&video, request).await);
                });
            },
        )
    };
    let result = builder
        .plugin(tauri_plugin_store::Builder::default().build())
        .manage(shell)
        .setup(move |app| {
            specta.mount_events(app);
            let handle = app.handle().clone();
            #[cfg(feature = "video-bench")]
            if let Ok(transport) = std::env::var("CHINGU_VIDEO_BENCH") {
                let hub = Arc::clone(&app.state::<Arc<Shell>>().video);
                app.manage(video_bench::Bench::start(transport.clone(), hub));
                open_window(&handle, &format!("index.html?bench={transport}"))?;
                return Ok(());
            }
            open_window(&handle, "index.html")?;
            // Start the engine at once when settings exist, so the lobby shows the
            // server connection and online count.
            if let Ok(saved) = settings::load(&handle).and_then(Settings::validated) {
                let shell = Arc::clone(app.state::<Arc<Shell>>().inner());
                tauri::async_runtime::spawn(async move {
                    let Ok(config) = engine_config(&saved, &shell.video).await else {
                        return;
                    };
                    let (engine, events, _task) = Engine::start(config);
                    tauri::async_runtime::spawn(events::forward(
                        handle.clone(),
                        events,
                        Arc::clone(&shell.video),
                    ));
                    *shell.engine.lock().await = Some((engine, saved));
                    let _ = handle.emit("ready", ());
                });
            }
            Ok(())
        })
        .invoke_handler(move |invoke| {
            // The benchmark's commands are not part of the app's typed interface.
            #[cfg(feature = "video-bench")]
            if invoke.message.command().starts_with("video_bench_") {
                return bench_commands(invoke);
            }
            app_commands(invoke)
        })
        .run(tauri::generate_context!());
    if let Err(e) = result {
        eprintln!("chingu: {e}");
        std::process::exit(1);
    }
}
