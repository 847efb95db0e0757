import { linkSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * PGlite's data directory must have one owner: two processes on it would corrupt it (a `migrate`
 * beside a running `dev` aborted PGlite and once left a directory no later `dev` could open). Every
 * command that opens the directory (`dev`, `start`, `worker`, `migrate`) takes this lock first. A
 * pid file, created exclusively, refuses a second process with a clear message; a stale file (dead
 * pid) is taken over. Returns the release (also run at exit, for the long-running commands).
 */
export async function acquireDataDirLock(dataDir: string): Promise<() => void> {
  mkdirSync(dataDir, { recursive: true });
  const path = join(dataDir, 'herald.pid');
  for (let attempt = 0; ; attempt++) {
    try {
      createWithContent(path, String(process.pid));
      break;
    } catch (err) {
      // A second EEXIST: another process took the stale file over at the same moment; read who.
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 1) throw err;
      const owner = readOwner(path);
      if (owner && owner !== process.pid && isAlive(owner)) {
        throw new Error(
          `${dataDir} is in use by herald process ${owner}. Stop it first, or use another HERALD_DATA_DIR ` +
            `(several processes need a Postgres server: set DATABASE_URL).`,
        );
      }
      // Stale: its process is gone. Removed only if it still names that process, so a file another
      // process just wrote after taking it over is not removed under it.
      if (readOwner(path) === owner) rmSync(path, { force: true });
    }
  }
  const release = () => {
    try {
      if (readOwner(path) === process.pid) rmSync(path);
    } catch {
      /* already gone */
    }
    process.off('exit', release);
  };
  process.once('exit', release);
  return release;
}

/** Creates `path` holding `content`, or fails with EEXIST: a reader never sees it empty (link is atomic). */
function createWithContent(path: string, content: string): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, content);
  try {
    linkSync(tmp, path);
  } finally {
    rmSync(tmp, { force: true });
  }
}

function readOwner(path: string): number | undefined {
  try {
    return Number(readFileSync(path, 'utf8').trim()) || undefined;
  } catch {
    return undefined; // removed meanwhile
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
