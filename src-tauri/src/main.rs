//! The Chingu desktop app: a thin Tauri v2 shell. It owns one call engine, turns UI
//! commands into engine commands and engine events into UI events, and keeps settings
//! in the store plugin. No call logic lives here (that is `chingu-engine`).

#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

#[cfg(test)]
mod bindings;
mod engine_host;
mod error;
mod events;
mod identity;
mod notify;
mod settings;
mod video;
#[cfg(feature = "video-bench")]
mod video_bench;

use std::sync::Arc;

use chingu_engine::Command;
use chingu_engine::call_state::SearchPrefs;
use chingu_engine::device_check::{self, CheckConfig, DeviceCheck, Devices};
use tauri::{AppHandle, Manager, State};
use tokio::sync::Mutex;

use engine_host::EngineHost;
use error::{CommandError, CommandErrorCode, CommandResult};
use settings::Settings;

#[derive(Default)]
struct Shell {
    engine: EngineHost,
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
    let mut settings = settings.validated()?;
    settings.device_id = settings::device_id(&app)?;
    settings::save(&app, &settings)?;
    shell.engine.apply(&app, settings, &shell.video).await
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
        .map_err(|e| CommandError::new(CommandErrorCode::VideoServer, e.to_string()))
}

/// The cameras, microphones and speakers for the pickers.
#[tauri::command]
#[specta::specta]
async fn list_devices() -> CommandResult<Devices> {
    tauri::async_runtime::spawn_blocking(device_check::devices)
        .await
        .map_err(CommandError::internal)
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
    processing: settings::MicProcessing,
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
            // The meter shows what a call would send with the switches as they are now.
            processing: processing.into(),
            preview,
        },
        tx,
    )
    .map_err(CommandError::internal)?;
    *shell.check.lock().await = Some(check);
    tauri::async_runtime::spawn(events::forward_check(app, rx));
    Ok(())
}

/// Records three seconds of the microphone (processed) and plays them back on
/// `speaker_id`; progress comes as `mic_test` events. Needs the device check running.
#[tauri::command]
#[specta::specta]
async fn test_microphone(
    shell: State<'_, Arc<Shell>>,
    speaker_id: Option<String>,
) -> CommandResult<()> {
    match shell.check.lock().await.as_ref() {
        Some(check) => {
            check.test_microphone(speaker_id);
            Ok(())
        }
        None => Err(CommandError::new(
            CommandErrorCode::NotReady,
            "the device check is not running",
        )),
    }
}

/// The device check's microphone processing, changed without restarting the check (the
/// switches in settings, before they are saved).
#[tauri::command]
#[specta::specta]
async fn set_check_processing(
    shell: State<'_, Arc<Shell>>,
    processing: settings::MicProcessing,
) -> CommandResult<()> {
    if let Some(check) = shell.check.lock().await.as_ref() {
        check.set_processing(processing.into());
    }
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
    let settings = shell.engine.settings().await?;
    let prefs = SearchPrefs {
        nickname: settings.nickname,
        languages: settings.languages,
        interests: settings.interests,
    };
    shell.engine.send(Command::Search(prefs)).await
}

#[tauri::command]
#[specta::specta]
async fn cancel(shell: State<'_, Arc<Shell>>) -> CommandResult<()> {
    shell.engine.send(Command::Cancel).await
}

#[tauri::command]
#[specta::specta]
async fn next(shell: State<'_, Arc<Shell>>) -> CommandResult<()> {
    shell.engine.send(Command::Next).await
}

#[tauri::command]
#[specta::specta]
async fn hang_up(shell: State<'_, Arc<Shell>>) -> CommandResult<()> {
    shell.engine.send(Command::HangUp).await
}

#[tauri::command]
#[specta::specta]
async fn set_muted(shell: State<'_, Arc<Shell>>, muted: bool) -> CommandResult<()> {
    shell.engine.send(Command::SetMuted(muted)).await
}

#[tauri::command]
#[specta::specta]
async fn set_camera_enabled(shell: State<'_, Arc<Shell>>, enabled: bool) -> CommandResult<()> {
    shell.engine.send(Command::SetCameraEnabled(enabled)).await
}

#[tauri::command]
#[specta::specta]
async fn send_chat(shell: State<'_, Arc<Shell>>, text: String) -> CommandResult<()> {
    shell.engine.send(Command::SendChat(text)).await
}

#[tauri::command]
#[specta::specta]
async fn report(
    shell: State<'_, Arc<Shell>>,
    reason: chingu_proto::ReportReason,
    note: Option<String>,
) -> CommandResult<()> {
    shell.engine.send(Command::Report { reason, note }).await
}

/// Rates the current or last call, 1 to 5 stars.
#[tauri::command]
#[specta::specta]
async fn rate_call(shell: State<'_, Arc<Shell>>, stars: u8) -> CommandResult<()> {
    if !(1..=5).contains(&stars) {
        return Err(CommandError::new(
            CommandErrorCode::BadRating,
            "a rating is 1 to 5 stars",
        ));
    }
    shell.engine.send(Command::Rate(stars)).await
}

#[tauri::command]
#[specta::specta]
async fn block(shell: State<'_, Arc<Shell>>) -> CommandResult<()> {
    shell.engine.send(Command::Block).await
}

