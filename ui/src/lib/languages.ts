// Languages people pick by name (their own and the UI's), stored as the BCP 47 codes the
// protocol carries; and interests offered as chips, stored as one English key whatever
// the UI language, so that people who use the app in Korean and in English still match
// on them.

/** The languages offered, most spoken by Chingu's users first. */
export const LANGUAGE_CODES = [
  'ko', 'en', 'ja', 'zh', 'es', 'fr', 'de', 'pt', 'ru', 'vi', 'th', 'id', 'tl', 'ms', 'hi',
  'ar', 'tr', 'it', 'nl', 'pl', 'uk', 'sv', 'no', 'da', 'fi', 'cs', 'el', 'he', 'fa', 'ro',
  'hu', 'bn', 'ur', 'sw', 'mn',
] as const;

function displayName(code: string, locale: string): string {
  try {
    return new Intl.DisplayNames([locale], { type: 'language' }).of(code) ?? code;
  } catch {
    return code;
  }
}

/** The language's name in itself: 한국어, English, 日本語. */
export function nativeName(code: string): string {
  return displayName(code, code);
}

/** The language's name in the UI's language: 일본어, Japanese. */
export function localName(code: string, uiLocale: string): string {
  return displayName(code, uiLocale);
}

/** "日本語 · Japanese", or just the one name when both are the same. */
export function languageLabel(code: string, uiLocale: string): string {
  const own = nativeName(code);
  const local = localName(code, uiLocale);
  return own.toLocaleLowerCase() === local.toLocaleLowerCase() ? own : `${own} · ${local}`;
}

/** The offered languages matching what was typed (code, own name or UI name), in order. */
export function searchLanguages(query: string, uiLocale: string): string[] {
  const q = query.trim().toLocaleLowerCase();
  if (!q) return [...LANGUAGE_CODES];
  return LANGUAGE_CODES.filter(
    (code) =>
      code.startsWith(q) ||
      nativeName(code).toLocaleLowerCase().includes(q) ||
      localName(code, uiLocale).toLocaleLowerCase().includes(q),
  );
}

/** The system's languages that are offered (base codes, in the system's order), else Korean. */
export function systemLanguages(osLanguages: readonly string[]): string[] {
  const offered = new Set<string>(LANGUAGE_CODES);
  const codes: string[] = [];
  for (const tag of osLanguages) {
    const base = tag.toLowerCase().split('-')[0];
    if (offered.has(base) && !codes.includes(base)) codes.push(base);
  }
  return codes.length ? codes.slice(0, 2) : ['ko'];
}

/** Interests offered as chips; the UI shows each in its language (`interest_<key>`). */
export const SUGGESTED_INTERESTS = [
  'music', 'movies', 'travel', 'games', 'sports', 'food', 'books', 'kpop', 'anime', 'art',
  'tech', 'pets', 'fitness', 'languages',
] as const;

export type SuggestedInterest = (typeof SUGGESTED_INTERESTS)[number];

export function isSuggested(interest: string): interest is SuggestedInterest {
  return (SUGGESTED_INTERESTS as readonly string[]).includes(interest);
}
