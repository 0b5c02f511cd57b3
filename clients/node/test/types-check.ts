// Compiled (not run) by types.test.js: the declarations in index.d.ts fit
// real pg and drizzle-orm code, and reject what they should.
import { Pool, Client, PoolClient } from 'pg';
import { drizzle } from 'drizzle-orm/node-postgres';
import { withAuditContext, setAuditContext, auditContextQuery } from '../index';

async function stories(pool: Pool, client: Client): Promise<void> {
  const id: number = await withAuditContext(pool, { actorId: 42, actorName: 'a@example.com', actorType: 'user', requestId: 'r-1' }, async (c) => {
    const pooled: PoolClient = c;
    const { rows } = await pooled.query<{ id: number }>('SELECT 1 AS id');
    return rows[0].id;
  });
  await withAuditContext(client, { actorId: 10n, settings: { 'app.actor_email': 'a@example.com' } }, (c) => c.query('SELECT 1'));
  const db = drizzle(pool);
  const n: number = await withAuditContext(db, { actorId: crypto.randomUUID(), reason: 'spam' }, async (tx) => {
    await setAuditContext(tx, { actorType: 'system' });
    await tx.execute('SELECT 1');
    return 1;
  });
  const query = auditContextQuery({ actorId: id + n });
  if (query) await pool.query(query.text, query.values);
  // @ts-expect-error a context is an object
  await withAuditContext(pool, 'alice', async () => 1);
  // @ts-expect-error the settings' values are scalars
  await withAuditContext(pool, { settings: { 'app.x': { nested: true } } }, async () => 1);
}

void stories;
