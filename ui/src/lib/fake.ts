import { DEFAULT_SETTINGS, type Backend } from './backend';
import type { Devices, EngineEvent, Friend, FriendId, MicProcessing, PeerProfile, ReportReason, ServerProbe, Settings } from './types';
import { createRenderer, type I420, type Stream } from './video';

/**
 * A backend with no shell: matches after `matchDelayMs` with a fixed partner who echoes
 * chat. Tests drive it step by step with `emit`; `calls` records every command.
 */
export class FakeBackend implements Backend {
  settings: Settings = { ...DEFAULT_SETTINGS };
  calls: string[] = [];
  private listeners = new Set<(event: EngineEvent) => void>();
  private timers: ReturnType<typeof setTimeout>[] = [];
  private check: ReturnType<typeof setInterval> | null = null;
  devices: Devices = {
    cameras: [{ id: '0', name: 'Integrated Camera', isDefault: true }],
    microphones: [
      { id: 'mic-a', name: 'Built-in Microphone', isDefault: true },
      { id: 'mic-b', name: 'USB Headset', isDefault: false },
    ],
    speakers: [{ id: 'spk-a', name: 'Built-in Speakers', isDefault: true }],
    problems: [],
  };

  constructor(
    private readonly matchDelayMs: number | null = 1000,
    readonly partner: PeerProfile = { nickname: '민지', languages: ['ko'], shared_interests: ['music'] },
  ) {}

  emit(event: EngineEvent): void {
    for (const listener of this.listeners) listener(event);
  }

