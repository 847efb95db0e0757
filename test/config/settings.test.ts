// herald-test: no database (runs once, not once per backend: scripts/test.mjs)
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { resolveSettings, SettingsError } from '../../src/config/settings.ts';

// Environment variables are read once, at start, and a value herald would misread is refused
// there with the variable's name, instead of being taken for something else in silence.

const refused = (env: Record<string, string>, pattern: RegExp) =>
  assert.throws(() => resolveSettings(env), (e: unknown) => e instanceof SettingsError && pattern.test(e.message));

test('boolean variables take exactly 1, 0, true or false (or unset); anything else is refused, naming the variable', () => {
  for (const name of ['WORKFLOWS_DISABLED', 'WORKFLOWS_ENABLED', 'REQUEST_SIGNING_DISABLED']) {
    for (const bad of ['yes', 'no', 'TRUE', 'on', ' 1', '2']) {
      refused({ [name]: bad }, new RegExp(`^${name} must be 1, 0, true or false`));
    }
  }
});

test("workflow mode as the seed says: on unless WORKFLOWS_DISABLED is 1 (or true), or on anyway with WORKFLOWS_ENABLED=1", () => {
  const mode = (env: Record<string, string>) => resolveSettings(env).workflowMode;
  assert.equal(mode({}), true);
  assert.equal(mode({ WORKFLOWS_DISABLED: '' }), true);
  assert.equal(mode({ WORKFLOWS_DISABLED: '0' }), true);
  assert.equal(mode({ WORKFLOWS_DISABLED: 'false' }), true);
  assert.equal(mode({ WORKFLOWS_DISABLED: '1' }), false);
  assert.equal(mode({ WORKFLOWS_DISABLED: 'true' }), false);
  assert.equal(mode({ WORKFLOWS_DISABLED: '1', WORKFLOWS_ENABLED: '1' }), true);
  assert.equal(mode({ WORKFLOWS_DISABLED: '1', WORKFLOWS_ENABLED: 'false' }), false);
});

test('REQUEST_SIGNING_DISABLED: 1 or true turns signing off (never in production), 0 or false leaves it on', () => {
  assert.equal(resolveSettings({ REQUEST_SIGNING_DISABLED: 'true' }).signingDisabled, true);
  assert.equal(resolveSettings({ REQUEST_SIGNING_DISABLED: '1' }).signingDisabled, true);
  assert.equal(resolveSettings({ REQUEST_SIGNING_DISABLED: 'false' }).signingDisabled, false);
  refused({ REQUEST_SIGNING_DISABLED: 'true', NODE_ENV: 'production' }, /REQUEST_SIGNING_DISABLED.*refused when NODE_ENV=production/);
});

test('DATABASE_URL must be a postgres:// connection URL (or a socket path); the refusal names the variable and never echoes it', () => {
  for (const bad of ['notaurl', 'mysql://u:secret@h/db', 'http://h/db', 'localhost:5432']) {
    assert.throws(
      () => resolveSettings({ DATABASE_URL: bad }),
      (e: unknown) => e instanceof SettingsError && /^DATABASE_URL must be a postgres:\/\//.test(e.message) && !e.message.includes('secret'),
    );
  }
  for (const good of ['postgres://u:p@h:5432/db', 'postgresql://h/db?sslmode=require', '/var/run/postgresql']) {
    assert.equal(resolveSettings({ DATABASE_URL: good }).databaseUrl, good);
  }
  assert.equal(resolveSettings({ DATABASE_URL: '' }).databaseUrl, undefined);
});
