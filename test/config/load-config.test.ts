// herald-test: no database (runs once, not once per backend: scripts/test.mjs)
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, test } from 'node:test';
import { loadConfig } from '../../src/config/load-config.ts';
import { NonRetriableError, RetryAfterError } from '../../src/errors.ts';
import { ConfigError } from '../../src/rules/compile.ts';

const REPO = fileURLToPath(new URL('../../', import.meta.url));

// A user's project: herald installed in node_modules (a link to this repository), a TypeScript
// config that imports herald by package name and a TypeScript helper of its own.
let project = '';
before(async () => {
  project = await mkdtemp(join(tmpdir(), 'herald-config-'));
  await mkdir(join(project, 'node_modules'));
  await symlink(REPO, join(project, 'node_modules', 'herald'), 'dir');
});
after(() => rm(project, { recursive: true, force: true }));

async function writeProject(dir: string, files: Record<string, string>) {
  await mkdir(dir, { recursive: true });
  for (const [name, text] of Object.entries(files)) await writeFile(join(dir, name), text);
}

const CONFIG = `
import { defineConfig, rule, z } from 'herald';
import { title, type Greeting } from './templates.ts';
const greeting: Greeting = { text: title };
export default defineConfig({
  events: {
    'user.welcomed': rule({
      schema: z.object({ userId: z.string() }),
      recipients: (ctx, to) => to.users(ctx.userId),
      inApp: { title: greeting.text },
    }),
  },
});
`;

test('a TypeScript config loads with its own TypeScript imports and herald by package name, and leaves no file behind', async () => {
  await writeProject(project, {
    'herald.config.ts': CONFIG,
    'templates.ts': `export interface Greeting { text: string }\nexport const title: string = 'Welcome, {{ ctx.userId }}';\n`,
  });
  const loaded = await loadConfig(undefined, project);
  assert.equal(loaded.isExample, false);
  assert.deepEqual([...loaded.rules.rules.keys()], ['user.welcomed']);
  assert.deepEqual((await readdir(project)).sort(), ['herald.config.ts', 'node_modules', 'templates.ts']);
});

test("the config's herald is the module this process runs: its NonRetriableError is the engine's", async () => {
  const dir = join(project, 'identity');
  await writeProject(dir, {
    'herald.config.ts': `import { defineConfig, workflow, NonRetriableError } from 'herald';
export default defineConfig({ events: {}, workflows: { w: workflow({ async run() { throw new NonRetriableError('bad input'); } }) } });
`,
  });
  const loaded = await loadConfig(undefined, dir);
  const run = loaded.rules.workflows.byName.get('w')!.definition.run as () => Promise<unknown>;
  await assert.rejects(run(), (err: unknown) => Object.getPrototypeOf(err) === NonRetriableError.prototype);
});

test('errors from another copy of herald still count as NonRetriableError / RetryAfterError', () => {
  const foreign = Object.assign(new Error('x'), { [Symbol.for('herald.NonRetriableError')]: true });
  assert.equal(foreign instanceof NonRetriableError, true);
  assert.equal(new Error('plain') instanceof NonRetriableError, false);
  assert.equal(new RetryAfterError('later', 5) instanceof RetryAfterError, true);
  assert.equal(new RetryAfterError('later', 5) instanceof NonRetriableError, false);
  class Specific extends NonRetriableError {}
  assert.equal(new Specific('s') instanceof NonRetriableError, true);
  assert.equal(new NonRetriableError('n') instanceof Specific, false, 'a subclass keeps the ordinary check');
});

test('a CommonJS project loads a TypeScript config written as ESM', async () => {
  const dir = join(project, 'cjs');
  await writeProject(dir, {
    'package.json': '{ "type": "commonjs" }',
    'herald.config.ts': CONFIG.replace("from './templates.ts'", "from '../templates.ts'"),
  });
  const loaded = await loadConfig(undefined, dir);
  assert.deepEqual([...loaded.rules.rules.keys()], ['user.welcomed']);
});

test('a syntax error names the file, line and column', async () => {
  const dir = join(project, 'broken');
  await writeProject(dir, { 'herald.config.ts': `export default {\n  events: { 'a.b': ,\n};\n` });
  await assert.rejects(loadConfig(undefined, dir), (err: Error) => {
    assert.ok(err instanceof ConfigError);
    assert.match(err.message, /herald\.config\.ts:2:\d+: Unexpected ","/);
    return true;
  });
  assert.deepEqual(await readdir(dir), ['herald.config.ts'], 'no bundle left behind');
});

test('a config that throws while loading is reported, and its bundle is removed', async () => {
  const dir = join(project, 'throws');
  await writeProject(dir, { 'herald.config.ts': `throw new Error('DATABASE is not configured');\nexport default {};\n` });
  await assert.rejects(loadConfig(undefined, dir), /could not load .*herald\.config\.ts: DATABASE is not configured/);
  assert.deepEqual(await readdir(dir), ['herald.config.ts']);
});

test('a missing explicit config path is a clear error', async () => {
  await assert.rejects(loadConfig('nope.config.ts', project), /config file not found: .*nope\.config\.ts/);
});

test('the example config loads when the project has none', async () => {
  const loaded = await loadConfig(undefined, join(project, 'node_modules'));
  assert.equal(loaded.isExample, true);
  assert.ok(loaded.rules.rules.has('obra.completed'));
});

test('a config in a directory the server cannot write to still loads (through tsx)', { skip: process.getuid?.() !== 0 && 'needs root to run the loader as another user' }, async () => {
  // A container running as a non-root user over root-owned application files: the bundle cannot
  // be written beside the config. The loader runs as nobody (uid 65534) in a child process.
  const dir = join(project, 'read-only');
  await writeProject(dir, {
    'herald.config.ts': CONFIG.replace("from './templates.ts'", "from '../templates.ts'"),
    'probe.mts': `import { loadConfig } from ${JSON.stringify(join(REPO, 'src/config/load-config.ts'))};
const c = await loadConfig(undefined, ${JSON.stringify(dir)});
console.log(JSON.stringify([...c.rules.rules.keys()]));
`,
  });
  await chmod(project, 0o755);
  await chmod(dir, 0o755);
  const { stdout } = await promisify(execFile)(process.execPath, ['--import', import.meta.resolve('tsx'), join(dir, 'probe.mts')], {
    cwd: dir,
    uid: 65534,
    gid: 65534,
    env: { PATH: process.env.PATH ?? '', HOME: '/tmp' },
  });
  assert.deepEqual(JSON.parse(stdout.trim().split('\n').at(-1)!), ['user.welcomed']);
  assert.deepEqual((await readdir(dir)).sort(), ['herald.config.ts', 'probe.mts']);
});
