#!/usr/bin/env node
// Compiles src/ into dist/ (tsconfig.build.json) and copies what tsc does not: the SQL migrations.
// bin/herald.js runs dist/ when this build is newer than every source file, else the sources.
import { execFileSync } from 'node:child_process';
import { cpSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const started = performance.now();
rmSync(`${root}dist`, { recursive: true, force: true });
execFileSync(process.execPath, [tsc, '-p', `${root}tsconfig.build.json`], { stdio: 'inherit' });
cpSync(`${root}src/storage/migrations`, `${root}dist/storage/migrations`, { recursive: true });
writeFileSync(`${root}dist/.built`, `${new Date().toISOString()}\n`);
console.error(`herald: built dist/ in ${Math.round(performance.now() - started)} ms`);
