import { NonRetriableError } from '../errors.ts';
import type { StepRow, StepType } from '../storage/queries/steps.ts';

/**
 * A replay that no longer matches its run's history: the workflow's code changed (a deploy) while
 * the run slept or waited, and reaches the recorded steps differently. Not retriable — replaying
 * again gives the same answer — so the run fails with this error and nothing of the new code runs
 * against the old history.
 */
export class WorkflowChangedError extends NonRetriableError {
  override name = 'WorkflowChangedError';
}

const describe = (s: { step_id: string; type: string }) => `"${s.step_id}" (${s.type})`;
const list = (steps: { step_id: string; type: string }[]) =>
  steps.slice(0, 3).map(describe).join(', ') + (steps.length > 3 ? ` and ${steps.length - 3} more` : '');
const HOW = 'start new runs of a changed workflow under a new name and keep the old definition until its runs end (docs/WORKFLOWS.md, "Changing a workflow")';

/**
 * Checks, as a run's function replays, that it still reaches the history its earlier executions
 * recorded. Steps are found by id, so a change of a step's body, or steps added after the recorded
 * ones, replay fine; what it refuses:
 *
 * - a step recorded with another kind: `kindChanged`;
 * - a step that is not in the history about to run while recorded steps are still unreached (a
 *   step renamed, removed, or inserted before recorded ones): `beforeNew`. Steps called together
 *   (`Promise.all`) are fine: the check first lets the current turn of the event loop finish, and
 *   by then the recorded siblings called in that turn, and everything that replays from recorded
 *   results (they resolve at once), have been reached;
 * - the function returning with recorded steps unreached: `atEnd`.
 *
 * Recorded steps reached in another order are not refused: each returns its own recorded result
 * and nothing runs again. Telling a reorder from parallel steps whose starts the connection pool
 * happened to serialise would take the order in which the code called them, which is not recorded.
 */
export function createReplayCheck(workflow: string, steps: StepRow[]) {
  const reached = new Set<string>();
  let changed: WorkflowChangedError | undefined;

  const fail = (what: string): never => {
    changed ??= new WorkflowChangedError(
      `workflow "${workflow}" changed while this run was in flight: ${what}. The run stops here rather than run the new code against the old history; ${HOW}`,
    );
    throw changed;
  };
  const unreached = () => steps.filter((s) => !reached.has(s.step_id));

  return {
    /** The error, once a mismatch was found: every later step throws it too, whatever the code catches. */
    get changed() {
      return changed;
    },
    kindChanged(row: StepRow, type: StepType): never {
      return fail(`step "${row.step_id}" was recorded as a ${row.type} step but is now called as ${type}`);
    },
    /** The code reached `row`, a recorded step. */
    reach(row: StepRow): void {
      if (changed) throw changed;
      reached.add(row.step_id);
    },
    /** The code is about to run `id`, a step that is not in the history. */
    async beforeNew(id: string, type: StepType): Promise<void> {
      if (changed) throw changed;
      if (reached.size === steps.length) return; // the whole history replayed: nothing to wait for
      await new Promise((resolve) => setImmediate(resolve));
      if (changed) throw changed;
      const missing = unreached();
      if (missing.length > 0) fail(`the code runs a new step "${id}" (${type}) where the history has ${list(missing)}, which it no longer reaches`);
    },
    /** The function returned. */
    atEnd(): void {
      if (changed) throw changed;
      const missing = unreached();
      if (missing.length > 0) fail(`the code returned without reaching recorded step${missing.length > 1 ? 's' : ''} ${list(missing)}`);
    },
  };
}
