import { DEFAULT_SETTINGS, type Backend } from './backend';
import type { EngineEvent, PeerProfile, ReportReason, Settings } from './types';

/**
 * A backend with no shell: matches after `matchDelayMs` with a fixed partner who echoes
 * chat. Tests drive it step by step with `emit`; `calls` records every command.
 */
export class FakeBackend implements Backend {
  settings: Settings = { ...DEFAULT_SETTINGS };
  calls: string[] = [];
  private listeners = new Set<(event: EngineEvent) => void>();
  private timers: ReturnType<typeof setTimeout>[] = [];

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
        this.emit({ type: 'state', view: { state: 'connecting', peer: this.partner } });
        this.emit({ type: 'state', view: { state: 'in_call', peer: this.partner } });
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
    this.emit({ type: 'state', view: { state: 'ended', reason: 'hung-up' } });
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

  private later(ms: number, f: () => void): void {
    this.timers.push(setTimeout(f, ms));
  }

  private clearTimers(): void {
    this.timers.forEach(clearTimeout);
    this.timers = [];
  }
}
