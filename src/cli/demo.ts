import { SignJWT } from 'jose';
import type { Db } from '../storage/db.ts';
import { upsertUser } from '../storage/queries/users.ts';

/** The demo tenant `herald dev` puts in the directory so the example rules have recipients. */
export const DEMO = {
  tenantId: '0b5e7a1c-0000-4000-8000-000000000001',
  users: [
    { id: '0b5e7a1c-0000-4000-8000-00000000a0a0', name: 'Ana (actor)', email: 'ana@example.com', locale: 'es' },
    { id: '0b5e7a1c-0000-4000-8000-00000000b0b0', name: 'Bruno', email: 'bruno@example.com', phone: '+5491155550101', locale: 'es' },
    { id: '0b5e7a1c-0000-4000-8000-00000000c0c0', name: 'Carla', email: 'carla@example.com', phone: '+5491155550102', locale: 'en' },
  ],
} as const;

export async function seedDemoDirectory(db: Db): Promise<void> {
  for (const u of DEMO.users) {
    await upsertUser(db, u.id, {
      tenantId: DEMO.tenantId,
      name: u.name,
      email: u.email,
      phone: 'phone' in u ? u.phone : null,
      locale: u.locale,
      timezone: 'America/Argentina/Buenos_Aires',
    });
  }
}

export function mintUserToken(jwtSecret: string | Buffer, userId: string, ttl = '30d'): Promise<string> {
  const key = typeof jwtSecret === 'string' ? Buffer.from(jwtSecret) : jwtSecret;
  return new SignJWT({ role: 'authenticated' })
    .setProtectedHeader({ alg: 'HS256' })
    .setSubject(userId)
    .setIssuedAt()
    .setExpirationTime(ttl)
    .sign(key);
}
