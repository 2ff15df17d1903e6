import type { CallStats } from './types';

/** Below this (bits/s) a side's congestion control is what limits the picture. */
export const LOW_BITRATE = 300_000;

/** The score the bandwidth available to a call allows on its own. */
function bitrateScore(bps: number): number {
  if (bps >= 1_000_000) return 5;
  if (bps >= 500_000) return 4;
  if (bps >= LOW_BITRATE) return 3;
  if (bps >= 150_000) return 2;
  return 1;
}

/**
 * Network quality 0 (unusable) to 5 (excellent) from one stats snapshot and the one
 * before it: what each side's congestion control lets it send (ours, and the peer's as
 * it tells us), loss over the last second, round-trip time, and whether video froze.
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
  const rates = [now.availableOutgoingBitrate, now.peerAvailableOutgoingBitrate].filter(
    (r): r is number => r !== null,
  );
  if (rates.length > 0) score = Math.min(score, bitrateScore(Math.min(...rates)));
  return Math.max(1, score);
}

/**
 * Whose connection limits the call: ours when our congestion control allows little and
 * the peer's does not, theirs the other way round (or when much of what they send is
 * lost on the way), `null` when neither or both.
 */
export function limitingSide(now: CallStats, before: CallStats | null): 'you' | 'peer' | null {
  const ours = now.availableOutgoingBitrate;
  const theirs = now.peerAvailableOutgoingBitrate;
  const delta = (a: number, b: number | undefined) => Math.max(0, a - (b ?? 0));
  const received = delta(now.inboundVideo.packetsReceived, before?.inboundVideo.packetsReceived);
  const lost = delta(now.inboundVideo.packetsLost, before?.inboundVideo.packetsLost);
  const inboundLossy = received + lost > 0 && lost / (received + lost) > 0.1;
  const weOnlyLow = ours !== null && ours < LOW_BITRATE && !(theirs !== null && theirs < LOW_BITRATE);
  const theyLow = (theirs !== null && theirs < LOW_BITRATE) || inboundLossy;
  if (weOnlyLow && !inboundLossy) return 'you';
  if (theyLow && !(ours !== null && ours < LOW_BITRATE)) return 'peer';
  return null;
}
