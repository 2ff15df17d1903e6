import type { Backend } from './backend';
import type { Notice } from './notice';
import { limitingSide, networkQuality } from './quality';
import type {
  CallStats,
  CallView,
  CommandError,
  Device,
  Devices,
  EndReason,
  EngineEvent,
  Friend,
  FriendId,
  MicProcessing,
  MicTestStep,
  PeerProfile,
  ReportReason,
  ServerProbe,
  Settings,
} from './types';
import type { Stream } from './video';

export type Screen = 'onboarding' | 'lobby' | 'searching' | 'call' | 'after';

/** The longest name a user may give a friend (the protocol's nickname limit). */
export const MAX_FRIEND_NAME = 32;
const FRIEND_NAMES_KEY = 'chingu.friendNames';

/** Names given to friends, kept in this computer's web storage (never sent anywhere). */
function loadFriendNames(): Record<string, string> {
  try {
    const raw = globalThis.localStorage?.getItem(FRIEND_NAMES_KEY);
    const parsed: unknown = raw ? JSON.parse(raw) : {};
    if (!parsed || typeof parsed !== 'object') return {};
    return Object.fromEntries(Object.entries(parsed).filter(([, v]) => typeof v === 'string')) as Record<string, string>;
  } catch {
    return {};
  }
}

function saveFriendNames(names: Record<string, string>): void {
  try {
    globalThis.localStorage?.setItem(FRIEND_NAMES_KEY, JSON.stringify(names));
  } catch {
    // Storage full or disabled: the name lasts until the app closes.
  }
}

export interface ChatLine {
  mine: boolean;
  text: string;
}

/** Which message explains how a call ended (`null`: the user ended it). */
export function endMessage(reason: EndReason | null): 'peerLeft' | 'networkLost' | 'serverLost' | 'connectFailed' | null {
  switch (reason?.kind) {
    case 'peer_left':
      return 'peerLeft';
    case 'media_lost':
      return 'networkLost';
    case 'server_lost':
      return 'serverLost';
    case 'connect_timeout':
    case 'connect_failed':
      return 'connectFailed';
    case 'hung_up':
    case undefined:
      return null;
  }
}

/** A command's rejection as a typed `CommandError` (anything else is a fault of ours). */
function asCommandError(e: unknown): CommandError {
  if (e && typeof e === 'object' && 'code' in e && 'message' in e) return e as CommandError;
  return { code: 'internal', message: String(e) };
}

/** What the screens show, driven by engine events and user actions. */
export class Session {
  screen: Screen = $state('onboarding');
  settings: Settings | null = $state(null);
  peer: PeerProfile | null = $state(null);
  connected = $state(false);
  searchingSince: number | null = $state(null);
  callSince: number | null = $state(null);
  muted = $state(false);
  cameraOn = $state(true);
  peerAudio = $state(true);
  peerVideo = $state(true);
  chat: ChatLine[] = $state([]);
  quality: number | null = $state(null);
  /** Whose connection limits the call, when one does. */
  limitedBy: 'you' | 'peer' | null = $state(null);
  /** Which way the call's media goes, from the latest stats (null until known). */
  path: 'direct' | 'relayed' | null = $state(null);
  online: { online: number; waiting: number } | null = $state(null);
  endReason: EndReason | null = $state(null);
  notice: Notice | null = $state(null);
  serverDown: { why: string; retryAt: number } | null = $state(null);
  /** Nothing has arrived from the peer for a few seconds (network trouble). */
  interrupted = $state(false);
  /** The device check's microphone level, dBFS (null: no reading yet). */
  micLevel: number | null = $state(null);
  /** Where "test my microphone" is (null: not run since the check started). */
  micTest: MicTestStep | null = $state(null);
  /** The device check runs (the microphone test needs it). */
  checking = $state(false);
  devices: Devices | null = $state(null);
  /** Device problems by device, newest message. */
  deviceErrors: Partial<Record<Device, string>> = $state({});
  reported = $state(false);
  /** The stars this call was given (sent to the server), or null. */
  rating: number | null = $state(null);
  blocked = $state(false);
  /** Friends as the server last listed them. */
  friends: Friend[] = $state([]);
  /** "Add friend" was pressed for this call (the server noted it). */
  friendRequested = $state(false);
  /** The person of this call is a friend: they were called as one, or both asked. */
  callFriend: FriendId | null = $state(null);
  /** A friend ringing us. */
  incoming: FriendId | null = $state(null);
  /** The friend we are ringing. */
  ringing: FriendId | null = $state(null);
  /** Names the user gave friends on this computer (friend id → name). */
  friendNames: Record<FriendId, string> = $state(loadFriendNames());
  private lastStats: CallStats | null = null;
  private unsubscribe: () => void;

