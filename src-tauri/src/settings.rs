//! Settings persisted with tauri-plugin-store (`settings.json` in the app's data
//! directory): what the user chose, validated with the protocol's own limits, the
//! device's secret id, and the window size. What the settings mean for a call is the
//! engine host's business (`engine_host.rs`).

use serde::{Deserialize, Serialize};
use tauri::AppHandle;
use tauri_plugin_store::StoreExt;

use crate::error::{CommandError, CommandErrorCode};

const STORE: &str = "settings.json";
const KEY: &str = "settings";
const DEVICE_KEY: &str = "device_id";
const WINDOW_KEY: &str = "window";

/// A window size in logical pixels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct WindowSize {
    pub width: f64,
    pub height: f64,
}

pub const MIN_WINDOW: WindowSize = WindowSize {
    width: 720.0,
    height: 520.0,
};
const DEFAULT_WINDOW: WindowSize = WindowSize {
    width: 1100.0,
    height: 720.0,
};
/// Larger than any screen: a corrupt store cannot ask for a window nobody can resize.
const MAX_WINDOW: f64 = 16384.0;

impl WindowSize {
    fn clamped(self) -> Option<Self> {
        let ok = |v: f64, min: f64| v.is_finite().then(|| v.clamp(min, MAX_WINDOW));
        Some(Self {
            width: ok(self.width, MIN_WINDOW.width)?,
            height: ok(self.height, MIN_WINDOW.height)?,
        })
    }
}

/// The window size saved when the window last changed size, or the default.
pub fn window_size(app: &AppHandle) -> WindowSize {
    app.store(STORE)
        .ok()
        .and_then(|store| store.get(WINDOW_KEY))
        .and_then(|value| serde_json::from_value::<WindowSize>(value).ok())
        .and_then(WindowSize::clamped)
        .unwrap_or(DEFAULT_WINDOW)
}

/// Remembers the window size (the store writes it to disk shortly after).
pub fn save_window_size(app: &AppHandle, width: f64, height: f64) {
    let Some(size) = (WindowSize { width, height }).clamped() else {
        return;
    };
    match (app.store(STORE), serde_json::to_value(size)) {
        (Ok(store), Ok(value)) => store.set(WINDOW_KEY, value),
        (Err(e), _) => tracing::warn!("window size not saved: {e}"),
        (_, Err(e)) => tracing::warn!("window size not saved: {e}"),
    }
}

/// The server a new install talks to: a distribution builds the app with its public
/// server's address in `CHINGU_DEFAULT_SERVER` (e.g. `wss://chingu.example.org/v1/ws`);
/// without it, a server on this machine (development).
pub const DEFAULT_SERVER: &str = match option_env!("CHINGU_DEFAULT_SERVER") {
    Some(url) => url,
    None => "ws://127.0.0.1:7878/v1/ws",
};

/// What the user chose. Field names are camelCase in the UI.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, specta::Type)]
#[serde(rename_all = "camelCase", default)]
pub struct Settings {
    pub nickname: String,
    pub languages: Vec<String>,
    pub interests: Vec<String>,
    pub server_url: String,
    pub relay_only: bool,
    #[serde(deserialize_with = "lenient_language")]
    #[specta(type = UiLanguage)]
    pub ui_language: UiLanguage,
    pub camera_id: Option<String>,
    pub microphone_id: Option<String>,
    pub speaker_id: Option<String>,
    /// The microphone's processing before it is sent (all on by default: most people
    /// call on laptop speakers).
    pub echo_cancellation: bool,
    pub noise_suppression: bool,
    pub auto_gain: bool,
    /// Not shown in the UI: the device's secret id for the server, made on first run.
    #[serde(skip)]
    pub device_id: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            nickname: String::new(),
            languages: vec!["ko".into()],
            interests: Vec::new(),
            server_url: DEFAULT_SERVER.into(),
            relay_only: false,
            ui_language: UiLanguage::Auto,
            camera_id: None,
            microphone_id: None,
            speaker_id: None,
            echo_cancellation: true,
            noise_suppression: true,
            auto_gain: true,
            device_id: String::new(),
        }
    }
}

/// The UI's language: the OS locale's, or the user's choice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, specta::Type)]
#[serde(rename_all = "lowercase")]
pub enum UiLanguage {
    #[default]
    Auto,
    Ko,
    En,
}

/// A language this version does not know (a newer version's, a corrupt store) reads as
/// `auto` rather than losing every other setting.
fn lenient_language<'de, D: serde::Deserializer<'de>>(d: D) -> Result<UiLanguage, D::Error> {
    let value = serde_json::Value::deserialize(d)?;
    Ok(serde_json::from_value(value).unwrap_or_default())
}

impl Settings {
    /// Checks what the server would reject anyway, with messages for people.
    pub fn validated(self) -> Result<Self, CommandError> {
        let nickname = chingu_proto::normalize_nickname(&self.nickname)
            .map_err(|e| CommandError::new(CommandErrorCode::BadNickname, e.message))?
            .to_owned();
        let max_languages = chingu_proto::limits::MAX_LANGUAGES;
        if self.languages.is_empty() || self.languages.len() > max_languages {
            return Err(CommandError::new(
                CommandErrorCode::BadLanguages,
                format!("choose 1 to {max_languages} languages"),
            ));
        }
        if !(self.server_url.starts_with("ws://") || self.server_url.starts_with("wss://")) {
            return Err(CommandError::new(
                CommandErrorCode::BadServerUrl,
                "the server address starts with ws:// or wss://",
            ));
        }
        Ok(Self { nickname, ..self })
    }
}

