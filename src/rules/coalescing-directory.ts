import type { DeliveryLookups } from './plan-channels.ts';
import type { Directory } from './recipients.ts';

type Lookups = Directory & DeliveryLookups;

/**
 * A directory for planning many events at once (an expansion batch): lookups by user id asked in
 * the same turn of the event loop are merged into one query, and every query runs one at a time
 * (they share one transaction's connection). A batch of 100 events then costs a handful of
 * directory queries instead of a few hundred.
 */
export function coalescingDirectory(inner: Lookups): Lookups {
  let chain: Promise<unknown> = Promise.resolve();
  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const p = chain.then(fn);
    chain = p.catch(() => {});
    return p;
  };

  function byUserIds<T>(fetch: (ids: string[]) => Promise<T>, pick: (all: T, ids: Set<string>) => T) {
    let pending: { ids: string[]; resolve(v: T): void; reject(e: unknown): void }[] = [];
    const flush = () => {
      const batch = pending;
      pending = [];
      const all = [...new Set(batch.flatMap((b) => b.ids.map((id) => id.toLowerCase())))];
      serial(() => fetch(all)).then(
        (result) => batch.forEach((b) => b.resolve(pick(result, new Set(b.ids.map((id) => id.toLowerCase()))))),
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

  return {
    findUsers: byUserIds(inner.findUsers, (all, ids) => all.filter((u) => ids.has(u.id.toLowerCase()))),
    preferences: byUserIds(inner.preferences, (all, ids) => all.filter((p) => ids.has(p.user_id.toLowerCase()))),
    quietHolds: byUserIds(
      inner.quietHolds,
      (all, ids) => new Map([...all].filter(([id]) => ids.has(id.toLowerCase()))),
    ),
    tenantMembers: (tenantId) => once(`tenant:${tenantId}`, () => inner.tenantMembers(tenantId)),
    webhookEndpoints: (type, tenantId) => once(`hooks:${type}:${tenantId}`, () => inner.webhookEndpoints(type, tenantId)),
  };
}
