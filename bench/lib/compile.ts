import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import { build, type Plugin } from 'esbuild';
import { distIsFresh, ROOT } from '../../scripts/dist.mjs';

const OUT_DIR = `${ROOT}bench/.build/`;

/**
 * Imports of herald's sources become imports of dist/, the code `herald start` runs; the repo's
 * scripts stay where they are (they locate the repository from their own path).
 */
const srcToDist: Plugin = {
  name: 'src-to-dist',
  setup(b) {
    b.onResolve({ filter: /\.m?[tj]s$/ }, (args) => {
      const abs = resolve(args.resolveDir, args.path);
      if (abs.startsWith(`${ROOT}src/`)) return { path: `${ROOT}dist/${abs.slice(ROOT.length + 4).replace(/\.ts$/, '.js')}`, external: true };
      if (abs.startsWith(`${ROOT}scripts/`)) return { path: abs, external: true };
      return undefined;
    });
  },
};

/**
 * Compiles a bench entry to plain JavaScript that imports herald from dist/ (built first if any
 * source is newer), so the process that runs it carries no TypeScript loader and runs the same
 * code as `herald start`. Only the bench's own glue is bundled; packages stay imports.
 */
export async function compileEntry(entry: string): Promise<string> {
  if (!distIsFresh()) execFileSync(process.execPath, [`${ROOT}scripts/build.mjs`], { stdio: 'inherit' });
  mkdirSync(OUT_DIR, { recursive: true });
  const outfile = `${OUT_DIR}${basename(entry).replace(/\.ts$/, '.mjs')}`;
  await build({ entryPoints: [entry], outfile, bundle: true, format: 'esm', platform: 'node', target: 'node20', packages: 'external', plugins: [srcToDist], logLevel: 'warning' });
  return outfile;
}
