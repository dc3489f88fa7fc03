import { type MessageKey, zh } from "./zh";

export type { MessageKey };

const catalogue: Record<MessageKey, string> = zh;

/** The text of `key` with `{name}` placeholders filled (values are plain text). */
export function t(key: MessageKey, vars: Record<string, string | number> = {}): string {
  const text = catalogue[key] ?? key;
  return text.replace(/\{(\w+)\}/g, (whole, name: string) => (name in vars ? String(vars[name]) : whole));
}
