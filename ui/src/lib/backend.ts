import type { Devices, EngineEvent, FriendId, MicProcessing, ReportReason, ServerProbe, Settings } from './types';
import type { Stream } from './video';

/**
 * Everything the screens need from the app. Two implementations: the Tauri shell
 * (commands and events over IPC) and a fake for tests and UI work without the shell.
 */
export interface Backend {
  loadSettings(): Promise<Settings>;
  saveSettings(settings: Settings): Promise<void>;
  search(): Promise<void>;
  cancel(): Promise<void>;
  next(): Promise<void>;
  hangUp(): Promise<void>;
  setMuted(muted: boolean): Promise<void>;
  setCameraEnabled(enabled: boolean): Promise<void>;
  sendChat(text: string): Promise<void>;
  report(reason: ReportReason, note: string | null): Promise<void>;
  block(): Promise<void>;
  /** Rates the current or last call, 1 to 5 stars. */
  rateCall(stars: number): Promise<void>;
  /** The cameras, microphones and speakers for the pickers. */
  listDevices(): Promise<Devices>;
  /**
   * Previews the camera on the `local` stream and reports the microphone's level after
   * `processing` (`mic_level` events) until `stopDeviceCheck` or a search.
   */
  startDeviceCheck(cameraId: string | null, microphoneId: string | null, processing: MicProcessing): Promise<void>;
  stopDeviceCheck(): Promise<void>;
  /** Records three seconds of the microphone, then plays them (`mic_test` events). */
  testMicrophone(speakerId: string | null): Promise<void>;
  /** Changes the running check's microphone processing (the meter follows at once). */
  setCheckProcessing(processing: MicProcessing): Promise<void>;
  /** Asks to be friends with the person of the current or last call (both must ask). */
  addFriend(): Promise<void>;
  removeFriend(friend: FriendId): Promise<void>;
  /** Removes the friend and never matches the two again. */
  blockFriend(friend: FriendId): Promise<void>;
  /** Rings a friend who is online (`ringing`, then a call or `friend_call_failed`). */
  callFriend(friend: FriendId): Promise<void>;
  cancelFriendCall(friend: FriendId): Promise<void>;
  answerFriendCall(friend: FriendId, accept: boolean): Promise<void>;
  /** Whether `url` leads to a Chingu server this app can talk to (within 5 s). */
  testServer(url: string): Promise<ServerProbe>;
  /** This install's recovery phrase (its identity: friends come with it). */
  exportIdentity(): Promise<string>;
  /** Becomes the install of `phrase` (its friends); a bad phrase is `bad_recovery_phrase`. */
  importIdentity(phrase: string): Promise<void>;
  /** Draws a video stream on `canvas` until the returned function is called. */
  attachVideo(stream: Stream, canvas: HTMLCanvasElement): () => void;
  /** Subscribes to engine events; returns the unsubscribe function. */
  onEvent(listener: (event: EngineEvent) => void): () => void;
}

export const DEFAULT_SETTINGS: Settings = {
  nickname: '',
  languages: ['ko'],
  interests: [],
  serverUrl: 'ws://127.0.0.1:7878/v1/ws',
  relayOnly: false,
  uiLanguage: 'auto',
  cameraId: null,
  microphoneId: null,
  speakerId: null,
  echoCancellation: true,
  noiseSuppression: true,
  autoGain: true,
};
