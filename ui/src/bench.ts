/**
 * The video transport benchmark page (`index.html?bench=<transport>`, only in an app
 * built with the `video-bench` feature; run by `cargo xtask bench-video`). Draws the
 * shell's 1280x720 30 fps pattern with the production renderer over the chosen
 * transport, then reports frames per second drawn, latency from the frame reaching the
 * shell to it being drawn, and frames skipped.
 */
import { Channel, invoke } from '@tauri-apps/api/core';
import { createRenderer, nowMs, parseFrame, pullVideo, type I420, type VideoEndpoint } from './lib/video';

const WARMUP_MS = 2000;
const MEASURE_MS = 10000;

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

export async function runBench(transport: string): Promise<void> {
  document.body.style.margin = '0';
  document.body.style.background = '#000';
  const canvas = document.createElement('canvas');
  canvas.style.width = '1280px';
  canvas.style.height = '720px';
  canvas.style.display = 'block';
  document.body.replaceChildren(canvas);

  const latencies: number[] = [];
  let drawn = 0;
  let firstSeq = -1;
  let lastSeq = -1;
  let measuring = false;
  let renderer = 'none';
  const onFrame = (frame: I420) => {
    if (!measuring) return;
    latencies.push(nowMs() - frame.readyMs);
    drawn += 1;
    if (firstSeq < 0) firstSeq = frame.seq;
    lastSeq = frame.seq;
  };

  let stop: () => void;
  if (transport === 'websocket') {
    // The production path.
    stop = pullVideo('remote', canvas, () => invoke<VideoEndpoint>('video_endpoint'), onFrame);
    renderer = createRenderer(document.createElement('canvas'))?.kind ?? 'none';
  } else {
    const r = createRenderer(canvas);
    if (!r) throw new Error('no renderer');
    renderer = r.kind;
    const draw = (buffer: ArrayBuffer) => {
      const frame = parseFrame(buffer);
      if (frame) {
        r.draw(frame);
        onFrame(frame);
      }
      return frame;
    };
    if (transport === 'channel') {
      const channel = new Channel<ArrayBuffer>();
      channel.onmessage = (buffer) => {
        draw(buffer);
        invoke('video_bench_ack');
      };
      await invoke('video_bench_channel', { onFrame: channel });
      stop = () => {};
    } else if (transport === 'protocol') {
      // Long-polling fetch on the custom scheme: ask for the frame after the last one.
      let stopped = false;
      stop = () => (stopped = true);
      (async () => {
        let after = 0;
        while (!stopped) {
          const response = await fetch(`chingu-video://localhost/remote?after=${after}`, { cache: 'no-store' });
          if (response.status !== 200) continue;
          const frame = draw(await response.arrayBuffer());
          if (frame) after = frame.seq;
        }
      })().catch((e) => console.error('protocol transport:', e));
    } else {
      throw new Error(`unknown transport ${transport}`);
    }
  }

  await new Promise((resolve) => setTimeout(resolve, WARMUP_MS));
  await invoke('video_bench_start');
  const started = nowMs();
  measuring = true;
  await new Promise((resolve) => setTimeout(resolve, MEASURE_MS));
  measuring = false;
  const seconds = (nowMs() - started) / 1000;
  stop();
  latencies.sort((a, b) => a - b);
  await invoke('video_bench_done', {
    report: {
      renderer,
      framesDrawn: drawn,
      fpsDrawn: drawn / seconds,
      framesProduced: lastSeq >= firstSeq && firstSeq >= 0 ? lastSeq - firstSeq + 1 : 0,
      latencyMsP50: percentile(latencies, 50),
      latencyMsP95: percentile(latencies, 95),
      latencyMsMax: latencies[latencies.length - 1] ?? NaN,
      userAgent: navigator.userAgent,
    },
  });
}
