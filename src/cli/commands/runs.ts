import { adminConnection, printBody, request, shortTime as when, textTable as table } from '../client.ts';

export interface RunsArgs {
  runId: string | undefined;
  state: string | undefined;
  workflow: string | undefined;
  limit: string | undefined;
  cancel: boolean;
  json: boolean;
  url: string | undefined;
}

interface RunView {
  workflowRunId: string;
  workflow: string;
  state: string;
  error: string | null;
  createdAt: string;
  updatedAt: string;
  result?: unknown;
}
interface StepView {
  stepId: string;
  type: string;
  state: string;
  attempts: number;
  error?: string;
  output?: unknown;
  wakeAt?: string;
  durationMs?: number;
}
interface WaiterView {
  eventId: string;
  deadline: number;
}

/** `herald runs [runId]`: the admin API's runs, as a table, or one run's step timeline. */
export async function runsCommand(env: NodeJS.ProcessEnv, args: RunsArgs): Promise<number> {
  const admin = await adminConnection(env, args.url);
  if (!admin) return 2;
  const { base, headers } = admin;
  if (args.cancel && !args.runId) {
    console.error('--cancel needs a run id: herald runs <runId> --cancel');
    return 2;
  }

  let path: string;
  if (args.runId) {
    path = `/api/workflows/runs/${encodeURIComponent(args.runId)}${args.cancel ? '/cancel' : ''}`;
  } else {
    const q = new URLSearchParams();
    if (args.state) q.set('state', args.state);
    if (args.workflow) q.set('workflow', args.workflow);
    if (args.limit) q.set('limit', args.limit);
    path = `/api/workflows/runs${q.size ? `?${q}` : ''}`;
  }
  const f = await request(base, path, { method: args.cancel ? 'POST' : 'GET', headers });
  if (!f.ok) return 1;
  if (!f.res.ok || args.json || args.cancel || f.json === undefined) {
    printBody(f);
    return f.res.ok ? 0 : 1;
  }
  if (args.runId) printRun(f.json as { run: RunView; steps: StepView[]; waiters: WaiterView[] });
  else printRuns(f.json as { runs: RunView[]; nextCursor: string | null });
  return 0;
}

function printRuns(page: { runs: RunView[]; nextCursor: string | null }): void {
  if (page.runs.length === 0) {
    console.log('no runs');
    return;
  }
  console.log(table([
    ['RUN', 'WORKFLOW', 'STATE', 'CREATED', 'UPDATED', 'ERROR'],
    ...page.runs.map((r) => [r.workflowRunId, r.workflow, r.state, when(r.createdAt), when(r.updatedAt), r.error ?? '']),
  ]));
  if (page.nextCursor) console.log(`\n(more: use the admin API with cursor=${page.nextCursor})`);
}

function printRun({ run, steps, waiters }: { run: RunView; steps: StepView[]; waiters: WaiterView[] }): void {
  console.log(`${run.workflowRunId}  ${run.workflow}  ${run.state}${run.error ? `  error: ${run.error}` : ''}`);
  console.log(`created ${when(run.createdAt)}, updated ${when(run.updatedAt)}`);
  if (run.result !== undefined && run.result !== null) console.log(`result: ${JSON.stringify(run.result)}`);
  console.log('');
  if (steps.length === 0) console.log('no steps yet');
  else {
    console.log(table([
      ['STEP', 'TYPE', 'STATE', 'ATTEMPTS', 'DURATION', 'DETAIL'],
      ...steps.map((s) => [
        s.stepId,
        s.type,
        s.state,
        String(s.attempts),
        s.durationMs === undefined ? '' : `${s.durationMs} ms`,
        s.error ? `error: ${s.error}` : s.state === 'waiting' && s.wakeAt ? `wakes ${when(s.wakeAt)}` : s.output === undefined ? '' : truncate(JSON.stringify(s.output)),
      ]),
    ]));
  }
  for (const w of waiters) console.log(`\nwaiting for "${w.eventId}" until ${when(new Date(w.deadline * 1000).toISOString())}`);
}

const truncate = (s: string) => (s.length > 60 ? `${s.slice(0, 57)}...` : s);
