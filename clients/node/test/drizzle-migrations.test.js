// Story: a Drizzle app ships pgtrail as a custom migration (the file
// `pgtrail sql` prints) and drizzle-orm's migrator applies it with the
// app's other migrations, all in its one transaction: a later migration
// that fails rolls everything back, and the migrator runs again once the
// migration is fixed. Tables added later ship as what `pgtrail plan` prints.
'use strict';

const { test, after } = require('node:test');
const assert = require('node:assert/strict');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const pg = require('pg');
const { drizzle } = require('drizzle-orm/node-postgres');
const { migrate } = require('drizzle-orm/node-postgres/migrator');
const { withAuditContext } = require('..');
const { createDatabase, pgtrail, closePool } = require('./support');

const CONFIG = '[capture]\nexclude = ["sessions"]\n';
const SCHEMA = `CREATE TABLE users (id serial PRIMARY KEY, email text NOT NULL);
--> statement-breakpoint
CREATE TABLE sessions (id text PRIMARY KEY, user_id integer REFERENCES users);
`;

const cleanups = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

/** A drizzle migrations folder with these [tag, sql] migrations. */
function writeMigrations(dir, migrations) {
  fs.mkdirSync(path.join(dir, 'meta'), { recursive: true });
  const entries = migrations.map(([tag, sql], idx) => {
    fs.writeFileSync(path.join(dir, `${tag}.sql`), sql);
    return { idx, version: '7', when: 1767225600000 + idx * 1000, tag, breakpoints: true };
  });
  fs.writeFileSync(path.join(dir, 'meta', '_journal.json'), JSON.stringify({ version: '7', dialect: 'postgresql', entries }, null, 2));
}

async function scalar(pool, sql) {
  const { rows } = await pool.query(sql);
  return Object.values(rows[0])[0];
}

test('drizzle migrate applies pgtrail with the app, rolls all back on a later failure, and reruns once fixed', async () => {
  // The developer's database, migrated to the app's schema: where `pgtrail sql` is run.
  const dev = await createDatabase(SCHEMA.replaceAll('--> statement-breakpoint', ''));
  cleanups.push(dev.drop);
  const install = pgtrail(dev.url, CONFIG, ['sql']);
  assert.doesNotMatch(install, /^(BEGIN|COMMIT);$/m, 'no transaction control of its own');

  const target = await createDatabase('');
  cleanups.push(target.drop);
  const pool = new pg.Pool({ connectionString: target.url, max: 4 });
  cleanups.push(() => closePool(pool));
  const db = drizzle(pool);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgtrail-drizzle-'));
  cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));

  const broken = 'ALTER TABLE users ADD COLUMN nickname text;\n--> statement-breakpoint\nCREATE INDEX users_nickname ON users (no_such_column);\n';
  writeMigrations(dir, [
    ['0000_schema', SCHEMA],
    ['0001_pgtrail', install],
    ['0002_nickname', broken],
  ]);
  await assert.rejects(migrate(db, { migrationsFolder: dir }), (error) => {
    assert.match(String(error.cause ?? error), /no_such_column/);
    return true;
  });
  assert.equal(await scalar(pool, "SELECT count(*)::int FROM pg_namespace WHERE nspname = 'pgtrail'"), 0, 'pgtrail rolled back');
  assert.equal(await scalar(pool, "SELECT to_regclass('public.users') IS NULL"), true, 'the schema rolled back');
  assert.equal(await scalar(pool, 'SELECT count(*)::int FROM drizzle.__drizzle_migrations'), 0);

  // Fixed, the migrator gets past it: no "relation already exists".
  writeMigrations(dir, [
    ['0000_schema', SCHEMA],
    ['0001_pgtrail', install],
    ['0002_nickname', broken.replace('no_such_column', 'nickname')],
  ]);
  await migrate(db, { migrationsFolder: dir });
  await migrate(db, { migrationsFolder: dir }); // nothing pending: a no-op
  assert.equal(await scalar(pool, 'SELECT count(*)::int FROM drizzle.__drizzle_migrations'), 3);
  pgtrail(target.url, CONFIG, ['check']); // exits 0: every table as the config says

  await withAuditContext(db, { actorId: 1, actorName: 'alice@example.com' }, (tx) =>
    tx.execute("INSERT INTO users (email, nickname) VALUES ('a@example.com', 'a')")
  );
  const { rows } = await pool.query("SELECT op, actor_name, new_values FROM pgtrail.changes WHERE table_name = 'users'");
  assert.deepEqual(rows.map((r) => [r.op, r.actor_name, r.new_values.email]), [['INSERT', 'alice@example.com', 'a@example.com']]);

  // A table added later: its migration, then the file `pgtrail plan` prints as the next one.
  const comments = 'CREATE TABLE comments (id serial PRIMARY KEY, body text);\n';
  const migrations = [
    ['0000_schema', SCHEMA],
    ['0001_pgtrail', install],
    ['0002_nickname', broken.replace('no_such_column', 'nickname')],
    ['0003_comments', comments],
  ];
  writeMigrations(dir, migrations);
  await migrate(db, { migrationsFolder: dir });
  const next = pgtrail(target.url, CONFIG, ['plan']);
  assert.match(next, /"comments"/);
  writeMigrations(dir, [...migrations, ['0004_pgtrail_comments', next]]);
  await migrate(db, { migrationsFolder: dir });
  assert.equal(pgtrail(target.url, CONFIG, ['plan']), '', 'nothing left to ship');
  await pool.query("INSERT INTO comments (body) VALUES ('first')");
  assert.equal(await scalar(pool, "SELECT count(*)::int FROM pgtrail.changes WHERE table_name = 'comments'"), 1);
});
