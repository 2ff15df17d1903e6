import type { Backend } from './backend';
import { commands, events } from './bindings';
import type { CommandError, EngineEvent, FriendId, MicProcessing, ReportReason, Settings } from './types';
import { pullVideo, type Stream, type VideoEndpoint } from './video';

/** What every generated command resolves to (tauri-specta's result mode). */
type Result<T, E> = { status: 'ok'; data: T } | { status: 'error'; error: E };

/**
 * A command's result: its data, or its typed `CommandError` thrown. A failure outside
 * the command (IPC itself, an unknown command) rejects with something else, which is
 * wrapped as `internal` so callers see one shape.
 */
async function call<T>(command: Promise<Result<T, CommandError>>): Promise<T> {
  let result: Result<T, CommandError>;
  try {
    result = await command;
  } catch (e) {
    throw { code: 'internal', message: String(e) } satisfies CommandError;
  }
  if (result.status === 'error') throw result.error;
  return result.data;
}

/** The real backend: the Rust shell's commands and its `engine` event, typed by the generated bindings. */
export class TauriBackend implements Backend {
  loadSettings = () => call(commands.loadSettings());
  saveSettings = async (settings: Settings) => void (await call(commands.saveSettings(settings)));
  search = async () => void (await call(commands.search()));
  cancel = async () => void (await call(commands.cancel()));
  next = async () => void (await call(commands.next()));
  hangUp = async () => void (await call(commands.hangUp()));
  setMuted = async (muted: boolean) => void (await call(commands.setMuted(muted)));
  setCameraEnabled = async (enabled: boolean) => void (await call(commands.setCameraEnabled(enabled)));
  sendChat = async (text: string) => void (await call(commands.sendChat(text)));
  report = async (reason: ReportReason, note: string | null) => void (await call(commands.report(reason, note)));
  block = async () => void (await call(commands.block()));
  rateCall = async (stars: number) => void (await call(commands.rateCall(stars)));
  listDevices = () => call(commands.listDevices());
  startDeviceCheck = async (cameraId: string | null, microphoneId: string | null, processing: MicProcessing) =>
    void (await call(commands.startDeviceCheck(cameraId, microphoneId, processing)));
  stopDeviceCheck = async () => void (await call(commands.stopDeviceCheck()));
  testMicrophone = async (speakerId: string | null) => void (await call(commands.testMicrophone(speakerId)));
  setCheckProcessing = async (processing: MicProcessing) => void (await call(commands.setCheckProcessing(processing)));
  addFriend = async () => void (await call(commands.addFriend()));
  removeFriend = async (friend: FriendId) => void (await call(commands.removeFriend(friend)));
  blockFriend = async (friend: FriendId) => void (await call(commands.blockFriend(friend)));
  callFriend = async (friend: FriendId) => void (await call(commands.callFriend(friend)));
  cancelFriendCall = async (friend: FriendId) => void (await call(commands.cancelFriendCall(friend)));
  exportIdentity = () => call(commands.exportIdentity());
  testServer = (url: string) => call(commands.testServer(url));
  importIdentity = async (phrase: string) => void (await call(commands.importIdentity(phrase)));
  answerFriendCall = async (friend: FriendId, accept: boolean) => void (await call(commands.answerFriendCall(friend, accept)));

  private endpoint: Promise<VideoEndpoint> | null = null;
  /** The video server's address, asked once (again after a failure). */
  private videoEndpoint = (): Promise<VideoEndpoint> => {
    this.endpoint ??= call(commands.videoEndpoint()).catch((e) => {
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
    events.engine
      .listen((e) => listener(e.payload))
      .then((unlisten) => {
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
