// pgtrail-context: run a callback in a transaction whose pgtrail context
// (who is acting and why) is set, for node-postgres (Pool or Client) and
// drizzle-orm's node-postgres driver. The context is set with
// set_config(..., true): transaction-local, so it never leaks to the next
// request on a pooled connection, and every value is a bind parameter.
'use strict';

/** The pgtrail fields with settings of their own, by option name. */
const FIELDS = {
  actorId: 'pgtrail.actor_id',
  actorName: 'pgtrail.actor_name',
  actorType: 'pgtrail.actor_type',
  reason: 'pgtrail.reason',
};

/** Options that are not context fields. */
const OPTIONS = new Set(['settings']);

/** A setting name PostgreSQL accepts as a custom setting: `prefix.name`. */
const SETTING_NAME = /^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)+$/;

function scalarText(name, value) {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean') {
    return String(value);
  }
  if (value instanceof Date) return value.toISOString();
  throw new TypeError(
    `pgtrail-context: ${name} must be a string, number, bigint, boolean or Date (got ${typeof value}); ` +
      'pass ids of any type as they are, or put structured values in extra fields'
  );
}

function jsonValue(_key, value) {
  return typeof value === 'bigint' ? value.toString() : value;
}

/**
 * The settings a context stands for, as [name, value] pairs, in order:
 * pgtrail.actor_id, actor_name, actor_type, reason; pgtrail.context (every
 * other field, as one JSON object: request_id, business_process, ...); then
 * `settings` (settings your pgtrail.toml maps, such as app.actor_email).
 * Fields that are null or undefined are left out.
 */
function auditSettings(context) {
  if (context === null || typeof context !== 'object') {
    throw new TypeError('pgtrail-context: the context must be an object such as { actorId: 42, actorName: "alice@example.com" }');
  }
  const pairs = [];
  for (const [option, setting] of Object.entries(FIELDS)) {
    const value = context[option];
    if (value !== undefined && value !== null) pairs.push([setting, scalarText(option, value)]);
  }
  const extra = {};
  for (const [key, value] of Object.entries(context)) {
    if (key in FIELDS || OPTIONS.has(key) || value === undefined || value === null) continue;
    extra[snakeCase(key)] = value;
  }
  if (Object.keys(extra).length > 0) pairs.push(['pgtrail.context', JSON.stringify(extra, jsonValue)]);
  const settings = context.settings ?? {};
  if (typeof settings !== 'object') {
    throw new TypeError('pgtrail-context: settings must be an object such as { "app.actor_email": "alice@example.com" }');
  }
  for (const [name, value] of Object.entries(settings)) {
    if (!SETTING_NAME.test(name)) {
      throw new TypeError(`pgtrail-context: setting "${name}" is not a custom setting name; use prefix.name, such as app.actor_email`);
    }
    if (value !== undefined && value !== null) pairs.push([name, scalarText(`settings["${name}"]`, value)]);
  }
  return pairs;
}

/** requestId -> request_id; names already in snake_case stay as they are. */
function snakeCase(key) {
  return key.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toLowerCase();
}

/**
 * The statement that sets a context in the current transaction, for
 * node-postgres: `{ text, values }` with one bind parameter per name and value.
 */
function auditContextQuery(context) {
  const pairs = auditSettings(context);
  if (pairs.length === 0) return null;
  const calls = pairs.map((_, i) => `pg_catalog.set_config($${2 * i + 1}, $${2 * i + 2}, true)`);
  return { text: `SELECT ${calls.join(', ')}`, values: pairs.flat() };
}

function isDrizzle(db) {
  return db !== null && typeof db === 'object' && typeof db.transaction === 'function' && typeof db.execute === 'function';
}

function isPool(db) {
  return db !== null && typeof db === 'object' && typeof db.connect === 'function' && typeof db.totalCount === 'number';
}

function isClient(db) {
  return db !== null && typeof db === 'object' && typeof db.query === 'function';
}

/**
 * Sets the context in the transaction `executor` is in: a node-postgres
 * client inside BEGIN ... COMMIT, or a drizzle transaction. Outside a
 * transaction the settings would end with their own statement, so use
 * withAuditContext unless you manage the transaction yourself.
 */
async function setAuditContext(executor, context) {
  if (isDrizzle(executor)) {
    const pairs = auditSettings(context);
    if (pairs.length === 0) return;
    const { sql } = require('drizzle-orm');
    const calls = pairs.map(([name, value]) => sql`pg_catalog.set_config(${name}, ${value}, true)`);
    await executor.execute(sql`SELECT ${sql.join(calls, sql`, `)}`);
    return;
  }
  if (isClient(executor)) {
    const query = auditContextQuery(context);
    if (query) await executor.query(query);
    return;
  }
  throw new TypeError('pgtrail-context: expected a pg Client or a drizzle transaction');
}

/**
 * BEGIN, context, fn(client), COMMIT; ROLLBACK and rethrow when fn throws.
 * `state.broken` is set when the rollback itself failed (the connection is
 * then unusable and a pool must not get it back).
 */
async function inClientTransaction(client, context, fn, state = {}) {
  await client.query('BEGIN');
  try {
    await setAuditContext(client, context);
    const result = await fn(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    try {
      await client.query('ROLLBACK');
    } catch (rollbackError) {
      state.broken = rollbackError;
    }
    throw error;
  }
}

/**
 * Runs `fn` in a new transaction with the context set, commits when it
 * returns and rolls back when it throws (the error is rethrown).
 *
 * - `db` a drizzle-orm node-postgres database: `fn(tx)` gets drizzle's
 *   transaction (db.transaction);
 * - `db` a pg Pool: a client is taken from the pool for the transaction and
 *   given back afterwards (destroyed if the rollback failed); `fn(client)`;
 * - `db` a pg Client (connected, not inside a transaction): `fn(client)`.
 */
async function withAuditContext(db, context, fn) {
  if (typeof fn !== 'function') throw new TypeError('pgtrail-context: the third argument must be a function');
  auditSettings(context); // wrong input fails before anything starts
  if (isDrizzle(db)) {
    return db.transaction(async (tx) => {
      await setAuditContext(tx, context);
      return fn(tx);
    });
  }
  if (isPool(db)) {
    const client = await db.connect();
    const state = {};
    try {
      return await inClientTransaction(client, context, fn, state);
    } finally {
      client.release(state.broken);
    }
  }
  if (isClient(db)) return inClientTransaction(db, context, fn);
  throw new TypeError('pgtrail-context: expected a pg Pool, a pg Client or a drizzle-orm node-postgres database');
}

module.exports = { withAuditContext, setAuditContext, auditContextQuery, auditSettings };
