import { NonRetriableError } from '../errors.ts';
import type { StepRow, StepType } from '../storage/queries/steps.ts';
import { createReplayCheck } from './replay-check.ts';

/**
 * Thrown through the workflow function when the run pauses (a sleep or a wait was recorded and
 * the job completed with it), to unwind it; never an error, never recorded.
 */
export class Suspended extends Error {
  override name = 'Suspended';
}

const MAX_STEP_ID = 256;

/**
 * One execution's replay of a run: the steps its earlier executions recorded, the step ids this
 * execution has called, whether the code still matches the history, and whether the run has
 * paused. Once paused, every further step call unwinds too, so a workflow that caught Suspended
 * (or raced steps) cannot run past the pause.
 */
export class RunReplay {
  readonly history: ReturnType<typeof createReplayCheck>;
  private readonly recorded: Map<string, StepRow>;
  private readonly called = new Set<string>();
  private pausedHere = false;

  constructor(private readonly workflow: string, steps: StepRow[]) {
    this.recorded = new Map(steps.map((s) => [s.step_id, s]));
    this.history = createReplayCheck(workflow, steps);
  }

  get paused(): boolean {
    return this.pausedHere;
  }

  /** Every step call's entry: checks the id, and returns the step's recorded row if there is one. */
  enter(id: string, type: StepType): StepRow | undefined {
    if (this.pausedHere) throw new Suspended();
    if (typeof id !== 'string' || id.length === 0 || id.length > MAX_STEP_ID) {
      throw new NonRetriableError(`workflow "${this.workflow}": step ids must be non-empty strings of at most ${MAX_STEP_ID} characters`);
    }
    if (this.called.has(id)) {
      throw new NonRetriableError(`workflow "${this.workflow}": duplicate step id "${id}"; each step needs an id that is unique within the run`);
    }
    this.called.add(id);
    const row = this.recorded.get(id);
    if (row && row.type !== type) this.history.kindChanged(row, type);
    if (row) this.history.reach(row);
    else if (this.history.changed) throw this.history.changed;
    return row;
  }

  /** The run's pause is committed: unwind the workflow function. */
  pause(): never {
    this.pausedHere = true;
    throw new Suspended();
  }
}