  constructor(
    private readonly backend: Backend,
    private readonly now: () => number = () => Date.now(),
  ) {
    this.unsubscribe = backend.onEvent((e) => this.handle(e));
  }

  async start(): Promise<void> {
    const settings = await this.backend.loadSettings();
    this.settings = settings;
    this.screen = settings.nickname.trim() ? 'lobby' : 'onboarding';
  }

  dispose(): void {
    this.unsubscribe();
  }

  async saveSettings(settings: Settings): Promise<boolean> {
    if (!settings.nickname.trim()) return false;
    if (!(await this.attempt(() => this.backend.saveSettings(settings)))) return false;
    this.settings = settings;
    this.screen = 'lobby';
    return true;
  }

  /**
   * Runs a command; a failure becomes the notice, never an exception. Without saved
   * settings the engine is not running: that sends the user to the settings.
   */
  private async attempt(command: () => Promise<void>): Promise<boolean> {
    try {
      await command();
      return true;
    } catch (e) {
      const error = asCommandError(e);
      this.notice = { kind: 'command', error };
      if (error.code === 'not_ready') this.screen = 'onboarding';
      return false;
    }
  }

  async match(): Promise<void> {
    this.resetCall();
    this.searchingSince = this.now();
    this.screen = 'searching';
    if (!(await this.attempt(() => this.backend.search())) && this.screen === 'searching') this.screen = 'lobby';
  }

  async cancel(): Promise<void> {
    await this.attempt(() => this.backend.cancel());
    this.screen = 'lobby';
  }

  async next(): Promise<void> {
    this.resetCall();
    this.searchingSince = this.now();
    this.screen = 'searching';
    await this.attempt(() => this.backend.next());
  }

  async hangUp(): Promise<void> {
    await this.attempt(() => this.backend.hangUp());
  }

  async toggleMute(): Promise<void> {
    this.muted = !this.muted;
    await this.attempt(() => this.backend.setMuted(this.muted));
  }

  async toggleCamera(): Promise<void> {
    this.cameraOn = !this.cameraOn;
    await this.attempt(() => this.backend.setCameraEnabled(this.cameraOn));
  }

  async sendChat(text: string): Promise<void> {
    const trimmed = text.trim();
    if (!trimmed) return;
    this.chat.push({ mine: true, text: trimmed });
    await this.attempt(() => this.backend.sendChat(trimmed));
  }

  async report(reason: ReportReason, note: string | null): Promise<void> {
    this.reported = await this.attempt(() => this.backend.report(reason, note));
  }

  async rate(stars: number): Promise<void> {
    if (await this.attempt(() => this.backend.rateCall(stars))) this.rating = stars;
  }

  async block(): Promise<void> {
    this.blocked = await this.attempt(() => this.backend.block());
  }

  /** A friend's name: the one given here, else their nickname when you met ('' for one no longer listed). */
  friendName(id: FriendId | null): string {
    if (id === null) return '';
    return this.friendNames[id] ?? this.friends.find((f) => f.id === id)?.nickname ?? '';
  }

