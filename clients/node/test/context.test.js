// Stories of an app that says who is acting through pgtrail-context: with a
// pg Pool, a pg Client and drizzle-orm, against a real server with pgtrail
// installed by its binary.
'use strict';

const { test, before, after } = require('node:test');
const assert = require('node:assert/strict');
const crypto = require('node:crypto');
const pg = require('pg');
const { drizzle } = require('drizzle-orm/node-postgres');
const { pgTable, serial, text, integer } = require('drizzle-orm/pg-core');
const { eq } = require('drizzle-orm');
const { withAuditContext, setAuditContext } = require('..');
const { auditedDatabase, closePool } = require('./support');

const SCHEMA = `
  CREATE TABLE users (id serial PRIMARY KEY, email text NOT NULL, status text NOT NULL DEFAULT 'active');
  CREATE TABLE items (id serial PRIMARY KEY, request_no integer NOT NULL, label text NOT NULL);`;
const CONFIG = '[context]\nactor_name = ["app.actor_email"]\n';

const users = pgTable('users', { id: serial('id').primaryKey(), email: text('email').notNull(), status: text('status').notNull() });
const items = pgTable('items', { id: serial('id').primaryKey(), requestNo: integer('request_no').notNull(), label: text('label').notNull() });

let database;
let pool;

before(async () => {
  database = await auditedDatabase(SCHEMA, CONFIG);
  pool = new pg.Pool({ connectionString: database.url, max: 10 });
});

after(async () => {
  await closePool(pool);
  await database?.drop();
});

async function changes(table) {
  const { rows } = await pool.query(
    `SELECT op, pk, actor_id, actor_name, actor_type, reason, context, new_values, old_values
     FROM pgtrail.changes WHERE table_name = $1 ORDER BY id`,
    [table]
  );
  return rows;
}

test('a pg Pool request records who acted and why, with ids of any type', async () => {
  await withAuditContext(pool, { actorId: 42, actorName: 'alice@example.com', actorType: 'user', reason: 'signup', requestId: 'r-1' }, (client) =>
    client.query("INSERT INTO users (email) VALUES ('alice@example.com')")
  );
  await withAuditContext(pool, { actorId: 9007199254740993n, actorType: 'system' }, (client) =>
    client.query("UPDATE users SET status = 'checked' WHERE email = 'alice@example.com'")
  );
  const uuid = crypto.randomUUID();
  await withAuditContext(pool, { actorId: uuid, businessProcess: 'moderation', ip: '10.0.0.7' }, (client) =>
    client.query("UPDATE users SET status = 'suspended' WHERE email = 'alice@example.com'")
  );
  const [insert, check, suspend] = await changes('users');
  assert.equal(insert.op, 'INSERT');
  assert.equal(insert.actor_id, '42');
  assert.equal(insert.actor_name, 'alice@example.com');
  assert.equal(insert.actor_type, 'user');
  assert.equal(insert.reason, 'signup');
  assert.equal(insert.context.request_id, 'r-1');
  assert.equal(check.actor_id, '9007199254740993', 'a bigint beyond 2^53 keeps every digit');
  assert.equal(check.actor_type, 'system');
  assert.equal(suspend.actor_id, uuid);
  assert.deepEqual({ bp: suspend.context.business_process, ip: suspend.context.ip }, { bp: 'moderation', ip: '10.0.0.7' });
});

test('a setting pgtrail.toml maps (app.actor_email) is set the same way', async () => {
  await withAuditContext(pool, { actorId: 'u-7', settings: { 'app.actor_email': 'bob@example.com' } }, (client) =>
    client.query("INSERT INTO users (email) VALUES ('mapped@example.com')")
  );
  const last = (await changes('users')).at(-1);
  assert.equal(last.actor_id, 'u-7');
  assert.equal(last.actor_name, 'bob@example.com');
});

test('an error rolls the transaction back and is rethrown; the pool is left clean', async () => {
  const before = (await changes('users')).length;
  await assert.rejects(
    withAuditContext(pool, { actorId: 1, reason: 'will fail' }, async (client) => {
      await client.query("INSERT INTO users (email) VALUES ('rolled-back@example.com')");
      throw new Error('payment declined');
    }),
    /payment declined/
  );
  assert.equal((await changes('users')).length, before);
  const { rows } = await pool.query("SELECT count(*)::int AS n FROM users WHERE email = 'rolled-back@example.com'");
  assert.equal(rows[0].n, 0);
  // Nothing leaks to the next transaction on any pooled connection.
  const leaked = await Promise.all(
    Array.from({ length: 10 }, () => pool.query("SELECT current_setting('pgtrail.actor_id', true) AS v"))
  );
  for (const { rows } of leaked) assert.ok(rows[0].v === null || rows[0].v === '', `leaked: ${rows[0].v}`);
});

test('a pg Client runs the callback in a transaction too', async () => {
  const client = new pg.Client({ connectionString: database.url });
  await client.connect();
  try {
    const id = await withAuditContext(client, { actorId: 5, actorName: 'carol' }, async (c) => {
      const { rows } = await c.query("INSERT INTO users (email) VALUES ('carol@example.com') RETURNING id");
      return rows[0].id;
    });
    assert.ok(id > 0);
    await assert.rejects(
      withAuditContext(client, { actorId: 5 }, (c) => c.query('INSERT INTO users (email) VALUES (NULL)')),
      /null value/
    );
    const { rows } = await client.query('SELECT 1 AS ok');
    assert.equal(rows[0].ok, 1, 'the client is usable after the rollback');
    const last = (await changes('users')).at(-1);
    assert.deepEqual([last.actor_id, last.actor_name, last.new_values.email], ['5', 'carol', 'carol@example.com']);
  } finally {
    await client.end();
  }
});

