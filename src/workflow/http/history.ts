import type { MessageRow } from '../../storage/queries/http-workflows.ts';

/** One entry of a delivery body, as @upstash/workflow reads it. */
export interface RawStep {
  messageId: string;
  /** base64 of the message body (element 0: the initial payload; then each step's JSON). */
  body: string;
  callType: 'step';
}

interface WaitOutput {
  eventId: string;
  timeout: boolean;
  timeoutDuration: string | null;
  step: Record<string, unknown> | null;
}

/**
 * A run's history as the SDK expects it. Published messages go back byte for byte; a resumed
 * wait becomes the `Wait` step the SDK asked for in /v2/wait, with `out` = base64 of the notify
 * body (absent on timeout). `targetStep` is dropped: the SDK counts result steps by its absence.
 */
export function rawSteps(messages: MessageRow[]): RawStep[] {
  return messages.map((m) => {
    const bytes = m.output_bytes ?? Buffer.alloc(0);
    if (m.type === 'wait' && m.output && (m.output as unknown as WaitOutput).step) {
      const o = m.output as unknown as WaitOutput;
      const { targetStep: _dropped, ...step } = o.step!;
      const json: Record<string, unknown> = {
        ...step,
        waitEventId: o.eventId,
        timeout: o.timeoutDuration ?? undefined,
        waitTimeout: o.timeout === true,
      };
      if (!o.timeout) json.out = bytes.toString('base64');
      return { messageId: m.step_id, body: Buffer.from(JSON.stringify(json)).toString('base64'), callType: 'step' };
    }
    return { messageId: m.step_id, body: bytes.toString('base64'), callType: 'step' };
  });
}
