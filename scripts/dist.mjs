// Whether dist/ (scripts/build.mjs) is newer than every file under src/. Used by bin/herald.js to
// run the compiled server only when it cannot be stale, and by the benchmarks.
import { readdirSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));

function newestMtime(dir) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = `${dir}/${entry.name}`;
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(path) : statSync(path).mtimeMs);
  }
  return newest;
}

export function distIsFresh() {
  let built;
  try {
    built = statSync(`${ROOT}dist/.built`).mtimeMs;
  } catch {
    return false;
  }
  return built >= newestMtime(`${ROOT}src`);
}