test('drizzle-orm: the callback gets the transaction; a throw rolls back', async () => {
  const db = drizzle(pool);
  const [row] = await withAuditContext(db, { actorId: 77, actorName: 'dave@example.com', actorType: 'moderator', reason: 'spam' }, (tx) =>
    tx.insert(users).values({ email: 'drizzle@example.com', status: 'active' }).returning()
  );
  await assert.rejects(
    withAuditContext(db, { actorId: 78 }, async (tx) => {
      await tx.update(users).set({ status: 'gone' }).where(eq(users.id, row.id));
      throw new Error('abort');
    }),
    /abort/
  );
  const mine = (await changes('users')).filter((c) => c.pk.id === row.id);
  assert.equal(mine.length, 1, JSON.stringify(mine));
  assert.deepEqual([mine[0].actor_id, mine[0].actor_name, mine[0].actor_type, mine[0].reason], ['77', 'dave@example.com', 'moderator', 'spam']);
  const [still] = await db.select().from(users).where(eq(users.id, row.id));
  assert.equal(still.status, 'active');
});

test('setAuditContext sets the context in a transaction the app manages itself', async () => {
  const db = drizzle(pool);
  await db.transaction(async (tx) => {
    await setAuditContext(tx, { actorId: 'job-1', actorType: 'system' });
    await tx.insert(users).values({ email: 'job@example.com', status: 'active' });
  });
  const last = (await changes('users')).at(-1);
  assert.deepEqual([last.actor_id, last.actor_type], ['job-1', 'system']);
});

test('wrong input is refused before anything runs', async () => {
  await assert.rejects(withAuditContext(pool, { actorId: { id: 1 } }, () => {}), /actorId must be a string, number, bigint/);
  await assert.rejects(withAuditContext(pool, { settings: { nodot: 'x' } }, () => {}), /not a custom setting name/);
  await assert.rejects(withAuditContext({}, { actorId: 1 }, () => {}), /expected a pg Pool/);
});

test('hundreds of concurrent requests on a pool of 10: every change carries its own request, rolled-back ones none', async () => {
  const db = drizzle(pool);
  const REQUESTS = 400;
  const failing = (n) => n % 7 === 3;
  const results = await Promise.allSettled(
    Array.from({ length: REQUESTS }, (_, n) => {
      const context = { actorId: n, actorName: `user${n}@example.com`, actorType: 'user', requestId: `req-${n}` };
      const work = async (run) => {
        await run(`INSERT INTO items (request_no, label) VALUES (${n}, 'new')`);
        // Give other requests a chance to interleave on the pool.
        await new Promise((resolve) => setImmediate(resolve));
        await run(`UPDATE items SET label = 'seen by ${n}' WHERE request_no = ${n}`);
        if (failing(n)) throw new Error(`request ${n} fails`);
      };
      if (n % 2 === 0) {
        return withAuditContext(pool, context, (client) => work((q) => client.query(q)));
      }
      const { sql } = require('drizzle-orm');
      return withAuditContext(db, context, (tx) => work((q) => tx.execute(sql.raw(q))));
    })
  );
  const committed = new Set();
  results.forEach((result, n) => {
    if (failing(n)) assert.equal(result.status, 'rejected', `request ${n}`);
    else {
      assert.equal(result.status, 'fulfilled', `request ${n}: ${result.reason}`);
      committed.add(n);
    }
  });
  const rows = await changes('items');
  const seen = new Map();
  for (const change of rows) {
    const n = (change.new_values ?? change.old_values).request_no ?? Number(change.actor_id);
    assert.ok(committed.has(n), `a change of rolled-back request ${n} was recorded`);
    assert.equal(change.actor_id, String(n), `change of request ${n}`);
    assert.equal(change.actor_name, `user${n}@example.com`);
    assert.equal(change.context.request_id, `req-${n}`);
    if (change.op === 'UPDATE') assert.equal(change.new_values.label, `seen by ${n}`);
    seen.set(n, [...(seen.get(n) ?? []), change.op]);
  }
  assert.equal(seen.size, committed.size);
  for (const n of committed) assert.deepEqual(seen.get(n), ['INSERT', 'UPDATE'], `request ${n}`);
  const { rows: live } = await pool.query('SELECT count(*)::int AS n FROM items');
  assert.equal(live[0].n, committed.size);
});

test('a connection that breaks mid-transaction: the error is rethrown as it was, the pool goes on', async () => {
  const small = new pg.Pool({ connectionString: database.url, max: 1 });
  const idleErrors = [];
  small.on('error', (error) => idleErrors.push(error)); // an error of an idle connection would land here
  try {
    await assert.rejects(
      withAuditContext(small, { actorId: 1 }, async (client) => {
        await client.query("INSERT INTO users (email) VALUES ('lost@example.com')");
        // The server ends this backend (and it is gone before the rollback): the rollback fails too.
        client.on('error', () => {}); // the app's own handler for a checked-out client
        await pool.query('SELECT pg_terminate_backend($1)', [client.processID]);
        for (;;) {
          const { rows } = await pool.query('SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = $1', [client.processID]);
          if (rows[0].n === 0) break;
          await new Promise((resolve) => setTimeout(resolve, 10));
        }
        throw 'not an Error object';
      }),
      (error) => error === 'not an Error object'
    );
    const { rows } = await small.query('SELECT 1 AS ok');
    assert.equal(rows[0].ok, 1, 'the pool made a new connection');
    assert.deepEqual(idleErrors, [], 'no error escapes from the pool');
    const lost = await pool.query("SELECT count(*)::int AS n FROM users WHERE email = 'lost@example.com'");
    assert.equal(lost.rows[0].n, 0);
  } finally {
    await closePool(small);
  }
});
