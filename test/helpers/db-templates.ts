/**
 * Databases to start every test file's database from, made once per run of the suite by
 * scripts/test.mjs: creating one per file cost more than most files' tests (PGlite runs initdb in
 * WASM, 2-5 s; Postgres applies every migration). Each file still gets a database of its own.
 *
 * - PGlite: two dumps of a data directory (PGlite's dumpDataDir): `empty.tar`, just created, and
 *   `migrated.tar`, with every migration applied. HERALD_TEST_PGLITE_TEMPLATES names their folder.
 * - Postgres: a migrated database that each file's is created from (CREATE DATABASE … TEMPLATE),
 *   named by HERALD_TEST_PG_TEMPLATE. No session may stay connected to it, or Postgres refuses to
 *   copy it.
 * Without those variables (one file run by hand with node --test), db.ts creates and migrates as
 * before. Either way it still runs migrate(), a no-op on a current template.
 *
 *   node --import tsx test/helpers/db-templates.ts prepare pglite|postgres <folder>   → JSON env on stdout
 *   node --import tsx test/helpers/db-templates.ts drop postgres <name>
 */
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pg from 'pg';
import { migrate } from '../../src/storage/migrate.ts';
import { openStorage } from '../../src/storage/open.ts';
import { ADMIN_URL } from './db.ts';

async function preparePglite(folder: string): Promise<Record<string, string>> {
  const db = await openStorage({});
  const dump = async (name: string) => {
    if (!db.dumpDataDir) throw new Error('this database cannot dump its data directory');
    writeFileSync(join(folder, name), Buffer.from(await (await db.dumpDataDir()).arrayBuffer()));
  };
  await dump('empty.tar');
  await migrate(db);
  await dump('migrated.tar');
  await db.close();
  return { HERALD_TEST_PGLITE_TEMPLATES: folder };
}

async function preparePostgres(): Promise<Record<string, string>> {
  const name = `herald_test_template_${process.pid}_${randomBytes(3).toString('hex')}`;
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const url = new URL(ADMIN_URL);
  url.pathname = `/${name}`;
  const db = await openStorage({ databaseUrl: url.toString(), poolSize: 1 });
  await migrate(db);
  await db.close();
  return { HERALD_TEST_PG_TEMPLATE: name };
}

async function dropPostgres(name: string): Promise<void> {
  if (!/^herald_test_template_\w+$/.test(name)) throw new Error(`not a template of the suite: ${name}`);
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  await admin.end();
}

const [verb, backend, arg] = process.argv.slice(2);
if (verb === 'prepare' && backend === 'pglite' && arg) process.stdout.write(JSON.stringify(await preparePglite(arg)));
else if (verb === 'prepare' && backend === 'postgres') process.stdout.write(JSON.stringify(await preparePostgres()));
else if (verb === 'drop' && backend === 'postgres' && arg) await dropPostgres(arg);
else if (verb) {
  process.stderr.write('usage: db-templates.ts prepare pglite <folder> | prepare postgres | drop postgres <name>\n');
  process.exit(2);
}
