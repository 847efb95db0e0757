import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * PGlite's data directory must have one owner: two processes on it would corrupt it. A pid file,
 * created exclusively, refuses a second process with a clear message; a stale file (dead pid) is
 * taken over.
 */
export async function acquireDataDirLock(dataDir: string): Promise<void> {
  mkdirSync(dataDir, { recursive: true });
  const path = join(dataDir, 'herald.pid');
  for (let attempt = 0; ; attempt++) {
    try {
      writeFileSync(path, String(process.pid), { flag: 'wx' });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 0) throw err;
      const pid = Number(readFileSync(path, 'utf8').trim());
      if (pid && pid !== process.pid && isAlive(pid)) {
        throw new Error(
          `${dataDir} is in use by herald process ${pid}. Stop it first, or use another HERALD_DATA_DIR ` +
            `(several processes need a Postgres server: set DATABASE_URL).`,
        );
      }
      rmSync(path, { force: true }); // stale: its process is gone
    }
  }
  process.once('exit', () => {
    try {
      if (readFileSync(path, 'utf8').trim() === String(process.pid)) rmSync(path);
    } catch {
      /* already gone */
    }
  });
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
