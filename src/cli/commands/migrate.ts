import { resolveSettings } from '../../config/settings.ts';
import { migrate } from '../../storage/migrate.ts';
import { openStorage } from '../../storage/open.ts';
import { BOOTSTRAP_SQL } from '../../storage/queries/roles.ts';
import { acquireDataDirLock } from '../data-dir-lock.ts';
import { dbTimeouts, pgliteDir } from '../runtime.ts';

export async function migrateCommand(env: NodeJS.ProcessEnv, opts: { printBootstrap?: boolean } = {}): Promise<number> {
  if (opts.printBootstrap) {
    process.stdout.write(BOOTSTRAP_SQL); // for a superuser to run once; touches no database itself
    return 0;
  }
  const settings = resolveSettings(env);
  // PGlite: the directory's lock, as `dev` and `start` take it; a second process opening a PGlite
  // directory aborts it. Postgres serialises migrations with its own advisory lock (storage/migrate.ts).
  const release = settings.databaseUrl ? undefined : await acquireDataDirLock(settings.dataDir);
  try {
    const db = await openStorage({
      databaseUrl: settings.databaseUrl,
      dataDir: settings.databaseUrl ? undefined : pgliteDir(settings.dataDir),
      ...dbTimeouts(settings), // migrations themselves run without a statement timeout (withAdvisoryLock)
    });
    try {
      const applied = await migrate(db, (name) => console.log(`applied ${name}`));
      console.log(applied.length ? `migrated: ${applied.length} migration(s) applied` : 'up to date: nothing to apply');
      return 0;
    } finally {
      await db.close();
    }
  } finally {
    release?.();
  }
}
