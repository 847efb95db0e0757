import { mkdir } from 'node:fs/promises';
import { resolveSettings } from '../../config/settings.ts';
import { migrate } from '../../storage/migrate.ts';
import { openStorage } from '../../storage/open.ts';
import { pgliteDir } from '../runtime.ts';

export async function migrateCommand(env: NodeJS.ProcessEnv): Promise<number> {
  const settings = resolveSettings(env);
  if (!settings.databaseUrl) await mkdir(settings.dataDir, { recursive: true });
  const db = await openStorage({ databaseUrl: settings.databaseUrl, dataDir: settings.databaseUrl ? undefined : pgliteDir(settings.dataDir) });
  try {
    const applied = await migrate(db, (name) => console.log(`applied ${name}`));
    console.log(applied.length ? `migrated: ${applied.length} migration(s) applied` : 'up to date: nothing to apply');
    return 0;
  } finally {
    await db.close();
  }
}
