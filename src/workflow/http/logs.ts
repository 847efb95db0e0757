import type { HttpRunRow, MessageRow } from '../../storage/queries/http-workflows.ts';
import { rawSteps } from './history.ts';

const STATE: Record<string, string> = {
  running: 'RUN_STARTED',
  completed: 'RUN_SUCCESS',
  failed: 'RUN_FAILED',
  cancelled: 'RUN_CANCELED',
};
export const QSTASH_STATE_TO_RUN: Record<string, 'running' | 'completed' | 'failed' | 'cancelled'> = {
  RUN_STARTED: 'running',
  RUN_SUCCESS: 'completed',
  RUN_FAILED: 'failed',
  RUN_CANCELED: 'cancelled',
};

interface SdkStep {
  stepId?: number;
  stepName?: string;
  stepType?: string;
  concurrent?: number;
  targetStep?: number;
  out?: unknown;
  sleepFor?: unknown;
  sleepUntil?: unknown;
  waitEventId?: string;
  waitTimeout?: boolean;
  timeout?: string;
}

const parseOut = (out: unknown) => {
  if (typeof out !== 'string') return out;
  try {
    return JSON.parse(out);
  } catch {
    return out;
  }
};

/**
 * A run as `client.logs()` returns it (WorkflowRunLog): its state, result and the steps the app
 * published, grouped as sequential or parallel (steps with `concurrent > 1` that follow each other).
 */
export function runLog(run: HttpRunRow, messages: MessageRow[]) {
  const entries = rawSteps(messages).slice(1); // element 0 is the initial payload, not a step
  const steps = entries.map((e, i) => {
    let step: SdkStep = {};
    try {
      step = JSON.parse(Buffer.from(e.body, 'base64').toString('utf8')) as SdkStep;
    } catch {
      /* not a step body */
    }
    const wait = step.stepType === 'Wait' ? { waitEventId: step.waitEventId, waitTimeout: step.waitTimeout === true, waitTimeoutDuration: step.timeout } : {};
    return {
      stepId: step.stepId,
      stepName: step.stepName ?? messages[i + 1]!.type,
      stepType: step.stepType ?? messages[i + 1]!.type,
      callType: 'step' as const,
      messageId: e.messageId,
      out: step.stepType === 'Wait' && typeof step.out === 'string' ? Buffer.from(step.out, 'base64').toString('utf8') : parseOut(step.out),
      concurrent: step.concurrent ?? 1,
      state: 'STEP_SUCCESS' as const,
      createdAt: 0,
      headers: {},
      retries: run.config.retries,
      ...(step.sleepFor !== undefined ? { sleepFor: step.sleepFor } : {}),
      ...(step.sleepUntil !== undefined ? { sleepUntil: step.sleepUntil } : {}),
      ...wait,
      // plan steps (parallel branches being dispatched) are not results
      _plan: step.targetStep !== undefined && step.targetStep !== 0,
    };
  });
  const groups: { type: 'sequential' | 'parallel'; steps: Omit<(typeof steps)[number], '_plan'>[] }[] = [];
  for (const { _plan, ...s } of steps) {
    if (_plan) continue;
    const last = groups.at(-1);
    if (s.concurrent > 1 && last?.type === 'parallel' && last.steps.length < s.concurrent) last.steps.push(s);
    else groups.push({ type: s.concurrent > 1 ? 'parallel' : 'sequential', steps: [s] });
  }
  return {
    workflowRunId: run.id,
    workflowUrl: run.workflow,
    workflowState: STATE[run.state] ?? 'RUN_STARTED',
    workflowRunCreatedAt: run.created_at.getTime(),
    ...(run.finished_at ? { workflowRunCompletedAt: run.finished_at.getTime() } : {}),
    ...(run.state === 'completed' && run.result !== null ? { workflowRunResponse: JSON.stringify(run.result) } : {}),
    ...(run.config.label ? { label: run.config.label } : {}),
    ...(run.error ? { error: run.error } : {}),
    steps: groups,
  };
}
