import { invoke } from '@tauri-apps/api/core';
import { listen } from '@tauri-apps/api/event';
import type { Backend } from './backend';
import type { CommandError, Devices, EngineEvent, ReportReason, Settings } from './types';
import { pullVideo, type Stream, type VideoEndpoint } from './video';

/** Commands fail with `{ code, message }`; anything else is wrapped so callers see one shape. */
function asCommandError(e: unknown): CommandError {
  if (e && typeof e === 'object' && 'code' in e && 'message' in e) return e as CommandError;
  return { code: 'unknown', message: String(e) };
}

async function call<T>(command: string, args?: Record<string, unknown>): Promise<T> {
  try {
    return await invoke<T>(command, args);
  } catch (e) {
    throw asCommandError(e);
  }
}

/** The real backend: the Rust shell's commands and its `engine` events. */
export class TauriBackend implements Backend {
  loadSettings = () => call<Settings>('load_settings');
  saveSettings = (settings: Settings) => call<void>('save_settings', { settings });
  search = () => call<void>('search');
  cancel = () => call<void>('cancel');
  next = () => call<void>('next');
  hangUp = () => call<void>('hang_up');
  setMuted = (muted: boolean) => call<void>('set_muted', { muted });
  setCameraEnabled = (enabled: boolean) => call<void>('set_camera_enabled', { enabled });
  sendChat = (text: string) => call<void>('send_chat', { text });
  report = (reason: ReportReason, note: string | null) => call<void>('report', { reason, note });
  block = () => call<void>('block');
  listDevices = () => call<Devices>('list_devices');
  startDeviceCheck = (cameraId: string | null, microphoneId: string | null) =>
    call<void>('start_device_check', { cameraId, microphoneId });
  stopDeviceCheck = () => call<void>('stop_device_check');
  private endpoint: Promise<VideoEndpoint> | null = null;
  /** The video server's address, asked once (again after a failure). */
  private videoEndpoint = (): Promise<VideoEndpoint> => {
    this.endpoint ??= call<VideoEndpoint>('video_endpoint').catch((e) => {
      this.endpoint = null;
      throw e;
    });
    return this.endpoint;
  };
  attachVideo = (stream: Stream, canvas: HTMLCanvasElement) =>
    pullVideo(stream, canvas, this.videoEndpoint, countFrames(canvas));

  onEvent(listener: (event: EngineEvent) => void): () => void {
    let stop: (() => void) | null = null;
    let stopped = false;
    listen<EngineEvent>('engine', (e) => listener(e.payload)).then((unlisten) => {
      if (stopped) unlisten();
      else stop = unlisten;
    });
    return () => {
      stopped = true;
      stop?.();
    };
  }
}

/** Counts drawn frames on the canvas (`data-frames`), for end-to-end tests and devtools. */
function countFrames(canvas: HTMLCanvasElement): () => void {
  let frames = 0;
  return () => {
    frames += 1;
    canvas.dataset.frames = String(frames);
  };
}

export function inTauri(): boolean {
  return typeof window !== 'undefined' && '__TAURI_INTERNALS__' in window;
}
