import { existsSync } from 'node:fs';
import { rm, writeFile } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, resolve } from 'node:path';
import { pathToFileURL, fileURLToPath } from 'node:url';
import { compileRules, ConfigError, type CompiledRules } from '../rules/compile.ts';
import type { HeraldConfig } from '../rules/types.ts';

export const EXAMPLE_CONFIG = fileURLToPath(new URL('../../examples/herald.config.ts', import.meta.url));
const CANDIDATES = ['herald.config.ts', 'herald.config.mts', 'herald.config.js', 'herald.config.mjs'];

export interface LoadedConfig {
  path: string;
  isExample: boolean;
  rules: CompiledRules;
}

/** Finds the user's config: an explicit path, else herald.config.* in `cwd`, else the example. */
export function findConfig(explicit: string | undefined, cwd = process.cwd()): { path: string; isExample: boolean } {
  if (explicit) {
    const path = resolve(cwd, explicit);
    if (!existsSync(path)) throw new ConfigError(`config file not found: ${path}`);
    return { path, isExample: false };
  }
  for (const name of CANDIDATES) {
    const path = resolve(cwd, name);
    if (existsSync(path)) return { path, isExample: false };
  }
  return { path: EXAMPLE_CONFIG, isExample: true };
}

/**
 * Imports and compiles a config. TypeScript configs are bundled with esbuild first (see
 * importTypeScript), so users need no build step and the server needs no TypeScript loader.
 */
export async function loadConfig(explicit?: string, cwd?: string): Promise<LoadedConfig> {
  const { path, isExample } = findConfig(explicit, cwd);
  let mod: { default?: HeraldConfig };
  try {
    mod = /\.[mc]?ts$/.test(path) ? await importTypeScript(path) : await import(pathToFileURL(path).href);
  } catch (err) {
    throw new ConfigError(`could not load ${path}: ${(err as Error).message}`);
  }
  // A config compiled as CommonJS arrives wrapped once more: { default: { default: config } }.
  const exported = mod.default as { events?: unknown; default?: HeraldConfig } | undefined;
  const config = exported && exported.events === undefined && exported.default ? exported.default : (exported as HeraldConfig | undefined);
  if (!config) throw new ConfigError(`${path} has no default export; use export default defineConfig({...})`);
  return { path, isExample, rules: compileRules(config) };
}

let bundling = 0;

/** herald's public API as this process runs it: dist/index.js when compiled, else the source. */
const RUNNING_ENTRY = new URL(import.meta.url.endsWith('.ts') ? '../index.ts' : '../index.js', import.meta.url).href;
/** The same API's source file, which a config inside this repository (the example) imports. */
const SOURCE_ENTRY = fileURLToPath(new URL('../../src/index.ts', import.meta.url));

/**
 * Loads a TypeScript config the way Vite loads vite.config.ts: esbuild bundles it with the user's
 * own TypeScript modules into one ES module, written beside the config so that its package
 * imports resolve from the user's node_modules, imported, and deleted. A registered loader (tsx)
 * would cost the server a hooks thread and ~30 MB for the whole process lifetime, for one file
 * read once. The bundle is ESM whatever the project's package.json says, so CommonJS projects
 * work too. Where the config's directory is not writable, tsx loads it instead.
 */
async function importTypeScript(path: string): Promise<{ default?: HeraldConfig }> {
  const esbuild = await import('esbuild');
  bundling++;
  let code: string;
  try {
    const result = await esbuild.build({
      entryPoints: [path],
      bundle: true,
      format: 'esm',
      platform: 'node',
      target: 'node20',
      write: false,
      logLevel: 'silent',
      sourcemap: 'inline',
      plugins: [packagesStayImports],
    });
    code = result.outputFiles[0]!.text;
  } catch (err) {
    const errors = (err as { errors?: { text: string; location?: { file: string; line: number; column: number } | null }[] }).errors;
    if (!errors?.length) throw err;
    throw new Error(errors.map((e) => (e.location ? `${e.location.file}:${e.location.line}:${e.location.column}: ${e.text}` : e.text)).join('; '));
  } finally {
    // The esbuild service is a child process; a config is loaded once, so free it afterwards.
    if (--bundling === 0) await esbuild.stop();
  }
  const out = join(dirname(path), `.${basename(path)}.${process.pid}.${Date.now()}.${Math.random().toString(36).slice(2, 8)}.mjs`);
  try {
    await writeFile(out, code);
  } catch (err) {
    // A read-only application directory (a container running as a non-root user, a read-only
    // root filesystem): load through tsx's scoped loader instead, which needs no file.
    if (!['EACCES', 'EPERM', 'EROFS'].includes((err as NodeJS.ErrnoException).code ?? '')) throw err;
    const { tsImport } = await import('tsx/esm/api');
    return tsImport(pathToFileURL(path).href, import.meta.url);
  }
  try {
    return await import(pathToFileURL(out).href);
  } finally {
    await rm(out, { force: true });
  }
}

/**
 * Packages stay imports, loaded by Node once and shared with herald. `herald` itself (by package
 * name, or the example's relative import of src/index.ts) becomes an import of the very module
 * this process runs, so the config's NonRetriableError is the engine's, and a compiled server
 * never has to load TypeScript.
 */
const packagesStayImports = {
  name: 'packages-stay-imports',
  setup(build: { onResolve(opts: { filter: RegExp }, cb: (args: { path: string; resolveDir: string }) => { path?: string; external: true } | undefined): void }) {
    build.onResolve({ filter: /.*/ }, ({ path, resolveDir }) => {
      if (path === 'herald') return { path: RUNNING_ENTRY, external: true };
      if (path.startsWith('.') || isAbsolute(path)) return resolve(resolveDir, path) === SOURCE_ENTRY ? { path: RUNNING_ENTRY, external: true } : undefined;
      return { external: true };
    });
  },
};
