// A node:test reporter that writes one line per test file: its top-level tests' summed duration in
// ms, a tab, and the file. scripts/test.mjs reads it to print the slowest files of a run.
export default async function* fileTimes(source) {
  const ms = new Map();
  for await (const event of source) {
    if ((event.type === 'test:pass' || event.type === 'test:fail') && event.data.nesting === 0 && event.data.file) {
      ms.set(event.data.file, (ms.get(event.data.file) ?? 0) + (event.data.details?.duration_ms ?? 0));
    }
  }
  for (const [file, total] of ms) yield `${Math.round(total)}\t${file}\n`;
}
