import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';
import { createEngine } from '../../src/engine.ts';
import { createApp, type HeraldApp } from '../../src/http/app.ts';
import pino from 'pino';
import { Writable } from 'node:stream';
import type { Db } from '../../src/storage/db.ts';
import { openStorage } from '../../src/storage/open.ts';
import { insertDlq } from '../../src/storage/queries/dlq.ts';
import { insertHttpRun, newMessageId, type HttpRunConfig } from '../../src/storage/queries/http-workflows.ts';
import { BACKEND } from '../helpers/db.ts';
import { createTestHerald, type TestHerald } from '../helpers/herald.ts';

/**
 * Issue 24, item 12: concurrent DLQ restart/resume and delete on the same entries. Restart locked
 * the entries' rows one by one in list order (newest first) after writing the new run; delete
 * locked them in whatever order `id = ANY(...)` scanned: 11 of 40 answers were 500 "deadlock
 * detected". And two revivals of one entry both made a new run. Every entry must leave the
 * dead-letter list exactly once, by one revival or one delete, and no answer is a 5xx.
 * (On PGlite transactions take turns, so there is no deadlock to see, but the exactly-once part
 * still holds, and is checked.)
 */
const QSTASH_TOKEN = 'dlq-concurrency-qstash-token-0123';
const ENTRIES = 8;
const CALLS = 40;
const ROUNDS = 3;

let h: TestHerald;
/** On Postgres, an app whose pool has a connection for every call, so all 40 really overlap. */
let app: HeraldApp;
let wide: Db | undefined;
/** What the app logged as request failures (the 5xx's causes, for the failure message). */
const logged: string[] = [];
const errorsTo = (out: string[]) =>
  pino({ level: 'error' }, new Writable({ write(chunk, _enc, cb) { out.push(String(JSON.parse(String(chunk)).err)); cb(); } }));
before(async () => {
  h = await createTestHerald({ env: { QSTASH_TOKEN } });
  app = h.app;
  if (BACKEND === 'postgres') {
    wide = await openStorage({ databaseUrl: h.url!, poolSize: CALLS + 2 });
    app = createApp(createEngine({ settings: h.engine.settings, db: wide, rules: h.engine.rules, log: errorsTo(logged) }));
  }
});
after(async () => {
  await wide?.close();
  await h?.close();
});

async function deadLetters(n: number): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const runId = `wfr_${randomUUID()}`;
    const messageId = newMessageId();
    const config: HttpRunConfig = { forwardHeaders: {}, retries: 0 };
    ids.push(
      await h.db.transaction(async (tx) => {
        await insertHttpRun(tx, { id: runId, url: 'https://app.example/wf', body: Buffer.from('{}'), contentType: 'application/json', config, messageId, runAtMs: null });
        return insertDlq(tx, { runId, messageId, url: 'https://app.example/wf', status: 500, headers: {}, body: null, error: 'failed', failureCallback: null });
      }),
    );
  }
  return ids;
}

const httpRuns = async () => (await h.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM herald_runs WHERE kind = 'http'`)).rows[0]!.n;

const call = (method: string, path: string) => app.request(path, { method, headers: { authorization: `Bearer ${QSTASH_TOKEN}` } });

for (let round = 1; round <= ROUNDS; round++) {
  test(`round ${round}: ${CALLS} concurrent restarts, resumes and deletes of the same ${ENTRIES} entries: no 5xx, each entry leaves exactly once (${BACKEND})`, async () => {
    const ids = await deadLetters(ENTRIES);
    const runsBefore = await httpRuns();
    const all = ids.join(',');
    const reversed = [...ids].reverse().join(',');
    const requests = Array.from({ length: CALLS }, (_, i) => {
      switch (i % 5) {
        case 0: return call('POST', `/v2/workflows/dlq/restart?dlqIds=${all}`);
        case 1: return call('DELETE', `/v2/workflows/dlq?dlqIds=${reversed}`);
        case 2: return call('POST', `/v2/workflows/dlq/resume?dlqIds=${reversed}`);
        case 3: return call('DELETE', `/v2/workflows/dlq?dlqIds=${all}`);
        default: return call('DELETE', `/v2/workflows/dlq/${ids[i % ENTRIES]}`);
      }
    });
    const answers = await Promise.all(requests.map(async (r) => { const res = await r; return { status: res.status, body: await res.text() }; }));

    const failed = answers.filter((a) => a.status >= 500);
    assert.deepEqual(failed, [], `${failed.length} of ${CALLS} answers were 5xx: ${[...new Set(logged)].join('; ')}`);
    let revived = 0;
    let deleted = 0;
    for (const a of answers) {
      if (a.status !== 200) {
        assert.equal(a.status, 404, a.body);
        continue;
      }
      const body = JSON.parse(a.body) as { workflowRuns?: unknown[]; deleted?: number };
      revived += body.workflowRuns?.length ?? 0;
      deleted += body.deleted ?? 0;
    }
    assert.equal(revived + deleted, ENTRIES, `each entry left the list once: ${revived} revived + ${deleted} deleted`);
    const { rows } = await h.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM herald_dlq WHERE id = ANY($1)`, [ids]);
    assert.equal(rows[0]!.n, 0, 'no entry is left');
    assert.equal((await httpRuns()) - runsBefore, revived, 'a new run for each revival answered, and no other');
  });
}