  /** Names a friend on this computer only (empty: back to their own nickname). */
  renameFriend(id: FriendId, name: string): void {
    const trimmed = name.trim().slice(0, MAX_FRIEND_NAME);
    if (trimmed) this.friendNames[id] = trimmed;
    else delete this.friendNames[id];
    saveFriendNames(this.friendNames);
  }

  async addFriend(): Promise<void> {
    await this.attempt(() => this.backend.addFriend());
  }

  async removeFriend(id: FriendId): Promise<void> {
    await this.attempt(() => this.backend.removeFriend(id));
  }

  async blockFriend(id: FriendId): Promise<void> {
    await this.attempt(() => this.backend.blockFriend(id));
  }

  /** Rings a friend; the call screen comes when they accept. */
  async ringFriend(id: FriendId): Promise<void> {
    this.resetCall();
    this.ringing = id;
    if (!(await this.attempt(() => this.backend.callFriend(id))) && this.ringing === id) this.ringing = null;
  }

  async cancelRing(): Promise<void> {
    const id = this.ringing;
    this.ringing = null;
    if (id !== null) await this.attempt(() => this.backend.cancelFriendCall(id));
  }

  /** Takes or turns down the friend's call that is ringing. */
  async answer(accept: boolean): Promise<void> {
    const id = this.incoming;
    this.incoming = null;
    if (id === null) return;
    if (accept) this.resetCall();
    await this.attempt(() => this.backend.answerFriendCall(id, accept));
  }

  /** Whether `url` leads to a Chingu server this app can talk to. */
  async testServer(url: string): Promise<ServerProbe> {
    try {
      return await this.backend.testServer(url);
    } catch (e) {
      return { result: 'unreachable', message: asCommandError(e).message };
    }
  }

  /** The recovery phrase, or null (the notice says why). */
  async exportIdentity(): Promise<string | null> {
    try {
      return await this.backend.exportIdentity();
    } catch (e) {
      this.notice = { kind: 'command', error: asCommandError(e) };
      return null;
    }
  }

  /** Becomes the install the phrase belongs to; false (and a notice) for a bad phrase. */
  async importIdentity(phrase: string): Promise<boolean> {
    return this.attempt(() => this.backend.importIdentity(phrase));
  }

  /** Lists devices and starts the camera preview and microphone meter. */
  async startDeviceCheck(cameraId: string | null, microphoneId: string | null, processing: MicProcessing): Promise<void> {
    this.deviceErrors = {};
    this.micLevel = null;
    this.micTest = null;
    this.checking = false;
    try {
      this.devices = await this.backend.listDevices();
    } catch (e) {
      this.notice = { kind: 'command', error: asCommandError(e) };
    }
    try {
      await this.backend.startDeviceCheck(cameraId, microphoneId, processing);
      this.checking = true;
    } catch (e) {
      this.notice = { kind: 'command', error: asCommandError(e) };
    }
  }

  /** Records three seconds of the microphone and plays them back on `speakerId`. */
  async testMicrophone(speakerId: string | null): Promise<void> {
    try {
      await this.backend.testMicrophone(speakerId);
    } catch (e) {
      this.micTest = { step: 'failed', message: asCommandError(e).message };
    }
  }

  /** The processing switches changed: the running check's meter follows. */
  async setCheckProcessing(processing: MicProcessing): Promise<void> {
    await this.attempt(() => this.backend.setCheckProcessing(processing));
  }

  async stopDeviceCheck(): Promise<void> {
    this.checking = false;
    await this.attempt(() => this.backend.stopDeviceCheck());
    this.micLevel = null;
  }

  /** Draws `stream` on `canvas` until the returned function is called. */
  attachVideo(stream: Stream, canvas: HTMLCanvasElement): () => void {
    return this.backend.attachVideo(stream, canvas);
  }

  backToLobby(): void {
    this.screen = 'lobby';
  }

