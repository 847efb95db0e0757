import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { after, before, describe, test } from 'node:test';
import * as current from '../../src/index.ts';
import type { Engine } from '../../src/engine.ts';
import type { Worker } from '../../src/jobs/worker.ts';
import { BACKEND } from '../helpers/db.ts';
import { createTestHerald, eventually, JWT_SECRET, SECRET, type TestHerald } from '../helpers/herald.ts';
import { QSTASH_TOKEN } from '../helpers/workflow.ts';

/**
 * The migration policy (docs/WORKFLOWS.md, "Deploying a new version"): from 0006 on, a migration
 * only adds (expand), so the previous release's processes keep serving while the new release
 * migrates and starts. Two checks:
 *
 * - statically, that every migration from 0006 on only adds: no statement that drops, renames,
 *   retypes or tightens, unless the line before it says why it is still expand-only;
 * - by running it: the previous release's own code (its src/ from git, imported as it was — its
 *   SQL, its worker, its executor) runs a workload against a database migrated by this checkout,
 *   alone and then side by side with this release's worker, as during a rolling deploy: every
 *   statement it sends (claims, completions, retries, the leader's maintenance, workflow steps,
 *   waits and their timeouts, notifies, emits) must still work, and the work must come out right.
 *
 * "The previous release" is the commit before the one that added the newest migration (HEAD when
 * that migration is not committed yet): the code that was serving when that migration first ran.
 */
const REPO = fileURLToPath(new URL('../../', import.meta.url));
const MIGRATIONS = join(REPO, 'src/storage/migrations');
const POLICY_FROM = 6;

describe('migrations from 0006 on only add', () => {
  /** Statements that break a previous release still running against the schema. */
  const CONTRACTING = [
    /\bDROP\s+(TABLE|COLUMN|INDEX|VIEW|FUNCTION|TYPE|SCHEMA|POLICY|TRIGGER|CONSTRAINT)\b/i,
    /\bRENAME\b/i,
    /\bALTER\s+COLUMN\s+\S+\s+(SET\s+DATA\s+)?TYPE\b/i,
    /\bSET\s+NOT\s+NULL\b/i,
    /\bREVOKE\b/i,
    /\bTRUNCATE\b/i,
    /\bALTER\s+TABLE\b[^;]*\bADD\s+COLUMN\b[^;]*\bNOT\s+NULL\b(?![^;]*\bDEFAULT\b)/i,
  ];

  test('no statement drops, renames, retypes or tightens without saying why it is still expand-only', () => {
    const files = readdirSync(MIGRATIONS).filter((f) => /^\d{4}_.*\.sql$/.test(f) && Number(f.slice(0, 4)) >= POLICY_FROM);
    assert.ok(files.length > 0);
    const offending: string[] = [];
    for (const file of files) {
      const lines = readFileSync(join(MIGRATIONS, file), 'utf8').split('\n');
      lines.forEach((line, i) => {
        const code = line.replace(/--.*$/, '');
        if (!CONTRACTING.some((re) => re.test(code))) return;
        // An exception names itself on the line before: `-- expand-only: <why>`.
        if (/^\s*--\s*expand-only:\s*\S/.test(lines[i - 1] ?? '')) return;
        offending.push(`${file}:${i + 1}: ${line.trim()}`);
      });
    }
    assert.deepEqual(offending, [], 'contracting statements need a separate, later release (see docs/WORKFLOWS.md)');
  });
});

/**
 * The release that is serving when this release's migrations run: the last commit that landed
 * before them (6038530, before 0008 and 0009). Pinned, not derived from the history: "the parent
 * of the newest commit that added a migration" is a commit of this same release once it has
 * several, and would already carry its code. Move it forward when a release lands.
 */
const PREVIOUS_RELEASE = '6038530';

