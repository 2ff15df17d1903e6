import { describe, expect, it } from 'vitest';
import { LANGUAGE_CODES, languageLabel, nativeName, searchLanguages, systemLanguages } from './languages';

describe('languages', () => {
  it('names a language in itself and in the UI language', () => {
    expect(nativeName('ko')).toBe('한국어');
    expect(nativeName('ja')).toBe('日本語');
    expect(languageLabel('ja', 'en')).toBe('日本語 · Japanese');
    expect(languageLabel('ja', 'ko')).toBe('日本語 · 일본어');
    expect(languageLabel('en', 'en')).toBe('English');
  });

  it('finds languages by code, own name or UI name', () => {
    expect(searchLanguages('', 'en')).toEqual([...LANGUAGE_CODES]);
    expect(searchLanguages('japan', 'en')).toEqual(['ja']);
    expect(searchLanguages('일본', 'ko')).toEqual(['ja']);
    expect(searchLanguages('español', 'en')).toEqual(['es']);
    expect(searchLanguages('ko', 'en')[0]).toBe('ko');
    expect(searchLanguages('zzz', 'en')).toEqual([]);
  });

  it('preselects the system languages that are offered, as base codes', () => {
    expect(systemLanguages(['ko-KR', 'en-US', 'en-GB'])).toEqual(['ko', 'en']);
    expect(systemLanguages(['es-MX'])).toEqual(['es']);
    expect(systemLanguages(['x-klingon'])).toEqual(['ko']);
    expect(systemLanguages([])).toEqual(['ko']);
  });
});
