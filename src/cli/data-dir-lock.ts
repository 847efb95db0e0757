import { linkSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
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
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST' || attempt > 50) throw err;
      const owner = readOwner(path);
      if (owner && owner !== process.pid && isAlive(owner)) {
        throw new Error(
          `${dataDir} is in use by herald process ${owner}. Stop it first, or use another HERALD_DATA_DIR ` +
            `(several processes need a Postgres server: set DATABASE_URL).`,
        );
      }
      // Stale: its process is gone. Two processes may find it stale at once; reading the owner and
      // removing the file must then be one step, or the second would remove the file the first
      // just wrote after taking over. A takeover guard (created exclusively, like the pid file)
      // makes it one: only its holder re-reads and removes, and only a file that still names the
      // dead process.
      if (!removeStale(path, owner)) await new Promise((r) => setTimeout(r, 20));
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

/**
 * Removes the pid file if it still names `deadOwner`, under the takeover guard. False when another
 * process holds the guard (the caller retries). A guard left by a process that died inside these
 * few statements is stale after a few seconds and removed.
 */
function removeStale(path: string, deadOwner: number | undefined): boolean {
  const guard = `${path}.takeover`;
  try {
    createWithContent(guard, String(process.pid));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    try {
      if (Date.now() - statSync(guard).mtimeMs > 5_000) rmSync(guard, { force: true });
    } catch {
      /* removed meanwhile */
    }
    return false;
  }
  try {
    if (readOwner(path) === deadOwner) rmSync(path, { force: true });
  } finally {
    rmSync(guard, { force: true });
  }
  return true;
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
