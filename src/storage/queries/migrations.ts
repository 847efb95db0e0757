export const migrationQueries = {
  createTable: `CREATE TABLE IF NOT EXISTS herald_migrations (
    id integer PRIMARY KEY,
    name text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
  )`,
  tableExists: `SELECT to_regclass('herald_migrations') IS NOT NULL AS exists`,
  applied: `SELECT id FROM herald_migrations ORDER BY id`,
  record: `INSERT INTO herald_migrations (id, name) VALUES ($1, $2)`,
};