  onEvent(listener: (event: EngineEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async loadSettings(): Promise<Settings> {
    return { ...this.settings };
  }

  async saveSettings(settings: Settings): Promise<void> {
    this.calls.push('saveSettings');
    this.settings = { ...settings };
  }

  async search(): Promise<void> {
    this.calls.push('search');
    this.emit({ type: 'state', view: { state: 'searching' } });
    if (this.matchDelayMs !== null) {
      this.later(this.matchDelayMs, () => {
        this.emit({ type: 'state', view: { state: 'connecting', peer: this.partner, friend: null } });
        this.emit({ type: 'state', view: { state: 'in_call', peer: this.partner, friend: null } });
      });
    }
  }

  async cancel(): Promise<void> {
    this.calls.push('cancel');
    this.clearTimers();
    this.emit({ type: 'state', view: { state: 'idle' } });
  }

  async next(): Promise<void> {
    this.calls.push('next');
    await this.search();
  }

  async hangUp(): Promise<void> {
    this.calls.push('hangUp');
    this.clearTimers();
    this.emit({ type: 'state', view: { state: 'ended', reason: { kind: 'hung_up' } } });
  }

  async setMuted(muted: boolean): Promise<void> {
    this.calls.push(`setMuted:${muted}`);
  }

  async setCameraEnabled(enabled: boolean): Promise<void> {
    this.calls.push(`setCameraEnabled:${enabled}`);
  }

  async sendChat(text: string): Promise<void> {
    this.calls.push(`sendChat:${text}`);
    if (this.matchDelayMs !== null) this.later(300, () => this.emit({ type: 'chat', text }));
  }

  async report(reason: ReportReason, note: string | null): Promise<void> {
    this.calls.push(`report:${reason}:${note ?? ''}`);
  }

  async block(): Promise<void> {
    this.calls.push('block');
  }

  async rateCall(stars: number): Promise<void> {
    this.calls.push(`rateCall:${stars}`);
  }

  /** The partner asks too, a moment later: friends. */
  async addFriend(): Promise<void> {
    this.calls.push('addFriend');
    this.emit({ type: 'friend_requested' });
    this.later(500, () => {
      const friend: Friend = {
        id: `f-${this.friends.length + 1}`,
        nickname: this.partner.nickname,
        presence: 'in_call',
        last_call_unix: Math.floor(Date.now() / 1000),
      };
      this.friends = [friend, ...this.friends];
      this.emit({ type: 'friend_added', friend });
      this.emit({ type: 'friends', friends: this.friends });
    });
  }

  friends: Friend[] = [];

  async removeFriend(friend: FriendId): Promise<void> {
    this.calls.push(`removeFriend:${friend}`);
    this.friends = this.friends.filter((f) => f.id !== friend);
    this.emit({ type: 'friends', friends: this.friends });
  }

  async blockFriend(friend: FriendId): Promise<void> {
    this.calls.push(`blockFriend:${friend}`);
    await this.removeFriend(friend);
  }

  /** Rings for a second and a half, then the friend picks up. */
  async callFriend(friend: FriendId): Promise<void> {
    this.calls.push(`callFriend:${friend}`);
    this.emit({ type: 'ringing', friend });
    const peer = { ...this.partner, nickname: this.friends.find((f) => f.id === friend)?.nickname ?? this.partner.nickname, shared_interests: [] };
    this.later(1500, () => {
      this.emit({ type: 'state', view: { state: 'connecting', peer, friend } });
      this.emit({ type: 'state', view: { state: 'in_call', peer, friend } });
    });
  }

  async cancelFriendCall(friend: FriendId): Promise<void> {
    this.calls.push(`cancelFriendCall:${friend}`);
    this.clearTimers();
  }

  async answerFriendCall(friend: FriendId, accept: boolean): Promise<void> {
    this.calls.push(`answerFriendCall:${friend}:${accept}`);
    if (!accept) return;
    const peer = { ...this.partner, nickname: this.friends.find((f) => f.id === friend)?.nickname ?? '', shared_interests: [] };
    this.emit({ type: 'state', view: { state: 'connecting', peer, friend } });
    this.emit({ type: 'state', view: { state: 'in_call', peer, friend } });
  }

  phrase = '3f2a-9c1e-7b5d-4e8f-a0b1-c2d3-e4f5-a6b7';

  async testServer(url: string): Promise<ServerProbe> {
    this.calls.push(`testServer:${url}`);
    if (!/^wss?:\/\//.test(url)) return { result: 'bad_url' };
    return url.includes('old') ? { result: 'version_mismatch', message: 'protocol 2' } : { result: 'reachable' };
  }

  async exportIdentity(): Promise<string> {
    this.calls.push('exportIdentity');
    return this.phrase;
  }

  async importIdentity(phrase: string): Promise<void> {
    this.calls.push(`importIdentity:${phrase}`);
    const hex = phrase.replace(/[\s-]/g, '');
    if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw { code: 'bad_recovery_phrase', message: 'not a recovery phrase' };
    this.phrase = phrase.trim().toLowerCase();
    this.friends = [];
    this.emit({ type: 'friends', friends: [] });
  }

  async listDevices(): Promise<Devices> {
    this.calls.push('listDevices');
    return structuredClone(this.devices);
  }

  async startDeviceCheck(cameraId: string | null, microphoneId: string | null, processing: MicProcessing): Promise<void> {
    const on = (b: boolean) => (b ? '1' : '0');
    const p = `${on(processing.echoCancellation)}${on(processing.noiseSuppression)}${on(processing.autoGain)}`;
    this.calls.push(`startDeviceCheck:${cameraId ?? ''}:${microphoneId ?? ''}:${p}`);
    this.stopCheckTimer();
    let t = 0;
    // A voice-like level wandering between -50 and -10 dBFS.
    this.check = setInterval(() => this.emit({ type: 'mic_level', dbfs: -30 + 20 * Math.sin(t++ / 3) }), 100);
  }

  async stopDeviceCheck(): Promise<void> {
    this.calls.push('stopDeviceCheck');
    this.stopCheckTimer();
  }

  async setCheckProcessing(processing: MicProcessing): Promise<void> {
    const on = (b: boolean) => (b ? '1' : '0');
    this.calls.push(`setCheckProcessing:${on(processing.echoCancellation)}${on(processing.noiseSuppression)}${on(processing.autoGain)}`);
  }

  /** Recording for 3 s, then playing for 3 s, as the shell reports them. */
  async testMicrophone(speakerId: string | null): Promise<void> {
    this.calls.push(`testMicrophone:${speakerId ?? ''}`);
    this.emit({ type: 'mic_test', step: { step: 'recording' } });
    setTimeout(() => this.emit({ type: 'mic_test', step: { step: 'playing', dbfs: -24 } }), 3000);
    setTimeout(() => this.emit({ type: 'mic_test', step: { step: 'done' } }), 6000);
  }

  private stopCheckTimer(): void {
    if (this.check !== null) clearInterval(this.check);
    this.check = null;
  }

  /** A moving synthetic picture at 15 fps (the remote one warm, the preview cool). */
  attachVideo(stream: Stream, canvas: HTMLCanvasElement): () => void {
    this.calls.push(`attachVideo:${stream}`);
    const renderer = createRenderer(canvas);
    if (!renderer) return () => {};
    const frame = blankFrame(320, 240);
    let t = 0;
    const timer = setInterval(() => {
      drawPattern(frame, t++, stream === 'remote' ? 200 : 90);
      renderer.draw(frame);
      canvas.dataset.frames = String(t);
    }, 1000 / 15);
    return () => clearInterval(timer);
  }

  private later(ms: number, f: () => void): void {
    this.timers.push(setTimeout(f, ms));
  }

  private clearTimers(): void {
    this.timers.forEach(clearTimeout);
    this.timers = [];
  }
}

function blankFrame(width: number, height: number): I420 {
  return {
    width,
    height,
    seq: 0,
    dropped: 0,
    captureMs: 0,
    readyMs: 0,
    y: new Uint8Array(width * height),
    u: new Uint8Array((width * height) / 4),
    v: new Uint8Array((width * height) / 4),
  };
}

/** A soft gradient with a bar sweeping across; `tint` sets the colour (V plane). */
function drawPattern(frame: I420, t: number, tint: number): void {
  const { width, height, y, u, v } = frame;
  const bar = (t * 4) % width;
  for (let row = 0; row < height; row++) {
    for (let col = 0; col < width; col++) {
      y[row * width + col] = Math.abs(col - bar) < 12 ? 220 : 40 + ((row + col) >> 2);
    }
  }
  u.fill(110);
  v.fill(tint);
}
