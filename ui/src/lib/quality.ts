import type { CallStats } from './types';

/**
 * Network quality 0 (unusable) to 5 (excellent) from one stats snapshot and the one
 * before it: loss over the last second, round-trip time, and whether video froze.
 */
export function networkQuality(now: CallStats, before: CallStats | null): number {
  const delta = (a: number, b: number | undefined) => Math.max(0, a - (b ?? 0));
  const received =
    delta(now.inboundVideo.packetsReceived, before?.inboundVideo.packetsReceived) +
    delta(now.inboundAudio.packetsReceived, before?.inboundAudio.packetsReceived);
  const lost =
    delta(now.inboundVideo.packetsLost, before?.inboundVideo.packetsLost) +
    delta(now.inboundAudio.packetsLost, before?.inboundAudio.packetsLost);
  if (received === 0) return 0;
  const loss = lost / (received + lost);
  const rttMs = (now.roundTripTime ?? 0) * 1000;
  const froze = now.inboundVideo.freezeCount > (before?.inboundVideo.freezeCount ?? 0);
  let score = 5;
  if (loss > 0.01) score -= 1;
  if (loss > 0.03) score -= 1;
  if (loss > 0.08) score -= 1;
  if (rttMs > 150) score -= 1;
  if (rttMs > 400) score -= 1;
  if (froze) score -= 1;
  return Math.max(1, score);
}
