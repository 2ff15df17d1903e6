import type { MessageKey } from '../lib/i18n';

export type Translate = (key: MessageKey, vars?: Record<string, string | number>) => string;
