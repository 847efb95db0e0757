import type { DeliveryLookups } from './plan-channels.ts';
import type { Directory } from './recipients.ts';
import type { Recipient } from './types.ts';

type Lookups = Directory & DeliveryLookups;
type Preferences = Awaited<ReturnType<DeliveryLookups['preferences']>>;

/** A directory that can fetch users and their preferences in one round trip. */
interface Prefetching {
  findUsersWithPreferences(ids: string[]): Promise<{ users: Recipient[]; preferences: Preferences }>;
}

/** Groups rows by user id (lower case); the cut for some ids keeps the rows' original order. */
function rowsByUser<R>(all: R[], userOf: (r: R) => string): (ids: string[]) => R[] {
  const at = new Map<string, number[]>();
  all.forEach((r, i) => {
    const id = userOf(r).toLowerCase();
    const list = at.get(id);
    if (list) list.push(i);
    else at.set(id, [i]);
  });
  return (ids) => {
    const idx = ids.flatMap((id) => at.get(id) ?? []);
    if (ids.length > 1) idx.sort((a, b) => a - b);
    return idx.map((i) => all[i]!);
  };
}

/**
 * A directory for planning many events at once (an expansion batch): lookups by user id asked in
 * the same turn of the event loop are merged into one query, and every query runs one at a time
 * (they share one transaction's connection). A batch of 100 events then costs a handful of
 * directory queries instead of a few hundred.
 */
export function coalescingDirectory(inner: Lookups & Partial<Prefetching>): Lookups {
  let chain: Promise<unknown> = Promise.resolve();
  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const p = chain.then(fn);
    chain = p.catch(() => {});
    return p;
  };

  /**
   * `picker` indexes one merged answer once and returns how to cut it per caller (a batch has a
   * caller per event: filtering the whole answer for each was quadratic in the batch size).
   */
  function byUserIds<T>(fetch: (ids: string[]) => Promise<T>, picker: (all: T) => (ids: string[]) => T) {
    let pending: { ids: string[]; resolve(v: T): void; reject(e: unknown): void }[] = [];
    const flush = () => {
      const batch = pending;
      pending = [];
      const all = [...new Set(batch.flatMap((b) => b.ids.map((id) => id.toLowerCase())))];
      serial(() => fetch(all)).then(
        (result) => {
          const pick = picker(result);
          for (const b of batch) b.resolve(pick([...new Set(b.ids.map((id) => id.toLowerCase()))]));
        },
        (err) => batch.forEach((b) => b.reject(err)),
      );
    };
    return (ids: string[]) =>
      new Promise<T>((resolve, reject) => {
        pending.push({ ids, resolve, reject });
        // setImmediate, not a microtask: every plan in the batch reaches its lookup first.
        if (pending.length === 1) setImmediate(flush);
      });
  }

  const memo = new Map<string, Promise<unknown>>();
  const once = <T>(key: string, fn: () => Promise<T>): Promise<T> => {
    if (!memo.has(key)) memo.set(key, serial(fn));
    return memo.get(key) as Promise<T>;
  };

  // Users found come with their preferences when the directory can send both at once (planning
  // asks for the preferences of nearly every recipient right after finding it): the preferences of
  // ids asked for already, by lower-cased id, so a later lookup of only those costs no round trip.
  const prefetched = new Map<string, Preferences>();
  const findUsers = async (ids: string[]): Promise<Recipient[]> => {
    if (!inner.findUsersWithPreferences) return inner.findUsers(ids);
    const { users, preferences } = await inner.findUsersWithPreferences(ids);
    for (const id of ids) prefetched.set(id, []);
    for (const p of preferences) prefetched.get(p.user_id.toLowerCase())?.push(p);
    return users;
  };
  const preferences = (ids: string[]): Promise<Preferences> =>
    ids.every((id) => prefetched.has(id)) ? Promise.resolve(ids.flatMap((id) => prefetched.get(id)!)) : inner.preferences(ids);

  return {
    findUsers: byUserIds(findUsers, (all) => rowsByUser(all, (u) => u.id)),
    preferences: byUserIds(preferences, (all) => rowsByUser(all, (p) => p.user_id)),
    quietHolds: byUserIds(inner.quietHolds, (all) => {
      const byId = new Map([...all].map(([id, hold]) => [id.toLowerCase(), [id, hold] as const]));
      return (ids) => new Map(ids.flatMap((id) => (byId.has(id) ? [byId.get(id)!] : [])));
    }),
    tenantMembers: (tenantId) => once(`tenant:${tenantId}`, () => inner.tenantMembers(tenantId)),
    webhookEndpoints: (type, tenantId) => once(`hooks:${type}:${tenantId}`, () => inner.webhookEndpoints(type, tenantId)),
  };
}