function previousRelease(): { sha: string } | { skip: string } {
  const git = (...args: string[]) => execFileSync('git', args, { cwd: REPO, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  try {
    return { sha: git('rev-parse', '--verify', `${PREVIOUS_RELEASE}^{commit}`) };
  } catch {
    return { skip: `the previous release (${PREVIOUS_RELEASE}) is not in this checkout's history (a shallow clone, or not a git checkout)` };
  }
}

/**
 * This release's Db (or transaction) under the previous release's names for the same methods, for
 * the one case where its code is handed this release's driver (PGlite: one in-process database).
 * Db.runTogether became Db.pipeline.
 */
function previousNames<T extends object>(q: T): T {
  return new Proxy(q, {
    get(target, prop) {
      const t = target as Record<string | symbol, unknown> & { pipeline?: unknown };
      if (prop === 'runTogether') return (t.pipeline as (...args: unknown[]) => unknown).bind(target);
      if (prop === 'transaction' || prop === 'withAdvisoryLock') {
        const method = t[prop] as (...args: unknown[]) => unknown;
        return (...args: unknown[]) =>
          method.apply(target, args.map((a) => (typeof a === 'function' ? (x: object, ...rest: unknown[]) => a(previousNames(x), ...rest) : a)));
      }
      return Reflect.get(target, prop);
    },
  });
}

describe("the previous release's worker against this release's schema", () => {
  const prev = previousRelease();
  const skip = 'skip' in prev ? prev.skip : false;
  let dir: string;
  let h: TestHerald;
  let oldEngine: Engine;
  let oldWorker: Worker;
  let newWorker: Worker | undefined;
  let closeOldDb: () => Promise<void> = async () => {};
  let oldSettled = 0;
  const tenantId = randomUUID();
  const userId = randomUUID();

  /** The same config, built with either release's API (each engine gets its own classes). */
  const configWith = (api: typeof current) =>
    api.defineConfig({
      events: {
        'compat.ping': api.rule({
          schema: api.z.object({ tenantId: api.z.string().uuid(), userId: api.z.string().uuid(), n: api.z.number().int() }),
          recipients: (ctx, to) => to.users([ctx.userId]),
          inApp: { title: 'ping {{ ctx.n }}' },
        }),
        'compat.start': api.rule({ schema: api.z.object({ tenantId: api.z.string().uuid(), n: api.z.number().int(), timeout: api.z.string() }) }),
      },
      workflows: {
        'compat.flow': api.workflow<{ tenantId: string; n: number; timeout: string }>({
          on: 'compat.start',
          retries: 5,
          async run(input, step) {
            const a = await step.run('a', ({ attempt }) => {
              // The first try of every third run fails: the retry path (failJob) runs too.
              if (input.n % 3 === 0 && attempt === 1) throw new Error('first try fails');
              return `a-${input.n}`;
            });
            await step.sleep('nap', '10ms');
            const w = await step.waitForEvent('w', `compat-${input.n}`, { timeout: input.timeout });
            await step.notify('tell', `told-${input.n}`, { n: input.n });
            await step.send('ping', 'compat.ping', { tenantId: input.tenantId, userId, n: 1000 + input.n });
            return { a, timeout: w.timeout, data: w.eventData ?? null };
          },
        }),
      },
    });

  before(async () => {
    if (skip) return;
    const { sha } = prev as { sha: string };
    // The previous release's sources, beside a link to this checkout's dependencies.
    dir = mkdtempSync(join(tmpdir(), `herald-previous-${sha.slice(0, 12)}-`));
    execFileSync('sh', ['-c', `git archive ${sha} src | tar -x -C ${JSON.stringify(dir)}`], { cwd: REPO });
    symlinkSync(join(REPO, 'node_modules'), join(dir, 'node_modules'), 'dir');
    const load = async <T>(path: string): Promise<T> => (await import(pathToFileURL(join(dir, path)).href)) as T;

    // This release: a database with every migration of this checkout, and its HTTP app (notify).
    h = await createTestHerald({ config: configWith(current), env: { QSTASH_TOKEN } });
    await h.db.query(`INSERT INTO herald_users (id, tenant_id, name) VALUES ($1, $2, 'compat')`, [userId, tenantId]);

    // The previous release, as it was: its settings, rules, storage driver, engine and worker.
    const api = await load<typeof current>('src/index.ts');
    const { resolveSettings } = await load<typeof import('../../src/config/settings.ts')>('src/config/settings.ts');
    const { compileRules } = await load<typeof import('../../src/rules/compile.ts')>('src/rules/compile.ts');
    const { createEngine } = await load<typeof import('../../src/engine.ts')>('src/engine.ts');
    const { openStorage } = await load<typeof import('../../src/storage/open.ts')>('src/storage/open.ts');
    const { silentLogger } = await load<typeof import('../../src/log.ts')>('src/log.ts');
    // PGlite is one in-process database: the previous release is handed this one (its SQL still
    // runs as it was; only the driver is this release's, under the names the previous one used).
    let db = previousNames(h.db);
    if (BACKEND === 'postgres') {
      db = await openStorage({ databaseUrl: h.url!, poolSize: 4 });
      closeOldDb = () => db.close();
    }
    oldEngine = createEngine({
      settings: resolveSettings({
        REQUEST_SIGNING_SECRET: SECRET, JWT_SECRET, QSTASH_TOKEN,
        HERALD_JOB_POLL_MS: '50', HERALD_MAINTENANCE_MS: '50', HERALD_JOB_LEASE_MS: '5000',
      }),
      db,
      rules: compileRules(configWith(api)),
      log: silentLogger,
    });
    oldWorker = oldEngine.createWorker({ onSettled: () => void oldSettled++ });
    await oldWorker.start();
  });

  after(async () => {
    if (skip) return;
    await newWorker?.stop();
    await oldWorker?.stop();
    await closeOldDb();
    await h?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  const emit = (engine: Engine, type: string, ctx: Record<string, unknown>) =>
    engine.emit(Buffer.from(JSON.stringify({ type, ctx })));
  const waiting = (n: number) =>
    eventually(async () => (await h.db.query(`SELECT 1 FROM herald_waiters WHERE event_id = $1`, [`compat-${n}`])).rows.length > 0, 15_000);
  const notify = async (n: number) => {
    const res = await h.app.request(`/v2/notify/compat-${n}`, {
      method: 'POST', body: JSON.stringify({ n }), headers: { authorization: `Bearer ${QSTASH_TOKEN}`, 'content-type': 'application/json' },
    });
    assert.equal(res.status, 201);
  };
  const runsDone = (ids: string[]) =>
    eventually(async () => {
      const { rows } = await h.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM herald_runs WHERE id = ANY($1) AND state = 'completed'`, [ids]);
      return rows[0]!.n === ids.length;
    }, 20_000).catch(async (err) => {
      const { rows } = await h.db.query(`SELECT state, error FROM herald_runs WHERE id = ANY($1) AND state <> 'completed'`, [ids]);
      const jobs = await h.db.query(`SELECT kind, state, attempts, last_error FROM herald_jobs`);
      throw new Error(`${(err as Error).message}: ${JSON.stringify(rows)} jobs ${JSON.stringify(jobs.rows)}`);
    });

  /** Emits a round of pings and runs through `engine`, resumes the runs, and checks the outcome. */
  async function round(engines: Engine[], ns: number[]) {
    const runIds: string[] = [];
    for (const [i, n] of ns.entries()) {
      const engine = engines[i % engines.length]!;
      assert.equal((await emit(engine, 'compat.ping', { tenantId, userId, n })).status, 200);
      // Every other run times out (the leader's wait-timeout sweep) instead of being notified.
      const started = await emit(engine, 'compat.start', { tenantId, n, timeout: n % 2 ? '150ms' : '1h' });
      runIds.push(...(started.body.workflowRuns as string[]));
    }
    for (const n of ns.filter((n) => n % 2 === 0)) {
      await waiting(n);
      await notify(n);
    }
    await runsDone(runIds);
    const { rows } = await h.db.query<{ result: { a: string; timeout: boolean; data: unknown }; n: number }>(
      `SELECT result, (input->>'n')::int AS n FROM herald_runs WHERE id = ANY($1)`,
      [runIds],
    );
    for (const r of rows) {
      assert.deepEqual(r.result, { a: `a-${r.n}`, timeout: r.n % 2 === 1, data: r.n % 2 ? null : { n: r.n } });
    }
  }

  test('alone: emits, expansions, workflow steps, retries, sleeps, waits, timeouts and the leader\'s maintenance', { skip, timeout: 60_000 }, async () => {
    console.log(`# previous release ${(prev as { sha: string }).sha.slice(0, 12)} against migrations up to ${readdirSync(MIGRATIONS).sort().at(-1)}`);
    await round([oldEngine], [0, 1, 2, 3]);
    assert.ok(oldSettled >= 8, `the previous release's worker did the work (${oldSettled} jobs)`);
  });

  test('side by side with this release\'s worker, as during a rolling deploy', { skip, timeout: 60_000 }, async () => {
    newWorker = h.engine.createWorker();
    await newWorker.start();
    await round([oldEngine, h.engine], [4, 5, 6, 7, 8, 9]);
    // Every ping (emitted, or sent by a run: its expansion may still be queued) expanded exactly
    // once, whoever expanded it.
    await eventually(async () => (await h.db.query(`SELECT 1 FROM herald_jobs`)).rows.length === 0, 10_000).catch(async () => {
      assert.deepEqual((await h.db.query(`SELECT kind, state, last_error FROM herald_jobs`)).rows, [], 'no job left behind');
    });
    const { rows } = await h.db.query<{ n: number; distinct: number }>(
      `SELECT count(*)::int AS n, count(DISTINCT event_id)::int AS distinct FROM notifications WHERE user_id = $1`,
      [userId],
    );
    assert.equal(rows[0]!.n, 20, '10 emitted pings and 10 sent by the runs');
    assert.equal(rows[0]!.distinct, 20);
  });
});