  private resetCall(): void {
    this.peer = null;
    this.chat = [];
    this.quality = null;
    this.limitedBy = null;
    this.path = null;
    this.lastStats = null;
    this.endReason = null;
    this.notice = null;
    this.reported = false;
    this.rating = null;
    this.blocked = false;
    this.peerAudio = true;
    this.peerVideo = true;
    this.interrupted = false;
    this.callSince = null;
    this.friendRequested = false;
    this.callFriend = null;
  }

  private handle(event: EngineEvent): void {
    switch (event.type) {
      case 'server_connected':
        this.connected = true;
        this.serverDown = null;
        break;
      case 'server_disconnected':
        this.connected = false;
        this.serverDown = { why: event.why, retryAt: this.now() + event.retryInMs };
        break;
      case 'online_count':
        this.online = { online: event.online, waiting: event.waiting };
        break;
      case 'state':
        this.onState(event.view);
        break;
      case 'chat':
        this.chat.push({ mine: false, text: event.text });
        break;
      case 'peer_media':
        this.peerAudio = event.audio;
        this.peerVideo = event.video;
        break;
      case 'stats':
        this.quality = networkQuality(event.stats, this.lastStats);
        this.limitedBy = limitingSide(event.stats, this.lastStats);
        if (event.stats.path) this.path = event.stats.path.relayed ? 'relayed' : 'direct';
        this.lastStats = event.stats;
        break;
      case 'device_error':
        this.deviceErrors[event.device] = event.message;
        if (this.screen !== 'onboarding') this.notice = { kind: 'device', device: event.device, message: event.message };
        break;
      case 'mic_level':
        this.micLevel = event.dbfs;
        break;
      case 'mic_test':
        this.micTest = event.step;
        break;
      case 'media_interrupted':
        this.interrupted = event.interrupted;
        break;
      case 'server_error':
        this.notice = { kind: 'server', code: event.code, message: event.message };
        break;
      case 'server_refused':
        this.notice = { kind: 'refused', message: event.message };
        break;
      case 'command_failed':
        this.notice = { kind: 'command', error: event.error };
        break;
      case 'audio_levels':
        break;
      case 'friends':
        this.friends = event.friends;
        break;
      case 'friend_requested':
        this.friendRequested = true;
        break;
      case 'friend_added':
        // Both asked. It may be about an earlier call than this one (they have five
        // minutes to return a request): only this call's person, asked here, is marked.
        if (this.friendRequested && event.friend.nickname === this.peer?.nickname) this.callFriend = event.friend.id;
        this.notice = { kind: 'friendAdded', name: event.friend.nickname };
        break;
      case 'ringing':
        this.ringing = event.friend;
        break;
      case 'incoming_call':
        this.incoming = event.friend;
        break;
      case 'ring_ended':
        if (this.incoming === event.friend) this.incoming = null;
        break;
      case 'friend_call_failed':
        if (this.ringing === event.friend) this.ringing = null;
        this.notice = { kind: 'friendCall', reason: event.reason, name: this.friendName(event.friend) };
        break;
    }
  }

  private onState(view: CallView): void {
    switch (view.state) {
      case 'idle':
        if (this.screen === 'searching') this.screen = 'lobby';
        break;
      case 'searching':
        if (this.screen !== 'searching') {
          // The engine searches again by itself after the peer left (auto-search).
          this.resetCall();
          this.searchingSince = this.now();
          this.screen = 'searching';
        }
        break;
      case 'connecting':
        this.peer = view.peer;
        if (view.friend) this.callFriend = view.friend;
        this.ringing = null;
        this.incoming = null;
        this.screen = 'call';
        break;
      case 'in_call':
        this.peer = view.peer;
        if (view.friend) this.callFriend = view.friend;
        this.callSince = this.now();
        this.screen = 'call';
        break;
      case 'ended':
        this.interrupted = false;
        this.endReason = view.reason;
        if (this.screen === 'call' || this.screen === 'searching') this.screen = 'after';
        break;
    }
  }
}
