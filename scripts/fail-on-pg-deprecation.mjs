// Loaded into every node process of the test suite (scripts/test.mjs puts it in NODE_OPTIONS, so
// the test files and the herald processes they start all have it): a deprecation warning of pg's
// own (pg 9 removes what it warns about: the per-client query queue, activeQuery, ...) fails the
// process, with the warning and where it came from; other packages' deprecations stay warnings.
// Without this, the warning is one line in a long test log, and it came back unnoticed.
const GUARD = Symbol.for('herald.pgDeprecationGuard');

/** pg's: says pg@9, carries a PG_ code, or was raised from inside the pg packages. */
export function isPgDeprecation(warning) {
  if (warning?.name !== 'DeprecationWarning') return false;
  if (/\bpg@\d/.test(warning.message) || /^PG_/.test(warning.code ?? '')) return true;
  return /[\\/]node_modules[\\/]pg(-pool|-protocol|-cursor|-query-stream)?[\\/]/.test(warning.stack ?? '');
}

if (!globalThis[GUARD]) {
  globalThis[GUARD] = true;
  let seen = 0;
  process.on('warning', (warning) => {
    if (!isPgDeprecation(warning)) return;
    seen++;
    process.exitCode = 1;
    process.stderr.write(
      `\n*** pg deprecation (fails this process, see scripts/fail-on-pg-deprecation.mjs): ${warning.message}\n${warning.stack ?? ''}\n\n`,
    );
  });
  // Whatever the process sets on its way out (process.exit(0) included), it fails.
  process.on('exit', () => {
    if (seen > 0) process.exitCode = 1;
  });
}
