const E164 = /^\+[1-9]\d{7,14}$/;

/**
 * Normalises a phone number to E.164 (+<country code><number>), as the WhatsApp Cloud API wants
 * it: spaces, dots, dashes and parentheses are dropped and a leading 00 becomes +. A number without
 * its country code cannot be normalised safely and gives null (the delivery is skipped, with why).
 */
export function toE164(raw: string | null | undefined): string | null {
  if (!raw) return null;
  let s = raw.trim().replace(/[\s().-]/g, '');
  if (s.startsWith('00')) s = `+${s.slice(2)}`;
  return E164.test(s) ? s : null;
}
