import { randomUUID } from 'node:crypto';
import type { TestHerald } from './herald.ts';

/** A tenant with users in the directory; ids are random so tests never collide. */
export async function seedTenant(h: TestHerald, names: string[] = ['actor', 'b', 'c']) {
  const tenantId = randomUUID();
  const users: Record<string, string> = {};
  for (const name of names) {
    const id = randomUUID();
    users[name] = id;
    const res = await h.post(`/api/users/${id}`, { tenantId, name, locale: 'es' }, { method: 'PUT' });
    if (res.status !== 201) throw new Error(`seeding user failed: ${res.status} ${await res.text()}`);
  }
  return { tenantId, users };
}

export const obraCompleted = (tenantId: string, actorId: string, name = 'Escuela N° 42') => ({
  type: 'obra.completed',
  ctx: { tenantId, actorId, obra: { id: 'obra-42', name, percentage: 100 } },
});
