import { isUuid } from '../ids.ts';
import type { Recipient, RecipientSelection, RecipientSelectors } from './types.ts';

/** Looks users up in the recipient directory (implemented on storage). */
export interface Directory {
  findUsers(ids: string[]): Promise<Recipient[]>;
  tenantMembers(tenantId: string): Promise<Recipient[]>;
}

export interface RecipientDecision {
  userId: string;
  included: boolean;
  reason: string;
}

const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : v === undefined || v === null ? [] : [v]);

export const selectors: RecipientSelectors = {
  users: (ids, opts) => ({ kind: 'users', ids: list(ids), except: list(opts?.except) }),
  tenant: (tenantId, opts) => ({ kind: 'tenant', tenantId, except: list(opts?.except) }),
};

const bare = (id: string): Recipient => ({
  id,
  tenantId: null,
  email: null,
  phone: null,
  locale: null,
  timezone: null,
  name: null,
  inDirectory: false,
});

/**
 * Resolves selections to recipients, recording why each candidate was included or skipped, so the
 * dry run can explain every decision. A user selected twice receives one notification.
 */
export async function resolveRecipients(
  selections: RecipientSelection[],
  directory: Directory,
): Promise<{ recipients: Recipient[]; decisions: RecipientDecision[] }> {
  const recipients = new Map<string, Recipient>();
  const decisions: RecipientDecision[] = [];
  const decide = (userId: string, included: boolean, reason: string) => decisions.push({ userId, included, reason });

  for (const sel of selections) {
    const except = new Set(sel.except.filter(isUuid).map((s) => s.toLowerCase()));
    let candidates: { recipient: Recipient; why: string }[];
    if (sel.kind === 'tenant') {
      if (!isUuid(sel.tenantId)) {
        decide(String(sel.tenantId ?? ''), false, 'tenant id is not a uuid: no tenant members selected');
        continue;
      }
      const members = await directory.tenantMembers(sel.tenantId.toLowerCase());
      if (members.length === 0) decide(sel.tenantId, false, 'tenant has no users in the directory');
      candidates = members.map((m) => ({ recipient: m, why: `member of tenant ${sel.tenantId}` }));
    } else {
      const ids: string[] = [];
      for (const raw of sel.ids) {
        if (raw === null || raw === undefined || raw === '') continue;
        if (!isUuid(raw)) decide(String(raw), false, 'not a valid user id (uuid expected)');
        else ids.push(raw.toLowerCase());
      }
      const found = new Map((await directory.findUsers(ids)).map((u) => [u.id, u]));
      candidates = ids.map((id) => {
        const u = found.get(id);
        return u
          ? { recipient: u, why: 'named in the event' }
          : { recipient: bare(id), why: 'named in the event (not in the directory: default locale)' };
      });
    }
    for (const { recipient, why } of candidates) {
      if (except.has(recipient.id)) decide(recipient.id, false, 'excluded by the rule (e.g. the actor)');
      else if (recipients.has(recipient.id)) decide(recipient.id, false, 'duplicate: already a recipient');
      else {
        recipients.set(recipient.id, recipient);
        decide(recipient.id, true, why);
      }
    }
  }
  return { recipients: [...recipients.values()], decisions };
}