/// Asks to be friends with the person of the current or last call (mutual: both ask).
#[tauri::command]
#[specta::specta]
async fn add_friend(shell: State<'_, Arc<Shell>>) -> CommandResult<()> {
    shell.engine.send(Command::AddFriend).await
}

#[tauri::command]
#[specta::specta]
async fn remove_friend(
    shell: State<'_, Arc<Shell>>,
    friend: chingu_proto::FriendId,
) -> CommandResult<()> {
    shell.engine.send(Command::RemoveFriend(friend)).await
}

/// Removes the friend and never matches the two again.
#[tauri::command]
#[specta::specta]
async fn block_friend(
    shell: State<'_, Arc<Shell>>,
    friend: chingu_proto::FriendId,
) -> CommandResult<()> {
    shell.engine.send(Command::BlockFriend(friend)).await
}

/// Rings a friend who is online.
#[tauri::command]
#[specta::specta]
async fn call_friend(
    shell: State<'_, Arc<Shell>>,
    friend: chingu_proto::FriendId,
) -> CommandResult<()> {
    // The call needs the camera and microphone the check holds.
    shell.stop_check().await;
    shell.engine.send(Command::CallFriend(friend)).await
}

#[tauri::command]
#[specta::specta]
async fn cancel_friend_call(
    shell: State<'_, Arc<Shell>>,
    friend: chingu_proto::FriendId,
) -> CommandResult<()> {
    shell.engine.send(Command::CancelFriendCall(friend)).await
}

/// Takes (or turns down) a friend's call.
#[tauri::command]
#[specta::specta]
async fn answer_friend_call(
    shell: State<'_, Arc<Shell>>,
    friend: chingu_proto::FriendId,
    accept: bool,
) -> CommandResult<()> {
    if accept {
        shell.stop_check().await;
    }
    shell
        .engine
        .send(Command::AnswerFriendCall { friend, accept })
        .await
}

/// This install's recovery phrase: entered on another machine, it brings its friends.
#[tauri::command]
#[specta::specta]
async fn export_identity(app: AppHandle) -> CommandResult<String> {
    Ok(identity::phrase(&settings::device_id(&app)?))
}

/// Takes the identity of a recovery phrase (another install's friends come with it);
/// the engine reconnects as that device.
#[tauri::command]
#[specta::specta]
async fn import_identity(
    app: AppHandle,
    shell: State<'_, Arc<Shell>>,
    phrase: String,
) -> CommandResult<()> {
    let id = identity::device_id(&phrase)?;
    settings::set_device_id(&app, &id)?;
    // Running with saved settings: reconnect as the new device at once.
    if let Ok(mut current) = shell.engine.settings().await {
        current.device_id = id;
        shell.engine.apply(&app, current, &shell.video).await?;
    }
    Ok(())
}

/// Tells whether `url` leads to a Chingu server this app can talk to (settings,
/// "test connection"), within five seconds.
#[tauri::command]
#[specta::specta]
async fn test_server(url: String) -> CommandResult<chingu_engine::signaling::ServerProbe> {
    // A throwaway identity: a test is not this device going online for its friends.
    let device = chingu_engine::ids::new_device_id("probe");
    Ok(
        chingu_engine::signaling::probe(url.trim(), &device, std::time::Duration::from_secs(5))
            .await,
    )
}

/// The commands and events the UI may use, with their TypeScript bindings
/// (ui/src/lib/bindings.ts, checked by `bindings::tests`).
fn specta_builder() -> tauri_specta::Builder<tauri::Wry> {
    tauri_specta::Builder::<tauri::Wry>::new()
        // Each command's result says what it can fail with: `CommandError`, whose
        // closed `CommandErrorCode` the UI branches on.
        .error_handling(tauri_specta::ErrorHandlingMode::Result)
        // Stats counters are u64 in Rust; a call's counts stay far below 2^53.
        .dangerously_cast_bigints_to_number()
        // The protocol's limits, so the UI's forms say what the server enforces.
        .constant(
            "MAX_NICKNAME_CHARS",
            chingu_proto::limits::MAX_NICKNAME_CHARS,
        )
        .constant("MAX_LANGUAGES", chingu_proto::limits::MAX_LANGUAGES)
        .constant("MAX_INTERESTS", chingu_proto::limits::MAX_INTERESTS)
        .constant(
            "MAX_INTEREST_CHARS",
            chingu_proto::limits::MAX_INTEREST_CHARS,
        )
        .constant("MAX_CHAT_CHARS", chingu_engine::control::MAX_CHAT_CHARS)
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
            test_microphone,
            set_check_processing,
            add_friend,
            remove_friend,
            block_friend,
            call_friend,
            cancel_friend_call,
            answer_friend_call,
            export_identity,
            import_identity,
            test_server,
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
                    if let Err(e) = shell.engine.apply(&handle, saved, &shell.video).await {
                        tracing::error!("the engine did not start: {e}");
                    }
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
        .build(tauri::generate_context!());
    let app = match result {
        Ok(app) => app,
        Err(e) => {
            eprintln!("chingu: {e}");
            std::process::exit(1);
        }
    };
    app.run(|handle, event| {
        if let tauri::RunEvent::Exit = event {
            // Hang up (the peer hears it at once) and join the engine before exiting.
            let shell = Arc::clone(handle.state::<Arc<Shell>>().inner());
            tauri::async_runtime::block_on(async move {
                shell.stop_check().await;
                shell.engine.stop().await;
            });
        }
    });
}
