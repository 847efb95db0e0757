/** A preference row as the rules see it. */
export interface Preference {
  channel: string;
  scope: string;
  enabled: boolean;
}

/**
 * Whether a user wants `channel` for an event of `type` (in `category`). The most specific
 * preference wins: the channel before '*', the event type before the category before '*'.
 * No matching preference means yes.
 */
export function allowedBy(prefs: Preference[], channel: string, type: string, category: string | undefined): { allowed: boolean; by?: Preference } {
  const scopes = [type, ...(category ? [`category:${category}`] : []), '*'];
  for (const ch of [channel, '*']) {
    for (const scope of scopes) {
      const p = prefs.find((x) => x.channel === ch && x.scope === scope);
      if (p) return { allowed: p.enabled, by: p };
    }
  }
  return { allowed: true };
}

export const describePreference = (p: Preference) => `${p.channel === '*' ? 'all channels' : p.channel} for ${p.scope === '*' ? 'everything' : p.scope}`;
