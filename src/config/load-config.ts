import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL, fileURLToPath } from 'node:url';
import { tsImport } from 'tsx/esm/api';
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
 * Imports and compiles a config. TypeScript configs load through tsx, so users need no build step.
 */
export async function loadConfig(explicit?: string, cwd?: string): Promise<LoadedConfig> {
  const { path, isExample } = findConfig(explicit, cwd);
  let mod: { default?: HeraldConfig };
  try {
    // tsImport loads TypeScript as ESM whatever the project's package.json says (CommonJS
    // projects included), and without the caller having registered a loader.
    mod = /\.[mc]?ts$/.test(path) ? await tsImport(pathToFileURL(path).href, import.meta.url) : await import(pathToFileURL(path).href);
  } catch (err) {
    throw new ConfigError(`could not load ${path}: ${(err as Error).message}`);
  }
  // A config compiled as CommonJS arrives wrapped once more: { default: { default: config } }.
  const exported = mod.default as { events?: unknown; default?: HeraldConfig } | undefined;
  const config = exported && exported.events === undefined && exported.default ? exported.default : (exported as HeraldConfig | undefined);
  if (!config) throw new ConfigError(`${path} has no default export; use export default defineConfig({...})`);
  return { path, isExample, rules: compileRules(config) };
}
