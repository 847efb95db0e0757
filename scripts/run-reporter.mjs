// A node:test reporter that writes, as one JSON document, what scripts/test.mjs needs of a run:
// the run's own closing counts (node's summary diagnostics: pass, fail, cancelled, skipped, todo)
// and each test file's time (its top-level tests' summed duration, ms).
export default async function* runSummary(source) {
  const counts = {};
  const files = {};
  for await (const event of source) {
    if ((event.type === 'test:pass' || event.type === 'test:fail') && event.data.nesting === 0 && event.data.file) {
      files[event.data.file] = (files[event.data.file] ?? 0) + (event.data.details?.duration_ms ?? 0);
    } else if (event.type === 'test:diagnostic' && event.data.nesting === 0) {
      const m = /^(tests|pass|fail|cancelled|skipped|todo) (\d+)$/.exec(event.data.message);
      if (m) counts[m[1]] = (counts[m[1]] ?? 0) + Number(m[2]);
    }
  }
  yield JSON.stringify({ counts, files });
}
