/**
 * One subject's run, in a fresh process (so RSS, CPU and leftovers of one subject never leak into
 * another). Started by run.ts with fork(); receives { subject, url, sizes }, answers with results.
 */
import type { ModeResult } from './lib/result.ts';
import type { Sizes } from './lib/sizes.ts';
import { SUBJECTS } from './subjects.ts';

export interface ChildTask {
  subject: string;
  url: string;
  adminUrl: string;
  sizes: Sizes;
}

export type ChildReply = { ok: true; results: ModeResult[] } | { ok: false; error: string; results: ModeResult[] };

process.once('message', async (task: ChildTask) => {
  const results: ModeResult[] = [];
  let reply: ChildReply;
  try {
    const subject = SUBJECTS[task.subject];
    if (!subject) throw new Error(`unknown subject ${task.subject}`);
    await subject.run({ url: task.url, adminUrl: task.adminUrl, sizes: task.sizes, report: (r) => results.push(r) });
    reply = { ok: true, results };
  } catch (err) {
    reply = { ok: false, error: (err as Error).stack ?? String(err), results };
  }
  process.send!(reply, () => process.exit(0));
});
