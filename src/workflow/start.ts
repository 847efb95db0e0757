import { isUuid, uuidv7 } from '../ids.ts';
import type { Queryable } from '../storage/db.ts';
import type { IncomingRun } from '../storage/queries/events.ts';
import { insertRun, runJobKey } from '../storage/queries/runs.ts';
import type { CompiledWorkflow, CompiledWorkflows } from './compile.ts';

/** Run ids look like Upstash Workflow's (wfr_…); the UUIDv7 inside keeps them time-ordered. */
export const newRunId = () => `wfr_${uuidv7().replace(/-/g, '')}`;

export interface StartedRun {
  workflowRunId: string;
  workflowCreatedAt: number;
}

/** Starts a code-first run (its row and its first execution) in the caller's transaction. */
export async function startCodeRun(
  tx: Queryable,
  wf: CompiledWorkflow,
  input: unknown,
  origin: { eventId?: string | null; tenantId?: string | null } = {},
): Promise<StartedRun> {
  const tenantId = origin.tenantId ?? (isUuid((input as { tenantId?: unknown })?.tenantId) ? (input as { tenantId: string }).tenantId.toLowerCase() : null);
  const run = await insertRun(tx, {
    id: newRunId(),
    kind: 'code',
    workflow: wf.name,
    input,
    eventId: origin.eventId ?? null,
    tenantId,
    maxAttempts: wf.maxAttempts,
  });
  return { workflowRunId: run.id, workflowCreatedAt: run.created_at.getTime() };
}

/** Starts every workflow subscribed to an event type, with the event's ctx as input. */
export async function startRunsForEvent(
  tx: Queryable,
  workflows: CompiledWorkflows,
  event: { id: string; type: string; ctx: unknown; tenantId: string | null },
): Promise<StartedRun[]> {
  const started: StartedRun[] = [];
  for (const wf of workflows.byEvent.get(event.type) ?? []) {
    started.push(await startCodeRun(tx, wf, event.ctx, { eventId: event.id, tenantId: event.tenantId }));
  }
  return started;
}

/**
 * The runs an emitted event of this type will start, their ids chosen now so the emit's response
 * can name them; the event writer inserts them with the event (storage/queries/events.ts).
 */
export function runsToStart(workflows: CompiledWorkflows, type: string): IncomingRun[] {
  return (workflows.byEvent.get(type) ?? []).map((wf) => {
    const id = newRunId();
    return { id, jobKey: runJobKey(id), workflow: wf.name, maxAttempts: wf.maxAttempts };
  });
}
