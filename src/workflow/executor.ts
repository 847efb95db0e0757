import { coerceError, LeaseLostError, NonRetriableError, RetryAfterError, ValidationError } from '../errors.ts';
import type { JobContext, JobHandler } from '../jobs/worker.ts';
import type { Logger } from '../log.ts';
import type { Db } from '../storage/db.ts';
import { finishCodeRun, finishRun } from '../storage/queries/run-end.ts';
import type { RunRow } from '../storage/queries/runs.ts';
import { getRunAndSteps } from '../storage/queries/steps.ts';
import type { CompiledWorkflows } from './compile.ts';
import { RunReplay, Suspended } from './replay.ts';
import { createStep, toJson, type StepDeps } from './steps.ts';

export interface ExecutorDeps extends StepDeps {
  db: Db;
  /** The config's workflows, by name. */
  workflows: CompiledWorkflows;
  log: Logger;
}

/**
 * The `workflow.run` job: replays a code-first run. The workflow function runs from the top; each
 * step whose result is recorded returns it at once, the first unrecorded one executes (steps.ts).
 * A sleep or a wait records itself, completes this job in the same transaction and suspends: the
 * run then holds no memory and no connection until a job (a due sleep, a notify, a timeout)
 * continues it.
 */
export function workflowRunHandler(deps: ExecutorDeps): JobHandler {
  return {
    run: (payload, ctx) => executeRun(deps, String(payload.runId), ctx),
    // The execution failed for good (non-retriable, or out of attempts): so does the run.
    async onFailed(tx, payload, err) {
      if (await finishRun(tx, String(payload.runId), { state: 'failed', error: err.message })) {
        deps.metrics.runsFinished.inc({ state: 'failed' });
        deps.log.warn({ runId: payload.runId, err: err.message }, 'workflow run failed');
      }
    },
  };
}

async function executeRun(deps: ExecutorDeps, runId: string, job: JobContext): Promise<void> {
  const { run, steps } = await getRunAndSteps(deps.db, runId);
  if (!run || run.state !== 'running') return; // cancelled or finished meanwhile: nothing to do
  const wf = deps.workflows.byName.get(run.workflow);
  if (!wf) throw new NonRetriableError(`workflow "${run.workflow}" is not in the config any more`);

  const replay = new RunReplay(wf.name, steps);
  try {
    const result = await wf.definition.run(run.input as never, createStep({ deps, run, job, replay }), {
      id: run.id,
      workflow: run.workflow,
      createdAt: run.created_at,
      eventId: run.event_id,
    });
    if (replay.paused) return;
    // Also rethrows a mismatch the workflow's code caught and swallowed.
    replay.history.atEnd();
    await complete(deps, job, runId, result);
  } catch (thrown) {
    if (replay.paused || thrown instanceof Suspended) return;
    throw failure(deps, run, replay, thrown);
  }
}

/** The run's function returned: its result recorded, the job completed and the run ended, in one statement. */
async function complete(deps: ExecutorDeps, job: JobContext, runId: string, result: unknown): Promise<void> {
  const json = toJson(result, 'the workflow result');
  const { ended } = await job.completeWith((db, fence) => finishCodeRun(db, fence, runId, { state: 'completed', result: json }));
  // Not ended: cancelled while this execution ran; it was counted then.
  if (ended) deps.metrics.runsFinished.inc({ state: 'completed' });
}

/** What the worker is told of an execution that threw: retriable or not, logged if it is the run's own failure. */
function failure(deps: ExecutorDeps, run: RunRow, replay: RunReplay, thrown: unknown): Error {
  // A mismatch with the history wins over whatever the code made of it (wrapped, or another
  // error thrown while unwinding).
  const err = replay.history.changed ?? coerceError(thrown);
  // A validation problem in the workflow's own calls (bad duration, bad event id) will not fix
  // itself on retry.
  if (err instanceof ValidationError) return new NonRetriableError(err.message);
  // A lost lease is not this execution's failure: the worker reports it, and whoever holds the
  // job now carries on.
  if (!(err instanceof NonRetriableError) && !(err instanceof RetryAfterError) && !(err instanceof LeaseLostError)) {
    deps.log.warn({ runId: run.id, workflow: run.workflow, err: err.message }, 'workflow execution failed; will retry');
  }
  return err;
}
