import type { MessageKey } from './i18n';
import type { CommandError, CommandErrorCode, Device, FriendCallFailure, ServerErrorCode } from './types';

/** Something the user should be told, typed by where it came from. Screens show it with `noticeText`. */
export type Notice =
  | { kind: 'command'; error: CommandError }
  | { kind: 'server'; code: ServerErrorCode; message: string }
  | { kind: 'refused'; message: string }
  | { kind: 'device'; device: Device; message: string }
  | { kind: 'friendAdded'; name: string }
  | { kind: 'friendCall'; reason: FriendCallFailure; name: string };

type Translate = (key: MessageKey, vars?: Record<string, string | number>) => string;

/**
 * The UI's words for each command error code (null: the shell's message says it best).
 * A `Record` over the generated code type: a new code in Rust fails the type check here
 * until it is handled.
 */
const COMMAND_MESSAGES: Record<CommandErrorCode, MessageKey | null> = {
  not_ready: 'errNotReady',
  engine_stopped: 'errEngineStopped',
  settings_store: 'errSettingsStore',
  bad_nickname: 'needNickname',
  bad_languages: 'errBadLanguages',
  bad_server_url: 'errBadServerUrl',
  bad_rating: null,
  video_server: null,
  not_in_call: 'errNotInCall',
  no_recent_call: 'errNoRecentCall',
  bad_chat: 'errBadChat',
  chat_not_sent: 'errChatNotSent',
  busy: 'errBusy',
  not_connected: 'errNotConnected',
  bad_recovery_phrase: 'errBadRecoveryPhrase',
  internal: null,
};

/** Server codes a person can act on; the rest show the server's message. */
const SERVER_MESSAGES: Partial<Record<ServerErrorCode, MessageKey>> = {
  rate_limited: 'errRateLimited',
  overloaded: 'errOverloaded',
  too_many_connections: 'errTooManyConnections',
  unknown_friend: 'errUnknownFriend',
};

const FRIEND_CALL_MESSAGES: Record<FriendCallFailure, MessageKey> = {
  offline: 'friendCallOffline',
  busy: 'friendCallBusy',
  declined: 'friendCallDeclined',
  missed: 'friendCallMissed',
};

export function noticeText(notice: Notice, t: Translate): string {
  switch (notice.kind) {
    case 'command': {
      const key = COMMAND_MESSAGES[notice.error.code];
      return key ? t(key) : notice.error.message;
    }
    case 'server': {
      const key = SERVER_MESSAGES[notice.code];
      return key ? t(key) : notice.message;
    }
    case 'refused':
      return t('errServerRefused');
    case 'device':
      return t('deviceError', { device: t(notice.device), message: notice.message });
    case 'friendAdded':
      return t('friendAdded', { name: notice.name });
    case 'friendCall':
      return t(FRIEND_CALL_MESSAGES[notice.reason], { name: notice.name });
  }
}