impl Settings {
    /// What runs on the microphone.
    pub fn processing(&self) -> chingu_engine::pipeline::ProcessingSettings {
        MicProcessing {
            echo_cancellation: self.echo_cancellation,
            noise_suppression: self.noise_suppression,
            auto_gain: self.auto_gain,
        }
        .into()
    }
}

/// The microphone's processing switches, as the device check takes them (before they
/// are saved).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, specta::Type)]
#[serde(rename_all = "camelCase")]
pub struct MicProcessing {
    pub echo_cancellation: bool,
    pub noise_suppression: bool,
    pub auto_gain: bool,
}

impl From<MicProcessing> for chingu_engine::pipeline::ProcessingSettings {
    fn from(p: MicProcessing) -> Self {
        Self {
            echo_cancellation: p.echo_cancellation,
            noise_suppression: p.noise_suppression,
            gain_control: p.auto_gain,
        }
    }
}

fn store_err(e: impl std::fmt::Display) -> CommandError {
    CommandError::new(CommandErrorCode::SettingsStore, e.to_string())
}

pub fn load(app: &AppHandle) -> Result<Settings, CommandError> {
    let store = app.store(STORE).map_err(store_err)?;
    let mut settings: Settings = match store.get(KEY) {
        Some(value) => serde_json::from_value(value).unwrap_or_default(),
        None => Settings::default(),
    };
    settings.device_id = device_id(app)?;
    Ok(settings)
}

/// Replaces this install's secret id (an imported identity).
pub fn set_device_id(app: &AppHandle, id: &str) -> Result<(), CommandError> {
    let store = app.store(STORE).map_err(store_err)?;
    store.set(DEVICE_KEY, id.to_owned());
    store.save().map_err(store_err)
}

/// This install's secret id for the server, made (and stored) on first use.
pub fn device_id(app: &AppHandle) -> Result<String, CommandError> {
    let store = app.store(STORE).map_err(store_err)?;
    match store
        .get(DEVICE_KEY)
        .and_then(|v| v.as_str().map(String::from))
    {
        Some(id) if id.len() >= 16 => Ok(id),
        _ => {
            let id = chingu_engine::ids::new_device_id("app");
            store.set(DEVICE_KEY, id.clone());
            store.save().map_err(store_err)?;
            Ok(id)
        }
    }
}

pub fn save(app: &AppHandle, settings: &Settings) -> Result<(), CommandError> {
    let store = app.store(STORE).map_err(store_err)?;
    store.set(KEY, serde_json::to_value(settings).map_err(store_err)?);
    store.save().map_err(store_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_validated_with_codes() {
        let ok = Settings {
            nickname: "  alice ".into(),
            ..Settings::default()
        };
        assert_eq!(ok.validated().expect("valid").nickname, "alice");
        let empty = Settings::default().validated().expect_err("no nickname");
        assert_eq!(empty.code, CommandErrorCode::BadNickname);
        let bad_url = Settings {
            nickname: "a".into(),
            server_url: "http://x".into(),
            ..Settings::default()
        };
        assert_eq!(
            bad_url.validated().expect_err("url").code,
            CommandErrorCode::BadServerUrl
        );
    }

    #[test]
    fn window_sizes_from_the_store_are_kept_sane() {
        let size = |width, height| WindowSize { width, height }.clamped();
        assert_eq!(size(1280.0, 800.0), Some(size(1280.0, 800.0).unwrap()));
        assert_eq!(
            size(10.0, 1e9),
            Some(WindowSize {
                width: 720.0,
                height: MAX_WINDOW
            })
        );
        assert_eq!(size(f64::NAN, 800.0), None);
    }

    #[test]
    fn settings_json_is_camel_case_and_tolerates_missing_fields() {
        let s: Settings = serde_json::from_str(r#"{"nickname":"a","relayOnly":true}"#).unwrap();
        assert!(s.relay_only);
        let s: Settings = serde_json::from_str(r#"{"nickname":"b","uiLanguage":"ko"}"#).unwrap();
        assert_eq!(s.ui_language, UiLanguage::Ko);
        let s: Settings = serde_json::from_str(r#"{"nickname":"c","uiLanguage":"tlh"}"#).unwrap();
        assert_eq!(
            (s.nickname.as_str(), s.ui_language),
            ("c", UiLanguage::Auto)
        );
        assert_eq!(s.languages, vec!["ko".to_string()]);
        // Settings saved before the processing switches existed: everything on.
        assert!(s.echo_cancellation && s.noise_suppression && s.auto_gain);
        let s: Settings =
            serde_json::from_str(r#"{"nickname":"d","echoCancellation":false}"#).unwrap();
        assert!(!s.processing().echo_cancellation && s.processing().noise_suppression);
        let json = serde_json::to_value(Settings::default()).unwrap();
        assert!(json.get("serverUrl").is_some());
        assert!(
            json.get("deviceId").is_none(),
            "the device id never reaches the UI"
        );
    }
}
