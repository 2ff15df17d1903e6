import { describe, expect, it } from 'vitest';
import { translate } from './i18n';
import { noticeText } from './notice';

const en = (key: Parameters<typeof translate>[1], vars?: Record<string, string | number>) => translate('en', key, vars);
const ko = (key: Parameters<typeof translate>[1], vars?: Record<string, string | number>) => translate('ko', key, vars);

describe('notices', () => {
  it('speak the user language for codes the UI knows', () => {
    const notice = { kind: 'command', error: { code: 'no_recent_call', message: 'there is no recent call' } } as const;
    expect(noticeText(notice, en)).toBe('There is no recent call to report, rate or block.');
    expect(noticeText(notice, ko)).toBe('신고하거나 평가하거나 차단할 최근 통화가 없어요.');
    expect(noticeText({ kind: 'server', code: 'overloaded', message: 'busy' }, ko)).toBe('서버가 바빠요. 잠시 후 다시 시도해 주세요.');
  });

  it('fall back to the message the shell or server sent', () => {
    expect(noticeText({ kind: 'command', error: { code: 'internal', message: 'a thread could not start' } }, en)).toBe(
      'a thread could not start',
    );
    expect(noticeText({ kind: 'server', code: 'unknown_call', message: 'abc is not one of your recent calls' }, en)).toBe(
      'abc is not one of your recent calls',
    );
  });

  it('name the device in the user language', () => {
    expect(noticeText({ kind: 'device', device: 'microphone', message: 'unplugged' }, ko)).toBe('마이크 사용 불가: unplugged');
  });
});
