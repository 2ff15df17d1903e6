// Korean and English. The OS locale decides unless the user picked one.

export const MESSAGES = {
  en: {
    appName: 'Chingu',
    tagline: 'Meet someone new, face to face.',
    nickname: 'Nickname',
    languages: 'Languages',
    interests: 'Interests (comma separated)',
    server: 'Server',
    relayOnly: 'Hide my IP address (relay all media)',
    uiLanguage: 'App language',
    save: 'Save and continue',
    settings: 'Settings',
    match: 'Match',
    online: '{online} online, {waiting} waiting',
    searching: 'Finding someone…',
    waited: 'Waiting {seconds} s',
    cancel: 'Cancel',
    connecting: 'Connecting to {name}…',
    mute: 'Mute (M)',
    unmute: 'Unmute (M)',
    cameraOff: 'Camera off (V)',
    cameraOn: 'Camera on (V)',
    next: 'Next (N)',
    hangUp: 'Hang up (Esc)',
    chatPlaceholder: 'Message (Enter to send)',
    send: 'Send',
    report: 'Report',
    quality: 'Network quality {score} of 5',
    peerMuted: '{name} muted their microphone',
    peerCameraOff: '{name} turned their camera off',
    callEnded: 'Call ended',
    peerLeft: '{name} left the call',
    rate: 'How was this call?',
    block: 'Block',
    blocked: 'Blocked. You will not meet again.',
    reported: 'Thank you. The report was sent.',
    backToLobby: 'Back to lobby',
    serverUnreachable: 'Cannot reach the server. Retrying in {seconds} s…',
    needNickname: 'Pick a nickname to continue.',
    deviceError: 'The {device} is not available: {message}',
    reason_harassment: 'Harassment',
    reason_nudity: 'Nudity or sexual content',
    reason_hate: 'Hate speech',
    reason_spam: 'Spam or advertising',
    reason_underage: 'Appears to be under age',
    reason_violence: 'Violence or threats',
    reason_other: 'Something else',
  },
  ko: {
    appName: '친구',
    tagline: '새로운 친구를 얼굴 보며 만나요.',
    nickname: '닉네임',
    languages: '언어',
    interests: '관심사 (쉼표로 구분)',
    server: '서버',
    relayOnly: 'IP 주소 숨기기 (모든 미디어를 중계)',
    uiLanguage: '앱 언어',
    save: '저장하고 계속',
    settings: '설정',
    match: '매칭',
    online: '{online}명 접속 중, {waiting}명 대기 중',
    searching: '상대를 찾는 중…',
    waited: '{seconds}초 대기',
    cancel: '취소',
    connecting: '{name}님과 연결 중…',
    mute: '음소거 (M)',
    unmute: '음소거 해제 (M)',
    cameraOff: '카메라 끄기 (V)',
    cameraOn: '카메라 켜기 (V)',
    next: '다음 (N)',
    hangUp: '통화 종료 (Esc)',
    chatPlaceholder: '메시지 (Enter로 보내기)',
    send: '보내기',
    report: '신고',
    quality: '네트워크 품질 5점 중 {score}점',
    peerMuted: '{name}님이 마이크를 껐어요',
    peerCameraOff: '{name}님이 카메라를 껐어요',
    callEnded: '통화가 끝났어요',
    peerLeft: '{name}님이 통화를 떠났어요',
    rate: '이번 통화는 어땠나요?',
    block: '차단',
    blocked: '차단했어요. 다시 만나지 않아요.',
    reported: '신고가 접수되었어요. 고마워요.',
    backToLobby: '로비로 돌아가기',
    serverUnreachable: '서버에 연결할 수 없어요. {seconds}초 후 다시 시도해요…',
    needNickname: '계속하려면 닉네임을 정해 주세요.',
    deviceError: '{device}을(를) 사용할 수 없어요: {message}',
    reason_harassment: '괴롭힘',
    reason_nudity: '노출 또는 성적인 내용',
    reason_hate: '혐오 발언',
    reason_spam: '스팸 또는 광고',
    reason_underage: '미성년자로 보여요',
    reason_violence: '폭력 또는 위협',
    reason_other: '기타',
  },
} as const;

export type Locale = keyof typeof MESSAGES;
export type MessageKey = keyof (typeof MESSAGES)['en'];

export function pickLocale(setting: 'auto' | Locale, osLanguages: readonly string[]): Locale {
  if (setting !== 'auto') return setting;
  for (const tag of osLanguages) {
    const base = tag.toLowerCase().split('-')[0];
    if (base === 'ko' || base === 'en') return base;
  }
  return 'en';
}

export function translate(locale: Locale, key: MessageKey, vars: Record<string, string | number> = {}): string {
  const template: string = MESSAGES[locale][key];
  return template.replace(/\{(\w+)\}/g, (_, name: string) => String(vars[name] ?? `{${name}}`));
}
