// The shapes shared with the Rust shell, generated from Rust (./bindings.ts, by
// tauri-specta; a Rust test fails when that file is stale). Values the UI receives
// have the serialize shapes.
import type { CallStats_Serialize, Settings_Serialize, UiEvent_Serialize } from './bindings';

export type {
  CallView,
  CommandError,
  CommandErrorCode,
  Device,
  DeviceInfo,
  Devices,
  EndReason,
  ErrorCode as ServerErrorCode,
  Friend,
  FriendCallFailure,
  FriendId,
  Presence,
  MicProcessing,
  MicTestStep,
  PeerProfile,
  ReportReason,
  ServerProbe,
  UiLanguage,
  VideoEndpoint,
} from './bindings';

export type CallStats = CallStats_Serialize;
export type Settings = Settings_Serialize;
/** Everything the shell tells the UI (the `engine` event). */
export type EngineEvent = UiEvent_Serialize;

/** A stats snapshot with every figure zero, for fakes and tests to fill in. */
export function emptyStats(): CallStats {
  const video = { packetsLost: 0, jitter: 0, nackCount: 0, pliCount: 0, frameWidth: 0, frameHeight: 0 };
  return {
    elapsedMs: 0,
    outboundVideo: { ...video, framesEncoded: 0, keyFramesEncoded: 0, totalEncodeTime: 0, framesSent: 0, packetsSent: 0, bytesSent: 0, retransmittedPacketsSent: 0 },
    inboundVideo: {
      ...video,
      framesReceived: 0,
      framesDecoded: 0,
      keyFramesDecoded: 0,
      totalDecodeTime: 0,
      framesDropped: 0,
      framesLostUnreferenced: 0,
      framesRecovered: 0,
      freezeCount: 0,
      totalFreezesDuration: 0,
      totalInterFrameDelay: 0,
      totalSquaredInterFrameDelay: 0,
      jitterBufferDelay: 0,
      jitterBufferEmittedCount: 0,
      packetsReceived: 0,
      bytesReceived: 0,
      retransmittedPacketsReceived: 0,
    },
    outboundAudio: {
      packetsSent: 0,
      bytesSent: 0,
      audioLevelDbfs: -120,
      echoReturnLossEnhancement: null,
      echoDelayMs: null,
    },
    inboundAudio: {
      packetsReceived: 0,
      packetsLost: 0,
      jitter: 0,
      totalSamplesReceived: 0,
      concealedSamples: 0,
      packetsDiscarded: 0,
      fecPacketsRecovered: 0,
      comfortNoiseSamples: 0,
      jitterBufferDelay: 0,
      jitterBufferEmittedCount: 0,
      audioLevelDbfs: -120,
      speakerFramesDropped: 0,
    },
    roundTripTime: null,
    availableOutgoingBitrate: null,
    peerAvailableOutgoingBitrate: null,
    path: null,
    remoteCandidates: [],
  };
}
