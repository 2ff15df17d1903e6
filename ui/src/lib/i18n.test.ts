import { describe, expect, it } from 'vitest';
import { MESSAGES, pickLocale, translate } from './i18n';

describe('i18n', () => {
  it('has every message in Korean and English with the same placeholders', () => {
    const en = MESSAGES.en as Record<string, string>;
    const ko = MESSAGES.ko as Record<string, string>;
    expect(Object.keys(ko).sort()).toEqual(Object.keys(en).sort());
    const vars = (s: string) => (s.match(/\{\w+\}/g) ?? []).sort();
    for (const key of Object.keys(en)) {
      expect(vars(ko[key]), key).toEqual(vars(en[key]));
    }
  });

  it('follows the OS locale unless the user chose', () => {
    expect(pickLocale('auto', ['ko-KR', 'en-US'])).toBe('ko');
    expect(pickLocale('auto', ['fr-FR', 'en-GB'])).toBe('en');
    expect(pickLocale('auto', ['fr-FR'])).toBe('en');
    expect(pickLocale('en', ['ko-KR'])).toBe('en');
  });

  it('fills placeholders', () => {
    expect(translate('en', 'online', { online: 12, waiting: 3 })).toBe('12 online, 3 waiting');
    expect(translate('ko', 'waited', { seconds: 5 })).toBe('5초 대기');
  });
});
