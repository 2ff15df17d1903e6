// Types shared with the Rust shell. These mirror the engine's serde shapes; once
// src-tauri exists they are generated from Rust (tauri-specta) and this file goes away.

export interface PeerProfile {
  nickname: string;
  languages: string[];
  shared_interests: string[];
}

export type CallView =
  | { state: 'idle' }
  | { state: 'searching' }
  | { state: 'connecting'; peer: PeerProfile }
  | { state: 'in_call'; peer: PeerProfile }
  | { state: 'ended'; reason: string };

export interface Settings {
  nickname: string;
  languages: string[];
  interests: string[];
  serverUrl: string;
  relayOnly: boolean;
  uiLanguage: 'auto' | 'ko' | 'en';
  cameraId: string | null;
  microphoneId: string | null;
  speakerId: string | null;
}

/** The parts of the engine's per-second stats the UI uses (W3C names). */
export interface CallStats {
  elapsedMs: number;
  roundTripTime: number | null;
  inboundVideo: { framesDecoded: number; packetsLost: number; packetsReceived: number; freezeCount: number };
  inboundAudio: { packetsLost: number; packetsReceived: number; concealedSamples: number; totalSamplesReceived: number };
}

export type EngineEvent =
  | { type: 'server_connected' }
  | { type: 'server_disconnected'; why: string; retryInMs: number }
  | { type: 'state'; view: CallView }
  | { type: 'chat'; text: string }
  | { type: 'peer_media'; audio: boolean; video: boolean }
  | { type: 'stats'; stats: CallStats }
  | { type: 'audio_levels'; localDbfs: number; remoteDbfs: number }
  | { type: 'device_error'; device: string; message: string }
  | { type: 'error'; code: string | null; message: string }
  | { type: 'online_count'; online: number; waiting: number }
  | { type: 'mic_level'; dbfs: number };

export interface DeviceInfo {
  id: string;
  name: string;
  isDefault: boolean;
}

export interface Devices {
  cameras: DeviceInfo[];
  microphones: DeviceInfo[];
  speakers: DeviceInfo[];
  problems: string[];
}

export type ReportReason = 'nudity' | 'harassment' | 'hate' | 'spam' | 'underage' | 'violence' | 'other';

/** Every command fails with a code the UI can act on, never a bare string. */
export interface CommandError {
  code: string;
  message: string;
}
