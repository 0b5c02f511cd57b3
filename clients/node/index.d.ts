// Types of pgtrail-context: run a callback in a transaction with pgtrail's
// audit context set (pg Pool/Client, drizzle-orm node-postgres).

/** An id or a name: stored as text in the trail. */
export type ContextValue = string | number | bigint | boolean | Date;

/** Who is acting and why. Every other field goes into the change's context (camelCase becomes snake_case). */
export interface AuditContext {
  actorId?: ContextValue | null;
  actorName?: ContextValue | null;
  actorType?: 'user' | 'moderator' | 'system' | 'migration' | (string & {}) | null;
  reason?: ContextValue | null;
  requestId?: ContextValue | null;
  sessionId?: ContextValue | null;
  businessProcess?: ContextValue | null;
  migration?: ContextValue | null;
  ip?: ContextValue | null;
  userAgent?: ContextValue | null;
  /** Other settings set transaction-locally, such as ones pgtrail.toml's [context] maps: { "app.actor_email": "a@b.c" }. */
  settings?: Record<string, ContextValue | null | undefined>;
  [extra: string]: unknown;
}

/** What runs a query: a pg Client, or a drizzle transaction. */
type PgClientLike = { query: (...args: any[]) => Promise<any> };
type PgPoolLike = PgClientLike & { connect: () => Promise<any>; totalCount: number };
type DrizzleLike = { transaction: (fn: (tx: any) => Promise<any>) => Promise<any>; execute: (...args: any[]) => Promise<any> };

/** The callback's argument: drizzle's transaction for a drizzle database, else the pg client of the transaction. */
type TransactionOf<D> = D extends { transaction(fn: (tx: infer T) => Promise<any>, ...rest: any[]): Promise<any> }
  ? T
  : D extends PgPoolLike
    ? import('pg').PoolClient
    : D;

/** Runs fn in a new transaction with the context set; commits when it returns, rolls back when it throws. */
export function withAuditContext<D extends DrizzleLike | PgPoolLike | PgClientLike, R>(
  db: D,
  context: AuditContext,
  fn: (tx: TransactionOf<D>) => Promise<R> | R
): Promise<R>;

/** Sets the context in the transaction the client or drizzle transaction is in. */
export function setAuditContext(executor: PgClientLike | DrizzleLike, context: AuditContext): Promise<void>;

/** The statement that sets the context, for node-postgres (null when the context is empty). */
export function auditContextQuery(context: AuditContext): { text: string; values: string[] } | null;

/** The settings the context stands for, as [name, value] pairs. */
export function auditSettings(context: AuditContext): Array<[string, string]>;
