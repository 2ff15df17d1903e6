//! Every command's error: a closed [`CommandErrorCode`] the UI branches on, and a message for
//! people. The codes reach TypeScript through the generated bindings; the UI never
//! matches message text.

use chingu_engine::CommandFailure;
use serde::Serialize;

/// What went wrong, as the UI acts on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, specta::Type)]
#[serde(rename_all = "snake_case")]
pub enum CommandErrorCode {
    /// No settings yet: the engine starts when they are saved.
    NotReady,
    /// The engine stopped (the app is closing).
    EngineStopped,
    /// The settings store could not be read or written.
    SettingsStore,
    /// The nickname is empty, too long or invisible.
    BadNickname,
    /// Too few or too many languages.
    BadLanguages,
    /// The server address is not a WebSocket URL.
    BadServerUrl,
    /// A rating outside 1 to 5 stars.
    BadRating,
    /// The local video server could not start.
    VideoServer,
    /// A call command outside a call.
    NotInCall,
    /// Report, rate or block with no recent call.
    NoRecentCall,
    /// A chat message that is empty or too long.
    BadChat,
    /// The chat channel to the peer is not open.
    ChatNotSent,
    /// Calling a friend while in a call.
    Busy,
    /// The server connection is down (friends' commands need it).
    NotConnected,
    /// An identity to import that is not a recovery phrase.
    BadRecoveryPhrase,
    /// Something on our side failed (a thread could not start, ...).
    Internal,
}

/// A command's failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, specta::Type, thiserror::Error)]
#[error("{message}")]
pub struct CommandError {
    pub code: CommandErrorCode,
    pub message: String,
}

impl CommandError {
    pub fn new(code: CommandErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    pub fn internal(e: impl std::fmt::Display) -> Self {
        Self::new(CommandErrorCode::Internal, e.to_string())
    }
}

/// The engine's refusals, in the app's codes.
impl From<CommandFailure> for CommandError {
    fn from(failure: CommandFailure) -> Self {
        let code = match failure {
            CommandFailure::NotInCall => CommandErrorCode::NotInCall,
            CommandFailure::NoRecentCall => CommandErrorCode::NoRecentCall,
            CommandFailure::BadChat => CommandErrorCode::BadChat,
            CommandFailure::ChatNotSent => CommandErrorCode::ChatNotSent,
            CommandFailure::BadRating => CommandErrorCode::BadRating,
            CommandFailure::Busy => CommandErrorCode::Busy,
            CommandFailure::NotConnected => CommandErrorCode::NotConnected,
            _ => CommandErrorCode::Internal,
        };
        Self::new(code, failure.to_string())
    }
}

pub type CommandResult<T> = Result<T, CommandError>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_reach_the_ui_as_a_code_and_a_message() {
        let err = CommandError::from(CommandFailure::NoRecentCall);
        assert_eq!(
            serde_json::to_value(&err).unwrap(),
            serde_json::json!({
                "code": "no_recent_call",
                "message": "there is no recent call to report, rate or block"
            })
        );
    }
}
