import { mount } from 'svelte';
import App from './App.svelte';
import type { Backend } from './lib/backend';
import { FakeBackend } from './lib/fake';
import { TauriBackend, inTauri } from './lib/tauri';
import { emptyStats } from './lib/types';
import './app.css';

// In the Tauri shell the real backend talks to Rust; in a plain browser (UI work,
// screenshots) the fake one stands in.
declare global {
  interface Window {
    chinguBackend?: Backend;
  }
}

function fakeFromUrl(): FakeBackend {
  // For UI work and screenshots: ?nickname=alice skips onboarding; ?matchMs=N sets how
  // long the fake search takes.
  const params = new URLSearchParams(window.location.search);
  const fake = new FakeBackend(Number(params.get('matchMs') ?? 1000));
  fake.settings.nickname = params.get('nickname') ?? '';
  // ?demo=searching|call|interrupted|after|friends|incoming plays the engine events that lead to that screen.
  const demo = params.get('demo');
  if (demo) {
    setTimeout(() => {
      fake.emit({ type: 'online_count', online: 1204, waiting: 37 });
      if (demo === 'friends' || demo === 'incoming') {
        const day = 24 * 3600;
        const now = Math.floor(Date.now() / 1000);
        fake.friends = [
          { id: 'f-1', nickname: '민지', presence: 'online', last_call_unix: now - 3600 },
          { id: 'f-2', nickname: 'Sam', presence: 'in_call', last_call_unix: now - 3 * day },
          { id: 'f-3', nickname: 'Yuki', presence: 'offline', last_call_unix: now - 20 * day },
        ];
        fake.emit({ type: 'friends', friends: fake.friends });
        if (demo === 'incoming') fake.emit({ type: 'incoming_call', friend: 'f-1' });
        return;
      }
      fake.emit({ type: 'state', view: { state: 'searching' } });
      if (demo === 'searching') return;
      fake.emit({ type: 'state', view: { state: 'in_call', peer: fake.partner, friend: null } });
      fake.emit({ type: 'chat', text: '안녕하세요! 어디서 왔어요?' });
      fake.emit({
        type: 'stats',
        stats: {
          ...emptyStats(),
          elapsedMs: 1000,
          roundTripTime: 0.04,
          inboundVideo: { ...emptyStats().inboundVideo, framesDecoded: 30, packetsReceived: 200 },
          inboundAudio: { ...emptyStats().inboundAudio, packetsReceived: 50, totalSamplesReceived: 48000 },
        },
      });
      if (demo === 'interrupted') fake.emit({ type: 'media_interrupted', interrupted: true });
      if (demo === 'after') fake.emit({ type: 'state', view: { state: 'ended', reason: { kind: 'peer_left', reason: 'hung_up' } } });
    }, 100);
  }
  return fake;
}

const bench = new URLSearchParams(window.location.search).get('bench');
if (bench && inTauri()) {
  // The video transport benchmark (an app built with the `video-bench` feature).
  import('./bench').then(({ runBench }) => runBench(bench)).catch((e) => console.error('video bench:', e));
} else {
  const backend: Backend = window.chinguBackend ?? (inTauri() ? new TauriBackend() : fakeFromUrl());
  const target = document.getElementById('app');
  if (!target) throw new Error('index.html has no #app element');
  mount(App, { target, props: { backend } });
}
