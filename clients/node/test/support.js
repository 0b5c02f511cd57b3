// Test support: a throwaway database on the test server, with pgtrail
// installed by the real `pgtrail` binary, dropped when the test file ends.
'use strict';

const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const crypto = require('node:crypto');
const pg = require('pg');

const REPO = path.resolve(__dirname, '..', '..', '..');

/** The server's admin URL: PGTRAIL_TEST_URL (set by scripts/test), else the local server. */
function adminUrl() {
  return process.env.PGTRAIL_TEST_URL || 'postgres://postgres@127.0.0.1:5432/postgres';
}

/** The pgtrail binary: PGTRAIL_BIN, else the workspace's debug build. */
function pgtrailBin() {
  const target = process.env.CARGO_TARGET_DIR || path.join(REPO, 'target');
  const bin = process.env.PGTRAIL_BIN || path.join(target, 'debug', 'pgtrail');
  if (!fs.existsSync(bin)) {
    throw new Error(`the pgtrail binary is missing at ${bin}: run \`cargo build -p pgtrail-cli\` first (or set PGTRAIL_BIN)`);
  }
  return bin;
}

function urlFor(name) {
  const url = new URL(adminUrl());
  url.pathname = `/${name}`;
  return url.toString();
}

async function admin(sql) {
  const client = new pg.Client({ connectionString: adminUrl() });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}

/** Creates a database with `schema` in it; returns { name, url, drop() }. */
async function createDatabase(schema) {
  const name = `pgtrail_node_${process.pid}_${crypto.randomBytes(4).toString('hex')}`;
  await admin(`CREATE DATABASE "${name}"`);
  const url = urlFor(name);
  if (schema) {
    const client = new pg.Client({ connectionString: url });
    await client.connect();
    try {
      await client.query(schema);
    } finally {
      await client.end();
    }
  }
  return { name, url, drop: () => admin(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`) };
}

/** Runs `pgtrail ARGS` in a directory holding pgtrail.toml with `toml`; returns stdout. */
function pgtrail(url, toml, args) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgtrail-node-'));
  try {
    fs.writeFileSync(path.join(dir, 'pgtrail.toml'), toml);
    return execFileSync(pgtrailBin(), [...args, '--database-url', url], {
      cwd: dir,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
    });
  } catch (error) {
    throw new Error(`pgtrail ${args.join(' ')} failed: ${error.stderr || error.message}`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** A database with `schema`, pgtrail applied with `toml`. */
async function auditedDatabase(schema, toml = '') {
  const db = await createDatabase(schema);
  try {
    pgtrail(db.url, toml, ['apply']);
  } catch (error) {
    await db.drop();
    throw error;
  }
  return db;
}

/**
 * Ends a pg Pool and waits until each of its connections is closed.
 * `pool.end()` resolves as soon as it has asked its clients to end, before
 * their sockets close; a `DROP DATABASE ... WITH (FORCE)` right after it would
 * terminate those backends and the pool would raise the termination as an
 * unhandled 'error' event.
 */
async function closePool(pool) {
  if (!pool || pool.ended || pool.ending) return;
  let open = pool.totalCount;
  const closed = new Promise((resolve) => {
    if (open === 0) resolve();
    pool.on('remove', () => {
      open -= 1;
      if (open === 0) resolve();
    });
  });
  await pool.end();
  await closed;
}

module.exports = { adminUrl, createDatabase, auditedDatabase, pgtrail, closePool };
