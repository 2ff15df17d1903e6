import { describe, expect, it } from 'vitest';
import { FakeBackend } from './fake';
import { Session, endMessage } from './session.svelte';
import { emptyStats, type CallStats } from './types';

const partner = { nickname: '민지', languages: ['ko'], shared_interests: ['music'] };

async function ready(backend = new FakeBackend(null)) {
  backend.settings.nickname = 'alice';
  const session = new Session(backend, () => 1000);
  await session.start();
  return { backend, session };
}

describe('Session', () => {
  it('starts at onboarding without a nickname and refuses an empty one', async () => {
    const backend = new FakeBackend(null);
    const session = new Session(backend);
    await session.start();
    expect(session.screen).toBe('onboarding');
    expect(await session.saveSettings({ ...backend.settings, nickname: '  ' })).toBe(false);
    expect(session.screen).toBe('onboarding');
    expect(await session.saveSettings({ ...backend.settings, nickname: 'alice' })).toBe(true);
    expect(session.screen).toBe('lobby');
    expect(backend.settings.nickname).toBe('alice');
  });

  it('runs the device check: lists devices, meters the microphone, keeps device problems off the call notice', async () => {
    const backend = new FakeBackend(null);
    const session = new Session(backend);
    await session.start();
    await session.startDeviceCheck('0', null, { echoCancellation: true, noiseSuppression: false, autoGain: true });
    expect(backend.calls).toContain('listDevices');
    expect(backend.calls).toContain('startDeviceCheck:0::101');
    expect(session.devices?.microphones.map((d) => d.name)).toContain('USB Headset');
    backend.emit({ type: 'mic_level', dbfs: -12.5 });
    expect(session.micLevel).toBe(-12.5);
    backend.emit({ type: 'device_error', device: 'camera', message: 'no camera; showing a test pattern instead' });
    expect(session.deviceErrors.camera).toContain('test pattern');
    expect(session.notice).toBeNull();
    await session.stopDeviceCheck();
    expect(backend.calls).toContain('stopDeviceCheck');
    expect(session.micLevel).toBeNull();
  });

  it('shows a failed device listing as a notice and still starts the check', async () => {
    const backend = new FakeBackend(null);
    backend.listDevices = async () => {
      throw { code: 'internal', message: 'sound server gone' };
    };
    const session = new Session(backend);
    await session.start();
    await session.startDeviceCheck(null, null, { echoCancellation: true, noiseSuppression: true, autoGain: true });
    expect(session.notice).toEqual({ kind: 'command', error: { code: 'internal', message: 'sound server gone' } });
    expect(backend.calls).toContain('startDeviceCheck:::111');
  });

  it('follows a microphone test from recording to done', async () => {
    const backend = new FakeBackend(null);
    const session = new Session(backend);
    await session.start();
    await session.startDeviceCheck(null, null, { echoCancellation: true, noiseSuppression: true, autoGain: true });
    expect(session.micTest).toBeNull();
    expect(session.checking).toBe(true);
    await session.setCheckProcessing({ echoCancellation: false, noiseSuppression: true, autoGain: true });
    expect(backend.calls).toContain('setCheckProcessing:011');
    await session.testMicrophone('spk1');
    expect(backend.calls).toContain('testMicrophone:spk1');
    expect(session.micTest).toEqual({ step: 'recording' });
    backend.emit({ type: 'mic_test', step: { step: 'playing', dbfs: -20 } });
    expect(session.micTest).toEqual({ step: 'playing', dbfs: -20 });
    backend.emit({ type: 'mic_test', step: { step: 'failed', message: 'speaker gone' } });
    expect(session.micTest).toEqual({ step: 'failed', message: 'speaker gone' });
    // A new check starts afresh.
    await session.startDeviceCheck(null, null, { echoCancellation: true, noiseSuppression: true, autoGain: true });
    expect(session.micTest).toBeNull();
    // A test the shell refuses says why.
    backend.testMicrophone = async () => {
      throw { code: 'not_ready', message: 'the device check is not running' };
    };
    await session.testMicrophone(null);
    expect(session.micTest).toEqual({ step: 'failed', message: 'the device check is not running' });
    await session.stopDeviceCheck();
    expect(session.checking).toBe(false);
  });

  it('shows an interrupted connection until media flows again or the call ends', async () => {
    const { backend, session } = await ready();
    await session.match();
    backend.emit({ type: 'state', view: { state: 'in_call', peer: partner, friend: null } });
    backend.emit({ type: 'media_interrupted', interrupted: true });
    expect(session.interrupted).toBe(true);
    backend.emit({ type: 'media_interrupted', interrupted: false });
    expect(session.interrupted).toBe(false);
    backend.emit({ type: 'media_interrupted', interrupted: true });
    backend.emit({ type: 'state', view: { state: 'ended', reason: { kind: 'media_lost', why: 'ICE/DTLS connection failed' } } });
    expect(session.interrupted).toBe(false);
    expect(session.screen).toBe('after');
    expect(session.endReason?.kind).toBe('media_lost');
  });

  it('sends a rating and shows it; a new call starts unrated', async () => {
    const { backend, session } = await ready();
    await session.match();
    backend.emit({ type: 'state', view: { state: 'in_call', peer: partner, friend: null } });
    backend.emit({ type: 'state', view: { state: 'ended', reason: { kind: 'hung_up' } } });
    await session.rate(4);
    expect(backend.calls).toContain('rateCall:4');
    expect(session.rating).toBe(4);
    backend.rateCall = async () => {
      throw { code: 'engine_stopped', message: 'the engine stopped' };
    };
    await session.rate(2);
    expect(session.rating).toBe(4);
    expect(session.notice).toEqual({ kind: 'command', error: { code: 'engine_stopped', message: 'the engine stopped' } });
    await session.match();
    expect(session.rating).toBeNull();
  });

  it('explains how a call ended', () => {
    expect(endMessage({ kind: 'peer_left', reason: 'next' })).toBe('peerLeft');
    expect(endMessage({ kind: 'media_lost', why: 'ice failed' })).toBe('networkLost');
    expect(endMessage({ kind: 'server_lost' })).toBe('serverLost');
    expect(endMessage({ kind: 'connect_timeout' })).toBe('connectFailed');
    expect(endMessage({ kind: 'connect_failed', why: 'dtls' })).toBe('connectFailed');
    expect(endMessage({ kind: 'hung_up' })).toBeNull();
    expect(endMessage(null)).toBeNull();
  });

  it('goes lobby → searching → call → after, and back', async () => {
    const { backend, session } = await ready();
    expect(session.screen).toBe('lobby');
    await session.match();
    expect(session.screen).toBe('searching');
    expect(backend.calls).toContain('search');
    backend.emit({ type: 'state', view: { state: 'connecting', peer: partner, friend: null } });
    expect(session.screen).toBe('call');
    backend.emit({ type: 'state', view: { state: 'in_call', peer: partner, friend: null } });
    expect(session.peer?.nickname).toBe('민지');
    expect(session.callSince).toBe(1000);
    backend.emit({ type: 'state', view: { state: 'ended', reason: { kind: 'peer_left', reason: 'hung_up' } } });
    expect(session.screen).toBe('after');
    expect(session.endReason).toEqual({ kind: 'peer_left', reason: 'hung_up' });
    session.backToLobby();
    expect(session.screen).toBe('lobby');
  });

  it('cancel returns to the lobby', async () => {
    const { backend, session } = await ready();
    await session.match();
    await session.cancel();
    expect(session.screen).toBe('lobby');
    expect(backend.calls).toEqual(['search', 'cancel']);
  });

  it('keeps chat both ways and clears it for the next call', async () => {
    const { backend, session } = await ready();
    await session.match();
    backend.emit({ type: 'state', view: { state: 'in_call', peer: partner, friend: null } });
    await session.sendChat('  안녕  ');
    await session.sendChat('   ');
    backend.emit({ type: 'chat', text: 'hi!' });
    expect(session.chat).toEqual([
      { mine: true, text: '안녕' },
      { mine: false, text: 'hi!' },
    ]);
    expect(backend.calls).toContain('sendChat:안녕');
    await session.next();
    expect(session.chat).toEqual([]);
    expect(session.screen).toBe('searching');
  });

  it('a peer leaving with auto-search shows searching again', async () => {
    const { backend, session } = await ready();
    await session.match();
    backend.emit({ type: 'state', view: { state: 'in_call', peer: partner, friend: null } });
    backend.emit({ type: 'state', view: { state: 'searching' } });
    expect(session.screen).toBe('searching');
    expect(session.peer).toBeNull();
  });

  it('mute and camera toggles reach the backend; peer media state shows', async () => {
    const { backend, session } = await ready();
    await session.toggleMute();
    await session.toggleCamera();
    await session.toggleMute();
    expect(backend.calls).toEqual(['setMuted:true', 'setCameraEnabled:false', 'setMuted:false']);
    backend.emit({ type: 'peer_media', audio: false, video: true });
    expect(session.peerAudio).toBe(false);
  });

  it('tracks the server connection and when it retries', async () => {
    const { backend, session } = await ready();
    backend.emit({ type: 'server_disconnected', why: 'refused', retryInMs: 2000 });
    expect(session.connected).toBe(false);
    expect(session.serverDown?.retryAt).toBe(3000);
    backend.emit({ type: 'server_connected' });
    expect(session.serverDown).toBeNull();
  });

  it('a failing command becomes a notice and does not strand the user', async () => {
    const { backend, session } = await ready();
    backend.search = async () => {
      throw { code: 'engine_stopped', message: 'the engine has stopped' };
    };
    await session.match();
    expect(session.screen).toBe('lobby');
    expect(session.notice).toEqual({ kind: 'command', error: { code: 'engine_stopped', message: 'the engine has stopped' } });
  });

  it('without saved settings a command sends the user to the settings', async () => {
    const { backend, session } = await ready();
    backend.search = async () => {
      throw { code: 'not_ready', message: 'save your settings first' };
    };
    await session.match();
    expect(session.screen).toBe('onboarding');
  });

  it('keeps server errors, refusals and failed commands apart, by code', async () => {
    const { backend, session } = await ready();
    backend.emit({ type: 'server_error', code: 'rate_limited', message: 'more than 30 messages per second' });
    expect(session.notice).toEqual({ kind: 'server', code: 'rate_limited', message: 'more than 30 messages per second' });
    backend.emit({ type: 'command_failed', error: { code: 'chat_not_sent', message: 'not open' } });
    expect(session.notice).toEqual({ kind: 'command', error: { code: 'chat_not_sent', message: 'not open' } });
    backend.emit({ type: 'server_refused', message: 'protocol 2 only' });
    expect(session.notice?.kind).toBe('refused');
  });

  it('turns stats into a network quality score', async () => {
    const { backend, session } = await ready();
    const stats = (received: number, lost: number, rtt: number): CallStats => {
      const s = emptyStats();
      s.roundTripTime = rtt;
      s.inboundVideo.packetsLost = lost;
      s.inboundVideo.packetsReceived = received;
      return s;
    };
    backend.emit({ type: 'stats', stats: stats(1000, 0, 0.02) });
    expect(session.quality).toBe(5);
    backend.emit({ type: 'stats', stats: stats(1900, 100, 0.5) });
    expect(session.quality).toBeLessThanOrEqual(2);
  });

  it('scores from the congestion-control estimates and says whose connection limits the call', async () => {
    const { backend, session } = await ready();
    const stats = (ours: number | null, theirs: number | null, received = 1000): CallStats => {
      const s = emptyStats();
      s.roundTripTime = 0.02;
      s.availableOutgoingBitrate = ours;
      s.peerAvailableOutgoingBitrate = theirs;
      s.inboundVideo.packetsReceived = received;
      return s;
    };
    backend.emit({ type: 'stats', stats: stats(2_500_000, 2_400_000) });
    expect(session.quality).toBe(5);
    expect(session.limitedBy).toBeNull();
    backend.emit({ type: 'stats', stats: stats(200_000, 2_400_000, 2000) });
    expect(session.quality).toBe(2);
    expect(session.limitedBy).toBe('you');
    backend.emit({ type: 'stats', stats: stats(2_500_000, 120_000, 3000) });
    expect(session.quality).toBe(1);
    expect(session.limitedBy).toBe('peer');
    backend.emit({ type: 'stats', stats: stats(200_000, 120_000, 4000) });
    expect(session.limitedBy).toBeNull();
  });

  it('says whether the call is direct or relayed', async () => {
    const { backend, session } = await ready();
    expect(session.path).toBeNull();
    const s = emptyStats();
    const relay = { kind: 'relay' as const, address: '203.0.113.1', port: 50000, protocol: 'udp', relayProtocol: 'udp' };
    const srflx = { kind: 'srflx' as const, address: '198.51.100.7', port: 40000, protocol: 'udp', relayProtocol: null };
    s.path = { relayed: true, local: relay, remote: srflx };
    backend.emit({ type: 'stats', stats: s });
    expect(session.path).toBe('relayed');
    s.path = { relayed: false, local: srflx, remote: srflx };
    backend.emit({ type: 'stats', stats: s });
    expect(session.path).toBe('direct');
    // A snapshot before ICE picked a pair does not forget the last answer.
    s.path = null;
    backend.emit({ type: 'stats', stats: s });
    expect(session.path).toBe('direct');
  });
  it('marks a friend request for this call only, and the friendship once both asked', async () => {
    const { backend, session } = await ready();
    await session.match();
    backend.emit({ type: 'state', view: { state: 'in_call', peer: partner, friend: null } });
    await session.addFriend();
    expect(backend.calls).toContain('addFriend');
    backend.emit({ type: 'friend_requested' });
    expect(session.friendRequested).toBe(true);
    const friend = { id: 'f1', nickname: '민지', presence: 'in_call' as const, last_call_unix: 0 };
    backend.emit({ type: 'friend_added', friend });
    expect(session.callFriend).toBe('f1');
    expect(session.notice).toEqual({ kind: 'friendAdded', name: '민지' });
    // A new call starts unmarked; a late friendship from the last call does not mark it.
    await session.next();
    backend.emit({ type: 'state', view: { state: 'in_call', peer: { ...partner, nickname: 'Sam' }, friend: null } });
    expect(session.friendRequested).toBe(false);
    backend.emit({ type: 'friend_added', friend: { ...friend, id: 'f2', nickname: 'Yuki' } });
    expect(session.callFriend).toBeNull();
  });

  it('rings a friend, and says why a call did not happen', async () => {
    const { backend, session } = await ready();
    backend.emit({ type: 'friends', friends: [{ id: 'f1', nickname: '민지', presence: 'online', last_call_unix: 0 }] });
    expect(session.friends).toHaveLength(1);
    await session.ringFriend('f1');
    expect(backend.calls).toContain('callFriend:f1');
    expect(session.ringing).toBe('f1');
    backend.emit({ type: 'friend_call_failed', friend: 'f1', reason: 'declined' });
    expect(session.ringing).toBeNull();
    expect(session.notice).toEqual({ kind: 'friendCall', reason: 'declined', name: '민지' });
    await session.ringFriend('f1');
    await session.cancelRing();
    expect(backend.calls).toContain('cancelFriendCall:f1');
    expect(session.ringing).toBeNull();
  });

  it('answers a friend who rings, into a call marked as with a friend', async () => {
    const { backend, session } = await ready();
    backend.friends = [{ id: 'f1', nickname: '민지', presence: 'online', last_call_unix: 0 }];
    backend.emit({ type: 'friends', friends: backend.friends });
    backend.emit({ type: 'incoming_call', friend: 'f1' });
    expect(session.incoming).toBe('f1');
    // The ring stopping elsewhere (another window answered) clears it.
    backend.emit({ type: 'ring_ended', friend: 'f1' });
    expect(session.incoming).toBeNull();
    backend.emit({ type: 'incoming_call', friend: 'f1' });
    await session.answer(true);
    expect(backend.calls).toContain('answerFriendCall:f1:true');
    expect(session.incoming).toBeNull();
    expect(session.screen).toBe('call');
    expect(session.callFriend).toBe('f1');
    expect(session.peer?.nickname).toBe('민지');
  });

  it('removes and blocks friends through the backend', async () => {
    const { backend, session } = await ready();
    await session.removeFriend('f1');
    await session.blockFriend('f2');
    expect(backend.calls).toEqual(expect.arrayContaining(['removeFriend:f1', 'blockFriend:f2']));
  });
  it('shows the recovery phrase and takes another, refusing a bad one with a notice', async () => {
    const { backend, session } = await ready();
    expect(await session.exportIdentity()).toBe('3f2a-9c1e-7b5d-4e8f-a0b1-c2d3-e4f5-a6b7');
    expect(await session.importIdentity('3f2a 9c1e')).toBe(false);
    expect(session.notice).toEqual({ kind: 'command', error: { code: 'bad_recovery_phrase', message: 'not a recovery phrase' } });
    backend.emit({ type: 'friends', friends: [{ id: 'f1', nickname: 'x', presence: 'online', last_call_unix: 0 }] });
    expect(await session.importIdentity('0000-1111-2222-3333-4444-5555-6666-7777')).toBe(true);
    expect(session.friends).toEqual([]);
  });
  it('names a friend on this computer only, and forgets the name when it is cleared', async () => {
    const { backend, session } = await ready();
    backend.emit({ type: 'friends', friends: [{ id: 'f1', nickname: '민지', presence: 'online', last_call_unix: 0 }] });
    expect(session.friendName('f1')).toBe('민지');
    session.renameFriend('f1', '  Minji from Busan  ');
    expect(session.friendName('f1')).toBe('Minji from Busan');
    session.renameFriend('f1', 'x'.repeat(100));
    expect(session.friendName('f1')).toHaveLength(32);
    session.renameFriend('f1', '   ');
    expect(session.friendName('f1')).toBe('민지');
    expect(backend.calls.some((c) => c.includes('rename'))).toBe(false);
  });
});
