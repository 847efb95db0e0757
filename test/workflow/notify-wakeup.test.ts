import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import { defineConfig, workflow } from '../../src/index.ts';
import { JOBS_CHANNEL } from '../../src/storage/queries/jobs.ts';
import { BACKEND } from '../helpers/db.ts';
import { eventually } from '../helpers/herald.ts';
import { createWorkflowHerald, type WorkflowHerald } from '../helpers/workflow.ts';

/**
 * A notify that resumes runs wakes the workers of every herald process (the resume statement
 * sends the NOTIFY itself); one that resumes nothing wakes nobody.
 */
const config = defineConfig({
  events: {},
  workflows: {
    parked: workflow<{ n: number }>({
      async run(input, step) {
        const got = await step.waitForEvent('wait', `go-${input.n}`, { timeout: '1h' });
        return got.eventData;
      },
    }),
  },
});

describe('notify wakes other processes', { skip: BACKEND !== 'postgres' && 'a PGlite directory belongs to one process' }, () => {
  let h: WorkflowHerald;
  let other: pg.Client;
  let received = 0;
  let barriers = 0;
  /**
   * Everything committed before this call has been heard: Postgres delivers a listener's
   * notifications in commit order, so once a NOTIFY sent now arrives, all earlier ones have.
   */
  const heardAllCommitted = async () => {
    const seen = barriers;
    await other.query(`SELECT pg_notify('${JOBS_CHANNEL}', 'barrier')`);
    await eventually(async () => barriers > seen);
  };
  before(async () => {
    h = await createWorkflowHerald(config);
    other = new pg.Client({ connectionString: h.url! });
    await other.connect();
    other.on('notification', (m) => {
      if (m.channel !== JOBS_CHANNEL) return;
      if (m.payload === 'barrier') barriers++;
      else received++;
    });
    await other.query(`LISTEN ${JOBS_CHANNEL}`);
  });
  after(async () => {
    await other?.end();
    await h?.close();
  });

  test('one NOTIFY when waiters resume (as many as there are), none when nothing was waiting', async () => {
    const runs = await Promise.all([1, 2, 3].map(() => h.start('parked', { n: 1 })));
    for (const id of runs) await h.waiting(id, 'go-1');
    // Stopped, so what the other connection hears comes from the notify alone.
    await h.worker.stop();
    await new Promise((r) => setTimeout(r, 100));
    received = 0;

    const res = await h.notify('/v2/notify/go-1', JSON.stringify({ ok: true }), 'application/json');
    assert.equal(res.status, 201);
    assert.equal(((await res.json()) as unknown[]).length, 3);
    await eventually(async () => received >= 1);
    const { rows } = await h.db.query<{ n: number }>(`SELECT count(*)::int AS n FROM herald_jobs WHERE state = 'queued'`);
    assert.equal(rows[0]!.n, 3, 'each resumed run is queued to continue');

    const none = await h.notify('/v2/notify/go-nobody', 'x');
    assert.equal(none.status, 201);
    assert.deepEqual(await none.json(), []);
    await heardAllCommitted();
    assert.equal(received, 1, 'one NOTIFY for three resumed runs, none for a notify that resumed nothing');
  });
});
